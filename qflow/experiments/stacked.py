"""Every task x seed of one dataset in one jitted call per agent: the accelerator path of a grid.

On a GPU a small update is bound by kernel launches, not arithmetic, so 15 agents (5 tasks x
3 seeds) stacked on a leading axis cost about what one does. All tasks of a family share one
dataset; only rewards and masks differ per task, so those carry the agent axis and the rest is
shared (``make_train_chunk(per_member=...)``). Several agents train in lockstep, one chunk each
in turn, so a deadline stops them all at the same step.

    # where the accelerator is: train, export each agent's policies (their acting state only)
    python -m qflow.experiments.stacked train --family puzzle-3x3-play --agents qflow,fql,flow_bc \\
        --tasks 1-5 --seeds 0,1,2 --steps 50000 --preset cpu --out gpu_out
    # anywhere: evaluate the exported policies into run directories `qflow report` reads
    python -m qflow.experiments.stacked evaluate gpu_out/puzzle-3x3-play__qflow --episodes 50 \\
        --out results/runs/h2h

Training writes per agent ``FAMILY__AGENT/``: ``group.json`` (members, config, data, versions,
device, throughput, steps reached), ``metrics.csv`` (losses and diagnostics per member, every
``--log-every`` steps), ``policies.msgpack`` (the latest export, flax msgpack, written atomically)
and, with ``--keep-exports``, ``exports/step_NNNNNNN.msgpack`` (every export, for learning
curves). Evaluation writes ``ENV__AGENT/seedS/`` with run.json, metrics.csv, eval.csv and
summary.json, the layout `qflow sweep` writes; ``--all-exports`` evaluates every kept
export not yet evaluated.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from qflow.agents import get_agent
from qflow.agents.base import acting_state, config_from_record, overrides_for, with_acting_state
from qflow.data.loading import data_record, load_single_task
from qflow.data.registry import env_id_for_task
from qflow.envs import agent_config
from qflow.errors import QFlowError
from qflow.training.logs import CSVLog, read_rows, write_rows, write_summary
from qflow.training.schedule import Schedule
from qflow.training.trainer import check_finite, make_train_chunk, stack
from qflow.utils import POSITIVE, atomic_write_json, atomic_writer, package_versions, parse_int_list

PER_TASK_KEYS = ("rewards", "masks")
POLICIES = "policies.msgpack"
EXPORTS = "exports"  # every export, step_NNNNNNN.msgpack


def export_path(group_dir: Path, step: int) -> Path:
    return Path(group_dir) / EXPORTS / f"step_{step:07d}.msgpack"


def kept_exports(group_dir: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (Path(group_dir) / EXPORTS).glob("step_*.msgpack"))


def member_list(tasks, seeds) -> list[tuple[int, int]]:
    return [(t, s) for t in tasks for s in seeds]


def load_family(family: str, tasks, members, episodes=None, data_dir=None, extra=()):
    """Shared transitions plus rewards/masks stacked per member (task-major order)."""
    per_task, files = {}, None
    for t in tasks:
        data, files = load_single_task(f"{family}-singletask-task{t}-v0", episodes, 0, data_dir, progress=False,
                                       extra=extra)
        per_task[t] = data if not per_task else {k: data[k] for k in PER_TASK_KEYS}  # the rest is shared
    data = {k: v for k, v in per_task[tasks[0]].items() if k not in PER_TASK_KEYS}
    for k in PER_TASK_KEYS:
        data[k] = np.stack([per_task[t][k] for t, _ in members])
    return data, files


def export_policies(path: Path, agents, step: int) -> None:
    import flax.serialization

    with atomic_writer(path) as f:
        f.write(flax.serialization.to_bytes({"step": step, "state": jax.device_get(acting_state(agents))}))


def load_policies(path: Path, template_state) -> tuple[dict, int]:
    import flax.serialization

    try:
        state = flax.serialization.from_bytes({"step": 0, "state": template_state}, path.read_bytes())
    except Exception as err:
        raise ValueError(f"unreadable policies file {path} ({type(err).__name__}: {err})") from err
    return state["state"], int(state["step"])


def member_policies(group: dict, obs_dim: int, action_dim: int):
    """A reader of a group's exported policies: ``read(path) -> (step, [an acting agent per member])``.
    One template serves every export and member: only the acting state decides the actions."""
    agent_cls, config_cls = get_agent(group["agent"])
    template = agent_cls.create(0, obs_dim, action_dim, config_from_record(config_cls, group["config"]))
    count = len(group["members"])
    stacked = jax.tree.map(lambda x: jnp.stack([x] * count), acting_state(template))

    def read(path: Path) -> tuple[int, list]:
        state, step = load_policies(path, stacked)
        return step, [with_acting_state(template, jax.tree.map(lambda x: x[i], state)) for i in range(count)]

    return read


def train(args) -> None:
    tasks, seeds = parse_int_list(args.tasks), [int(s) for s in args.seeds.split(",")]
    members = member_list(tasks, seeds)
    agent_names = [a for a in args.agents.split(",") if a]
    log_every = args.log_every or args.export_every
    chunk = min(args.chunk, args.export_every, log_every)
    if args.steps < 1 or chunk < 1 or args.steps % chunk or args.export_every % chunk or log_every % chunk:
        raise ValueError(f"--steps ({args.steps}), --export-every ({args.export_every}) and --log-every ({log_every}) "
                         f"must be positive multiples of --chunk ({args.chunk})")
    configs = {}
    for name in agent_names:
        per_task = [agent_config(name, env_id_for_task(f"{args.family}-singletask-v0", t), args.preset,
                                 overrides_for(name, args.set, agent_names)) for t in tasks]
        if any(c != per_task[0] for c in per_task):
            raise ValueError(f"{name}: tasks of {args.family} have different per-env settings; stack one task")
        configs[name] = per_task[0]
    extra = tuple(sorted({k for c in configs.values() for k in c.extra_data()}))
    started = time.time()
    data, files = load_family(args.family, tasks, members, args.dataset_episodes, args.data_dir, extra)
    data_info = data_record(files, len(data["actions"]))
    device_data = jax.device_put({k: jnp.asarray(v) for k, v in data.items()})
    obs_dim, action_dim = data["observations"].shape[1], data["actions"].shape[1]
    del data
    print(f"[stacked] {args.family}: data loaded in {time.time() - started:.0f} s on {jax.devices()[0]}", flush=True)

    groups = []
    for name, config in configs.items():
        agent_cls = get_agent(name)[0]
        out = Path(args.out) / f"{args.family}__{name}"
        if (out / "group.json").exists():
            raise FileExistsError(f"{out} already holds a stacked run; pass another --out")
        agents = stack([agent_cls.create(s, obs_dim, action_dim, config) for _, s in members])
        group = {"family": args.family, "agent": name, "members": [{"task": t, "seed": s} for t, s in members],
                 "steps": args.steps, "preset": args.preset, "config": config.as_dict(), "data": data_info,
                 "export_every": args.export_every, "log_every": log_every,
                 "versions": package_versions(), "commit": os.environ.get("QFLOW_COMMIT", "unknown"),
                 "device": jax.devices()[0].device_kind, "command": _invocation(args), "step": 0,
                 "train_seconds": 0.0, "compile_seconds": None}
        groups.append({"info": group, "agents": agents, "out": out, "log": CSVLog(out / "metrics.csv")})
        atomic_write_json(out / "group.json", {**group, "stop": "starting"})

    fns = {g["info"]["agent"]: make_train_chunk(chunk, per_member=PER_TASK_KEYS) for g in groups}
    schedule = Schedule(args.steps, {"log": log_every, "export": args.export_every})
    step, round_seconds, stop, exported = 0, 0.0, "steps reached", 0
    while step < args.steps:
        if args.deadline and time.time() + 1.2 * round_seconds > args.deadline:
            stop = "deadline"
            break
        t_round = time.time()
        for g in groups:
            t0 = time.time()
            g["agents"], info = fns[g["info"]["agent"]](g["agents"], device_data)
            info = jax.device_get(info)  # blocks: the time below is this agent's own
            seconds = time.time() - t0
            if step == 0:
                g["info"]["compile_seconds"] = round(seconds, 2)
            else:
                g["info"]["train_seconds"] += seconds
            check_finite(info, step + chunk, [g["out"]], g["agents"])  # never export non-finite policies
            g["sums"] = info if "sums" not in g else jax.tree.map(np.add, g["sums"], info)
            g["count"] = g.get("count", 0) + 1
        step += chunk
        round_seconds = time.time() - t_round
        due = schedule.due(step)
        if "log" in due:
            _log(groups, step, started)
        if "export" in due:
            _export(groups, step, started, chunk, args.keep_exports)
            exported = step
    if step > exported:  # stopped by the deadline between exports
        if "sums" in groups[0]:
            _log(groups, step, started)
        _export(groups, step, started, chunk, args.keep_exports)
    for g in groups:
        atomic_write_json(g["out"] / "group.json", {**g["info"], "stop": stop})
    print(f"[stacked] {args.family}: stopped at step {step} ({stop}) after {time.time() - started:.0f} s", flush=True)


def _log(groups, step, started) -> None:
    for g in groups:
        sums, count = g.pop("sums"), g.pop("count")  # averaged since the previous log row
        for i, m in enumerate(g["info"]["members"]):
            row = {"step": step, "task": m["task"], "seed": m["seed"], "wall_time": round(time.time() - started, 1)}
            row.update({k: float(v[i]) / count for k, v in sorted(sums.items())})
            g["log"].write(row)


def _export(groups, step, started, chunk, keep: bool) -> None:
    for g in groups:
        info = g["info"]
        timed = max(step - chunk, 1)  # the first chunk includes compilation and is not timed
        info.update(step=step, wall_seconds=round(time.time() - started, 1),
                    updates_per_s=round(timed / info["train_seconds"], 2) if info["train_seconds"] else None)
        info["agent_updates_per_s"] = info["updates_per_s"] and round(info["updates_per_s"] * len(info["members"]), 1)
        if keep:
            export_policies(export_path(g["out"], step), g["agents"], step)
        export_policies(g["out"] / POLICIES, g["agents"], step)
        atomic_write_json(g["out"] / "group.json", {**info, "stop": "running"})
    print(f"[stacked] step {step}: " + ", ".join(f"{g['info']['agent']} {g['info']['updates_per_s']} upd/s"
                                                  for g in groups), flush=True)


def evaluate(args) -> None:
    """Evaluate each member's exported policy; one run directory per (task, seed), as a sweep writes.

    By default the latest export; with ``--all-exports`` every kept export not yet in the run's
    eval.csv (so it can run beside training and be re-run as exports arrive). The summary's
    ``success`` is the last evaluation and ``success_last3`` the mean of the last three.
    """
    from qflow.evaluation.evaluate import Evaluator, evaluate_policy

    group_dir = Path(args.group)
    group = json.loads((group_dir / "group.json").read_text())
    if not (group_dir / POLICIES).exists():
        raise FileNotFoundError(f"{group_dir}: no policies exported (training stopped at step {group.get('step')}, "
                                f"{group.get('stop')}); train longer or with a later --deadline")
    members = group["members"]
    with open(group_dir / "metrics.csv", newline="") as f:  # read only: CSVLog() would trim the file
        metrics = list(csv.DictReader(f))
    run_dirs = [Path(args.out) / f"{group['family']}-singletask-task{m['task']}-v0__{group['agent']}" / f"seed{m['seed']}"
                for m in members]
    for d in run_dirs:  # one run directory holds the evaluations of one trained group, scored one way
        if (d / "run.json").exists():
            old = json.loads((d / "run.json").read_text())
            mine = {"config": group["config"], "sha256": group["data"].get("sha256"), "command": group["command"],
                    "episodes": args.episodes}
            theirs = {"config": old.get("config"), "sha256": old.get("data", {}).get("sha256"),
                      "command": old.get("train_command"), "episodes": old.get("eval_episodes")}
            differ = [k for k in mine if json.loads(json.dumps(mine[k])) != theirs[k]]
            if differ:
                raise QFlowError(f"{d} holds evaluations of another trained group or scoring (differs in "
                                 f"{', '.join(differ)}); pass another --out")
    done = [{int(float(r["step"])) for r in read_rows(d / "eval.csv")} for d in run_dirs]
    sources = [export_path(group_dir, s) for s in kept_exports(group_dir)] if args.all_exports else []
    sources = sources or [group_dir / POLICIES]  # no kept exports (or not asked for): the latest one
    evaluators, read = {}, None

    def evaluator_for(env_id):
        if env_id not in evaluators:
            evaluators[env_id] = Evaluator(env_id, min(10, args.episodes))
        return evaluators[env_id]

    for path in sources:
        if read is None:
            env = evaluator_for(f"{group['family']}-singletask-task{members[0]['task']}-v0").envs[0]
            read = member_policies(group, env.observation_space.shape[0], env.action_space.shape[0])
        step, agents = read(path)
        for i, (m, agent) in enumerate(zip(members, agents)):
            if step in done[i]:
                continue
            env_id = f"{group['family']}-singletask-task{m['task']}-v0"
            evaluator = evaluator_for(env_id)
            t0 = time.time()
            result = evaluate_policy(evaluator, agent, m["seed"], step, args.episodes)
            _record_evaluation(run_dirs[i], group, m, step, result, round(time.time() - t0, 1), metrics, args)
            done[i].add(step)
            print(f"[stacked] {env_id} {group['agent']} seed {m['seed']} step {step}: success {result['success']:.2f}",
                  flush=True)


def _record_evaluation(run_dir: Path, group, member, step, result, seconds, metrics, args) -> None:
    run_info = {"env": f"{group['family']}-singletask-task{member['task']}-v0", "agent": group["agent"],
                "seed": member["seed"], "steps": step, "preset": group["preset"], "online_steps": 0,
                "config": group["config"], "eval_episodes": args.episodes, "data": group["data"],
                "versions": group["versions"], "device": group["device"], "trained_by": "qflow.experiments.stacked",
                "stacked_members": len(group["members"]), "train_command": group["command"],
                "commit": group.get("commit"), "eval_versions": package_versions()}
    metrics_log = CSVLog(run_dir / "metrics.csv")  # rewritten whole: drops rows of an interrupted attempt
    for r in metrics:
        if int(r["task"]) == member["task"] and int(r["seed"]) == member["seed"]:
            metrics_log.write(r)
    rows = sorted([*read_rows(run_dir / "eval.csv"), {"step": step, **result, "eval_seconds": seconds}],
                  key=lambda r: int(float(r["step"])))
    write_rows(run_dir / "eval.csv", rows)
    run_info["steps"] = int(float(rows[-1]["step"]))
    atomic_write_json(run_dir / "run.json", run_info)
    write_summary(run_dir, run_info, rows, group.get("wall_seconds"), _invocation(args))


def _invocation(args) -> str:
    """The command recorded with the results: main()'s own, or what a caller (a sweep cell) says it ran."""
    return getattr(args, "invocation", None) or " ".join(sys.argv)


def main(argv=None, invocation: str | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train every task x seed of one dataset, agents in lockstep")
    t.add_argument("--family", required=True, help="dataset family, e.g. puzzle-3x3-play")
    t.add_argument("--agents", default="qflow,fql,flow_bc")
    t.add_argument("--tasks", default="1-5")
    t.add_argument("--seeds", default="0,1,2")
    t.add_argument("--steps", type=POSITIVE, required=True)
    t.add_argument("--preset", default="cpu")
    t.add_argument("--set", action="append", default=[], metavar="[AGENT.]KEY=VALUE",
                   help="config override: KEY=VALUE for every agent, AGENT.KEY=VALUE for one (e.g. fql.alpha=150)")
    t.add_argument("--chunk", type=POSITIVE, default=1000, help="updates per jitted call")
    t.add_argument("--export-every", type=POSITIVE, default=5000, help="steps between policy exports")
    t.add_argument("--log-every", type=POSITIVE, default=None, help="steps between metrics rows (default: --export-every)")
    t.add_argument("--keep-exports", action="store_true",
                   help="also keep every export as exports/step_NNNNNNN.msgpack (for learning curves)")
    t.add_argument("--deadline", type=float, default=None, help="unix time: stop all agents before it")
    t.add_argument("--dataset-episodes", type=POSITIVE, default=None, help="default: the official size")
    t.add_argument("--data-dir", default=None)
    t.add_argument("--out", required=True)
    e = sub.add_parser("evaluate", help="evaluate exported policies into run directories qflow report reads")
    e.add_argument("group", help="a FAMILY__AGENT directory written by train")
    e.add_argument("--episodes", type=POSITIVE, default=50)
    e.add_argument("--all-exports", action="store_true", help="every kept export not yet evaluated, not just the latest")
    e.add_argument("--out", required=True)
    args = p.parse_args(argv)
    args.invocation = invocation
    try:
        train(args) if args.command == "train" else evaluate(args)
    except (QFlowError, ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"stacked: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
