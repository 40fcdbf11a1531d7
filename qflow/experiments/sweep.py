"""Grids and sweeps on Ray: every cell of a grid is a Ray task; one machine by default, a cluster by address.

    qflow sweep plans/sweeps/example.toml                        # a spec file (keys: Spec in experiments/settings.py)
    qflow sweep --envs puzzle-3x3-play --tasks 1-5 --agents qflow,fql --seeds 0-2 --steps 50000 \\
        --set qflow.guidance_lambda=[5,10,20] --out results/runs/NAME   # the common case, by flags
    qflow sweep SPEC --address HEAD:6379                          # join a running cluster (or RAY_ADDRESS)

A cell is one (environment, agent, setting, seed) trained by the same trainer as `qflow train`
(``mode = "runs"``), or, on accelerators, one (family, setting) with every task x seed x agent
stacked in one jitted call (``mode = "stacked"``; the exports are then evaluated in the same cell).
Grid values apply to their own agent only: ``qflow.guidance_lambda = [5, 10]`` and
``fql.alpha = [150, 300]`` make two Q-Flow settings and two FQL settings, not four of each.

Results: the worker returns each finished cell's small files (summary.json, eval.csv, metrics.csv,
run.json) and the driver writes them into ``OUT/[SETTING/]ENV__AGENT/seedS/`` (the layout
`qflow report` reads), so OUT needs to exist only on the driver's machine. Checkpoints stay in
``RUNS`` on the worker that trained the cell (a shared filesystem lets a retry on another node
resume them). ``OUT/sweep.json`` lists every cell's state, error and time, rewritten as cells end.

A cluster: ``ray start --head --port P`` on the head (and ``ray start --address HEAD:P`` on the others), then
``qflow sweep SPEC --address HEAD:P``. Relative ``runs`` and ``data_dir`` are resolved on the driver, so give
paths every node has (a shared filesystem); a head that asks for Ray's token gets this machine's
(~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN: copy the head's there); a cluster where no node
can hold one cell (``cpus``, ``gpus``) is refused before anything is queued.

Nothing is lost: cells whose summaries exist in OUT are skipped; a worker that dies is retried by
Ray (``retries``) and the trainer resumes from its last checkpoint (a stacked cell from its group's
checkpoint, written at every export); a cell that fails for its own
reason (a bad environment, a diverged run) fails alone, its error in sweep.json, while the rest
finish; Ctrl-C cancels the running cells and keeps every finished result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import sys
import time
from pathlib import Path

from qflow.errors import QFlowError
from qflow.settings import from_table, split_grid
from qflow.data.registry import family_of
from qflow.training.record import RunRecord
from qflow.experiments.settings import MODES, EvalSettings, GroupSettings, Spec
from qflow.training.settings import RunSettings, TrainArgs
from qflow.utils import LockHeld, atomic_write_json, file_lock, package_versions, parse_int_list, read_toml

SMALL_FILES = ("run.json", "metrics.csv", "eval.csv", "summary.json")  # summary.json last: it marks a cell done
STAGING = ".sweep-staging"  # OUT/.sweep-staging: result folders are written here, then renamed into place


class SweepError(QFlowError):
    """A spec or flag that cannot describe a sweep."""


def check_spec(spec: Spec) -> None:
    """Refuse a spec that cannot run, here and not minutes later in a worker."""
    from qflow.agents import AGENTS
    from qflow.agents.base import overrides_for

    if not spec.envs or not spec.agents:
        raise SweepError("a sweep needs envs and agents")
    unknown = [a for a in spec.agents if a not in AGENTS]
    if unknown:
        raise SweepError(f"unknown agents {unknown}; choose from {', '.join(sorted(AGENTS))}")
    if spec.mode not in MODES:
        raise SweepError(f"mode must be one of {MODES}, got {spec.mode!r}")
    if spec.eval_every < 0 or spec.retries < 0 or spec.cpus <= 0 or spec.gpus < 0:
        raise SweepError("eval_every, retries and gpus must be >= 0 and cpus > 0")
    try:  # every cell's training settings, checked as `qflow train` checks them
        TrainArgs(**spec.run_settings()).validate()
    except ValueError as err:
        raise SweepError(str(err)) from None
    if spec.mode == "stacked" and spec.online_steps:
        raise SweepError("mode 'stacked' trains offline only; online_steps needs mode 'runs'")
    try:
        parse_int_list(spec.tasks), parse_int_list(spec.seeds)
    except ValueError as err:
        raise SweepError(f"tasks/seeds: {err}") from None
    if spec.mode == "stacked" and any("-singletask-" in e for e in spec.envs):
        raise SweepError("mode 'stacked' takes families (e.g. cube-single-play), not single-task ids")
    for key, values in spec.grid:
        if not values:
            raise SweepError(f"grid {key!r} has no values")
        if not any(settings_of(dataclasses.replace(spec, grid=((key, values),)), a) != [()] for a in spec.agents):
            raise SweepError(f"grid key {key!r} is a setting of none of the agents {', '.join(spec.agents)}")
    try:  # every override names a key of the agent it applies to (checked here, not in a worker)
        for agent in spec.agents:
            for setting in settings_of(spec, agent):
                _agent_config(agent, spec.preset, overrides_for(agent, (*spec.sets, *setting), spec.agents))
    except ValueError as err:
        raise SweepError(str(err)) from None
    _check_envs(spec)


def _check_envs(spec: Spec) -> None:
    """Every env a family, dataset or single-task id the registry knows, and every task one its family has."""
    try:
        for env in spec.envs:
            family = family_of(env)
            if "-singletask" not in env:
                for task in parse_int_list(spec.tasks):
                    family.env_id(task)
    except QFlowError as err:
        raise SweepError(f"envs/tasks: {err}") from None


def _agent_config(agent: str, preset: str, overrides):
    from qflow.envs import agent_config

    return agent_config(agent, None, preset, overrides)


def settings_of(spec: Spec, agent: str) -> list[tuple[str, ...]]:
    """The grid settings of one agent: the product of the grid keys that apply to it (its own
    ``agent.key`` and bare keys its config has), as ``key=value`` tuples; [()] without any."""
    from qflow.agents import get_agent

    fields = {f.name for f in dataclasses.fields(get_agent(agent)[1])}
    axes = []
    for key, values in spec.grid:
        prefix, dot, bare = key.partition(".")
        if dot and prefix not in spec.agents:
            raise SweepError(f"grid key {key!r}: {prefix!r} is not an agent of this sweep ({', '.join(spec.agents)})")
        if (dot and prefix == agent) or (not dot and key in fields):
            axes.append([f"{bare if dot else key}={_text(v)}" for v in values])
    return [tuple(combo) for combo in itertools.product(*axes)]


def _text(value) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


@dataclasses.dataclass(frozen=True)
class Cell:
    agent: str
    env: str  # mode "runs": a single-task id; "stacked": a family
    seed: int | None  # None in mode "stacked" (all seeds in the cell)
    setting: tuple[str, ...]  # this cell's grid values, key=value
    packed: tuple[tuple[str, ...], ...] = ()  # mode "stacked": every setting of the agent's grid, trained in one
    # call (when each grid key is a setting members may differ in, agents.knobs); then ``setting`` is empty

    @property
    def setting_name(self) -> str:
        return "+".join(self.setting)

    @property
    def settings(self) -> tuple[tuple[str, ...], ...]:
        """The settings the cell trains: its own, or the packed ones."""
        return self.packed or (self.setting,)

    @property
    def name(self) -> str:
        grid = "+".join(f"{k}=[{','.join(dict.fromkeys(v))}]" for k, v in _axes(self.packed).items())
        parts = [self.env, self.agent, self.setting_name or grid, "" if self.seed is None else f"seed{self.seed}"]
        return "__".join(p for p in parts if p)


def _axes(settings) -> dict[str, list[str]]:
    """{key: its values in order} of settings given as key=value tuples."""
    axes: dict[str, list[str]] = {}
    for setting in settings:
        for item in setting:
            key, _, value = item.partition("=")
            axes.setdefault(key, []).append(value)
    return axes


def cells_of(spec: Spec) -> list[Cell]:
    if spec.mode == "stacked":  # every task x seed of a family in one cell, per agent and (unless packed) setting
        cells = []
        for family in spec.envs:
            for agent in spec.agents:
                settings = settings_of(spec, agent)
                if len(settings) > 1 and _packable(agent, settings):
                    cells.append(Cell(agent, family, None, (), tuple(settings)))
                else:
                    cells += [Cell(agent, family, None, setting) for setting in settings]
        return cells
    envs = [e if "-singletask-" in e else family_of(e).env_id(t)
            for e in spec.envs for t in ([0] if "-singletask-" in e else parse_int_list(spec.tasks))]
    return [Cell(agent, env, seed, setting) for env in envs for agent in spec.agents
            for setting in settings_of(spec, agent) for seed in parse_int_list(spec.seeds)]


def _packable(agent: str, settings) -> bool:
    """Whether every grid key of ``agent`` may differ between members of one call (``TRACEABLE``)."""
    from qflow.agents import get_agent
    from qflow.agents.knobs import untraceable

    return not untraceable(get_agent(agent)[1], _axes(settings))


def result_dirs(spec: Spec, cell: Cell) -> list[Path]:
    """Where a cell's small files go: OUT/[SETTING/]ENV__AGENT/seedS, one per (setting, task, seed)."""
    return [d for d, _ in dirs_and_settings(spec, cell)]


def dirs_and_settings(spec: Spec, cell: Cell) -> list[tuple[Path, tuple[str, ...]]]:
    """(result directory, the setting trained there) of every result of a cell."""
    out = []
    for setting in cell.settings:
        root = Path(spec.out) / "+".join(setting) if setting else Path(spec.out)
        if cell.seed is not None:
            out.append((root / f"{cell.env}__{cell.agent}" / f"seed{cell.seed}", setting))
            continue
        family = family_of(cell.env)
        out += [(root / f"{family.env_id(t)}__{cell.agent}" / f"seed{s}", setting)
                for t in parse_int_list(spec.tasks) for s in parse_int_list(spec.seeds)]
    return out


def expected_identity(spec: Spec, cell: Cell, env_id: str, setting: tuple[str, ...] | None = None) -> dict:
    """What a summary of this cell must say (of ``setting``, default the cell's): budget, preset, scoring, data
    and the full agent config."""
    from qflow.envs import agent_config

    setting = cell.setting if setting is None else setting
    config = agent_config(cell.agent, env_id, spec.preset, _own(spec, cell.agent, (*spec.sets, *setting)))
    ident = {"agent": cell.agent, "steps": spec.steps, "preset": spec.preset, "eval_episodes": spec.eval_episodes,
             "online_steps": spec.online_steps, "updates_per_step": spec.updates_per_step,
             "config": json.loads(json.dumps(config.as_dict())),
             "data": {"seed": spec.dataset_seed}}
    if spec.dataset_episodes:
        ident["data"]["episodes"] = spec.dataset_episodes
    if spec.mode == "runs":
        ident["eval_every"] = spec.run_settings()["eval_every"]
    return ident


def is_done(spec: Spec, cell: Cell) -> bool:
    """Whether every result of the cell exists in OUT. A summary there of another budget, scoring, data
    or config (another sweep's, or this one's before its spec changed) is an error, never taken for this one."""
    dirs = dirs_and_settings(spec, cell)
    for d, setting in dirs:
        path = d / "summary.json"
        if not path.exists():
            continue
        old = RunRecord.read(path, fix="move it away and rerun", error=SweepError)
        want = expected_identity(spec, cell, d.parent.name.rsplit("__", 1)[0], setting)
        data = old.get("data", {})
        old = {**old, "config": {k: v for k, v in old.get("config", {}).items() if k in want["config"]},
               # written before these existed, or official data (no generation seed): what they mean
               "online_steps": old.get("online_steps", 0), "updates_per_step": old.get("updates_per_step", 1),
               "data": {**data, "seed": 0 if data.get("seed") is None else data["seed"]}}
        keys = [k for k in want if k != "data"] + [f"data.{k}" for k in want["data"]]
        differ = RunRecord.differences(old, want, tuple(keys))
        if differ:
            raise SweepError(f"{d} holds a run that differs from this sweep's cell in {', '.join(differ)}; "
                             f"pass another out (or move that run away)")
    return all((d / "summary.json").exists() for d, _ in dirs)


def work_dir(spec: Spec, cell: Cell) -> Path:
    """The cell's checkpoints and log on a worker: named by the cell and a digest of everything that
    shapes its training, so a changed spec never resumes or reuses another spec's work."""
    import hashlib

    named = ("mode", "steps", "preset", "eval_every", "eval_episodes", "sets", "dataset_episodes", "data_dir", "chunk",
             "log_every", "checkpoint_every")  # the digest's keys before the other run settings joined it
    shaping = {k: getattr(spec, k) for k in named}
    shaping.update(dataset_episodes=spec.dataset_episodes or 0, data_dir=spec.data_dir or "")  # as then written
    for f in dataclasses.fields(RunSettings):  # the others only when set: earlier work directories keep their names
        if f.name not in named and getattr(spec, f.name) != f.default:
            shaping[f.name] = getattr(spec, f.name)
    if spec.mode == "stacked":
        shaping.update(tasks=spec.tasks, seeds=spec.seeds)
    digest = hashlib.sha1(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return Path(spec.runs) / f"{cell.name}__{digest}"


# ----------------------------------------------------------------------------------------------
# What a worker runs: plain functions (no Ray in them), so they can be tested and called directly.


def run_cell(spec: Spec, cell: Cell) -> dict:
    """Train (or resume) one cell; returns {"status": "done", "files": {relative path: bytes}, ...} or
    {"status": "failed", "error": ...} for an error of the cell's own (not retried). Both carry
    ``attempts``: how many times the cell has started in its work directory, this time included (Ray's
    retries of a dead worker and reruns of the sweep alike)."""
    if spec.gpus == 0:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")  # a CPU cell on a GPU node stays off the GPU
    else:
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # cells sharing a GPU each take what they use
    work = work_dir(spec, cell)
    work.mkdir(parents=True, exist_ok=True)
    attempts = _count_attempt(work)
    started = time.time()
    log = work / "cell.log"
    try:
        with open(log, "a", buffering=1) as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            print(f"[sweep] {cell.name} on pid {os.getpid()} at {time.ctime()} (attempt {attempts})")
            files = _train_stacked(spec, cell, work) if spec.mode == "stacked" else _train_run(spec, cell, work)
    except (QFlowError, ValueError, OSError) as err:
        # the trainer's advice names `qflow train` flags (--run-dir, ...): what to do in a sweep follows it
        error = f"{type(err).__name__}: {err}".splitlines()[0]
        return {"status": "failed", "error": f"{error} [in this sweep: rerun the sweep to retry the cell; to start "
                                             f"it afresh, first move {work} away or pass another --runs]",
                "seconds": round(time.time() - started, 1), "attempts": attempts, "log_tail": log.read_text()[-2000:]}
    return {"status": "done", "files": files, "seconds": round(time.time() - started, 1), "attempts": attempts}


ATTEMPTS = "attempts"  # WORK/attempts: how many times the cell has started there


def _count_attempt(work: Path) -> int:
    """One more start of the cell in ``work``; returns the count, this one included."""
    path = work / ATTEMPTS
    attempts = (_attempts_in(work) or 0) + 1
    tmp = path.with_suffix(f".{os.getpid()}")
    tmp.write_text(f"{attempts}\n")
    tmp.replace(path)
    return attempts


def _attempts_in(work: Path) -> int | None:
    try:
        return int((work / ATTEMPTS).read_text())
    except (OSError, ValueError):  # none yet (or on another node's disk)
        return None


def _small_files(src: Path, rel: Path) -> dict[str, bytes]:
    return {str(rel / name): (src / name).read_bytes() for name in SMALL_FILES if (src / name).exists()}


def _train_run(spec: Spec, cell: Cell, work: Path) -> dict[str, bytes]:
    from qflow.training.trainer import train

    args = TrainArgs(**spec.run_settings(), env=cell.env, agent=cell.agent, seeds=(cell.seed,),
                     run_dir=str(work / "run"), overrides=tuple(_own(spec, cell.agent, (*spec.sets, *cell.setting))),
                     progress=False, command=f"{spec.command} [cell {cell.name}]")
    train(args)
    dest = result_dirs(spec, cell)[0].relative_to(spec.out)
    return _small_files(work / "run", dest)


def _own(spec: Spec, agent: str, overrides) -> list[str]:
    from qflow.agents.base import overrides_for

    return overrides_for(agent, overrides, spec.agents)


def _train_stacked(spec: Spec, cell: Cell, work: Path) -> dict[str, bytes]:
    """Train the cell's stacked group (resuming a dead worker's attempt), then evaluate its exports."""
    from qflow.experiments import stacked

    invocation = f"{spec.command} [cell {cell.name}]"
    grid = [f"{key}=[{','.join(dict.fromkeys(values))}]" for key, values in _axes(cell.packed).items()]
    stacked.train(GroupSettings(
        family=cell.env, steps=spec.steps, out=str(work / "train"), agents=(cell.agent,),
        tasks=tuple(parse_int_list(spec.tasks)), seeds=tuple(parse_int_list(spec.seeds)), preset=spec.preset,
        overrides=tuple(_own(spec, cell.agent, (*spec.sets, *cell.setting, *grid))), chunk=spec.chunk,
        export_every=spec.eval_every or max(1, spec.steps // 5), log_every=spec.log_every, keep_exports=True,
        dataset_episodes=spec.dataset_episodes or None, dataset_seed=spec.dataset_seed,
        data_dir=spec.data_dir or None, command=invocation))
    evaluated = work / "evaluated"
    for group in sorted((work / "train").glob(f"{cell.env}__*")):
        stacked.evaluate(EvalSettings(group=str(group), out=str(evaluated), episodes=spec.eval_episodes,
                                              all_exports=True, command=invocation))
    files = {}
    for d, setting in dirs_and_settings(spec, cell):  # a packed group evaluates into evaluated/SETTING/
        src = evaluated / ("+".join(setting) if cell.packed else "") / d.parent.name / d.name
        if not (src / "summary.json").exists():
            raise QFlowError(f"{cell.name}: no evaluation of {d.parent.name}/{d.name} (see {work / 'cell.log'})")
        files.update(_small_files(src, d.relative_to(spec.out)))
    return files


def write_files(out: Path, files: dict[str, bytes]) -> None:
    """Each result directory is written beside its final place and renamed in, so a directory with
    a summary.json always holds its CSVs too (a killed driver leaves no half-written cell)."""
    import uuid

    by_dir = {}
    for rel, data in files.items():
        by_dir.setdefault(Path(rel).parent, {})[Path(rel).name] = data
    staging = out / STAGING  # outside every result folder: `qflow report OUT` never sees a half-written copy
    for rel_dir, named in by_dir.items():
        dst = out / rel_dir
        tmp = staging / uuid.uuid4().hex
        tmp.mkdir(parents=True)
        for name, data in named.items():
            (tmp / name).write_bytes(_located(data, dst) if name == "summary.json" else data)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists():  # an older copy of the same cell (e.g. its summary.json lost by hand): replaced whole
            old = staging / uuid.uuid4().hex
            dst.rename(old)
            tmp.rename(dst)
            shutil.rmtree(old)
        else:
            tmp.rename(dst)


def _located(summary: bytes, dst: Path) -> bytes:
    """A summary names the directory it lives in: OUT's on the driver; the worker's moves to ``trained_in``."""
    try:
        record = json.loads(summary)
    except ValueError:
        return summary
    if not isinstance(record, dict) or "run_dir" not in record:
        return summary
    record = {**record, "run_dir": str(dst.resolve()), "trained_in": record["run_dir"]}
    return (json.dumps(record, indent=2, sort_keys=True, default=str) + "\n").encode()


# ----------------------------------------------------------------------------------------------
# The driver.


def run_sweep(spec: Spec, address: str | None = None, progress: bool = True, log=print) -> dict:
    """Run every unfinished cell on Ray and return the sweep's record (also OUT/sweep.json)."""
    check_spec(spec)
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        with file_lock(out / ".sweep.lock", f"qflow sweep into {out}", wait=False):
            return _run_locked(spec, address, progress, log)
    except LockHeld as held:
        raise SweepError(f"{out} is being written by another sweep ({held}); wait for it or pass another out") from None


def _run_locked(spec: Spec, address, progress, log) -> dict:
    out = Path(spec.out)
    shutil.rmtree(out / STAGING, ignore_errors=True)  # our own leftovers from a killed driver (we hold the lock)
    # Relative paths are resolved here, on the driver, with or without a cluster: a worker of a `ray start` head
    # would read them from the directory `ray start` was typed in (and regenerate a dataset there unasked).
    # Resolved, they mean what was typed: on one machine, on a cluster started on it, and on nodes that share
    # the driver's filesystem; a node without the path makes it (RUNS) or fails visibly.
    spec = dataclasses.replace(spec, runs=str(Path(spec.runs).resolve()),
                               data_dir=str(Path(spec.data_dir).resolve()) if spec.data_dir else None)
    cells = cells_of(spec)
    old = read_cells(out)
    record = {"spec": dataclasses.asdict(spec), "versions": package_versions(), "command": spec.command,
              "started": _now(), "cells": {}}
    todo = []
    for cell in cells:
        if is_done(spec, cell):  # keeps what an earlier run of the sweep recorded about it
            record["cells"][cell.name] = {**old.get(cell.name, {}), "status": "done (results exist)"}
        else:
            todo.append(cell)
    log(f"[sweep] {len(cells)} cells: {len(cells) - len(todo)} done already, {len(todo)} to run")
    if not todo:
        _save(out, record)
        return record

    record["ray"] = _connect(spec, address)
    import ray

    remote = ray.remote(num_cpus=spec.cpus, num_gpus=spec.gpus, max_retries=spec.retries, retry_exceptions=False,
                        max_calls=1)(run_cell)  # a fresh process per cell: no JAX state carried between cells
    pending = {}
    for cell in todo:
        pending[remote.remote(spec, cell)] = cell
        record["cells"][cell.name] = {"status": "pending", "started": _now()}  # when submitted
    _save(out, record)
    try:
        _collect(spec, pending, record, progress, log)
    finally:
        ray.shutdown()
    record["finished"] = _now()
    _save(out, record)
    return record


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _connect(spec: Spec, address: str | None) -> dict:
    """Start a private Ray instance here, or join the cluster at ``address`` (else $RAY_ADDRESS); refuse a
    cluster where no node can run one cell. Returns what sweep.json records of it."""
    try:
        import ray
    except ImportError:
        raise SweepError("qflow sweep runs on Ray, which is not installed: pip install 'qflow[sweep]'") from None
    flag = "--address" if address else "RAY_ADDRESS"
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if address == "local":  # explicitly: plain ray.init() would join a `ray start` head on this machine (or
        # fail on the address file it left in /tmp/ray) instead of starting the instance sized here
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 logging_level="WARNING")
    else:
        _check_listening(flag, address)
        _send_token_if_any()
        try:
            ray.init(address=address, log_to_driver=False, logging_level="WARNING")
        except Exception as err:  # Ray's ConnectionError, AuthenticationError, RuntimeError, ValueError
            ray.shutdown()
            raise SweepError(
                f"{flag} {address}: Ray could not join the cluster there ({_last_line(err)[:300]}); "
                f"if its head uses token authentication, set RAY_AUTH_MODE=token and put the head's token "
                f"(`ray get-auth-token` on the head) in ~/.ray/auth_token or RAY_AUTH_TOKEN here") from None
    resources = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
    try:
        _check_fits(spec, [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")], resources,
                    "this machine" if address == "local" else f"the cluster at {address}")
    except SweepError:
        ray.shutdown()
        raise
    return {"address": address, "resources": resources}


def _check_listening(flag: str, address: str, seconds: float = 5.0) -> None:
    """A Ray driver waits forever for a head that is not there: ask for a TCP connection first."""
    import socket

    if address == "auto":  # Ray finds a head started on this machine itself
        return
    host, _, port = address.split("://")[-1].rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(f"{flag} {address!r}: give the HOST:PORT of a Ray head (`ray start --head --port PORT` "
                         f"on HOST prints it)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=seconds).close()
    except OSError as err:
        raise SweepError(f"{flag} {address}: nothing accepted a connection there within {seconds:g} s "
                         f"({err.strerror or err}); start the head with `ray start --head --port {port}` on {host} "
                         f"or pass the address it printed") from None


def _send_token_if_any() -> None:
    """A `ray start` head of Ray 2.60 turns token authentication on when its machine has a token (e.g.
    ~/.ray/auth_token, which any local ray.init writes), yet a driver given an address sends no token unless
    RAY_AUTH_MODE=token. Turned on here when RAY_AUTH_MODE is unset and this machine has a token: a head
    without authentication takes a driver that sends one as well. An explicit RAY_AUTH_MODE is kept."""
    files = [Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or "~/.ray/auth_token").expanduser()]  # Ray's order
    has_token = bool(os.environ.get("RAY_AUTH_TOKEN")) or any(f.is_file() and f.stat().st_size for f in files)
    if os.environ.get("RAY_AUTH_MODE") is not None or not has_token:
        return
    try:
        from ray._private.authentication.authentication_token_setup import _enable_token_auth
    except ImportError:  # a Ray without token authentication: nothing to send
        return
    _enable_token_auth()  # RAY_AUTH_MODE=token, and Ray's cached config read again (it is read once, at import)


def _check_fits(spec: Spec, nodes: list[dict], total: dict, where: str) -> None:
    """A cell that no node can hold would wait forever: refuse it, naming what there is."""
    if any(n.get("CPU", 0) >= spec.cpus and n.get("GPU", 0) >= spec.gpus for n in nodes):
        return
    raise SweepError(f"--cpus {spec.cpus:g} --gpus {spec.gpus:g}: no node of {where} has that for one cell (its "
                     f"{len(nodes)} node(s) have {total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} GPUs in "
                     f"all); pass smaller --cpus/--gpus (--gpus 0 where there is no GPU) or add such a node")


def _collect(spec: Spec, pending: dict, record: dict, progress: bool, log) -> None:
    """Write each cell's results as it ends; on Ctrl-C cancel the running cells, keeping what finished."""
    import ray
    from tqdm import tqdm

    out = Path(spec.out)
    bar = tqdm(total=len(pending), unit="cell", disable=not progress, dynamic_ncols=True, desc="sweep")
    failed, slots, seen = 0, _slots(spec), {}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=5.0)
            _say_evaluations(spec, pending.values(), seen, bar.write if progress else log)
            for ref in ready:
                cell = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as err:  # the worker died more than `retries` times, or an unexpected error
                    result = {"status": "failed", "error": f"{_last_line(err)} [in this sweep: rerun the sweep; "
                                                           f"the cell resumes from its last checkpoint]"}
                    attempts = _attempts_in(work_dir(spec, cell))  # readable here on one machine or shared disks
                    result.update({} if attempts is None else {"attempts": attempts})
                if result["status"] == "done":
                    try:
                        write_files(out, result.pop("files"))
                    except OSError as err:  # e.g. a full disk: this cell fails, the others go on
                        result = {**result, "status": "failed", "error": f"writing its results: {err}"}
                if result["status"] != "done":
                    failed += 1
                    log(f"[sweep] {cell.name} failed: {result['error']}")
                record["cells"][cell.name] = {**record["cells"][cell.name], **result}  # keeps "started"
                _save(out, record)
                bar.update(1)
            bar.set_postfix(running=min(len(pending), slots), queued=max(0, len(pending) - slots), failed=failed)
    except KeyboardInterrupt:
        for ref, cell in pending.items():
            ray.cancel(ref, force=True)
            record["cells"][cell.name] = {**record["cells"][cell.name],
                                          "status": "cancelled (rerun to resume from its checkpoint)"}
        record["interrupted"] = _now()
        _save(out, record)
        raise
    finally:
        bar.close()


def _say_evaluations(spec: Spec, cells, seen: dict, say) -> None:
    """One line per new evaluation of a running cell, read from its work directory where the driver can see
    it (one machine, or a filesystem the nodes share); stacked cells evaluate only at their end."""
    from qflow.training.logs import read_rows

    for cell in cells:
        if cell.seed is None:
            continue
        try:  # a worker may be appending the row this reads (half a line on a shared filesystem): skip it
            last = read_rows(work_dir(spec, cell) / "run" / "eval.csv")[-1]
            step, success = int(last["step"]), float(last["success"])
        except (OSError, IndexError, KeyError, TypeError, ValueError):
            continue
        if step != seen.get(cell.name):
            seen[cell.name] = step
            say(f"[sweep] {cell.name}: step {step:,} of {spec.steps:,}, success {success:.2f}")


def _slots(spec: Spec) -> int:
    import ray

    res = ray.cluster_resources()
    slots = res.get("CPU", 1) / spec.cpus
    if spec.gpus:
        slots = min(slots, res.get("GPU", 0) / spec.gpus)
    return max(1, int(slots))


def _last_line(err: Exception) -> str:
    lines = [l for l in str(err).strip().splitlines() if l.strip()]
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"


def read_cells(out: Path) -> dict[str, dict]:
    """{cell name: its record (status, error, times)} from OUT/sweep.json; {} when there is none or it cannot be
    read: the result folders themselves say what is done."""
    try:
        cells = json.loads((Path(out) / "sweep.json").read_text()).get("cells", {})
    except (OSError, ValueError, AttributeError):
        return {}
    if not isinstance(cells, dict):
        return {}
    return {name: cell if isinstance(cell, dict) else {} for name, cell in cells.items()}


def _save(out: Path, record: dict) -> None:
    atomic_write_json(out / "sweep.json", record)


# ----------------------------------------------------------------------------------------------
# Spec files and flags.


def load_spec(path: Path | None, flags: dict) -> Spec:
    """A TOML spec (optional) with flags on top. Grid values: TOML lists (``[grid]`` table) or
    ``--set agent.key=[a,b,c]`` on the command line; a plain ``--set k=v`` is a fixed override."""
    raw = read_toml(path, "sweep spec") if path is not None else {}
    flags = {k: v for k, v in flags.items() if v not in (None, (), [])}
    file_sets = list(raw.get("sets", []))
    raw.update(flags)
    raw["sets"] = [*file_sets, *flags.get("sets", [])]  # a flag adds to the file's fixed overrides
    fields = {f.name for f in dataclasses.fields(Spec)}
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise SweepError(f"unknown sweep keys {unknown}; known: {', '.join(sorted(fields))}")
    if "out" not in raw:
        raise SweepError("a sweep needs an output directory: --out DIR or out = \"DIR\" in the spec")
    for key in ("envs", "agents"):
        if isinstance(raw.get(key), str):
            raw[key] = [x for x in raw[key].replace(",", " ").split() if x]
    grid = dict(_dotted(raw.get("grid", {})))  # [grid] qflow.lambda = [...] (unquoted) is a nested table
    sets = []
    for item in raw.get("sets", []):
        axis = split_grid(item)  # --set key=[a,b]: a grid axis; replaces the file's
        if axis:
            grid[axis[0]] = axis[1]
        else:
            sets.append(item)
    for key in grid:
        if any(item.partition("=")[0].strip() == key for item in sets):
            raise SweepError(f"{key} is both a fixed override and a grid axis; give it one way")
    raw["grid"] = tuple((str(k), tuple(v if isinstance(v, list) else [v])) for k, v in grid.items())
    raw["sets"] = tuple(sets)
    for key in ("envs", "agents"):
        if key in raw:
            raw[key] = tuple(raw[key])
    for key in ("tasks", "seeds"):
        if key in raw:
            raw[key] = str(raw[key])
    grid = raw.pop("grid")  # built above; every other key is checked as its flag would be (type, minimum)
    try:
        spec = from_table(Spec, raw, f"sweep spec {path}" if path else "sweep flags")
    except QFlowError as err:
        raise SweepError(str(err)) from None
    return dataclasses.replace(spec, grid=grid)


def _dotted(table: dict, prefix: str = ""):
    for key, value in table.items():
        if isinstance(value, dict):
            yield from _dotted(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def cell_updates(spec: Spec, cell: Cell) -> int:
    """Agent updates a cell makes: offline steps plus online ones, times the members it stacks."""
    members = 1 if cell.seed is not None else len(parse_int_list(spec.tasks)) * len(parse_int_list(spec.seeds))
    return members * len(cell.settings) * (spec.steps + spec.online_steps * spec.updates_per_step)


def dry_run(spec: Spec, log=print) -> dict:
    """List the cells and whether each is done; end with the updates left and what they cost here, priced
    by a short measured update rate of each agent on this machine (training only, one cell at a time)."""
    todo = []
    for cell in cells_of(spec):
        done = is_done(spec, cell)
        todo += [] if done else [cell]
        log(f"{'done' if done else 'todo':5s} {cell.name}")
    updates = {c.name: cell_updates(spec, c) for c in todo}
    seconds, rates = 0.0, {}
    for cell in todo:
        key = (cell.agent, family_of(cell.env).name, cell.setting)
        if key not in rates:
            rates[key] = _measured_rate(spec, cell)
        seconds += updates[cell.name] / rates[key]
    total = len(cells_of(spec))
    log(f"[sweep] {total} cells, {total - len(todo)} done, {len(todo)} to run: {sum(updates.values()):,} agent "
        f"updates; about {_duration(seconds)} of training one cell at a time on this machine at its measured "
        f"rates ({', '.join(f'{a} {r:.1f}/s' for (a, _, _), r in rates.items())}); evaluations and data come on top, "
        f"and Ray runs cells side by side")
    return {"cells": total, "todo": len(todo), "updates": sum(updates.values()), "seconds": seconds}


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h" if seconds < 172_800 \
        else f"{seconds / 86400:.1f} days"


def _measured_rate(spec: Spec, cell: Cell) -> float:
    from qflow.bench.throughput import update_rate
    from qflow.data.loading import make_env

    env = make_env(family_of(cell.env).env_id(None) if cell.seed is None else cell.env)
    overrides = _own(spec, cell.agent, (*spec.sets, *cell.setting))
    return update_rate(cell.agent, spec.preset, overrides, env.observation_space.shape[0], env.action_space.shape[0])


def main_from_args(a, command: str) -> int:
    """`qflow sweep`: the spec file (if any) with every flag given on top (flags: Spec's fields)."""
    flags = {f.name: getattr(a, f.name, None) for f in dataclasses.fields(Spec)}
    flags["command"] = command
    spec = load_spec(Path(a.spec) if a.spec else None, flags)
    check_spec(spec)
    if a.dry_run:
        dry_run(spec)
        return 0
    try:
        record = run_sweep(spec, a.address, progress=spec.progress)
    except KeyboardInterrupt:
        print(f"[sweep] interrupted; finished cells are in {spec.out}, rerun the same command to continue",
              file=sys.stderr)
        return 130
    states = [c["status"] for c in record["cells"].values()]
    failed = [name for name, c in record["cells"].items() if c["status"] == "failed"]
    print(f"[sweep] {states.count('done')} cells ran, {states.count('done (results exist)')} were done already, "
          f"{len(failed)} failed; results in {spec.out} (qflow report {spec.out} --out DIR), record in "
          f"{Path(spec.out) / 'sweep.json'}")
    for name in failed:
        print(f"[sweep] failed: {name}: {record['cells'][name]['error']}", file=sys.stderr)
    return 1 if failed else 0
