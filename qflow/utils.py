"""Small shared helpers: atomic file writes, file locks and version stamps."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_writer(path: Path, mode: str = "wb"):
    """Open a temporary file beside ``path``; rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.filename in (None, tmp):
            raise naming(err, path) from err
        raise


def naming(err: OSError, path) -> OSError:
    """``err`` (a full disk, a quota, an I/O error: a write names no file) as the same error naming ``path``,
    so the one line the command line prints says which file could not be written."""
    return OSError(err.errno, err.strerror or str(err), str(path))


def _int_at_least(low: int):
    """An argparse type: an integer >= ``low`` (so 0 is never silently read as "unset")."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    return parse


POSITIVE, NONNEGATIVE = _int_at_least(1), _int_at_least(0)  # argparse types for counts and seeds


def parse_int_list(text: str) -> list[int]:
    """'1-5' -> [1, 2, 3, 4, 5]; '0,2-3' -> [0, 2, 3] (tasks, seeds)."""
    values = []
    for part in str(text).split(","):
        if not part.strip():
            continue
        lo, _, hi = part.partition("-")
        try:
            values.extend(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            raise ValueError(f"expected integers or ranges like 1-5,7, got {text!r}") from None
    if not values:
        raise ValueError(f"expected integers or ranges like 1-5,7, got {text!r}")
    return values


class LockHeld(RuntimeError):
    """Another live process holds a lock this one was told not to wait for."""


@contextlib.contextmanager
def file_lock(path: Path, what: str, wait: bool, on_wait=None):
    """Hold an exclusive OS lock on ``path`` (created if needed) for the block.

    The lock file records its holder (pid and ``what``). The OS drops the lock when the holder
    exits, however it exits, so a killed process never leaves a stale lock behind. ``wait``: block
    until the lock is free (calling ``on_wait(holder)`` first), else raise ``LockHeld`` at once.
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            if not wait:
                raise LockHeld(holder) from None
            if on_wait is not None:
                on_wait(holder)
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} ({what})")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_toml(path: Path, what: str, hint: str = "") -> dict:
    """A TOML file as a dict; a missing or malformed file is a one-line QFlowError naming ``what`` it is."""
    import tomllib

    from qflow.errors import QFlowError

    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise QFlowError(f"no {what} at {path}{hint}") from None
    except tomllib.TOMLDecodeError as err:
        raise QFlowError(f"{path} is not valid TOML ({err})") from None


def atomic_write_json(path: Path, obj) -> None:
    with atomic_writer(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.write("\n")


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("qflow", "ogbench", "mujoco", "gymnasium", "jax", "jaxlib", "flax", "optax", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def quiet_env_warnings() -> None:
    """Silence import-time noise of gymnasium/glfw that says nothing about the user's run."""
    import warnings

    warnings.filterwarnings("ignore", message=".*precision lowered.*")
    warnings.filterwarnings("ignore", message=".*DISPLAY environment variable.*")
