"""`qflow train`: offline training of any agent on any environment, one or several seeds side by side,
then (with ``online_steps``) online fine-tuning, as two jobs of the one loop (``training.loop``).

Seeds are stacked on a leading axis and trained in one jitted call (``vmap`` on accelerators,
``lax.map`` on CPU; see ``training.steps.make_train_chunk``); the dataset lives on the device and
``lax.scan`` runs a whole chunk of updates per call, so Python is entered once per chunk. Nothing
here knows about particular agents or environments.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from qflow.agents import get_agent
from qflow.agents.base import overrides_for
from qflow.data.loading import data_record, load_single_task
from qflow.envs import agent_config
from qflow.evaluation.evaluate import Evaluator, evaluate_policy
from qflow.training import checkpoint, loop
from qflow.training.logs import CSVLog, ScalarSinks, drop_stale_summaries, read_rows, resumed_clock, write_summary
from qflow.training.loop import check_finite, stack, unstack
from qflow.training.schedule import Schedule
from qflow.training.steps import make_train_chunk
from qflow.settings import flag
from qflow.utils import LockHeld, file_lock, package_versions

RUN_LOCK = ".lock"  # held by the process training in a run directory
# Files the trainer writes atomically into a run directory (their temp files are .NAME.XXXX.tmp).
OWN_FILES = ("checkpoint.msgpack", "run.json", "metrics.csv", "eval.csv", "summary.json", "online_state.npz",
             "online.csv")


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
    agent: str = "qflow"  # qflow, fql, fbrac, flow_bc, ifql, iql, rebrac
    seeds: tuple[int, ...] = dataclasses.field(default=(0,), metadata=flag(aliases=("--seed",), help=(
        "agent seeds, e.g. 0 or 0-2 or 0,3; several train side by side in one call, each in RUN_DIR/seedS")))
    run_dir: str | None = None  # default runs/ENV__AGENT__PRESET__seedS; rerun with the same one to resume
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


def default_run_dir(args: TrainArgs) -> Path:
    seeds = "-".join(map(str, args.seeds))
    return Path("runs") / f"{args.env}__{args.agent}__{args.preset}__seed{seeds}"


def seed_dirs(run_dir: Path, seeds) -> list[Path]:
    return [run_dir] if len(seeds) == 1 else [run_dir / f"seed{s}" for s in seeds]


def train(args: TrainArgs) -> list[dict]:
    """Train (or resume) and return one summary per seed."""
    args.validate()
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(args)
    with contextlib.ExitStack() as locks:
        # the directory's own lock first, so two trainers never settle its layout (one seed or several) at once;
        # the layout is checked before the seeds' locks create any seedS/ directory
        for i, d in enumerate(dict.fromkeys([run_dir, *seed_dirs(run_dir, args.seeds)])):
            try:
                locks.enter_context(file_lock(d / RUN_LOCK, f"qflow train --agent {args.agent} --env {args.env}",
                                              wait=False))
            except LockHeld as held:
                raise checkpoint.CheckpointError(
                    f"{d} is in use by {held}; wait for it to finish or pass another --run-dir") from None
            if i == 0:
                checkpoint.check_layout(run_dir, args.seeds)
        for d in seed_dirs(run_dir, args.seeds):  # temp files of our writes killed mid-way (no writer is left)
            for name in OWN_FILES:
                for tmp in d.glob(f".{name}.*.tmp"):
                    if tmp.is_file():
                        tmp.unlink()
        return _train(args, run_dir)


def _train(args: TrainArgs, run_dir: Path) -> list[dict]:
    config = agent_config(args.agent, args.env, args.preset, overrides_for(args.agent, args.overrides, [args.agent]))
    if args.online_steps and config.extra_data():
        raise ValueError(f"{args.agent} with this config reads {', '.join(config.extra_data())} from the dataset, which "
                         f"online transitions lack; for online fine-tuning use e.g. --set alpha_critic=0")
    data, files = load_single_task(args.env, args.dataset_episodes, args.dataset_seed, args.data_dir, args.progress,
                                   extra=config.extra_data())
    run_info = {
        "env": args.env, "agent": args.agent, "steps": args.steps, "preset": args.preset,
        "online_steps": args.online_steps, "updates_per_step": args.updates_per_step,
        "config": config.as_dict(), "eval_every": args.eval_every, "eval_episodes": args.eval_episodes,
        "data": data_record(files, len(data["actions"])),
        "versions": package_versions(), "device": jax.devices()[0].device_kind,
    }
    dirs = seed_dirs(run_dir, args.seeds)
    for seed, d in zip(args.seeds, dirs):
        checkpoint.check_compatible(d, {**run_info, "seed": seed})
    agent_cls = get_agent(args.agent)[0]
    obs_dim, action_dim = data["observations"].shape[1], data["actions"].shape[1]
    agents = stack([agent_cls.create(s, obs_dim, action_dim, config) for s in args.seeds])
    sinks = None  # optional scalar sinks, one per seed (TensorBoard / W&B offline); the CSV files always
    if args.tensorboard or args.wandb:
        sinks = [ScalarSinks(d, args.tensorboard, args.wandb, f"{args.env}__{args.agent}__seed{seed}",
                             {**run_info, "seed": seed}) for seed, d in zip(args.seeds, dirs)]
    device_data = jax.device_put({k: jnp.asarray(v) for k, v in data.items()})
    del data
    try:
        return _run_jobs(args, run_info, dirs, agents, device_data, sinks)
    finally:
        for s in sinks or []:
            s.close()


def _run_jobs(args: TrainArgs, run_info: dict, dirs: list[Path], agents, device_data: dict, sinks) -> list[dict]:
    from qflow.training.online import OnlineJob

    online = OnlineJob(args, dirs[0], agents, device_data, sinks) if args.online_steps else None
    if online is None or not online.resuming:  # an online checkpoint means the offline steps are done
        offline = OfflineJob(args, dirs, agents, device_data, sinks)
        agents = loop.run(offline, args.progress)
        started = offline.started
    extra = {}
    if online is not None:
        online.agents = agents
        extra["online"] = loop.run(online, args.progress, unit="env step")
        started = online.started
    wall = round(time.time() - started, 1)
    command = args.command or checkpoint.command_line()
    return [write_summary(d, {**run_info, "seed": seed}, read_rows(d / "eval.csv"), wall, command, **extra)
            for seed, d in zip(args.seeds, dirs)]


class OfflineJob:
    """Offline training of stacked seeds on a dataset held on the device (a ``loop.Job``)."""

    def __init__(self, args: TrainArgs, dirs: list[Path], agents, device_data: dict, sinks):
        self.args, self.dirs, self.agents, self.data, self.sinks = args, dirs, agents, device_data, sinks
        self.total = args.steps
        self.every = {"log": args.log_every, "eval": args.eval_every, "checkpoint": args.checkpoint_every}
        self.desc = f"{args.agent} {args.env}"
        self.evaluator = None
        self.last_success = [float("nan")] * len(args.seeds)

    def restore(self) -> int:
        step = 0
        restored = checkpoint.restore_all(self.dirs, self.agents)
        if restored is not None:
            self.agents, step = restored
            if step > self.args.steps:  # never relabel a longer run as a shorter one
                raise checkpoint.CheckpointError(
                    f"{self.dirs[0]} already holds {step:,} steps, more than --steps {self.args.steps:,}; pass "
                    f"--steps {step:,} or more to continue it, or another --run-dir")
            print(f"[qflow] resuming {self.dirs[0]} from step {step}")
            if step < self.total:
                drop_stale_summaries(self.dirs)
        self.logs = [CSVLog(d / "metrics.csv", after_step=step) for d in self.dirs]
        self.eval_logs = [CSVLog(d / "eval.csv", after_step=step) for d in self.dirs]
        self.started = resumed_clock(self.logs + self.eval_logs)
        chunk = Schedule(self.args.steps, self.every).chunk(self.args.chunk) if self.args.steps else self.args.chunk
        self.chunk = math.gcd(chunk, step)  # a resumed step must fall on a chunk boundary too
        self.train_chunk = make_train_chunk(self.chunk)
        return step

    def advance(self, step: int) -> tuple[int, dict]:
        self.agents, info = self.train_chunk(self.agents, self.data)
        info = jax.device_get(info)
        check_finite(info, step + self.chunk, self.dirs, self.agents)  # before any checkpoint of these parameters
        return step + self.chunk, info

    def log(self, step: int, means: dict) -> None:
        for i, log in enumerate(self.logs):
            row = {"step": step, "wall_time": round(time.time() - self.started, 2)}
            row.update({k: float(v[i]) for k, v in means.items()})
            log.write(row)
            if self.sinks:
                for k, v in row.items():
                    self.sinks[i].add_scalar(f"train/{k}", v, step)

    def eval(self, step: int) -> None:
        args = self.args
        self.evaluator = self.evaluator or Evaluator(args.env, min(args.eval_envs, args.eval_episodes))
        for i, agent in enumerate(unstack(self.agents, len(args.seeds))):
            result = evaluate_policy(self.evaluator, agent, args.seeds[i], step, args.eval_episodes)
            self.last_success[i] = result["success"]
            self.eval_logs[i].write({"step": step, **result, "wall_time": round(time.time() - self.started, 2)})
            if self.sinks:
                self.sinks[i].add_scalar("eval/success", result["success"], step)

    def checkpoint(self, step: int) -> None:
        checkpoint.save_all(self.dirs, self.agents, step)

    def finish(self, step: int, stop: str):
        return self.agents
