"""The settings of the training jobs: `qflow train` and `qflow expert train` take these fields as flags.

Standard library only (no JAX): the command line reads these classes to build its parser, so
`qflow train --help` answers at once.
"""

from __future__ import annotations

import dataclasses

from qflow.settings import flag


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """How one run trains and is scored, whatever its environment, agent and seed: flags of `qflow train`
    and keys of a sweep spec (a sweep gives every cell these)."""

    # flags refuse values below these (every other integer: below 0)
    AT_LEAST = {
        "eval_every": 1, "eval_episodes": 1, "eval_envs": 1, "log_every": 1, "checkpoint_every": 1, "chunk": 1,
        "dataset_episodes": 1, "updates_per_step": 1, "buffer_size": 1}

    steps: int = 20_000  # offline gradient steps (may be 0 with --online-steps)
    eval_every: int = 5_000  # steps between evaluations (and at the last step)
    eval_episodes: int = 50  # episodes per evaluation
    eval_envs: int = 10  # environments stepped in lockstep during evaluation
    log_every: int = 1_000  # steps between rows of metrics.csv (each the mean since the previous row)
    checkpoint_every: int = 5_000  # steps between checkpoints (a killed run resumes from the last)
    chunk: int = 1_000  # updates per jitted call
    preset: str = "cpu"  # network sizes: paper (4x512), cpu (3x256) or tiny (2x256, the demo)
    data_dir: str | None = None  # dataset directory (default $QFLOW_DATA_DIR, else ~/.ogbench/data)
    dataset_episodes: int | None = None  # regenerate/load a dataset of this many episodes (default: the official size)
    dataset_seed: int = 0  # seed of a regenerated dataset (0: the one the official size is taken for)
    online_steps: int = 0  # then fine-tune online for this many env steps (one seed); the step counter and the
    # --*-every intervals continue over offline + online steps
    updates_per_step: int = 1  # agent updates per online env step
    buffer_size: int | None = None  # online replay capacity, dataset included (default dataset + online steps)


@dataclasses.dataclass(frozen=True)
class TrainArgs(RunSettings):
    """Everything a training run takes: `qflow train`'s flags are these fields (RunSettings' first).
    `qflow train` with no --env replaces env, preset and dataset size by the demo's (qflow.cli.DEMO)."""

    env: str = dataclasses.field(default="pointmaze-medium-navigate-singletask-task1-v0", metadata=flag(
        show_default=False, help="OGBench single-task id, e.g. cube-single-play-singletask-task2-v0 (without it: "
                                 "the demo, puzzle-3x3-play task 1 on 100 regenerated episodes, tiny preset)"))
    agent: str = "qflow"  # qflow, fql, fbrac, flow_bc, ifql, iql, rebrac, or sac (online)
    seeds: tuple[int, ...] = dataclasses.field(default=(0,), metadata=flag(aliases=("--seed",), help=(
        "agent seeds, e.g. 0 or 0-2 or 0,3; several train side by side in one call, each in RUN_DIR/seedS")))
    run_dir: str | None = None  # default runs/ENV__AGENT__PRESET__seedS; rerun with the same one to resume
    init_from: str | None = None  # start from the last checkpoint of this run directory (same env, agent, seeds and
    # network sizes) at its step, then train to --steps with these settings: an intervention such as
    # --set freeze=critic from a trained state (recorded in run.json; a rerun resumes the new run itself)
    overrides: tuple[str, ...] = dataclasses.field(default=(), metadata=flag("--set", repeat=True, help=(
        "override an agent config key, e.g. --set guidance_lambda=5 --set flow_steps=20")))
    progress: bool = True  # show progress bars
    tensorboard: bool = False  # also log to TensorBoard, RUN_DIR/tb (qflow[tensorboard])
    wandb: bool = False  # also log to Weights & Biases in offline mode, RUN_DIR/wandb (qflow[wandb]; `wandb sync` later)
    command: str | None = dataclasses.field(default=None, metadata=flag(cli=False))  # recorded in summary.json;
    # None: this process's command line (a sweep passes its own)

    def validate(self) -> None:
        if self.online_steps < 0 or self.updates_per_step < 1 or self.steps < 0:
            raise ValueError("--online-steps must be >= 0, --updates-per-step >= 1 and --steps >= 0")
        if self.online_steps and len(self.seeds) > 1:
            raise ValueError(f"--online-steps runs one seed, got --seeds {','.join(map(str, self.seeds))}; "
                             f"pass --seed S (one run per seed)")
        for name in ("steps", "eval_every", "log_every", "checkpoint_every", "chunk", "eval_episodes", "eval_envs"):
            if getattr(self, name) < 1 and not (name == "steps" and self.online_steps):
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"--seeds has duplicates: {self.seeds}")


@dataclasses.dataclass(frozen=True)
class ExpertSettings:
    """`qflow expert train`'s flags (with --run-dir and --no-progress)."""

    # flags refuse values below these (every other integer: below 0)
    AT_LEAST = {"steps": 1, "eval_every": 1, "eval_episodes": 1, "log_every": 1, "checkpoint_every": 1}

    steps: int = 400_000  # env steps, one SAC update each after the random phase (OGBench: 400k)
    random_steps: int = 10_000  # uniform random actions first (OGBench's seed_steps)
    seed: int = 0  # agent, action and environment seed
    preset: str = "tiny"  # 2x256 actor and critics: trains on a CPU in about an hour
    overrides: tuple = dataclasses.field(default=("target_entropy_scale=-0.5",), metadata=flag(
        "--set", repeat=True, help="SAC config override KEY=VALUE (default target_entropy_scale=-0.5: a target "
                                   "entropy of -0.5|A|, as OGBench's SACs)"))
    eval_every: int = 50_000  # env steps between evaluations of the deterministic policy
    eval_episodes: int = 10  # deterministic-policy episodes per evaluation (1,000 steps each)
    log_every: int = 5_000  # env steps between rows of metrics.csv
    checkpoint_every: int = 25_000  # env steps between checkpoints (a rerun resumes from the last)

    def validate(self) -> None:
        if self.steps < 1 or self.random_steps < 0:
            raise ValueError(f"--steps must be >= 1 and --random-steps >= 0, got {self.steps}, {self.random_steps}")
        for name in ("eval_every", "eval_episodes", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
