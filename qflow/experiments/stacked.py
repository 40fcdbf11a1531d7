"""Every task x seed of one dataset in one jitted call per agent: the accelerator path of a grid.

On a GPU a small update is bound by kernel launches, not arithmetic, so 15 agents (5 tasks x
3 seeds) stacked on a leading axis cost about what one does. All tasks of a family share one
dataset; only rewards and masks differ per task, so those carry the agent axis and the rest is
shared (``make_train_chunk(per_member=...)``). Several agents train in lockstep, one chunk each
in turn, so a deadline stops them all at the same step.

    # where the accelerator is: train, export each agent's policies (their acting state only)
    qflow stacked train --family puzzle-3x3-play --agents qflow,fql,flow_bc \\
        --tasks 1-5 --seeds 0-2 --steps 50000 --preset cpu --out gpu_out
    # anywhere: evaluate the exported policies into run directories `qflow report` reads
    qflow stacked evaluate gpu_out/puzzle-3x3-play__qflow --episodes 50 --out results/runs/h2h

Training is a job of the one loop (``training.loop``) and writes per agent ``FAMILY__AGENT/``:
``group.json`` (members, config, data, versions, device, throughput, steps reached),
``metrics.csv`` (losses and diagnostics per member, every ``--log-every`` steps),
``policies.msgpack`` (the latest export, flax msgpack, written atomically) and, with
``--keep-exports``, ``exports/step_NNNNNNN.msgpack`` (every export, for learning curves). At
every export (and when a deadline stops it) ``OUT/FAMILY.checkpoint.msgpack`` holds every group's
stacked agents: a killed or deadline-stopped run resumes from it when rerun with the same
settings, each step logged once. Evaluation writes ``ENV__AGENT/seedS/`` with run.json, metrics.csv, eval.csv and
summary.json, the layout `qflow sweep` writes; ``--all-exports`` evaluates every kept
export not yet evaluated.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from qflow.agents import get_agent
from qflow.agents.base import acting_state, config_from_record, overrides_for, with_acting_state
from qflow.agents.knobs import with_knobs
from qflow.data.loading import data_record, load_single_task
from qflow.data.registry import family_of
from qflow.envs import agent_config
from qflow.errors import QFlowError
from qflow.settings import split_grid
from qflow.experiments.settings import EvalSettings, GroupSettings
from qflow.training import loop
from qflow.training.record import RunRecord
from qflow.training.logs import CSVLog, read_rows, resumed_clock, write_rows, write_summary
from qflow.training.loop import check_finite, stack
from qflow.training.steps import make_train_chunk
from qflow.utils import atomic_write_json, atomic_writer, package_versions

PER_TASK_KEYS = ("rewards", "masks")
# What must agree for a group directory to be resumed by the same run.
GROUP_IDENTITY = ("family", "agent", "members", "steps", "preset", "config", "configs", "export_every", "log_every",
                  "data.sha256")
POLICIES = "policies.msgpack"
EXPORTS = "exports"  # every export, step_NNNNNNN.msgpack


def export_path(group_dir: Path, step: int) -> Path:
    return Path(group_dir) / EXPORTS / f"step_{step:07d}.msgpack"


def kept_exports(group_dir: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (Path(group_dir) / EXPORTS).glob("step_*.msgpack"))


def task_env(family: str, task: int) -> str:
    return family_of(family).env_id(task)


def member_list(tasks, seeds) -> list[tuple[int, int]]:
    return [(t, s) for t in tasks for s in seeds]


def load_family(family: str, tasks, members, episodes=None, data_dir=None, extra=(), dataset_seed: int = 0):
    """Shared transitions plus rewards/masks stacked per member (task-major order)."""
    per_task, files = {}, None
    for t in tasks:
        data, files = load_single_task(task_env(family, t), episodes, dataset_seed, data_dir, progress=False,
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
    One template per setting serves every export (only the acting state and the member's own config decide
    the actions); the settings of one group share the acting state's shapes."""
    agent_cls, config_cls = get_agent(group["agent"])
    templates = {}
    for m in group["members"]:
        if m.get("setting", "") not in templates:
            config = config_from_record(config_cls, member_config(group, m))
            templates[m.get("setting", "")] = agent_cls.create(0, obs_dim, action_dim, config)
    count = len(group["members"])
    stacked = jax.tree.map(lambda x: jnp.stack([x] * count), acting_state(next(iter(templates.values()))))

    def read(path: Path) -> tuple[int, list]:
        state, step = load_policies(path, stacked)
        return step, [with_acting_state(templates[m.get("setting", "")], jax.tree.map(lambda x: x[i], state))
                      for i, m in enumerate(group["members"])]

    return read


def checkpoint_path(settings: GroupSettings) -> Path:
    return Path(settings.out) / f"{settings.family}.checkpoint.msgpack"


def train(settings: GroupSettings) -> dict:
    """Train (or resume) every agent's group; returns {agent: its group.json as written last}. With
    ``evaluate_into``, the exports are evaluated while the groups train (see ``train_beside_evaluations``)."""
    settings.validate()
    if settings.evaluate_into:
        return train_beside_evaluations(settings)
    configs = group_configs(settings)
    extra = tuple(sorted({k for by_setting in configs.values() for c in by_setting.values() for k in c.extra_data()}))
    started = time.time()
    members = member_list(settings.tasks, settings.seeds)
    data, files = load_family(settings.family, settings.tasks, members, settings.dataset_episodes,
                              settings.data_dir, extra, settings.dataset_seed)
    shapes = (data["observations"].shape[1], data["actions"].shape[1])
    data_info = data_record(files, len(data["actions"]))
    shared = jax.device_put({k: jnp.asarray(v) for k, v in data.items() if k not in PER_TASK_KEYS})  # one copy
    per_member = {n: jax.device_put(member_arrays(data, n)) for n in {len(c) for c in configs.values()}}
    device_data = {name: {**shared, **per_member[len(by_setting)]} for name, by_setting in configs.items()}
    del data
    print(f"[stacked] {settings.family}: data loaded in {time.time() - started:.0f} s on {jax.devices()[0]}", flush=True)
    job = StackedJob(settings, configs, members, shapes, data_info, device_data)
    return loop.run(job, settings.progress, settings.deadline)


def member_arrays(data: dict, settings: int) -> dict:
    """The per-member arrays (rewards, masks) of a group of ``settings`` x the family's members, setting-major."""
    return {k: jnp.asarray(np.concatenate([data[k]] * settings) if settings > 1 else data[k]) for k in PER_TASK_KEYS}


def train_beside_evaluations(settings: GroupSettings, stop_evaluating: float | None = None) -> dict:
    """Train in a process of its own (its output in OUT/FAMILY.train.log) while passes of evaluations,
    one process per agent on the CPU, score every new export into ``evaluate_into``; a last pass follows
    training. ``stop_evaluating`` (unix time): evaluations still running then are stopped (each finished
    one is kept). Returns what ``train`` returns, read from the groups' group.json."""
    import multiprocessing

    out, runs = Path(settings.out), Path(settings.evaluate_into)
    out.mkdir(parents=True, exist_ok=True)
    training = dataclasses.replace(settings, evaluate_into=None, keep_exports=True)
    trainer = multiprocessing.get_context("spawn").Process(target=_train_logged,
                                                           args=(training, out / f"{settings.family}.train.log"))
    trainer.start()
    while trainer.is_alive():
        evaluation_pass(settings, runs, stop_evaluating)
        trainer.join(timeout=20)
    failed = evaluation_pass(settings, runs, stop_evaluating)
    if trainer.exitcode:
        raise QFlowError(f"stacked training of {settings.family} failed (exit {trainer.exitcode}); see "
                         f"{out / f'{settings.family}.train.log'}")
    if failed:
        raise QFlowError(f"evaluating the exports of {', '.join(failed)} failed; see "
                         f"{', '.join(str(runs / f'eval_{name}.log') for name in failed)}")
    return {name: RunRecord.read(out / f"{settings.family}__{name}" / "group.json") for name in settings.agents}


def _train_logged(settings: GroupSettings, log_path: Path) -> None:
    """The trainer process: ``train`` with everything it prints (XLA's too) in ``log_path``."""
    with open(log_path, "a") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        train(settings)


def evaluation_pass(settings: GroupSettings, runs: Path, deadline: float | None = None) -> list[str]:
    """Every kept export not yet evaluated, a process per agent side by side on the CPU (the accelerator is
    the trainer's), stopped at ``deadline`` (what finished is kept: each evaluation is written as it ends).
    Returns the groups whose evaluation failed (their log: RUNS/eval_GROUP.log)."""
    import subprocess

    runs.mkdir(parents=True, exist_ok=True)
    procs = []
    for name in settings.agents:
        group = Path(settings.out) / f"{settings.family}__{name}"
        if (group / POLICIES).exists():
            cmd = [sys.executable, "-m", "qflow.cli", "stacked", "evaluate", str(group), "--all-exports",
                   "--episodes", str(settings.eval_episodes), "--out", str(runs)]
            with open(runs / f"eval_{group.name}.log", "a") as f:
                procs.append((group.name, subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                                           env={**os.environ, "JAX_PLATFORMS": "cpu"})))
    failed = []
    for name, proc in procs:  # the pass ends before the next starts, so no export is evaluated twice
        try:
            if proc.wait(timeout=None if deadline is None else max(1.0, deadline - time.time())):
                failed.append(name)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return failed


def group_configs(settings: GroupSettings) -> dict:
    """{agent: {setting: its config}}, one setting ("") without a grid; a grid item ``[AGENT.]KEY=[V1,V2]`` of
    the overrides gives one setting per value (``KEY=V``), all trained in one call (``agents.knobs``). A config
    is the same for every task of the family (else the tasks cannot share a call)."""
    configs = {}
    for name in settings.agents:
        get_agent(name)  # an unknown agent: the registry's one-line error
        own = overrides_for(name, settings.overrides, settings.agents)
        fixed = [o for o in own if not split_grid(o)]
        axes = [[f"{key}={v}" for v in values] for key, values in filter(None, map(split_grid, own))]
        configs[name] = {}
        for setting in itertools.product(*axes):
            per_task = [agent_config(name, task_env(settings.family, t), settings.preset, [*fixed, *setting])
                        for t in settings.tasks]
            if any(c != per_task[0] for c in per_task):
                raise ValueError(f"{name}: tasks of {settings.family} have different per-env settings; stack one task")
            configs[name]["+".join(setting)] = per_task[0]
    return configs


class StackedJob:
    """Every agent's group in lockstep, one chunk each per ``advance`` (a ``loop.Job``)."""

    def __init__(self, settings: GroupSettings, configs: dict, members, shapes, data_info: dict, device_data):
        self.settings, self.configs, self.members, self.data = settings, configs, members, device_data
        self.total = settings.steps
        self.every = settings.every()
        self.desc = f"stacked {settings.family}"
        self.groups = {}
        for name, by_setting in configs.items():
            grid = list(by_setting) != [""]  # members differ in a setting: each records its own
            own = [(setting, t, s) for setting in by_setting for t, s in members]
            created = [get_agent(name)[0].create(s, *shapes, by_setting[setting]) for setting, _, s in own]
            agents = stack(with_knobs(created, [by_setting[setting] for setting, _, _ in own]))
            config = next(iter(by_setting.values()))  # the static config the members share
            info = {"family": settings.family, "agent": name,
                    "members": [{"task": t, "seed": s, **({"setting": setting} if grid else {})}
                                for setting, t, s in own],
                    **({"configs": {k: c.as_dict() for k, c in by_setting.items()}} if grid else {}),
                    "steps": settings.steps, "preset": settings.preset, "config": config.as_dict(), "data": data_info,
                    "export_every": settings.export_every, "log_every": settings.every()["log"],
                    "dataset_seed": settings.dataset_seed,
                    "versions": package_versions(), "commit": os.environ.get("QFLOW_COMMIT", "unknown"),
                    "device": jax.devices()[0].device_kind, "command": settings.command or " ".join(sys.argv),
                    "step": 0, "train_seconds": 0.0, "compile_seconds": None}
            self.groups[name] = {"info": info, "agents": agents, "out": Path(settings.out) / f"{settings.family}__{name}"}
        self.compiled = set()

    def restore(self) -> int:
        step = self._restore_agents()
        self.chunk = math.gcd(self.settings.call_length(), step)  # a resumed step ends a call too (any --chunk)
        self.fn = make_train_chunk(self.chunk, per_member=PER_TASK_KEYS)
        for g in self.groups.values():
            g["log"] = CSVLog(g["out"] / "metrics.csv", after_step=step)
            g["info"]["step"] = step
            atomic_write_json(g["out"] / "group.json", {**g["info"], "stop": "starting" if not step else "resumed"})
            if step:  # a kill between the checkpoint and the export leaves an older export: written again
                export_policies(g["out"] / POLICIES, g["agents"], step)
                if self.settings.keep_exports:
                    export_policies(export_path(g["out"], step), g["agents"], step)
        self.started = resumed_clock([g["log"] for g in self.groups.values()])
        return step

    def identity(self) -> dict:
        """What a checkpoint of this job must have been written by: each group's identity record."""
        return {name: {k: g["info"][k] for k in GROUP_IDENTITY if "." not in k and k in g["info"]}
                | {"sha256": g["info"]["data"].get("sha256")} for name, g in self.groups.items()}

    def _restore_agents(self) -> int:
        """The step of the family's checkpoint (0 without one), after checking it is this run's."""
        for g in self.groups.values():
            if (g["out"] / "group.json").exists():
                self._check_group(g)
        path = checkpoint_path(self.settings)
        if not path.exists():
            return 0
        import flax.serialization

        try:
            raw = flax.serialization.msgpack_restore(path.read_bytes())
        except Exception as err:
            raise QFlowError(f"unreadable stacked checkpoint {path} ({type(err).__name__}: {err}); move it away "
                             f"to start over") from err
        saved = json.loads(raw.get("identity", "{}"))
        mine = json.loads(json.dumps(self.identity(), sort_keys=True, default=str))
        if saved != mine:
            differ = sorted(k for n in {*saved, *mine} for k in {*saved.get(n, {}), *mine.get(n, {})}
                            if saved.get(n, {}).get(k) != mine.get(n, {}).get(k)) or ["agents"]
            raise QFlowError(f"{path} was written by another stacked run (agents {', '.join(saved) or '?'}; differs "
                             f"in {', '.join(dict.fromkeys(differ))}); rerun with its settings or pass another --out")
        template = {"step": 0, "agents": {n: g["agents"] for n, g in self.groups.items()}}
        state = flax.serialization.from_state_dict(template, {"step": raw["step"], "agents": raw["agents"]})
        for name, g in self.groups.items():
            g["agents"] = state["agents"][name]
        print(f"[stacked] resuming {self.settings.family} from step {state['step']}", flush=True)
        return int(state["step"])

    def _check_group(self, g: dict) -> None:
        """A group directory is resumed only by the run that wrote it, and only from a checkpoint."""
        old = RunRecord.read(g["out"] / "group.json", fix="move it away or pass another --out", error=QFlowError)
        differ = RunRecord.differences(old, g["info"], GROUP_IDENTITY)
        if differ:
            raise QFlowError(f"{g['out']} holds another stacked run (differs in {', '.join(differ)}); rerun "
                             f"with its settings to resume it, or pass another --out")
        if old.get("step") and not checkpoint_path(self.settings).exists():
            raise QFlowError(f"{g['out']} holds {old['step']:,} steps of training but no checkpoint "
                             f"({checkpoint_path(self.settings)}) to resume them from; pass another --out")
        kept = ("train_seconds", "compile_seconds", "wall_seconds", "updates_per_s", "agent_updates_per_s", "command")
        g["info"].update({k: old[k] for k in kept if k in old})  # the first command names the trained group

    def advance(self, step: int) -> tuple[int, dict]:
        infos = {}
        for name, g in self.groups.items():
            t0 = time.time()
            g["agents"], info = self.fn(g["agents"], self.data[name])
            infos[name] = jax.device_get(info)  # blocks: the time below is this agent's own
            seconds = time.time() - t0
            if name not in self.compiled:  # this process's first call compiles: not timed
                self.compiled.add(name)
                g["info"]["compile_seconds"] = g["info"]["compile_seconds"] or round(seconds, 2)
            else:
                g["info"]["train_seconds"] += seconds
            check_finite(infos[name], step + self.chunk, [g["out"]], g["agents"])  # never export non-finite policies
        return step + self.chunk, infos

    def log(self, step: int, means: dict) -> None:
        for name, g in self.groups.items():
            for i, m in enumerate(g["info"]["members"]):
                row = {"step": step, "task": m["task"], "seed": m["seed"],
                       **({"setting": m["setting"]} if "setting" in m else {}),
                       "wall_time": round(time.time() - self.started, 1)}
                row.update({k: float(v[i]) for k, v in sorted(means.get(name, {}).items())})
                g["log"].write(row)

    def checkpoint(self, step: int) -> None:
        import flax.serialization

        state = {"step": step, "identity": json.dumps(self.identity(), sort_keys=True, default=str),
                 "agents": {n: jax.device_get(g["agents"]) for n, g in self.groups.items()}}
        with atomic_writer(checkpoint_path(self.settings)) as f:
            f.write(flax.serialization.to_bytes(state))

    def export(self, step: int) -> None:
        for g in self.groups.values():
            info = g["info"]
            timed = max(step - self.chunk, 1)  # the first chunk includes compilation and is not timed
            info.update(step=step, wall_seconds=round(time.time() - self.started, 1),
                        updates_per_s=round(timed / info["train_seconds"], 2) if info["train_seconds"] else None)
            members = len(info["members"])
            info["agent_updates_per_s"] = info["updates_per_s"] and round(info["updates_per_s"] * members, 1)
            if self.settings.keep_exports:
                export_policies(export_path(g["out"], step), g["agents"], step)
            export_policies(g["out"] / POLICIES, g["agents"], step)
            atomic_write_json(g["out"] / "group.json", {**info, "stop": "running"})
        print(f"[stacked] step {step}: " + ", ".join(f"{n} {g['info']['updates_per_s']} upd/s"
                                                      for n, g in self.groups.items()), flush=True)

    def finish(self, step: int, stop: str) -> dict:
        written = {}
        for name, g in self.groups.items():
            written[name] = {**g["info"], "step": step, "stop": stop}
            atomic_write_json(g["out"] / "group.json", written[name])
        print(f"[stacked] {self.settings.family}: stopped at step {step} ({stop}) after "
              f"{time.time() - self.started:.0f} s", flush=True)
        return written


def evaluate(settings: EvalSettings) -> None:
    """Evaluate each member's exported policy; one run directory per (task, seed), as a sweep writes.

    By default the latest export; with ``all_exports`` every kept export not yet in the run's
    eval.csv (so it can run beside training and be re-run as exports arrive). The summary's
    ``success`` is the last evaluation and ``success_last3`` the mean of the last three.
    """
    from qflow.evaluation.evaluate import Evaluator, evaluate_policy

    group_dir = Path(settings.group)
    if not (group_dir / "group.json").exists():
        raise FileNotFoundError(f"{group_dir / 'group.json'} not found: is {group_dir} a FAMILY__AGENT directory "
                                f"written by qflow stacked train?")
    group = RunRecord.read(group_dir / "group.json", fix="it records the group; restore it from the run's copy",
                           error=QFlowError)
    if not (group_dir / POLICIES).exists():
        raise FileNotFoundError(f"{group_dir}: no policies exported (training stopped at step {group.get('step')}, "
                                f"{group.get('stop')}); train longer or with a later --deadline")
    members = group["members"]
    metrics = read_rows(group_dir / "metrics.csv")  # read only: CSVLog() would trim the file
    run_dirs = [Path(settings.out) / m.get("setting", "") / f"{task_env(group['family'], m['task'])}__{group['agent']}"
                / f"seed{m['seed']}" for m in members]  # a grid's settings each in OUT/SETTING/, as a sweep writes
    for d, m in zip(run_dirs, members):
        _check_same_scoring(d, group, member_config(group, m), settings.episodes)
    done = [{int(float(r["step"])) for r in read_rows(d / "eval.csv")} for d in run_dirs]
    sources = [export_path(group_dir, s) for s in kept_exports(group_dir)] if settings.all_exports else []
    sources = sources or [group_dir / POLICIES]  # no kept exports (or not asked for): the latest one
    evaluators, read = {}, None
    for path in sources:
        for i, m in enumerate(members):
            env_id = task_env(group["family"], m["task"])
            if env_id not in evaluators:
                evaluators[env_id] = Evaluator(env_id, min(10, settings.episodes))
            if read is None:
                env = evaluators[env_id].envs[0]
                read = member_policies(group, env.observation_space.shape[0], env.action_space.shape[0])
            if i == 0:
                step, agents = read(path)
            if step in done[i]:
                continue
            t0 = time.time()
            result = evaluate_policy(evaluators[env_id], agents[i], m["seed"], step, settings.episodes)
            _record_evaluation(run_dirs[i], group, m, step, result, round(time.time() - t0, 1), metrics, settings)
            done[i].add(step)
            print(f"[stacked] {env_id} {group['agent']} seed {m['seed']} step {step}: success {result['success']:.2f}",
                  flush=True)


def member_config(group: dict, member: dict) -> dict:
    """The config a member trained with: its setting's, in a group of several settings, else the group's."""
    return group["configs"][member["setting"]] if "setting" in member else group["config"]


def _check_same_scoring(run_dir: Path, group: dict, config: dict, episodes: int) -> None:
    """One run directory holds the evaluations of one trained group, scored one way."""
    if not (run_dir / "run.json").exists():
        return
    old = RunRecord.read(run_dir / "run.json", fix="move it away or pass another --out", error=QFlowError)
    mine = {"agent": group["agent"], "config": config, "data": group["data"],
            "train_command": group["command"], "eval_episodes": episodes}
    differ = RunRecord.differences(old, mine, ("config", "data.sha256", "train_command", "eval_episodes"))
    if differ:
        raise QFlowError(f"{run_dir} holds evaluations of another trained group or scoring (differs in "
                         f"{', '.join(differ)}); pass another --out")


def _record_evaluation(run_dir: Path, group, member, step, result, seconds, metrics, settings: EvalSettings) -> None:
    run_info = {"env": task_env(group["family"], member["task"]), "agent": group["agent"],
                "seed": member["seed"], "steps": step, "preset": group["preset"], "online_steps": 0,
                "budget": group["steps"], "config": member_config(group, member), "eval_episodes": settings.episodes,
                "data": group["data"],
                "versions": group["versions"], "device": group["device"], "trained_by": "qflow stacked",
                "stacked_members": len(group["members"]), "train_command": group["command"],
                "commit": group.get("commit"), "eval_versions": package_versions()}
    own = [r for r in metrics if int(r["task"]) == member["task"] and int(r["seed"]) == member["seed"]
           and r.get("setting", "") == member.get("setting", "")]
    write_rows(run_dir / "metrics.csv", own)  # rewritten whole: drops rows of an interrupted attempt
    rows = sorted([*read_rows(run_dir / "eval.csv"), {"step": step, **result, "eval_seconds": seconds}],
                  key=lambda r: int(float(r["step"])))
    write_rows(run_dir / "eval.csv", rows)
    run_info["steps"] = int(float(rows[-1]["step"]))
    atomic_write_json(run_dir / "run.json", run_info)
    write_summary(run_dir, run_info, rows, group.get("wall_seconds"), settings.command or " ".join(sys.argv))
