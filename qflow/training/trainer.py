"""`qflow train`: offline training of any agent on any environment, one or several seeds side by side,
then (with ``online_steps``) online fine-tuning, as two jobs of the one loop (``training.loop``).

Seeds are stacked on a leading axis and trained in one jitted call (``vmap`` on accelerators,
``lax.map`` on CPU; see ``training.steps.make_train_chunk``); the dataset lives on the device and
``lax.scan`` runs a whole chunk of updates per call, so Python is entered once per chunk. Nothing
here knows about particular agents or environments.
"""

from __future__ import annotations

import contextlib
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
from qflow.training import checkpoint, loop, record
from qflow.training.logs import CSVLog, ScalarSinks, drop_stale_summaries, read_rows, resumed_clock, write_summary
from qflow.training.loop import check_finite, stack, unstack
from qflow.training.schedule import Schedule
from qflow.training.settings import TrainArgs
from qflow.training.steps import make_train_chunk
from qflow.utils import LockHeld, file_lock, package_versions

RUN_LOCK = ".lock"  # held by the process training in a run directory
# Files the trainer writes atomically into a run directory (their temp files are .NAME.XXXX.tmp).
OWN_FILES = ("checkpoint.msgpack", "run.json", "metrics.csv", "eval.csv", "summary.json", "online_state.npz",
             "online.csv")


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
                raise record.CheckpointError(
                    f"{d} is in use by {held}; wait for it to finish or pass another --run-dir") from None
            if i == 0:
                record.check_layout(run_dir, args.seeds)
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
    agent_cls = get_agent(args.agent)[0]
    obs_dim, action_dim = data["observations"].shape[1], data["actions"].shape[1]
    agents = stack([agent_cls.create(s, obs_dim, action_dim, config) for s in args.seeds])
    start = None
    run_info["init_from"] = None  # recorded by every run, so a plain run is never continued as a branch
    if args.init_from and all((d / checkpoint.CHECKPOINT).exists() for d in dirs):
        # resuming the branch itself: its own checkpoints and its record say where it started
        run_info["init_from"] = record.RunRecord.read(dirs[0] / record.RUN_INFO).get("init_from")
        if (run_info["init_from"] or {}).get("run_dir") != str(Path(args.init_from).resolve()):
            raise record.CheckpointError(f"{run_dir} holds a run that did not start from --init-from "
                                         f"{args.init_from}; pass another --run-dir")
    elif args.init_from:
        start, run_info["init_from"] = starting_state(args, agents, run_info)
    for seed, d in zip(args.seeds, dirs):
        record.check_compatible(d, {**run_info, "seed": seed})
    sinks = None  # optional scalar sinks, one per seed (TensorBoard / W&B offline); the CSV files always
    if args.tensorboard or args.wandb:
        sinks = [ScalarSinks(d, args.tensorboard, args.wandb, f"{args.env}__{args.agent}__seed{seed}",
                             {**run_info, "seed": seed}) for seed, d in zip(args.seeds, dirs)]
    device_data = jax.device_put({k: jnp.asarray(v) for k, v in data.items()})
    del data
    try:
        return _run_jobs(args, run_info, dirs, agents, device_data, sinks, start)
    finally:
        for s in sinks or []:
            s.close()


def starting_state(args: TrainArgs, agents, run_info: dict):
    """((stacked agents, step), record) of ``--init-from``: every seed's checkpoint there, all at one step, from a
    run of the same env, agent and data. Its files are only read."""
    source = Path(args.init_from)
    dirs = seed_dirs(source, args.seeds)
    infos = [record.RunRecord.read(d / record.RUN_INFO, fix="pass a run directory that `qflow train` wrote")
             for d in dirs]
    differ = sorted({k for seed, info in zip(args.seeds, infos)
                     for k in record.RunRecord.differences(info, {**run_info, "seed": seed},
                                                           ("env", "agent", "seed", "data.sha256"))})
    if differ:
        raise record.CheckpointError(f"--init-from {source} holds a run that differs in {', '.join(differ)}; start "
                                     f"from a run of the same environment, agent, seeds and dataset")
    without = [str(d) for d in dirs if not (d / checkpoint.CHECKPOINT).exists()]
    if without:
        raise record.CheckpointError(f"--init-from {source}: no checkpoint yet in {', '.join(without)}")
    try:
        stacked, steps = checkpoint.load_seeds(dirs, agents)
    except record.CheckpointError as err:
        raise record.CheckpointError(f"--init-from {source}: its checkpoint does not fit this agent (other "
                                     f"network sizes or agent?): {err}") from None
    steps = sorted(set(steps))
    if len(steps) != 1 or steps[0] >= args.steps:
        raise record.CheckpointError(f"--init-from {source}: its seeds are at steps {steps}; they must share one, "
                                     f"below --steps {args.steps:,}")
    return (stacked, steps[0]), {"run_dir": str(source.resolve()), "step": steps[0], "config": infos[0]["config"]}


def _run_jobs(args: TrainArgs, run_info: dict, dirs: list[Path], agents, device_data: dict, sinks,
              start=None) -> list[dict]:
    from qflow.training.online import OnlineJob

    online = OnlineJob(args, dirs[0], agents, device_data, sinks) if args.online_steps else None
    if online is None or not online.resuming:  # an online checkpoint means the offline steps are done
        offline = OfflineJob(args, dirs, agents, device_data, sinks, start)
        agents = loop.run(offline, args.progress)
        started = offline.started
    extra = {}
    if online is not None:
        online.agents = agents
        extra["online"] = loop.run(online, args.progress, unit="env step")
        started = online.started
    wall = round(time.time() - started, 1)
    command = args.command or record.command_line()
    return [write_summary(d, {**run_info, "seed": seed}, read_rows(d / "eval.csv"), wall, command, **extra)
            for seed, d in zip(args.seeds, dirs)]


class OfflineJob:
    """Offline training of stacked seeds on a dataset held on the device (a ``loop.Job``)."""

    def __init__(self, args: TrainArgs, dirs: list[Path], agents, device_data: dict, sinks, start=None):
        self.args, self.dirs, self.agents, self.data, self.sinks = args, dirs, agents, device_data, sinks
        self.start = start  # (stacked agents, step) of --init-from: where a run without a checkpoint begins
        self.total = args.steps
        self.every = {"log": args.log_every, "eval": args.eval_every, "checkpoint": args.checkpoint_every}
        self.desc = f"{args.agent} {args.env}"
        self.evaluator = None
        self.last_success = [float("nan")] * len(args.seeds)

    def restore(self) -> int:
        step = 0
        restored = checkpoint.restore_all(self.dirs, self.agents)
        if restored is None and self.start is not None:
            self.agents, step = self.start
            print(f"[qflow] starting from {self.args.init_from} at step {step}")
        elif restored is not None:
            self.agents, step = restored
            if step > self.args.steps:  # never relabel a longer run as a shorter one
                raise record.CheckpointError(
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
            result = evaluate_policy(self.evaluator, agent, args.seeds[i], step, args.eval_episodes,
                                     desc=f"evaluating seed {args.seeds[i]} at step {step}" if args.progress else None)
            self.last_success[i] = result["success"]
            self.eval_logs[i].write({"step": step, **result, "wall_time": round(time.time() - self.started, 2)})
            if self.sinks:
                self.sinks[i].add_scalar("eval/success", result["success"], step)

    def checkpoint(self, step: int) -> None:
        checkpoint.save_all(self.dirs, self.agents, step)

    def finish(self, step: int, stop: str):
        return self.agents
