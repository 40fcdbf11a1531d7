"""Checkpoints as flax msgpack (no pickle), written atomically; one file per seed directory (and the one
before it, when several seeds train together: see ``save_all``)."""

from __future__ import annotations

import os
from pathlib import Path

import flax.serialization
import jax
import jax.numpy as jnp

from qflow.training.record import CheckpointError
from qflow.utils import atomic_writer

CHECKPOINT = "checkpoint.msgpack"
PREVIOUS = "checkpoint.prev.msgpack"  # a seed's checkpoint before the last save of several seeds (see save_all)


def save(run_dir: Path, agent, step: int) -> None:
    payload = flax.serialization.to_bytes({"step": step, "agent": agent})
    with atomic_writer(run_dir / CHECKPOINT) as f:
        f.write(payload)


def load(run_dir: Path, template, name: str = CHECKPOINT):
    path = run_dir / name
    try:
        state = flax.serialization.from_bytes({"step": 0, "agent": template}, path.read_bytes())
    except Exception as err:  # msgpack and shape errors alike
        raise CheckpointError(
            f"unreadable checkpoint {path} ({type(err).__name__}: {err}); move it away to restart the run"
        ) from err
    return state["agent"], int(state["step"])


def save_all(dirs, stacked_agents, step: int) -> None:
    """Every seed's checkpoint at ``step``, one file after the other.

    Several seeds' files cannot be replaced at once: a kill between two of them leaves the seeds one save
    apart (seed0 at this step, seed1 at the one before). So with several seeds each seed's checkpoint is
    first renamed to PREVIOUS: whenever the kill comes, every seed still holds the step of the last full
    save in one of its two files, and ``restore_all`` resumes them all from it.
    """
    for i, d in enumerate(dirs):
        if len(dirs) > 1 and (d / CHECKPOINT).exists():
            os.replace(d / CHECKPOINT, d / PREVIOUS)
        save(d, jax.tree.map(lambda x: x[i], stacked_agents), step)


def restore_all(dirs, stacked_template):
    """(stacked agents, step) to resume every seed from, or None to start them all afresh.

    The step is the latest one every seed holds (see ``save_all``). A seed without a PREVIOUS file has saved
    at most once, so it also holds step 0: its fresh agent, the member of ``stacked_template``. Seeds ahead
    of that step go back to it, and each seed's files are set back to it, so that the next save keeps it.
    """
    members = [jax.tree.map(lambda x: x[i], stacked_template) for i in range(len(dirs))]
    held = [_held_steps(d, member) for d, member in zip(dirs, members)]
    if not any(name for steps in held for name, _ in steps.values()):
        return None  # nothing saved yet
    common = set.intersection(*(set(steps) for steps in held))
    if not common:
        have = "; ".join(f"{d.name}: {', '.join(str(s) for s, (name, _) in sorted(steps.items()) if name) or 'none'}"
                         for d, steps in zip(dirs, held))
        raise CheckpointError(f"the seeds' checkpoints share no step ({have}), so they cannot resume together; "
                              f"move the checkpoint files of {Path(dirs[0]).parent} away to start again, or pass "
                              f"another --run-dir")
    step = max(common)
    if step == 0 and all((Path(d) / CHECKPOINT).exists() for d in dirs):
        # every seed saved, none kept an earlier save (files written before PREVIOUS existed): going back to
        # step 0 would throw trained steps away, which is the user's call, not ours
        have = ", ".join(f"{Path(d).name} at {max(steps)}" for d, steps in zip(dirs, held))
        raise CheckpointError(f"the seeds' checkpoints are at different steps ({have}) and keep no common one; "
                              f"move the checkpoint files of {Path(dirs[0]).parent} away to restart from step 0, "
                              f"or pass another --run-dir")
    ahead = [d.name for d, steps in zip(dirs, held) if max(steps) > step]
    if ahead:
        print(f"[qflow] {', '.join(ahead)} saved a later step than the other seeds before the run stopped; every "
              f"seed resumes from step {step}, the latest all of them hold", flush=True)
    for d, steps in zip(dirs, held):
        _set_back(d, steps[step][0])
    if step == 0:
        return None
    return jax.tree.map(lambda *xs: jnp.stack(xs), *[steps[step][1] for steps in held]), step


def _held_steps(run_dir: Path, template) -> dict:
    """step -> (file name, agent) for each step a seed can resume from; (None, ``template``) for a fresh start."""
    held = {} if (run_dir / PREVIOUS).exists() else {0: (None, template)}
    for name in (PREVIOUS, CHECKPOINT):  # the current file last: it wins a tie
        if (run_dir / name).exists():
            agent, step = load(run_dir, template, name)
            held[step] = (name, agent)
    return held


def _set_back(run_dir: Path, name: str | None) -> None:
    """Make ``name`` the seed's checkpoint (None: the seed starts afresh, its files go)."""
    if name == PREVIOUS:
        os.replace(run_dir / PREVIOUS, run_dir / CHECKPOINT)
    elif name is None:
        for stale in (CHECKPOINT, PREVIOUS):
            (run_dir / stale).unlink(missing_ok=True)
