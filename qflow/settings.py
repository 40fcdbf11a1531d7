"""Settings dataclasses are the command line and the TOML files.

A job's settings are one dataclass whose fields carry a same-line comment. From it come:
``add_flags`` (one ``--field-name`` per field, the comment as its help), ``from_flags`` (the
dataclass from what was given on the command line) and ``from_table`` (the dataclass from a TOML
table, with a one-line error for an unknown key or a wrong type). A field added to a dataclass is
therefore a flag, a TOML key and a sweep axis with no more code.

Field metadata (``dataclasses.field(metadata=flag(...))``) covers the few exceptions: another flag
name (``--set`` for overrides), a repeatable flag, extra names (``--seed`` for ``--seeds``), a
positional argument, choices, or no flag at all.

Types: ``int``, ``float``, ``str``, ``bool`` (``--x`` when the default is False, ``--no-x`` when it is
True), ``X | None`` (None: not set), and tuples (comma-separated; integer tuples take ranges such
as ``0-2,5``, see ``parse_int_list``). Integers are counts, seeds or ids: a flag refuses a negative
one, and a value below ``cls.AT_LEAST[field]`` where the class names a larger minimum.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import io
import tokenize
import types
import typing

from qflow.errors import QFlowError
from qflow.utils import parse_int_list


def flag(name: str | None = None, *, repeat: bool = False, aliases: tuple = (), positional: bool = False,
         choices: tuple = (), cli: bool = True, help: str | None = None, show_default: bool = True) -> dict:  # noqa: A002
    """Metadata for a field whose flag is not the default ``--field-name``."""
    return {"flag": name, "repeat": repeat, "aliases": aliases, "positional": positional, "choices": choices,
            "cli": cli, "help": help, "show_default": show_default}


@functools.lru_cache(maxsize=None)
def field_comments(cls) -> dict[str, str]:
    """{field: its same-line comment, continued by comment-only lines below it} for ``cls`` and its bases."""
    out = {}
    for klass in reversed(cls.__mro__[:-1]):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        out.update(_comments_in(inspect.cleandoc("\n" + source) if source[:1].isspace() else source))
    return out


def _comments_in(source: str) -> dict[str, str]:
    comments, current, code_on_line = {}, None, set()
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for tok in tokens:
        if tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            code_on_line.add(tok.start[0])
    lines = source.splitlines()
    for tok in tokens:
        if tok.type != tokenize.COMMENT:
            continue
        row = tok.start[0]
        text = tok.string.lstrip("#").strip()
        line = lines[row - 1]
        head = line[:tok.start[1]].strip()
        if row in code_on_line and ":" in head and line.startswith("    ") and not line.startswith("     "):
            name = head.split(":", 1)[0].strip()
            if name.isidentifier():
                current = name
                comments[name] = text
                continue
        if row not in code_on_line and current is not None and lines[row - 1].startswith("    "):
            comments[current] += " " + text  # a continuation line of the field above
        else:
            current = None
    return comments


def _field_type(cls, f: dataclasses.Field):
    hint = typing.get_type_hints(cls)[f.name]
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = True, args[0]
    if hint is tuple or typing.get_origin(hint) is tuple:
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        default = f.default if f.default is not dataclasses.MISSING else ()
        element = args[0] if args else (type(default[0]) if default else str)
        return tuple, element, optional
    return hint, None, optional


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def parse_value(text: str, kind, element=None, what: str = "value", minimum: int | None = None):
    """A command-line or TOML string as ``kind`` (tuples: comma-separated ``element`` values);
    integers (and integer tuples) below ``minimum`` are refused."""
    try:
        if kind is tuple:
            values = tuple(parse_int_list(text)) if element is int else tuple(
                parse_value(x.strip(), element, what=what) for x in str(text).split(",") if x.strip())
        elif kind is bool:
            lowered = str(text).lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError
            values = lowered in ("true", "1")
        else:
            values = kind(text)
    except ValueError:
        listed = ("comma-separated integers or ranges (e.g. 0-2,5)" if element is int
                  else f"a comma-separated list of {getattr(element, '__name__', 'values')}")
        expected = {int: "an integer", float: "a number", bool: "true or false", tuple: listed}
        raise argparse.ArgumentTypeError(f"expected {expected.get(kind, kind.__name__)}, got {text!r}") from None
    low = [v for v in (values if kind is tuple else (values,)) if minimum is not None and isinstance(v, int)
           and not isinstance(v, bool) and v < minimum]
    if low:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {low[0]}")
    return values


def add_flags(parser: argparse.ArgumentParser, cls, skip: tuple = (), defaults=None, required: bool = True) -> None:
    """One flag per field of ``cls`` (not in ``skip``); every default is None, so ``from_flags`` knows
    what was given. ``defaults``: an instance whose values the help shows (default: ``cls()``).
    ``required=False``: fields without a default may come from elsewhere (a spec file)."""
    comments = field_comments(cls)
    shown = defaults if defaults is not None else _instance_or_none(cls)
    for f in dataclasses.fields(cls):
        meta = {**flag(), **f.metadata}
        if f.name in skip or not meta["cli"]:
            continue
        kind, element, _ = _field_type(cls, f)
        default = getattr(shown, f.name, _default(f)) if shown is not None else _default(f)
        text = meta["help"] or comments.get(f.name, "")
        if default not in (dataclasses.MISSING, None, ()) and kind is not bool and meta["show_default"]:
            text = f"{text} (default {_show(default)})" if text else f"default {_show(default)}"
        name = meta["flag"] or "--" + f.name.replace("_", "-")
        kwargs = {"help": text.replace("%", "%%")}
        if kind is bool:
            negative = default is True
            name = f"--no-{f.name.replace('_', '-')}" if negative and not meta["flag"] else name
            if negative:  # the comment says what the field turns on; this flag turns it off
                kwargs["help"] = f"turn off: {kwargs['help']}" if kwargs["help"] else "turn it off"
            parser.add_argument(name, *meta["aliases"], dest=f.name, action="store_const", const=not negative,
                                default=None, **kwargs)
            continue
        what = name if not meta["positional"] else f.name
        kwargs["type"] = functools.partial(parse_value, kind=kind, element=element, what=what,
                                           minimum=getattr(cls, "AT_LEAST", {}).get(f.name, 0))
        if meta["choices"]:
            kwargs["choices"] = meta["choices"]
        if meta["positional"]:
            nargs = "?" if default is not dataclasses.MISSING else None
            parser.add_argument(f.name, nargs=nargs, default=None, metavar=f.name.upper(), **kwargs)
        elif meta["repeat"]:
            kwargs["type"] = str
            parser.add_argument(name, *meta["aliases"], dest=f.name, action="append", default=None, **kwargs)
        else:
            parser.add_argument(name, *meta["aliases"], dest=f.name, default=None,
                                required=required and default is dataclasses.MISSING, **kwargs)


def _instance_or_none(cls):
    try:
        return cls()
    except TypeError:  # required fields
        return None


def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def from_flags(cls, namespace: argparse.Namespace, base=None, **fixed):
    """``base`` (default ``cls()``) with every field given on the command line replaced, then ``fixed``."""
    # fields that are no flag (cli=False) are never read: the parser's own names (the subcommand is
    # args.command) would otherwise land in them
    given = {f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls)
             if {**flag(), **f.metadata}["cli"] and getattr(namespace, f.name, None) is not None}
    for f in dataclasses.fields(cls):
        if f.name in given and {**flag(), **f.metadata}["repeat"]:
            given[f.name] = tuple(given[f.name])
    given.update(fixed)
    return dataclasses.replace(base, **given) if base is not None else cls(**given)


def from_table(cls, table: dict, where: str, base=None):
    """``cls`` from a TOML table: unknown keys and values of the wrong type are one-line errors that
    name ``where`` (e.g. "plans/evidence.toml: entry 2") and the key."""
    if not isinstance(table, dict):
        raise QFlowError(f"{where}: expected a table of settings, got {type(table).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise QFlowError(f"{where}: unknown keys {unknown}; known: {', '.join(sorted(fields))}")
    values = {name: coerce(cls, fields[name], value, f"{where}: {name}") for name, value in table.items()}
    try:
        return dataclasses.replace(base, **values) if base is not None else cls(**values)
    except TypeError as err:  # a required field missing
        raise QFlowError(f"{where}: {err}") from None


def coerce(cls, f: dataclasses.Field, value, what: str):
    """A TOML value as the field's type, held to the same minimum as its flag; strings are parsed as on
    the command line."""
    kind, element, optional = _field_type(cls, f)
    if value is None and optional:
        return None
    minimum = getattr(cls, "AT_LEAST", {}).get(f.name, 0)
    try:
        if isinstance(value, str) and kind is not str:
            return parse_value(value, kind, element, what, minimum)
        if kind is tuple:
            if not isinstance(value, (list, tuple)):
                raise TypeError
            result = tuple(coerce_scalar(v, element) for v in value)
        else:
            result = coerce_scalar(value, kind)
    except (TypeError, argparse.ArgumentTypeError):
        name = element.__name__ if kind is tuple else kind.__name__
        raise QFlowError(f"{what} must be {'a list of ' if kind is tuple else ''}{name}, got {value!r}") from None
    low = [v for v in (result if kind is tuple else (result,)) if type(v) is int and v < minimum]
    if low:
        raise QFlowError(f"{what} must be >= {minimum}, got {low[0]}")
    return result


def coerce_scalar(value, kind):
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is tuple and isinstance(value, (list, tuple)):  # a nested list (e.g. a set of overrides)
        return tuple(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError
    return value


def split_grid(override: str) -> tuple[str, list[str]] | None:
    """``KEY=[V1,V2,...]`` -> (KEY, [V1, V2, ...]): a grid axis of overrides (sweeps, stacked groups); None for
    a fixed ``KEY=VALUE``."""
    key, _, value = override.partition("=")
    value = value.strip()
    if not (value.startswith("[") and value.endswith("]")):
        return None
    return key.strip(), [v.strip() for v in value[1:-1].split(",") if v.strip()]
