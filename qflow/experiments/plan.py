"""The evidence plan: an ordered list of experiments, each done when committed results satisfy it.

    qflow plan status [--plan plans/evidence.toml] [--results results/evidence]
    qflow plan run --minutes 13 --out OUT [--work DIR] [--only ID,...]

``run`` is what a machine with a time limit (one H200 GPU, say) executes: it takes the plan's entries in order, skips those whose
results are already committed, and runs each unfinished one whose estimate fits before the deadline
(a stacked entry is started anyway when at least half its estimate is left: its deadline stops it
and what it reached is kept as a partial result). A stacked entry regenerates its data with all
cores, trains every task x seed x agent in one process with the exports kept, and evaluates the
exports on the machine's CPU cores while training goes on. Each entry's small files (group.json,
metrics.csv, the evaluated run directories, logs) are packed into ``OUT/ID.tar``; the policies stay
on the machine, so the tars stay small enough to copy back. Unpack a tar into ``results/evidence/``
and commit it: the next run continues with the next entry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from qflow.errors import QFlowError
from qflow.data.registry import family_of
from qflow.experiments import stacked
from qflow.experiments.settings import PLAN, RESULTS, GroupSettings, PlanSettings
from qflow.settings import from_table
from qflow.utils import atomic_write_json, read_toml

KINDS = ("stacked", "command")
DRIFT_SECONDS = 60  # the end of a stacked set with `drift`: loading its data and acting with every export
SMALL_FILES = ("group.json", "metrics.csv", "eval.csv", "run.json", "summary.json", "DONE.json", ".log", ".md",
               ".csv", ".json", ".png")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One experiment of the plan. A stacked entry also takes every key of `qflow stacked train`
    (``GroupSettings``: family, agents, tasks, seeds, steps, preset, export_every, chunk, log_every,
    dataset_episodes, dataset_seed, ...), checked as that command checks them."""

    id: str  # folder name of its results: results/evidence/ID
    kind: str  # "stacked" or "command"
    why: str = ""  # what question it answers
    minutes: float = 10.0  # estimated device minutes, data preparation included
    # kind "stacked" (its exports are evaluated with eval_episodes episodes on the CPU beside the trainer)
    sets: tuple = ((),)  # one stacked run per tuple of [AGENT.]KEY=VALUE overrides
    drift: int = 0  # > 0: after training, `qflow policy-drift` on the kept exports at this spacing (steps)
    expert: str = ""  # antmaze: the ant expert its data is regenerated with
    group: GroupSettings | None = None  # the training, from the entry's GroupSettings keys (out and deadline
    # are set when it runs; not a key of its own)
    # kind "command"
    command: str = ""  # shell command; OUT is replaced by the entry's output folder


# GroupSettings keys a plan entry may not set: the runner decides them.
RUNNER_KEYS = ("out", "deadline", "command", "progress", "keep_exports", "evaluate_into")


def _entry(item, where: str) -> Entry:
    if not isinstance(item, dict):
        raise QFlowError(f"{where}: expected a table of settings")
    group_keys = {f.name for f in dataclasses.fields(GroupSettings)} - set(RUNNER_KEYS)
    entry_keys = {f.name for f in dataclasses.fields(Entry)} - {"group"}
    unknown = sorted(set(item) - group_keys - entry_keys)
    if unknown:
        raise QFlowError(f"{where}: unknown keys {unknown}; known: {', '.join(sorted(entry_keys | group_keys))}")
    training = {k: v for k, v in item.items() if k in group_keys}
    entry = from_table(Entry, {k: v for k, v in item.items() if k in entry_keys}, where)
    if entry.kind not in KINDS:
        raise QFlowError(f"{where}: kind must be one of {KINDS}, got {entry.kind!r}")
    if entry.kind == "command":
        if training:
            raise QFlowError(f"{where}: a command entry takes no training keys ({', '.join(sorted(training))})")
        if "OUT" not in entry.command:
            raise QFlowError(f"{where}: a command entry must write into OUT")
        return entry
    if not all(k in training for k in ("family", "agents", "steps")):
        raise QFlowError(f"{where}: a stacked entry needs family, agents and steps > 0")
    group = from_table(GroupSettings, {"log_every": 1000, **training, "out": "", "keep_exports": True}, where)
    try:
        group.validate()
    except ValueError as err:
        raise QFlowError(f"{where}: {err}") from None
    return dataclasses.replace(entry, group=group)


def load_plan(path: Path = PLAN) -> list[Entry]:
    """The plan's entries, each checked against ``Entry``'s and ``GroupSettings``' fields: an unknown key, a
    value of the wrong type, a missing ``[[entry]]`` table or a repeated id is a one-line error naming it."""
    raw = read_toml(path, "plan", "; pass --plan")
    unknown = sorted(set(raw) - {"entry"})
    if unknown or not isinstance(raw.get("entry"), list) or not raw["entry"]:
        raise QFlowError(f"{path}: a plan is a list of [[entry]] tables"
                         + (f"; unknown top-level keys {unknown}" if unknown else "; none found"))
    entries = [_entry(item, f"{path}: entry {i + 1} ({item.get('id', 'no id') if isinstance(item, dict) else '?'})")
               for i, item in enumerate(raw["entry"])]
    ids = [e.id for e in entries]
    if len(set(ids)) != len(ids):
        raise QFlowError(f"{path}: entry ids repeat: {ids}")
    return entries


def run_folders(entry: Entry) -> list[str]:
    """One training folder per set of overrides: 'train' alone, or 'train-set1', 'train-set2', ..."""
    return ["train"] if len(entry.sets) == 1 else [f"train-set{i + 1}" for i in range(len(entry.sets))]


def entry_state(entry: Entry, results: Path = RESULTS) -> tuple[str, str]:
    """("done" | "partial" | "todo", a few words) from the committed files alone."""
    root = Path(results) / entry.id
    if entry.kind == "command":
        return ("done", "DONE.json") if (root / "DONE.json").exists() else ("todo", "")
    reached = []
    for folder in run_folders(entry):
        for agent in entry.group.agents:
            group = root / folder / f"{entry.group.family}__{agent}" / "group.json"
            reached.append(json.loads(group.read_text()).get("step", 0) if group.exists() else 0)
    if all(r >= entry.group.steps for r in reached):
        return "done", f"{entry.group.steps:,} steps"
    if any(reached):
        return "partial", f"{min(reached):,} of {entry.group.steps:,} steps"
    return "todo", ""


def run_until(cmd, deadline: float, **popen) -> tuple[int | str, str]:
    """(exit status or "timeout", stderr if piped) of ``cmd`` run in a process group of its own: at the
    deadline the whole group is stopped (a shell's children and a preparer's workers too), not only the child."""
    popen.setdefault("stderr", subprocess.PIPE)
    proc = subprocess.Popen(cmd, start_new_session=True, text=True, **popen)
    try:
        _, err = proc.communicate(timeout=max(1.0, deadline - time.time()))
        return proc.returncode, err or ""
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        return "timeout", ""
    except BaseException:  # Ctrl-C or an error here: the group is detached from the terminal, so nothing else stops it
        _stop_group(proc)
        raise


def _stop_group(proc) -> None:
    """SIGTERM to the process group, then SIGKILL if it has not ended within 10 s."""
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _prepare_data(entry: Entry, deadline: float, log) -> bool:
    dataset = family_of(entry.group.family).dataset
    cmd = [sys.executable, "-m", "qflow.cli", "data", "prepare", dataset, "--no-download"]
    for flag_name, value in (("--episodes", entry.group.dataset_episodes), ("--seed", entry.group.dataset_seed),
                             ("--data-dir", entry.group.data_dir), ("--expert", entry.expert)):
        if value:
            cmd += [flag_name, str(value)]
    log(f"preparing {dataset} with {os.cpu_count()} workers")
    with open(os.devnull, "w") as quiet:
        rc, err = run_until(cmd, deadline, stdout=quiet)
    if rc == "timeout":
        log(f"{dataset}: data preparation ran out of time (a rerun resumes from its shards)")
    elif rc:
        log(f"{dataset}: data preparation failed: {err.strip().splitlines()[-1:]}")
    return rc == 0


def _run_stacked(entry: Entry, work: Path, deadline: float, log) -> None:
    folders = run_folders(entry)
    reserve = DRIFT_SECONDS if entry.drift else 0  # kept after the evaluations for the drift analysis
    for index, (folder, overrides) in enumerate(zip(folders, entry.sets)):
        # the sets share the time left equally: the first never starves the others
        set_deadline = time.time() + (deadline - time.time()) / (len(folders) - index)
        settings = dataclasses.replace(
            entry.group, out=str(work / folder), deadline=set_deadline - 60 - reserve,
            overrides=(*entry.group.overrides, *overrides), evaluate_into=str(work / "runs" / folder),
            command=f"qflow plan run [entry {entry.id}/{folder}]")
        log(f"training {entry.id}/{folder}: {settings}")
        try:
            stacked.train_beside_evaluations(settings, stop_evaluating=set_deadline - 30 - reserve)
        except QFlowError as err:
            log(f"{entry.id}/{folder}: {err}")
        if entry.drift:
            _policy_drift(entry, work / folder, work / "drift" / folder, set_deadline, log)


def _policy_drift(entry: Entry, train_dir: Path, dest: Path, deadline: float, log) -> None:
    """How far each group's policy moved between its kept exports (the exports themselves stay behind)."""
    groups = [str(g) for g in sorted(train_dir.glob(f"{entry.group.family}__*")) if (g / "exports").is_dir()]
    if not groups:
        return
    cmd = [sys.executable, "-m", "qflow.cli", "policy-drift", *groups, "--spacing", str(entry.drift), "--out", str(dest)]
    for flag_name, value in (("--dataset-episodes", entry.group.dataset_episodes), ("--data-dir", entry.group.data_dir)):
        if value:
            cmd += [flag_name, str(value)]
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / "policy_drift.log", "w") as f:
        rc, _ = run_until(cmd, deadline, stdout=f, stderr=subprocess.STDOUT)
    log(f"{entry.id}: policy drift of {len(groups)} groups: exit {rc}")


def pack(work: Path, out: Path, entry_id: str) -> Path:
    """OUT/ID.tar holding the entry's small files (policies and exports stay behind)."""
    out.mkdir(parents=True, exist_ok=True)
    target, tmp = out / f"{entry_id}.tar", out / f".{entry_id}.tar.tmp"
    with tarfile.open(tmp, "w") as tar:
        for path in sorted(work.rglob("*")):
            if path.is_file() and (path.name in SMALL_FILES or path.suffix in SMALL_FILES):
                tar.add(path, arcname=str(Path(entry_id) / path.relative_to(work)))
    tmp.replace(target)
    return target


def run_plan(entries: list[Entry], out: Path, work: Path, minutes: float, results: Path = RESULTS,
             only: tuple = (), log=print) -> list[str]:
    """Run the first unfinished entries that fit in ``minutes``; return the ids packed into ``out``."""
    start = time.time()
    deadline = start + 60 * minutes
    ran = []
    for entry in entries:
        state, detail = entry_state(entry, results)
        if (only and entry.id not in only) or state == "done":
            continue
        left = (deadline - time.time()) / 60
        need = entry.minutes / 2 if entry.kind == "stacked" else entry.minutes
        if left < need:
            log(f"{entry.id}: {left:.1f} min left, it needs about {entry.minutes:g}; left for the next run")
            continue
        entry_work = work / entry.id
        entry_work.mkdir(parents=True, exist_ok=True)
        log(f"{entry.id} ({state}{', ' + detail if detail else ''}): {entry.why}")
        if entry.kind == "stacked":
            if _prepare_data(entry, deadline - 120, log):
                _run_stacked(entry, entry_work, deadline, log)
        else:
            cmd = entry.command.replace("OUT", shlex.quote(str(entry_work)))
            log(f"running {cmd}")
            with open(entry_work / "command.log", "w") as f:
                rc, _ = run_until(cmd, deadline, shell=True, stdout=f, stderr=subprocess.STDOUT)
            if rc == 0:
                atomic_write_json(entry_work / "DONE.json", {"command": cmd, "finished": time.ctime()})
            log(f"{entry.id}: exit {rc}")
        ran.append(str(pack(entry_work, out, entry.id)))
    return ran


def run_command(command: str, s: PlanSettings) -> int:
    entries = load_plan(Path(s.plan))
    if command == "status":
        for e in entries:
            state, detail = entry_state(e, Path(s.results))
            print(f"{state:8s} {e.id:24s} ~{e.minutes:g} min  {detail}")
        return 0
    if s.minutes is None or s.out is None:
        raise QFlowError("qflow plan run needs --minutes and --out")
    started = time.time()
    log = lambda msg: print(f"[plan +{time.time() - started:.0f}s] {msg}", flush=True)  # noqa: E731
    packed = run_plan(entries, Path(s.out), Path(s.work), s.minutes, Path(s.results), s.only, log)
    log(f"packed: {', '.join(packed) or 'nothing'}")
    return 0
