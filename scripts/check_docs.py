"""Check the documentation against the code: every `qflow ...` command shown parses, every script it
names exists, and every relative link resolves.

    python scripts/check_docs.py [FILE.md ...]     # default: README.md and docs/*.md

A link's anchor (``page.md#a-heading``) must name a heading of that page. A command is read from fenced code blocks and from inline code spans that start with `qflow`. Its
subcommand words must name a subcommand, and each `--flag` must be a flag of that subcommand; a command
in a code block, which a reader copies whole, must also give every required flag (values and placeholders
such as ENV or N are not checked: they are the reader's to fill in). Exit 1 with one
line per problem, each naming the file and line.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
INLINE = re.compile(r"`(qflow [a-z][^`]*)`")  # `qflow (lambda=5)` is a label, not a command
SCRIPT = re.compile(r"(?:python |^|\s)((?:scripts|docs)/[\w./-]+\.(?:py|sh))")


def commands(text: str):
    """(line number, command text, whether it is in a code block) of every qflow command."""
    fenced, pending = False, None  # pending: (line, text) of a command continued with a backslash
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced, pending = not fenced, None
            continue
        if fenced:
            code = line.split(" #", 1)[0].strip()
            if pending:
                pending = (pending[0], pending[1] + " " + code)
            elif re.match(r"qflow [a-z-]", code):
                pending = (number, code)
            if pending and pending[1].endswith("\\"):
                pending = (pending[0], pending[1][:-1].rstrip())
            elif pending:
                yield (*pending, True)
                pending = None
        else:
            for match in INLINE.finditer(line):
                yield number, match.group(1), False


def _subparsers(parser: argparse.ArgumentParser) -> dict:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def command_problem(command: str, parser: argparse.ArgumentParser, passthrough, whole: bool = False) -> str | None:
    """What is wrong with one shown command, or None. ``whole``: shown in full, so its required flags are there."""
    try:
        words = shlex.split(command.replace("\\|", "|"))[1:]
    except ValueError as err:
        return f"`{command}` does not split into words ({err})"
    words = [w.strip("[]") for w in words]
    path = ["qflow"]
    while words and words[0] in _subparsers(parser):
        if words[0] in passthrough:
            return None  # these parse their own flags: `qflow NAME --help` shows them
        parser = _subparsers(parser)[words[0]]
        path.append(words.pop(0))
    if _subparsers(parser) and words:  # `qflow stacked` alone names the group
        return f"`{' '.join(path)}` needs a subcommand ({', '.join(_subparsers(parser))}), got {words[:1]}"
    known = {o for action in parser._actions for o in action.option_strings}
    for word in words:
        flag = word.split("=", 1)[0]
        if flag.startswith("--") and flag not in known:
            return f"`{' '.join(path)}` has no flag {flag}"
    if not whole:
        return None
    given = {w.split("=", 1)[0] for w in words}
    missing = [a.option_strings[-1] for a in parser._actions
               if a.required and a.option_strings and not given & set(a.option_strings)]
    return f"`{' '.join(path)}` needs {', '.join(missing)}" if missing else None


def anchors(page: Path) -> set[str]:
    """The anchors of a Markdown page's headings, as GitHub makes them."""
    slugs = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            slugs.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return slugs


def link_problem(page: Path, target: str) -> str | None:
    """What is wrong with a link from ``page``: a missing file or a heading its anchor names; None if fine."""
    if "://" in target or target.startswith("mailto:"):
        return None
    file, _, anchor = target.partition("#")
    dest = page if not file else page.parent / file
    if not dest.exists():
        return f"broken link {target}"
    if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
        return f"broken anchor {target}"
    return None


def check(paths) -> list[str]:
    from qflow.cli import PASSTHROUGH, build_parser

    parser, problems = build_parser(), []
    for path in paths:
        text = path.read_text()
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        for number, command, whole in commands(text):
            problem = command_problem(command, parser, PASSTHROUGH, whole)
            if problem:
                problems.append(f"{name}:{number}: {problem}")
        for number, line in enumerate(text.splitlines(), 1):
            for target in LINK.findall(line):
                problem = link_problem(path, target)
                if problem:
                    problems.append(f"{name}:{number}: {problem}")
            for script in SCRIPT.findall(line):
                if not (ROOT / script).exists():
                    problems.append(f"{name}:{number}: no file {script}")
    return problems


def main(argv=None) -> int:
    args = [Path(a).resolve() for a in (sys.argv[1:] if argv is None else argv)]
    paths = args or [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    problems = check(paths)
    for problem in problems:
        print(problem)
    print(f"check_docs: {len(paths)} files, {len(problems)} problems", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
