"""Checkpoints as flax msgpack (no pickle), written atomically; one file per seed directory."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import flax.serialization
import jax
import jax.numpy as jnp

from qflow.utils import atomic_write_json, atomic_writer

CHECKPOINT = "checkpoint.msgpack"
RUN_INFO = "run.json"
# What must agree for a directory to be resumed by the same run.
IDENTITY_KEYS = ("env", "agent", "seed", "config", "preset")


class CheckpointError(RuntimeError):
    pass


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["qflow", *sys.argv[1:]]) if sys.argv else "qflow"


def check_compatible(run_dir: Path, info: dict) -> None:
    """First use of a directory records the run; a later run must be the same run."""
    path = run_dir / RUN_INFO
    if path.exists():
        old = json.loads(path.read_text())
        diff = [k for k in IDENTITY_KEYS if old.get(k) != json.loads(json.dumps(info.get(k)))]
        if old.get("data", {}).get("sha256") != info["data"].get("sha256"):
            diff.append("data")
        if diff:
            raise CheckpointError(
                f"{run_dir} holds a different run (differs in {', '.join(diff)}); pass another --run-dir"
            )
        return
    atomic_write_json(path, info)


def save(run_dir: Path, agent, step: int) -> None:
    payload = flax.serialization.to_bytes({"step": step, "agent": agent})
    with atomic_writer(run_dir / CHECKPOINT) as f:
        f.write(payload)


def load(run_dir: Path, template):
    path = run_dir / CHECKPOINT
    try:
        state = flax.serialization.from_bytes({"step": 0, "agent": template}, path.read_bytes())
    except Exception as err:  # msgpack and shape errors alike
        raise CheckpointError(
            f"unreadable checkpoint {path} ({type(err).__name__}: {err}); move it away to restart the run"
        ) from err
    return state["agent"], int(state["step"])


def save_all(dirs, stacked_agents, step: int) -> None:
    for i, d in enumerate(dirs):
        save(d, jax.tree.map(lambda x: x[i], stacked_agents), step)


def restore_all(dirs, stacked_template):
    """(stacked agents, step) from every seed's checkpoint, or None when none exists yet."""
    present = [(d / CHECKPOINT).exists() for d in dirs]
    if not any(present):
        return None
    if not all(present):
        missing = [str(d) for d, p in zip(dirs, present) if not p]
        raise CheckpointError(f"checkpoints missing in {missing}; resume needs all seeds (or a new --run-dir)")
    loaded = [load(d, jax.tree.map(lambda x: x[i], stacked_template)) for i, d in enumerate(dirs)]
    steps = {s for _, s in loaded}
    if len(steps) != 1:
        raise CheckpointError(f"seed checkpoints disagree on the step ({sorted(steps)}); use one --run-dir per seed")
    agents = jax.tree.map(lambda *xs: jnp.stack(xs), *[a for a, _ in loaded])
    return agents, steps.pop()
