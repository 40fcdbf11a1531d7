"""The one host loop every kind of training runs: offline, online, stacked groups and the ant expert.

A kind of training is a ``Job``: it says how to resume, how to advance, and what to do at each
scheduled event; ``run`` owns the rest (the schedule, the averaging of the step infos into log rows,
the progress bar, the deadline, the order of events and the final flush). Offline then online
fine-tuning are two jobs run one after the other.

Events, handled in this order when due (every ``job.every[name]`` steps and at ``job.total``):
``log`` (the mean of the infos since the previous row), ``eval``, ``checkpoint``, ``export``.
A job stopped by its deadline logs, checkpoints and exports where it stands, so a rerun resumes.
"""

from __future__ import annotations

import time
import typing
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from qflow.errors import TrainingDiverged
from qflow.training.schedule import Schedule

EVENTS = ("log", "eval", "checkpoint", "export")


class Job(typing.Protocol):
    """What a kind of training supplies to ``run``.

    ``total`` and ``every`` fix the schedule (an event absent from ``every`` never happens, so a job
    defines the handlers of the events it lists and ``log``).
    ``restore()`` loads the last checkpoint (or starts fresh), opens the logs past that step and
    returns the step to go on from. ``advance(step)`` runs the next steps and returns the new step
    and an info dict to average into the next log row (arrays with a member axis, or scalars; may
    be empty). The event handlers get the step; ``log`` also gets the averaged info (empty when
    nothing was averaged since the previous row).
    ``finish(step, stop)`` writes what ends the run and returns its result.
    """

    total: int
    every: dict[str, int]
    desc: str

    def restore(self) -> int: ...
    def advance(self, step: int) -> tuple[int, dict]: ...
    def log(self, step: int, means: dict) -> None: ...
    # eval(step), checkpoint(step), export(step): each where ``every`` lists it
    def finish(self, step: int, stop: str): ...


class Averager:
    """Running sums of infos between log rows (host arrays or scalars)."""

    def __init__(self):
        self.sums, self.count = None, 0

    def add(self, info: dict) -> None:
        if info:
            self.sums = info if self.sums is None else jax.tree.map(np.add, self.sums, info)
            self.count += 1

    def pop(self) -> dict:
        means = {} if self.sums is None else jax.tree.map(lambda s: np.asarray(s) / self.count, self.sums)
        self.sums, self.count = None, 0
        return means


def run(job: Job, progress: bool = True, deadline: float | None = None, unit: str = "upd"):
    """Resume ``job`` and advance it to ``job.total`` (or until ``deadline``, a unix time: a step
    is not started when it would likely end after it); returns ``job.finish(step, stop)``."""
    from tqdm import tqdm

    step = first = job.restore()
    schedule = Schedule(job.total, dict(job.every))
    averager, last_round, stop = Averager(), 0.0, "steps reached"
    bar = tqdm(total=job.total, initial=step, unit=unit, disable=not progress, dynamic_ncols=True, desc=job.desc)
    try:
        while step < job.total:
            if deadline is not None and time.time() + 1.2 * last_round > deadline:
                stop = "deadline"
                break
            started = time.time()
            new, info = job.advance(step)
            bar.update(new - step)
            step = new
            averager.add(info)
            _handle(job, step, schedule.due(step), averager)
            last_round = time.time() - started
        if stop == "deadline" and step > first:  # where it stands: a rerun resumes, the exports are current
            flush = ({"checkpoint", "export"} & set(job.every)) - schedule.due(step)  # (not done twice)
            _handle(job, step, flush | ({"log"} if averager.count else set()), averager)
    finally:
        bar.close()
    return job.finish(step, stop)


def _handle(job: Job, step: int, due: set, averager: Averager) -> None:
    for name in EVENTS:
        if name not in due:
            continue
        if name == "log":  # means may be empty: a job that sums on the device (online) reads its own
            job.log(step, averager.pop())
        else:
            getattr(job, name)(step)


def stack(trees):
    """Agents (or any pytrees of one structure) stacked on a new leading member axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree, n: int) -> list:
    return [jax.tree.map(lambda x: x[i], tree) for i in range(n)]


@jax.jit
def _all_finite(tree) -> jax.Array:
    """One device reduction (and one host sync) over every leaf, not one per leaf."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def check_finite(info, step, dirs, agents=None, losses: typing.Sequence[str] = ()) -> None:
    """Stop on a non-finite loss or (given ``agents``) parameter, before anything is saved from them.

    The losses checked are the info keys the agent declares (``LOSSES`` of ``type(agents)``, or
    ``losses`` for a caller without the agents at hand), whatever their names; other info is logged only.
    """
    from qflow.training.checkpoint import CHECKPOINT

    declared = set(losses) | (set(type(agents).LOSSES) if agents is not None else set())
    bad = [k for k, v in sorted(info.items())
           if k in declared and not np.all(np.isfinite(v))]
    if not bad and agents is not None and not bool(_all_finite(agents.params)):
        bad = ["parameters"]
    if bad:
        kept = [d for d in dirs if (Path(d) / CHECKPOINT).exists()]
        where = Path(dirs[0]).parent if len(dirs) > 1 else Path(dirs[0])
        state = (f"the last checkpoint written before it is kept in {where}" if kept else
                 "no checkpoint had been written")
        retry = Path(f"{where}-lr1e-4")
        raise TrainingDiverged(
            f"non-finite {', '.join(bad)} at step {step}; training stopped and {state}. Retry with a lower learning "
            f"rate or a larger guidance_lambda in a new run directory, e.g. the same command with --set lr=1e-4 "
            f"--run-dir {retry}"
        )
