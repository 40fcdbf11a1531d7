"""Offline training loop: any agent, any environment, one or several seeds side by side.

Seeds are stacked on a leading axis and trained in one jitted call (``vmap`` on accelerators,
``lax.map`` on CPU; see ``make_train_chunk``); the dataset lives on the device
and ``lax.scan`` runs a whole chunk of updates per jitted call (batch indices drawn inside), so
Python is entered once per chunk. The loop knows nothing about particular agents or environments.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from qflow.agents import get_agent
from qflow.agents.base import overrides_for
from qflow.data.loading import data_record, load_single_task
from qflow.envs import agent_config
from qflow.evaluation.evaluate import evaluate_policy
from qflow.errors import TrainingDiverged
from qflow.training import checkpoint
from qflow.training.logs import CSVLog, ScalarSinks, write_summary
from qflow.training.schedule import Schedule
from qflow.utils import LockHeld, file_lock, package_versions

RUN_LOCK = ".lock"  # held by the process training in a run directory
# Files the trainer writes atomically into a run directory (their temp files are .NAME.XXXX.tmp).
OWN_FILES = ("checkpoint.msgpack", "run.json", "metrics.csv", "eval.csv", "summary.json", "online_state.npz",
             "online.csv")


DIAGNOSTICS_STREAM = 0x646961  # fold_in constant of the diagnostics' random stream ("dia")




@dataclasses.dataclass
class TrainArgs:
    """Everything a training run takes. These defaults are the command line's (qflow.cli reads them from
    here); `qflow train` with no --env replaces env, steps, preset and dataset size by the demo's."""

    env: str = "pointmaze-medium-navigate-singletask-task1-v0"
    agent: str = "qflow"
    seeds: tuple[int, ...] = (0,)
    steps: int = 20_000
    eval_every: int = 5_000
    eval_episodes: int = 50
    eval_envs: int = 10  # environments stepped in lockstep during evaluation
    log_every: int = 1_000
    checkpoint_every: int = 5_000
    chunk: int = 1_000  # updates per jitted call
    run_dir: str | None = None
    preset: str = "cpu"
    overrides: tuple[str, ...] = ()
    data_dir: str | None = None
    dataset_episodes: int | None = None  # None: the official size
    dataset_seed: int = 0
    progress: bool = True
    tensorboard: bool = False  # also log to TensorBoard (qflow[tensorboard])
    wandb: bool = False  # also log to Weights & Biases in offline mode (qflow[wandb]; `wandb sync` later)
    online_steps: int = 0  # env steps of online fine-tuning after the offline steps (qflow.training.online)
    updates_per_step: int = 1  # agent updates per online env step
    buffer_size: int | None = None  # replay capacity; None: offline size + online_steps
    command: str | None = None  # recorded in summary.json; None: this process's command line (a sweep passes its own)

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


def stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree, n):
    return [jax.tree.map(lambda x: x[i], tree) for i in range(n)]


def make_train_chunk(length: int, seed_axis: str | None = None, per_member: tuple[str, ...] = (),
                     diagnostics: bool = True):
    """Jitted (agents, data) -> (agents, mean info) running ``length`` updates per stacked agent.

    ``seed_axis`` says how stacked agents share the call: "vmap" batches them (what a GPU wants),
    "map" runs them one after the other inside the call with plain matmuls (what a CPU wants:
    XLA's CPU backend runs the batched dot_generals of vmap markedly slower per seed). Default:
    "map" on CPU, "vmap" elsewhere. Both give the same numbers up to floating-point rounding.
    ``per_member`` names data keys that carry a leading agent axis (e.g. the rewards and masks of
    different tasks of one dataset); all other keys are shared by every agent. With ``diagnostics``,
    an agent that has a ``diagnostics(batch, rng)`` method adds its values (``diag_*``), computed
    once at the end of the chunk on a fresh batch, to the chunk's info.
    """
    seed_axis = seed_axis or ("map" if jax.default_backend() == "cpu" else "vmap")
    if seed_axis not in ("map", "vmap"):
        raise ValueError(f"seed_axis must be 'map' or 'vmap', got {seed_axis!r}")

    def one_agent(agent, data):
        size = data["observations"].shape[0]

        def step(agent, _):
            rng, key = jax.random.split(agent.rng)
            idx = jax.random.randint(key, (agent.config.batch_size,), 0, size)
            batch = jax.tree.map(lambda x: x[idx], data)
            agent, info = agent.replace(rng=rng).update(batch)
            return agent, info

        agent, infos = jax.lax.scan(step, agent, None, length=length)
        info = jax.tree.map(jnp.mean, infos)
        if diagnostics and hasattr(agent, "diagnostics"):  # once per chunk, on a fresh batch: ~1 update's cost per chunk
            # fold_in leaves agent.rng alone, so logging diagnostics never changes what is trained
            k_batch, k_diag = jax.random.split(jax.random.fold_in(agent.rng, DIAGNOSTICS_STREAM))
            idx = jax.random.randint(k_batch, (agent.config.batch_size,), 0, size)
            info.update(agent.diagnostics(jax.tree.map(lambda x: x[idx], data), k_diag))
        return agent, info

    def chunk(agents, data):
        own = {k: data[k] for k in per_member}
        shared = {k: v for k, v in data.items() if k not in own}
        if seed_axis == "vmap" and jax.tree.leaves(agents)[0].shape[0] > 1:
            return jax.vmap(lambda a, o: one_agent(a, {**shared, **o}))(agents, own)
        return jax.lax.map(lambda xs: one_agent(xs[0], {**shared, **xs[1]}), (agents, own))

    return jax.jit(chunk, donate_argnums=0)


def train(args: TrainArgs) -> list[dict]:
    """Train (or resume) and return one summary per seed."""
    args.validate()
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(args)
    checkpoint.check_layout(run_dir, args.seeds)  # before the locks create any seedS/ directory
    with contextlib.ExitStack() as locks:
        for d in seed_dirs(run_dir, args.seeds):  # one writer per run directory
            try:
                locks.enter_context(file_lock(d / RUN_LOCK, f"qflow train --agent {args.agent} --env {args.env}",
                                              wait=False))
            except LockHeld as held:
                raise checkpoint.CheckpointError(
                    f"{d} is in use by {held}; wait for it to finish or pass another --run-dir") from None
        for d in seed_dirs(run_dir, args.seeds):  # temp files of our writes killed mid-way (no writer is left)
            for name in OWN_FILES:
                for tmp in d.glob(f".{name}.*.tmp"):
                    if tmp.is_file():
                        tmp.unlink()
        return _train(args, run_dir)


def _train(args: TrainArgs, run_dir: Path) -> list[dict]:
    agent_cls = get_agent(args.agent)[0]
    config = agent_config(args.agent, args.env, args.preset, overrides_for(args.agent, args.overrides, [args.agent]))
    dirs = seed_dirs(run_dir, args.seeds)

    if args.online_steps and config.extra_data():
        raise ValueError(f"{args.agent} with this config reads {', '.join(config.extra_data())} from the dataset, which "
                         f"online transitions lack; for online fine-tuning use e.g. --set alpha_critic=0")
    started = time.time()
    data, files = load_single_task(args.env, args.dataset_episodes, args.dataset_seed, args.data_dir, args.progress,
                                   extra=config.extra_data())
    run_info = {
        "env": args.env, "agent": args.agent, "steps": args.steps, "preset": args.preset,
        "online_steps": args.online_steps, "updates_per_step": args.updates_per_step,
        "config": config.as_dict(), "eval_every": args.eval_every, "eval_episodes": args.eval_episodes,
        "data": data_record(files, len(data["actions"])),
        "versions": package_versions(), "device": jax.devices()[0].device_kind,
    }
    for seed, d in zip(args.seeds, dirs):
        checkpoint.check_compatible(d, {**run_info, "seed": seed})

    obs_dim, action_dim = data["observations"].shape[1], data["actions"].shape[1]
    agents = stack([agent_cls.create(s, obs_dim, action_dim, config) for s in args.seeds])
    step = 0
    restored = checkpoint.restore_all(dirs, agents)
    if restored is not None:
        agents, step = restored
        if step > args.steps and not args.online_steps:  # never relabel a longer run as a shorter one
            raise checkpoint.CheckpointError(
                f"{run_dir} already holds {step:,} steps, more than --steps {args.steps:,}; pass --steps {step:,} or "
                f"more to continue it, or another --run-dir")
        print(f"[qflow] resuming {run_dir} from step {step}")
    online = None
    if args.online_steps:  # online fine-tuning after the offline loop; its checkpoint wins on resume
        from qflow.training.online import OnlinePhase

        online = OnlinePhase(args, dirs[0])
        agents, step = online.restore(agents, step)

    logs = [CSVLog(d / "metrics.csv", after_step=step) for d in dirs]
    eval_logs = [CSVLog(d / "eval.csv", after_step=step) for d in dirs]
    # wall_time counts on from the resumed run's last row instead of restarting at 0
    started -= max([float(r.get("wall_time") or 0) for log in logs + eval_logs for r in log.read()[-1:]], default=0.0)
    tb = None  # optional scalar sinks, one per seed (TensorBoard / W&B offline); the CSV files always
    if args.tensorboard or args.wandb:
        tb = [ScalarSinks(d, args.tensorboard, args.wandb, f"{args.env}__{args.agent}__seed{seed}",
                          {**run_info, "seed": seed}) for seed, d in zip(args.seeds, dirs)]
    device_data = jax.device_put({k: jnp.asarray(v) for k, v in data.items()})
    del data

    schedule = Schedule(args.steps, {"log": args.log_every, "eval": args.eval_every,
                                     "checkpoint": args.checkpoint_every})
    chunk = math.gcd(schedule.chunk(args.chunk), step)  # a resumed step must fall on a chunk boundary too
    train_chunk = make_train_chunk(chunk)
    evaluator = None
    last_success = [float("nan")] * len(args.seeds)

    from tqdm import tqdm

    bar = tqdm(total=args.steps, initial=step, unit="upd", disable=not args.progress, dynamic_ncols=True,
               desc=f"{args.agent} {args.env}")
    sums, count = None, 0
    while step < args.steps:
        agents, info = train_chunk(agents, device_data)
        step += chunk
        bar.update(chunk)
        info = jax.device_get(info)
        check_finite(info, step, dirs, agents)  # before any checkpoint is written from these parameters
        due = schedule.due(step)
        sums = info if sums is None else jax.tree.map(np.add, sums, info)
        count += 1
        if "log" in due:
            for i, log in enumerate(logs):
                row = {"step": step, "wall_time": round(time.time() - started, 2)}
                row.update({k: float(v[i]) / count for k, v in sums.items()})
                log.write(row)
                if tb:
                    for k, v in row.items():
                        tb[i].add_scalar(f"train/{k}", v, step)
            sums, count = None, 0
        if "eval" in due:
            evaluator = evaluator or make_evaluator(args)
            for i, agent in enumerate(unstack(agents, len(args.seeds))):
                result = evaluate_policy(evaluator, agent, args.seeds[i], step, args.eval_episodes)
                last_success[i] = result["success"]
                eval_logs[i].write({"step": step, **result, "wall_time": round(time.time() - started, 2)})
                if tb:
                    tb[i].add_scalar("eval/success", result["success"], step)
            bar.set_postfix(success=" ".join(f"{s:.2f}" for s in last_success))
        if "checkpoint" in due:
            checkpoint.save_all(dirs, agents, step)
    bar.close()
    online_report = None
    if online is not None:
        online_report = online.run(agents, step, device_data, logs[0], eval_logs[0], tb and tb[:1], started)
    for sinks in tb or []:
        sinks.close()

    extra = {"online": online_report} if online_report is not None else {}
    return [write_summary(d, {**run_info, "seed": seed}, log.read(), round(time.time() - started, 1),
                          args.command or checkpoint.command_line(), **extra)
            for seed, d, log in zip(args.seeds, dirs, eval_logs)]


def make_evaluator(args: TrainArgs):
    from qflow.evaluation.evaluate import Evaluator

    return Evaluator(args.env, min(args.eval_envs, args.eval_episodes))


@jax.jit
def _all_finite(tree) -> jax.Array:
    """One device reduction (and one host sync) over every leaf, not one per leaf."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def check_finite(info, step, dirs, agents=None) -> None:
    """Stop on a non-finite loss or (given ``agents``) parameter, before anything is saved from them."""
    bad = [k for k, v in sorted(info.items()) if k.startswith("loss") and not np.all(np.isfinite(v))]
    if not bad and agents is not None and not bool(_all_finite(agents.params)):
        bad = ["parameters"]
    if bad:
        kept = [d for d in dirs if (d / checkpoint.CHECKPOINT).exists()]
        where = dirs[0].parent if len(dirs) > 1 else dirs[0]
        state = (f"the last checkpoint written before it is kept in {where}" if kept else
                 "no checkpoint had been written")
        retry = Path(f"{where}-lr1e-4")
        raise TrainingDiverged(
            f"non-finite {', '.join(bad)} at step {step}; training stopped and {state}. Retry with a lower learning "
            f"rate or a larger guidance_lambda in a new run directory, e.g. the same command with --set lr=1e-4 "
            f"--run-dir {retry}"
        )
