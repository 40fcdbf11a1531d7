"""Checkpoints as flax msgpack (no pickle), written atomically; one file per seed directory."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import flax.serialization
import jax
import jax.numpy as jnp

from qflow.errors import QFlowError
from qflow.utils import atomic_write_json, atomic_writer

CHECKPOINT = "checkpoint.msgpack"
RUN_INFO = "run.json"
# What must agree for a directory to be resumed by the same run: what is trained and how it is scored.
IDENTITY_KEYS = ("env", "agent", "seed", "config", "preset", "eval_every", "eval_episodes", "updates_per_step")
# Keys added after the first runs were recorded: a run.json without one is not refused for it.
LATER_KEYS = ("updates_per_step",)
# The flag that sets each key, for the message that says how to resume.
FLAGS = {"env": "--env", "agent": "--agent", "seed": "--seed", "preset": "--preset", "eval_every": "--eval-every",
         "eval_episodes": "--eval-episodes", "updates_per_step": "--updates-per-step"}


class CheckpointError(QFlowError, RuntimeError):
    pass


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["qflow", *sys.argv[1:]]) if sys.argv else "qflow"


def check_compatible(run_dir: Path, info: dict) -> None:
    """First use of a directory records the run; a later run must be the same run."""
    path = run_dir / RUN_INFO
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except ValueError as err:
            raise CheckpointError(f"{path} is unreadable ({err}); move the directory away or pass another --run-dir")
        new = json.loads(json.dumps(info))
        if isinstance(old.get("config"), dict) and isinstance(new.get("config"), dict):
            # a key the old record lacks because it did not exist yet: the value that run used
            from qflow.agents import AGENTS

            config_cls = AGENTS.get(old.get("agent"), (None, None))[1]
            legacy = config_cls.legacy_defaults() if hasattr(config_cls, "legacy_defaults") else {}
            old = {**old, "config": {**legacy, **old["config"]}}
        diff = [k for k in IDENTITY_KEYS if old.get(k) != new.get(k) and not (k in LATER_KEYS and k not in old)]
        if old.get("data", {}).get("sha256") != info["data"].get("sha256"):
            diff.append("data")
        if diff:
            flags = " ".join(f"{FLAGS[k]} {old[k]}" for k in diff if k in FLAGS and k in old)
            if "config" in diff:  # config keys the run was started with, e.g. a key that did not exist then
                changed = sorted(k for k in old["config"] if old["config"][k] != new["config"].get(k))
                flags = " ".join([flags, *(f"--set {k}={_flag_value(old['config'][k])}" for k in changed)]).strip()
            how = f"to resume it pass {flags} (the values it was started with), or " if flags else ""
            raise CheckpointError(
                f"{run_dir} holds a different run (differs in {', '.join(diff)}); {how}pass another --run-dir"
            )
        return
    atomic_write_json(path, info)


def _flag_value(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def check_layout(run_dir: Path, seeds) -> None:
    """A single-seed run and a several-seed run (seedS/ subdirectories) never share a directory."""
    if len(seeds) > 1 and (run_dir / RUN_INFO).exists():
        raise CheckpointError(f"{run_dir} holds a single-seed run; pass another --run-dir for --seeds")
    nested = sorted(p.parent.name for p in run_dir.glob(f"seed*/{RUN_INFO}"))
    if len(seeds) == 1 and nested and not (run_dir / RUN_INFO).exists():
        raise CheckpointError(f"{run_dir} holds the runs of several seeds ({', '.join(nested)}); resume them with "
                              f"--seeds and this --run-dir, or pass another --run-dir")


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
