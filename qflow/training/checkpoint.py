"""Checkpoints as flax msgpack (no pickle), written atomically; one file per seed directory (and the one
before it, when several seeds train together: see ``save_all``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import flax.serialization
import jax
import jax.numpy as jnp

from qflow.training.record import CheckpointError
from qflow.utils import atomic_write_json, atomic_writer

CHECKPOINT = "checkpoint.msgpack"
PREVIOUS = "checkpoint.prev.msgpack"  # a seed's checkpoint before the last save of several seeds (see save_all)
SAVING = ".saving.json"  # in the parent of several seeds' directories while a save of them is unfinished


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
    """Every seed's checkpoint at ``step``, as one commit.

    Several seeds' files cannot be replaced at once, so a save of several seeds is bracketed by a marker in
    their parent directory (SAVING, naming the step): while it exists the save is unfinished. Each seed's
    checkpoint is first renamed to PREVIOUS, so that ``restore_all`` can take back an unfinished save
    exactly: the seeds it reached return to PREVIOUS, and the files of an unfinished first save go.
    """
    if len(dirs) == 1:
        save(dirs[0], jax.tree.map(lambda x: x[0], stacked_agents), step)
        return
    marker = Path(dirs[0]).parent / SAVING
    atomic_write_json(marker, {"step": step})
    for i, d in enumerate(dirs):
        if (d / CHECKPOINT).exists():
            os.replace(d / CHECKPOINT, d / PREVIOUS)
        save(d, jax.tree.map(lambda x: x[i], stacked_agents), step)
    marker.unlink()


def restore_all(dirs, stacked_template):
    """(stacked agents, step) of every seed's checkpoint, or None when none has one yet. A save that a kill
    interrupted is taken back first (see ``save_all``); seeds at different steps otherwise are refused,
    their files left as they are."""
    members = [jax.tree.map(lambda x: x[i], stacked_template) for i in range(len(dirs))]
    marker = Path(dirs[0]).parent / SAVING
    if len(dirs) > 1 and marker.exists():
        _take_back(dirs, members, _marker_step(marker))
        marker.unlink()
    present = [(Path(d) / CHECKPOINT).exists() for d in dirs]
    if not any(present):
        return None
    if not all(present):
        missing = [Path(d).name for d, p in zip(dirs, present) if not p]
        raise CheckpointError(f"{', '.join(missing)} of {Path(dirs[0]).parent} have no checkpoint while the other "
                              f"seeds do; resume with the seeds that have one, or pass another --run-dir")
    agents, steps = load_seeds(dirs, stacked_template)
    if len(set(steps)) != 1:
        have = ", ".join(f"{Path(d).name} at {step}" for d, step in zip(dirs, steps))
        raise CheckpointError(f"the seeds' checkpoints are at different steps ({have}) and no unfinished save "
                              f"explains it; move the checkpoint files of {Path(dirs[0]).parent} away to restart "
                              f"from step 0, or pass another --run-dir")
    return agents, steps[0]


def load_seeds(dirs, stacked_template):
    """(stacked agents, [each seed's step]): every seed directory's checkpoint, read into its member of
    ``stacked_template`` (a leading seed axis) and stacked again. Only reads."""
    loaded = [load(Path(d), jax.tree.map(lambda x: x[i], stacked_template)) for i, d in enumerate(dirs)]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *[a for a, _ in loaded]), [step for _, step in loaded]


def _take_back(dirs, members, step: int) -> None:
    """Undo the unfinished save of ``step``: every seed it reached returns to its PREVIOUS checkpoint (a
    first save leaves none: its partial files go, and the run starts afresh)."""
    for d, member in zip(map(Path, dirs), members):
        if not (d / CHECKPOINT).exists() and (d / PREVIOUS).exists():  # renamed, new one not yet written
            os.replace(d / PREVIOUS, d / CHECKPOINT)
        elif (d / CHECKPOINT).exists() and load(d, member)[1] == step:  # written by the unfinished save
            if (d / PREVIOUS).exists():
                os.replace(d / PREVIOUS, d / CHECKPOINT)
            else:
                (d / CHECKPOINT).unlink()
    print(f"[qflow] the save at step {step} of {Path(dirs[0]).parent} was interrupted; its seeds go back to "
          f"their previous checkpoint", flush=True)


def _marker_step(path: Path) -> int:
    try:
        return int(json.loads(path.read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path} is unreadable ({err}); a save of several seeds was interrupted: move the "
                              f"checkpoint files of {path.parent} away to restart, or pass another --run-dir") from None
