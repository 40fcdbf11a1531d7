"""`qflow sweep`: cells from a spec, per-agent grids, skipping, and (on a real local Ray) completion,
isolated failures, a killed worker's retry that resumes, and `qflow report` on the output."""

import contextlib
import csv
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from qflow.experiments import sweep
from qflow.experiments.sweep import (Cell, Spec, SweepError, cells_of, check_spec, is_done, load_spec, result_dirs,
                                     settings_of)
from tests.helpers import ENV, free_port


def test_spec_from_toml_and_flags(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('envs = ["cube-single-play"]\nagents = ["qflow", "fql"]\ntasks = "2,4"\nseeds = "0-2"\n'
                    'steps = 1000\n[grid]\n"qflow.guidance_lambda" = [2.5, 10]\n"fql.alpha" = [150, 300, 600]\n')
    spec = load_spec(path, {"out": str(tmp_path / "out"), "steps": 500, "sets": ["flow_steps=5"]})
    check_spec(spec)
    assert spec.steps == 500 and spec.sets == ("flow_steps=5",)  # a flag wins over the file
    # each grid key applies to its own agent only: 2 Q-Flow settings and 3 FQL settings, not 6 of each
    assert settings_of(spec, "qflow") == [("guidance_lambda=2.5",), ("guidance_lambda=10",)]
    assert settings_of(spec, "fql") == [("alpha=150",), ("alpha=300",), ("alpha=600",)]
    cells = cells_of(spec)
    assert len(cells) == 2 * (2 + 3) * 3  # tasks x settings x seeds
    assert cells[0] == Cell("qflow", "cube-single-play-singletask-task2-v0", 0, ("guidance_lambda=2.5",))
    assert result_dirs(spec, cells[0]) == [
        tmp_path / "out" / "guidance_lambda=2.5" / "cube-single-play-singletask-task2-v0__qflow" / "seed0"]


def test_flag_grid_bare_keys_and_stacked_cells(tmp_path):
    spec = load_spec(None, {"out": str(tmp_path), "envs": "puzzle-3x3-play", "agents": "qflow,fql", "tasks": "1-5",
                            "seeds": "0-7", "sets": ["flow_steps=[5,10]", "qflow.guidance_lambda=20"],
                            "mode": "stacked"})
    check_spec(spec)
    assert spec.grid == (("flow_steps", ("5", "10")),) and spec.sets == ("qflow.guidance_lambda=20",)
    cells = cells_of(spec)  # a bare grid key applies to every agent that has it; stacked: one cell per family
    assert [(c.agent, c.setting) for c in cells] == [("qflow", ("flow_steps=5",)), ("qflow", ("flow_steps=10",)),
                                                     ("fql", ("flow_steps=5",)), ("fql", ("flow_steps=10",))]
    assert len(result_dirs(spec, cells[0])) == 5 * 8


@pytest.mark.parametrize("flags, message", [
    ({"sets": ["qflow.alpha=[1,2]"]}, "alpha"),  # Q-Flow has no alpha: named with the valid keys
    ({"sets": ["sac.alpha=[1,2]"]}, "not an agent of this sweep"),
    ({"agents": "qflow,nope"}, "unknown agents"),
    ({"seeds": "a-b"}, "tasks/seeds"),
    ({"steps": 0}, "steps must be >= 1"),
    ({"mode": "grid"}, "mode must be one of"),
    ({"gpus": -1}, ">= 0"),
    ({"envs": "puzzle-3x3-ply"}, "envs/tasks: unknown dataset 'puzzle-3x3-ply-v0'"),  # refused here, not in a worker
    ({"tasks": "1,7"}, "envs/tasks: pass a task in 1-5: puzzle-3x3-play has no task 7"),
])
def test_bad_specs_are_refused_before_anything_runs(tmp_path, flags, message):
    base = {"out": str(tmp_path), "envs": "puzzle-3x3-play", "agents": "qflow,fql", "steps": 100}
    with pytest.raises(SweepError, match=message):
        check_spec(load_spec(None, {**base, **flags}))


def test_file_and_flags_merge_without_dropping_or_doubling(tmp_path):
    path = tmp_path / "s.toml"
    # an unquoted dotted key is a nested TOML table: still the axis qflow.guidance_lambda
    path.write_text('envs = ["cube-single-play"]\nagents = ["qflow", "fql"]\nsets = ["qflow.flow_steps=5"]\n'
                    '[grid]\nqflow.guidance_lambda = [2.5, 10]\n')
    spec = load_spec(path, {"out": "o", "sets": ["fql.alpha=100", "qflow.guidance_lambda=[1,2,3]"]})
    assert spec.sets == ("qflow.flow_steps=5", "fql.alpha=100")  # the file's fixed overrides are kept
    assert spec.grid == (("qflow.guidance_lambda", ("1", "2", "3")),)  # the flag's axis replaces the file's
    with pytest.raises(SweepError, match="a setting of none of the agents"):  # a typo never drops an axis silently
        check_spec(load_spec(None, {"out": "o", "envs": "x", "agents": "qflow,fql", "sets": ["guidance_lamda=[1,2]"]}))
    with pytest.raises(SweepError, match="both a fixed override and a grid axis"):
        load_spec(None, {"out": "o", "envs": "x", "sets": ["lr=1", "lr=[1,2]"]})


def test_stacked_calls_end_on_every_export_and_log_row():
    from qflow.experiments.settings import GroupSettings

    group = GroupSettings(family="cube-single-play", steps=60_000, out="o", export_every=2_500, log_every=1_000)
    assert group.call_length() == 500  # chunk 1000 lowered: 2,500 is not a multiple of it
    assert GroupSettings(family="f", steps=12_000, out="o", export_every=2_400).call_length() == 200


def test_unknown_spec_key_and_missing_out(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('envs = ["x"]\nsteeps = 3\n')
    with pytest.raises(SweepError, match="unknown sweep keys \\['steeps'\\]"):
        load_spec(path, {"out": "o"})
    with pytest.raises(SweepError, match="--out DIR"):
        load_spec(None, {"envs": "x"})


def test_done_cells_are_judged_by_their_summaries(tmp_path):
    spec = Spec(out=str(tmp_path), envs=("puzzle-3x3-play-singletask-task1-v0",), agents=("fql",), seeds="0",
                steps=100, eval_episodes=5)
    cell = cells_of(spec)[0]
    assert not is_done(spec, cell)
    d = result_dirs(spec, cell)[0]
    d.mkdir(parents=True)
    summary = {**sweep.expected_identity(spec, cell, cell.env), "data": {"episodes": 1000, "seed": 0}}
    (d / "summary.json").write_text(json.dumps(summary))
    assert is_done(spec, cell)
    # another budget, scoring or dataset seed: never taken for this one
    for key, value in [("steps", 50), ("eval_every", 10), ("data", {"episodes": 1000, "seed": 5})]:
        (d / "summary.json").write_text(json.dumps({**summary, key: value}))
        with pytest.raises(SweepError, match=f"differs from this sweep's cell in {key}"):
            is_done(spec, cell)
    (d / "summary.json").write_text(json.dumps({**summary, "data": {"episodes": 1000, "seed": None}}))
    assert is_done(spec, cell)  # official data has no generation seed: the default one
    other = {**summary, "config": {**summary["config"], "alpha": 1.0}}  # another setting of the agent
    (d / "summary.json").write_text(json.dumps(other))
    with pytest.raises(SweepError, match="config.alpha"):
        is_done(spec, cell)


def test_write_files_replaces_a_cell_whole(tmp_path):
    sweep.write_files(tmp_path, {"a/seed0/eval.csv": b"1", "a/seed0/summary.json": b"{}"})
    sweep.write_files(tmp_path, {"a/seed0/summary.json": b"{\"x\": 1}"})
    assert sorted(p.name for p in (tmp_path / "a" / "seed0").iterdir()) == ["summary.json"]
    assert not list((tmp_path / sweep.STAGING).iterdir())  # nothing left in the staging folder


def test_work_dir_changes_with_what_shapes_training(tmp_path):
    spec = Spec(out="o", envs=("cube-single-play",), agents=("fql",), seeds="0", runs=str(tmp_path))
    cell = cells_of(spec)[0]
    import dataclasses

    assert sweep.work_dir(spec, cell) == sweep.work_dir(dataclasses.replace(spec, retries=5), cell)
    assert sweep.work_dir(spec, cell) != sweep.work_dir(dataclasses.replace(spec, steps=10), cell)


def _sweep_cmd(data_dir, out, runs, *extra):
    return [sys.executable, "-m", "qflow.cli", "sweep", "--envs", "pointmaze-medium-navigate-singletask-task1-v0",
            "--preset", "tiny", "--dataset-episodes", "3", "--data-dir", str(data_dir), "--eval-episodes", "1",
            "--out", str(out), "--runs", str(runs), "--no-progress", *extra]


@pytest.mark.e2e
def test_sweep_on_local_ray_grid_failure_rerun_and_report(data_dir, tmp_path):
    out, runs = tmp_path / "out", tmp_path / "runs"
    # 2 agents x 2 seeds, plus FQL at a learning rate that diverges: that cell fails alone
    cmd = _sweep_cmd(data_dir, out, runs, "--agents", "flow_bc,fql", "--seeds", "0,1", "--steps", "100",
                     "--chunk", "50", "--log-every", "50", "--checkpoint-every", "50", "--eval-every", "100",
                     "--set", "fql.lr=[0.0003,1e30]")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 1, done.stderr  # a failed cell makes the sweep's status non-zero
    record = json.loads((out / "sweep.json").read_text())
    states = {name: c["status"] for name, c in record["cells"].items()}
    failed = sorted(n for n, s in states.items() if s == "failed")
    assert failed == [f"pointmaze-medium-navigate-singletask-task1-v0__fql__lr=1e30__seed{s}" for s in (0, 1)]
    assert sum(s == "done" for s in states.values()) == 4
    assert "TrainingDiverged" in record["cells"][failed[0]]["error"]
    assert all(c["attempts"] == 1 and c["started"] >= record["started"] for c in record["cells"].values())
    summaries = sorted(out.rglob("summary.json"))
    assert len(summaries) == 4
    first = json.loads(summaries[0].read_text())
    assert first["command"].startswith("qflow sweep") and "[cell " in first["command"]  # not Ray's worker argv
    assert json.loads((out / "lr=0.0003" / "pointmaze-medium-navigate-singletask-task1-v0__fql" / "seed1" /
                       "summary.json").read_text())["config"]["lr"] == pytest.approx(3e-4)

    mtimes = {p: p.stat().st_mtime_ns for p in summaries}
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert "4 done already, 2 to run" in again.stdout  # only the failed cells run again
    assert {p: p.stat().st_mtime_ns for p in summaries} == mtimes

    from qflow.reporting import make_report

    report = make_report([out], tmp_path / "report", reps=50)
    assert report["runs"] == 4
    assert [line.split(": ")[1:3] for line in report["sweep_cells"]] == [[name, "failed"] for name in failed]
    again = json.loads((out / "sweep.json").read_text())["cells"]
    assert [again[name]["attempts"] for name in failed] == [2, 2]  # counted in the cells' work directories
    text = (tmp_path / "report" / "results.md").read_text()
    assert "| fql |" in text and "| flow_bc |" in text  # one FQL setting finished: no lr in its label


@pytest.mark.e2e
def test_killed_worker_is_retried_and_resumes_without_duplicate_steps(data_dir, tmp_path):
    out, runs = tmp_path / "out", tmp_path / "runs"
    steps, log_every = 3000, 100
    cmd = _sweep_cmd(data_dir, out, runs, "--agents", "qflow", "--seeds", "0", "--steps", str(steps),
                     "--chunk", "100", "--log-every", str(log_every), "--checkpoint-every", "300",
                     "--eval-every", str(steps))
    driver = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while not list(runs.glob("*/run/checkpoint.msgpack")):  # killed after its first checkpoint, mid-run
        assert time.time() < deadline and driver.poll() is None, driver.communicate()
        time.sleep(0.2)
    work = next(runs.glob("pointmaze-medium-navigate-singletask-task1-v0__qflow__seed0__*"))
    run_dir = work / "run"
    holder = (run_dir / ".lock").read_text()  # "pid N (qflow train ...)": the Ray worker training the cell
    os.kill(int(holder.split()[1]), signal.SIGKILL)
    stdout, stderr = driver.communicate(timeout=900)
    assert driver.returncode == 0, stderr
    log = (work / "cell.log").read_text()
    assert log.count("[sweep] pointmaze") == 2 and "resuming" in log  # a second attempt, from the checkpoint
    metrics = (out / "pointmaze-medium-navigate-singletask-task1-v0__qflow" / "seed0" / "metrics.csv").read_text()
    logged = [int(float(line.split(",")[0])) for line in metrics.splitlines()[1:]]
    assert logged == list(range(log_every, steps + 1, log_every))  # no step missing, none twice


@pytest.mark.e2e
def test_stacked_cells_train_every_task_and_seed_in_one_call(data_dir, tmp_path):
    out, runs = tmp_path / "out", tmp_path / "runs"
    # flow BC's lr shapes its optimiser: a cell per value; FQL's alpha may differ within a call: one cell for both
    cmd = _sweep_cmd(data_dir, out, runs, "--tasks", "1-2", "--agents", "flow_bc,fql", "--seeds", "0,1", "--mode",
                     "stacked", "--steps", "200", "--chunk", "100", "--eval-every", "100", "--log-every", "100",
                     "--set", "flow_bc.lr=[0.0003,0.001]", "--set", "fql.alpha=[10,100]")
    cmd[cmd.index("--envs") + 1] = "pointmaze-medium-navigate"  # the family, not the single task of _sweep_cmd
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert "3 cells: 0 done already, 3 to run" in done.stdout
    summaries = sorted(out.rglob("summary.json"))  # 2 agents x 2 settings x 2 tasks x 2 seeds
    assert len(summaries) == 16 and {json.loads(s.read_text())["eval_steps"][-1] for s in summaries} == {200}
    lrs = [json.loads(s.read_text())["config"]["lr"] for s in out.glob("lr=0.001/*/seed*/summary.json")]
    assert lrs == pytest.approx([1e-3] * 4)
    alphas = [json.loads(s.read_text())["config"]["alpha"] for s in out.glob("alpha=100/*/seed*/summary.json")]
    assert alphas == pytest.approx([100.0] * 4)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "3 done already, 0 to run" in again.stdout


@pytest.mark.e2e
def test_a_stacked_cell_killed_with_sigkill_resumes(data_dir, tmp_path):
    """A stacked cell's worker dies (SIGKILL) after its first checkpoint; the retry resumes from it."""
    import pickle
    import signal
    import time

    spec = Spec(out=str(tmp_path / "out"), envs=("pointmaze-medium-navigate",), agents=("flow_bc",), tasks="1",
                seeds="0", mode="stacked", steps=20_000, chunk=100, eval_every=5_000, log_every=1_000,
                eval_episodes=1, dataset_episodes=3, data_dir=str(data_dir), runs=str(tmp_path / "runs"),
                preset="tiny")
    cell = cells_of(spec)[0]
    checkpoint = sweep.work_dir(spec, cell) / "train" / "pointmaze-medium-navigate.checkpoint.msgpack"
    code = ("import pickle, sys; from qflow.experiments.sweep import run_cell; "
            "run_cell(*pickle.loads(bytes.fromhex(sys.argv[1])))")
    worker = subprocess.Popen([sys.executable, "-c", code, pickle.dumps((spec, cell)).hex()])
    try:
        while not checkpoint.exists() and worker.poll() is None:
            time.sleep(0.2)
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.wait()
    assert worker.returncode == -signal.SIGKILL, "the worker finished before it could be killed"

    result = sweep.run_cell(spec, cell)  # what Ray's retry runs
    assert result["status"] == "done", result
    log = (sweep.work_dir(spec, cell) / "cell.log").read_text()
    assert "resuming pointmaze-medium-navigate from step" in log
    group = sweep.work_dir(spec, cell) / "train" / "pointmaze-medium-navigate__flow_bc"
    steps = [int(r["step"]) for r in csv.DictReader(open(group / "metrics.csv"))]
    assert steps == list(range(1_000, 20_001, 1_000))  # every step logged once across the kill
    summary = json.loads(result["files"]["pointmaze-medium-navigate-singletask-task1-v0__flow_bc/seed0/summary.json"])
    assert summary["eval_steps"] == [5_000, 10_000, 15_000, 20_000]


def test_dry_run_counts_cells_and_updates_and_prices_them(tmp_path, monkeypatch):
    """2 tasks x 2 agents x 3 seeds = 12 cells of 1,000 updates; one cell already done; stacked mode counts members."""
    measured = []
    monkeypatch.setattr(sweep, "_measured_rate", lambda spec, cell: measured.append(cell.agent) or 50.0)
    spec = load_spec(None, {"envs": "pointmaze-medium-navigate", "tasks": "1-2", "agents": "qflow,fql",
                            "seeds": "0-2", "steps": 1000, "out": str(tmp_path / "out")})
    first = cells_of(spec)[0]
    monkeypatch.setattr(sweep, "is_done", lambda spec, cell: cell == first)
    lines = []
    result = sweep.dry_run(spec, log=lines.append)
    assert result == {"cells": 12, "todo": 11, "updates": 11_000, "seconds": 11_000 / 50.0}
    assert sorted(measured) == ["fql", "qflow"]  # one measurement per agent, family and setting
    assert lines[-1].startswith("[sweep] 12 cells, 1 done, 11 to run: 11,000 agent updates; about 4 min")
    stacked = dataclasses.replace(spec, mode="stacked", online_steps=0)
    assert sweep.dry_run(stacked, log=lines.append)["updates"] == 2 * 6 * 1000  # 2 agent cells x 6 members



def test_a_failed_cell_counts_its_attempts_and_says_what_to_do_in_a_sweep(tmp_path, monkeypatch):
    from qflow.training.record import CheckpointError

    monkeypatch.setenv("JAX_PLATFORMS", os.environ.get("JAX_PLATFORMS", "cpu"))  # run_cell sets it when unset
    spec = Spec(out=str(tmp_path / "out"), envs=(ENV,), agents=("fql",), seeds="0", steps=100,
                runs=str(tmp_path / "runs"))
    cell = cells_of(spec)[0]
    work = sweep.work_dir(spec, cell)

    def refuse(spec, cell, work):  # what the trainer says of a run directory holding another run
        raise CheckpointError(f"{work / 'run'} holds a different run (differs in steps); pass another --run-dir")

    monkeypatch.setattr(sweep, "_train_run", refuse)
    first, second = sweep.run_cell(spec, cell), sweep.run_cell(spec, cell)
    assert (first["status"], first["attempts"], second["attempts"]) == ("failed", 1, 2)
    assert "holds a different run (differs in steps); pass another --run-dir" in second["error"]  # kept
    assert second["error"].endswith(f"[in this sweep: rerun the sweep to retry the cell; to start it afresh, "
                                    f"first move {work} away or pass another --runs]")


def test_write_files_records_where_the_summary_now_lives(tmp_path):
    summary = {"run_dir": "/on/a/worker/runs/cell__1234abcd/run", "success": 0.5}
    sweep.write_files(tmp_path / "out", {"e__fql/seed0/summary.json": json.dumps(summary).encode(),
                                         "e__fql/seed0/eval.csv": b"step,success\n"})
    written = json.loads((tmp_path / "out" / "e__fql" / "seed0" / "summary.json").read_text())
    assert written == {"run_dir": str((tmp_path / "out" / "e__fql" / "seed0").resolve()), "success": 0.5,
                       "trained_in": "/on/a/worker/runs/cell__1234abcd/run"}
    assert (tmp_path / "out" / "e__fql" / "seed0" / "eval.csv").read_bytes() == b"step,success\n"


@contextlib.contextmanager
def _deadline(seconds):
    """Fail a call that would wait forever (a bug this guards against) instead of hanging the test run."""
    def expire(*_):
        raise TimeoutError(f"still waiting after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_local_sweep_starts_its_own_ray_and_refuses_a_cell_no_node_holds(tmp_path, monkeypatch):
    """A `ray start` head's address file (here a leftover one) is not joined: the sweep starts its own instance,
    which has no node with 64 GPUs: refused at once, not queued forever."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="qr", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    try:
        (ray_tmp / "ray").mkdir()
        (ray_tmp / "ray" / "ray_current_cluster").write_text("127.0.0.1:1")
        monkeypatch.setenv("RAY_TMPDIR", str(ray_tmp))
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        spec = Spec(out=str(tmp_path / "out"), envs=(ENV,), agents=("fql",), seeds="0", steps=100, gpus=64,
                    runs=str(tmp_path / "runs"), progress=False)
        with _deadline(120), pytest.raises(SweepError, match="--cpus 1 --gpus 64: no node of this machine has that"):
            sweep.run_sweep(spec, progress=False, log=lambda *_: None)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_an_address_where_nothing_listens_is_refused_in_seconds(tmp_path):
    port = free_port()
    cmd = [sys.executable, "-m", "qflow.cli", "sweep", "--envs", ENV, "--agents", "fql", "--seeds", "0",
           "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs"), "--no-progress"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    started = time.time()
    done = subprocess.run([*cmd, "--address", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=120,
                          env=env)
    assert done.returncode == 2, done.stderr
    assert f"qflow: error: --address 127.0.0.1:{port}: nothing accepted a connection there within 5 s" in done.stderr
    assert f"`ray start --head --port {port}`" in done.stderr and time.time() - started < 60
    bad = subprocess.run([*cmd, "--address", "headnode"], capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and "--address 'headnode': give the HOST:PORT of a Ray head" in bad.stderr


def test_report_lists_the_cells_of_a_sweep_without_results(tmp_path, capsys):
    from qflow.cli import main
    from qflow.errors import QFlowError
    from qflow.reporting import make_report
    from tests.test_report import TASKS, write_run

    out = tmp_path / "out"
    write_run(out / f"{TASKS[1]}__fql" / "seed0", TASKS[1], "fql", 0, [0.1, 0.2, 0.3])
    cells = {f"{TASKS[1]}__fql__seed0": {"status": "done"},
             f"{TASKS[1]}__fql__seed1": {"status": "failed", "error": "TrainingDiverged: loss is nan"},
             f"{TASKS[2]}__fql__seed0": {"status": "pending"}}
    (out / "sweep.json").write_text(json.dumps({"cells": cells}))
    assert main(["report", str(out), "--out", str(tmp_path / "report"), "--reps", "20"]) == 0
    err = capsys.readouterr().err
    assert "2 cell(s) of the sweep failed or did not finish: no results (errors in sweep.json); listed under " \
           "the tables in results.md" in err
    text = (tmp_path / "report" / "results.md").read_text()
    section = text[text.index("## Sweep cells without results"):]
    assert f"- {out}: {TASKS[1]}__fql__seed1: failed: TrainingDiverged: loss is nan" in section
    assert f"- {out}: {TASKS[2]}__fql__seed0: pending" in section and "seed0: done" not in section
    shutil.rmtree(out / f"{TASKS[1]}__fql")  # no run at all: the error says why
    with pytest.raises(QFlowError, match="no summary.json .*; 2 cell.s. of the sweep failed or did not finish"):
        make_report([out], tmp_path / "report", reps=20)


def test_running_cells_say_each_new_evaluation_once(tmp_path):
    spec = load_spec(None, {"envs": "pointmaze-medium-navigate", "tasks": "1", "agents": "qflow", "seeds": "0",
                            "steps": 3000, "out": str(tmp_path / "out"), "runs": str(tmp_path / "runs")})
    (cell,) = cells_of(spec)
    lines, seen = [], {}
    sweep._say_evaluations(spec, [cell], seen, lines.append)
    assert lines == []  # not started: nothing to say
    run = sweep.work_dir(spec, cell) / "run"
    run.mkdir(parents=True)
    (run / "eval.csv").write_text("step,success,return\n1000,0.25,-10\n")
    sweep._say_evaluations(spec, [cell], seen, lines.append)
    sweep._say_evaluations(spec, [cell], seen, lines.append)
    with open(run / "eval.csv", "a") as f:
        f.write("2000,")  # half a row, as a reader may see it while the worker writes
    sweep._say_evaluations(spec, [cell], seen, lines.append)
    with open(run / "eval.csv", "a") as f:
        f.write("0.5,-8\n")
    sweep._say_evaluations(spec, [cell], seen, lines.append)
    assert lines == [f"[sweep] {cell.name}: step 1,000 of 3,000, success 0.25",
                     f"[sweep] {cell.name}: step 2,000 of 3,000, success 0.50"]


def test_stacked_mode_packs_the_settings_members_may_differ_in(tmp_path):
    spec = load_spec(None, {"out": str(tmp_path), "envs": "cube-single-play", "agents": "qflow,fql", "tasks": "2,4",
                            "seeds": "0-1", "mode": "stacked", "sets": ["qflow.guidance_lambda=[2.5,5,10]",
                                                                         "fql.flow_steps=[5,10]"]})
    check_spec(spec)
    qflow, *fql = cells_of(spec)
    assert qflow.packed == (("guidance_lambda=2.5",), ("guidance_lambda=5",), ("guidance_lambda=10",))
    assert qflow.name == "cube-single-play__qflow__guidance_lambda=[2.5,5,10]"
    assert [c.setting for c in fql] == [("flow_steps=5",), ("flow_steps=10",)]  # shapes the program: apart
    dirs = result_dirs(spec, qflow)
    assert len(dirs) == 3 * 2 * 2 and dirs[0] == tmp_path / "guidance_lambda=2.5" / (
        "cube-single-play-singletask-task2-v0__qflow") / "seed0"
    assert sweep.cell_updates(spec, qflow) == 3 * 4 * spec.steps


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", '{"cells": [1]}', '{"cells": {"a": 3}}'])
def test_an_unreadable_sweep_record_reads_as_no_cells_or_cells_without_detail(tmp_path, text):
    from qflow.experiments.sweep import read_cells

    (tmp_path / "sweep.json").write_text(text)
    assert read_cells(tmp_path) == ({"a": {}} if text.endswith('3}}') else {})
    assert read_cells(tmp_path / "absent") == {}
