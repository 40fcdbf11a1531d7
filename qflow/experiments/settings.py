"""The settings of the grid jobs: `qflow stacked`, `qflow sweep` and `qflow plan` take these fields as
flags (a sweep spec's and a plan entry's keys are the same names).

Standard library only (no JAX): the command line reads these classes to build its parser.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from qflow.settings import flag
from qflow.training.schedule import Schedule
from qflow.training.settings import RunSettings

MODES = ("runs", "stacked")  # a sweep's cells: one run each, or one stacked family each
PLAN = Path("plans/evidence.toml")
RESULTS = Path("results/evidence")


@dataclasses.dataclass(frozen=True)
class GroupSettings:
    """`qflow stacked train`: every task x seed of one dataset stacked in one jitted call per agent."""

    # flags refuse values below these (every other integer: below 0)
    AT_LEAST = {"steps": 1, "chunk": 1, "export_every": 1, "log_every": 1, "dataset_episodes": 1, "eval_episodes": 1}

    family: str  # dataset family, e.g. puzzle-3x3-play
    steps: int  # updates of every member
    out: str  # where FAMILY__AGENT/ group directories (and the family's checkpoint) go
    agents: tuple[str, ...] = ("qflow", "fql", "flow_bc")  # agents trained in lockstep, one call each
    tasks: tuple[int, ...] = (1, 2, 3, 4, 5)  # tasks of the family, e.g. 1-5 or 2,4
    seeds: tuple[int, ...] = (0, 1, 2)  # agent seeds, e.g. 0-2
    preset: str = "cpu"  # network sizes: tiny, cpu or paper
    overrides: tuple[str, ...] = dataclasses.field(default=(), metadata=flag("--set", repeat=True, help=(
        "config override: KEY=VALUE for every agent, AGENT.KEY=VALUE for one (e.g. fql.alpha=150); "
        "[AGENT.]KEY=[V1,V2,...]: one setting per value, all in the same call (e.g. qflow.guidance_lambda=[2.5,5,10]; "
        "evaluations go to OUT/KEY=V/)")))
    chunk: int = 1000  # updates per jitted call (at most: lowered to divide the export and log intervals)
    export_every: int = 5000  # steps between policy exports (and checkpoints)
    log_every: int | None = None  # steps between metrics rows (default: export_every)
    keep_exports: bool = False  # also keep every export as exports/step_NNNNNNN.msgpack (for learning curves)
    deadline: float | None = None  # unix time: stop every agent before it (a rerun resumes)
    dataset_episodes: int | None = None  # dataset size (default: the official size)
    dataset_seed: int = 0  # seed of a regenerated dataset
    data_dir: str | None = None  # dataset directory (default $QFLOW_DATA_DIR, else ~/.ogbench/data)
    progress: bool = False  # a progress bar (off by default: stacked runs usually log to files)
    evaluate_into: str | None = None  # also evaluate every kept export as it arrives into run directories here
    # (processes on the CPU beside the trainer, which then runs in a process of its own; implies keep_exports)
    eval_episodes: int = 50  # episodes per evaluation of an export (with evaluate_into)
    command: str | None = dataclasses.field(default=None, metadata=flag(cli=False))  # recorded with the
    # results; None: this process's command line (a sweep cell passes its own)

    def validate(self) -> None:
        if self.steps < 1 or self.chunk < 1 or self.export_every < 1 or (self.log_every or 1) < 1:
            raise ValueError(f"--steps ({self.steps}), --chunk ({self.chunk}), --export-every ({self.export_every}) "
                             f"and --log-every ({self.log_every}) must be >= 1")
        if not self.agents:
            raise ValueError("--agents names no agent; e.g. --agents qflow,fql")
        if len(set(self.seeds)) != len(self.seeds) or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"--seeds and --tasks must not repeat, got {self.seeds} and {self.tasks}")

    def every(self) -> dict[str, int]:
        export = self.export_every
        return {"log": self.log_every or export, "checkpoint": export, "export": export}

    def call_length(self) -> int:
        """Updates per jitted call: ``chunk``, or less so that every export and log row falls on a call's end."""
        return Schedule(self.steps, self.every()).chunk(self.chunk)


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """`qflow stacked evaluate`: a group's exported policies into run directories `qflow report` reads."""

    group: str = dataclasses.field(metadata=flag(positional=True, help="a FAMILY__AGENT directory written by train"))
    out: str  # where ENV__AGENT/seedS/ run directories go
    episodes: int = 50  # evaluation episodes per member and export
    all_exports: bool = False  # every kept export not yet evaluated, not just the latest
    command: str | None = dataclasses.field(default=None, metadata=flag(cli=False))  # recorded with the results


@dataclasses.dataclass(frozen=True)
class PlanSettings:
    """`qflow plan status|run`."""

    plan: str = str(PLAN)  # the plan file
    results: str = str(RESULTS)  # where committed results live
    minutes: float | None = None  # run: device time for the whole run
    out: str | None = None  # run: the tars go here
    work: str = "/tmp/qflow_plan_work"  # run: data, training and evaluation files
    only: tuple[str, ...] = ()  # run: these entry ids only


@dataclasses.dataclass(frozen=True, kw_only=True)
class Spec(RunSettings):
    """A sweep: the grid's axes and where things go, plus every cell's RunSettings (the training settings
    of `qflow train`, so each is a key of a spec file and a flag of `qflow sweep` with no code of its own)."""

    # integers below these are refused (every other: below 0); eval_every 0 means steps / 5
    AT_LEAST = {**RunSettings.AT_LEAST, "eval_every": 0, "steps": 1}

    out: str  # the small result files of every cell (commit these); `qflow report OUT` reads them
    envs: tuple[str, ...]  # families ("cube-single-play", expanded by `tasks`) or single-task ids
    agents: tuple[str, ...] = ("qflow",)  # agents of every cell
    tasks: str = "1-5"  # tasks of each family, e.g. "1-5" or "2,4"
    seeds: str = "0-2"  # agent seeds, e.g. "0-7" or "0,2"
    steps: int = 50_000  # gradient steps of every cell
    eval_every: int = 0  # steps between evaluations; 0: steps / 5 (mode "stacked": the export interval)
    sets: tuple[str, ...] = dataclasses.field(default=(), metadata=flag("--set", repeat=True, help=(
        "[AGENT.]KEY=VALUE: a fixed override of every cell, or with [V1,V2,...] a grid axis; AGENT. limits it "
        "to that agent")))
    grid: tuple[tuple[str, tuple], ...] = dataclasses.field(default=(), metadata=flag(cli=False))  # ("AGENT.KEY"
    # or "KEY", values): one setting per value; from the spec's [grid] table and --set KEY=[V1,V2]
    mode: str = dataclasses.field(default="runs", metadata=flag(choices=MODES, help=(
        '"runs": one cell per env x agent x setting x seed; "stacked": one per family x agent x setting, every '
        'task x seed stacked (accelerators)')))
    runs: str = "runs/sweep"  # checkpoints and logs of the cells, on the workers (relative: resolved in the
    # driver's directory, with --address too; on a cluster give a path every node has, e.g. /shared/runs)
    cpus: float = 1.0  # Ray resources one cell declares (a scheduling label: XLA in a cell may use more cores);
    # a sweep is refused where no node has this many
    gpus: float = 0.0  # a fraction (e.g. 0.25) packs several cells on one GPU; refused where no node has that much
    retries: int = 2  # Ray re-runs of a cell whose worker died (a cell's own error is not retried)
    progress: bool = True  # a progress bar of the cells
    command: str = dataclasses.field(default="", metadata=flag(cli=False))  # the command that started the sweep,
    # recorded in every cell's summary (set by the CLI)

    def run_settings(self) -> dict:
        """The RunSettings every cell trains with (eval_every 0 resolved to steps / 5)."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(RunSettings)}
        return {**shared, "eval_every": self.eval_every or max(1, self.steps // 5),
                "dataset_episodes": self.dataset_episodes or None, "data_dir": self.data_dir or None}
