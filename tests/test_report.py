"""`qflow report` on synthetic run directories with known scores."""

import csv
import json

import numpy as np
import pytest
from scipy.stats import trim_mean

from qflow.cli import main

FAMILY = "cube-single-play"
TASKS = {1: f"{FAMILY}-singletask-task1-v0", 2: f"{FAMILY}-singletask-task2-v0"}
EVAL_STEPS = [100_000, 200_000, 300_000]


def write_run(d, env, agent, seed, successes, steps=300_000, preset="cpu", eval_episodes=37, origin="regenerated",
              episodes=250, config=None, summary=True, **extra):
    """A run directory as `qflow train` leaves it: summary.json (or only run.json) and eval.csv."""
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "eval.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "success", "return", "length", "episodes", "wall_time"])
        for step, s in zip(EVAL_STEPS, successes):
            w.writerow([step, s, -100.0, 100.0, eval_episodes, 1.0])
    info = dict(env=env, agent=agent, seed=seed, steps=steps, preset=preset, eval_every=100_000,
                eval_episodes=eval_episodes, config={"preset": preset, "lr": 3e-4, **(config or {})},
                data=dict(dataset=f"{FAMILY}-v0", origin=origin, episodes=episodes, seed=0, transitions=episodes * 1001,
                          sha256="0" * 64),
                versions=dict(jax="8.8.8", ogbench="9.9.9"), device="cpu", **extra)
    if summary:
        info.update(run_dir=str(d), success=successes[-1], success_last3=float(np.mean(successes[-3:])),
                    eval_steps=EVAL_STEPS[:len(successes)], wall_time_s=1.0, command="qflow train ...")
    (d / ("summary.json" if summary else "run.json")).write_text(json.dumps(info))


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def runs(tmp_path):
    """qflow scores high (5 seeds on task 1, 4 on task 2), flow_bc low (3 seeds each); mixed layouts."""
    rng = np.random.default_rng(0)
    expected = {}
    for agent, level, counts in (("qflow", 0.85, {1: 5, 2: 4}), ("flow_bc", 0.1, {1: 3, 2: 3})):
        for task, n in counts.items():
            last3 = []
            for seed in range(n):
                curve = np.round(level + rng.uniform(-0.08, 0.08, size=3), 3).tolist()
                d = tmp_path / "runs" / f"{TASKS[task]}__{agent}" / (f"seed{seed}" if n > 3 else f"flat{seed}")
                write_run(d, TASKS[task], agent, seed, curve)
                last3.append(float(np.mean(curve)))
            expected[(TASKS[task], agent)] = last3
    return tmp_path / "runs", expected


def test_report_tables_curves_and_captions(runs, tmp_path, capsys):
    root, expected = runs
    out = tmp_path / "report"
    assert main(["report", str(root), "--out", str(out), "--reps", "200"]) == 0
    assert "report of 15 runs" in capsys.readouterr().out

    per_task = {(r["env"], r["agent"]): r for r in rows(out / "per_task.csv")}
    assert set(per_task) == set(expected)
    for key, scores in expected.items():
        r = per_task[key]
        assert float(r["mean"]) == np.mean(scores)  # exact: same seed order, full precision in the CSV
        assert int(r["n_seeds"]) == len(scores)
        assert float(r["mean_ci_low"]) - 1e-12 <= float(r["mean"]) <= float(r["mean_ci_high"]) + 1e-12
        assert float(r["iqm_ci_low"]) - 1e-12 <= float(r["iqm"]) <= float(r["iqm_ci_high"]) + 1e-12
    for env in TASKS.values():  # a large gap: qflow's whole interval lies above flow_bc's
        assert float(per_task[(env, "qflow")]["mean_ci_low"]) > float(per_task[(env, "flow_bc")]["mean_ci_high"])

    per_env = {r["agent"]: r for r in rows(out / "per_env.csv")}
    assert per_env["qflow"]["tasks"] == "1 2" and per_env["qflow"]["runs_per_task"] == "4"  # min(5, 4) seeds
    assert per_env["flow_bc"]["runs_per_task"] == "3"
    q = np.array([expected[(TASKS[t], "qflow")][:4] for t in (1, 2)]).T  # lowest 4 seeds of each task
    assert float(per_env["qflow"]["mean"]) == pytest.approx(q.mean(), abs=1e-12)
    assert float(per_env["qflow"]["mean_ci_low"]) > float(per_env["flow_bc"]["mean_ci_high"])

    png = out / f"curves_{FAMILY}.png"
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    md = (out / "results.md").read_text()
    for fact in ("300,000 gradient steps", "37 episodes per evaluation", "regenerated, 250 training episodes",
                 "ogbench 9.9.9, jax 8.8.8", "Network preset: cpu", "success_last3", "Runs per (task, agent): 3-5",
                 "seeds 0, 1, 2, 3, 4", "the 4 lowest seeds of each task are used", "200 resamples"):
        assert fact in md, fact
    assert "WARNING" not in md
    assert "Note: 3 seed(s) for some (task, agent), fewer than 5" in md  # flow_bc has 3 seeds per task
    assert "t-interval over seeds" in md
    report = json.loads((out / "report.json").read_text())
    assert len(report["runs"]) == 15 and report["per_task"][0]["mean"] == float(rows(out / "per_task.csv")[0]["mean"])


def test_iqm_is_the_trimmed_mean(tmp_path):
    scores = {1: [0.0, 0.2, 0.4, 1.0], 2: [0.1, 0.5, 0.6, 0.9]}
    for task, values in scores.items():
        for seed, v in enumerate(values):
            write_run(tmp_path / "runs" / f"t{task}s{seed}", TASKS[task], "qflow", seed, [v, v, v])
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--reps", "200"]) == 0
    matrix = np.array([scores[1], scores[2]]).T  # (seeds, tasks)
    (env_row,) = rows(tmp_path / "out" / "per_env.csv")
    assert float(env_row["iqm"]) == pytest.approx(trim_mean(matrix.ravel(), 0.25), abs=1e-12)
    assert float(env_row["mean"]) == pytest.approx(matrix.mean(), abs=1e-12)
    task_iqm = {r["task"]: float(r["iqm"]) for r in rows(tmp_path / "out" / "per_task.csv")}
    assert task_iqm["1"] == pytest.approx(trim_mean(scores[1], 0.25), abs=1e-12)  # mean of 0.2 and 0.4


def test_metric_success_and_mixed_runs_warn(tmp_path, capsys):
    write_run(tmp_path / "a", TASKS[1], "qflow", 0, [0.2, 0.4, 0.9])
    write_run(tmp_path / "b", TASKS[1], "flow_bc", 0, [0.1, 0.1, 0.3], steps=50_000, preset="tiny", origin="official")
    out = tmp_path / "out"
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out), "--metric", "success",
                 "--reps", "50"]) == 0
    assert {r["agent"]: float(r["mean"]) for r in rows(out / "per_task.csv")} == {"qflow": 0.9, "flow_bc": 0.3}
    md = (out / "results.md").read_text()
    assert "Budget: 50,000 gradient steps; 300,000 gradient steps." in md
    assert "WARNING: the runs in this table mix budgets, network presets, data origins" in md
    # said on the terminal and carried by every CSV row too, not only inside results.md
    assert "qflow report: WARNING: the runs in this table mix budgets" in capsys.readouterr().err
    assert all(r["warning"].startswith("WARNING: the runs in this table mix budgets") for r in rows(out / "per_task.csv"))

    write_run(tmp_path / "c", TASKS[1], "qflow", 0, [0.2, 0.4, 0.9], steps=0, online_steps=1_000_000)
    assert main(["report", str(tmp_path / "c"), "--out", str(out), "--reps", "50"]) == 0
    assert "Budget: 0 offline gradient steps + 1,000,000 online env steps." in (out / "results.md").read_text()


def test_variants_of_one_agent_are_labelled_and_partial_runs_optional(tmp_path, capsys):
    write_run(tmp_path / "l1", TASKS[1], "qflow", 0, [0.5, 0.5, 0.5], config={"guidance_lambda": 1.0})
    write_run(tmp_path / "l5", TASKS[1], "qflow", 0, [0.7, 0.7, 0.7], config={"guidance_lambda": 5.0})
    write_run(tmp_path / "cut", TASKS[2], "qflow", 0, [0.1, 0.3], config={"guidance_lambda": 5.0}, summary=False)
    out = tmp_path / "out"
    assert main(["report", str(tmp_path), "--out", str(out), "--reps", "50"]) == 0
    assert "cut: skipped, no summary.json" in capsys.readouterr().err
    assert {r["agent"] for r in rows(out / "per_task.csv")} == {"qflow (guidance_lambda=1.0)",
                                                                "qflow (guidance_lambda=5.0)"}
    assert main(["report", str(tmp_path), "--out", str(out), "--reps", "50", "--include-partial"]) == 0
    partial = [r for r in rows(out / "per_task.csv") if r["task"] == "2"]
    assert float(partial[0]["mean"]) == pytest.approx(0.2)  # mean of the evaluations it has
    assert "1 unfinished run(s)" in (out / "results.md").read_text()


def test_errors_name_the_directory_or_file(tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no summary.json" in err and str(empty) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()

    write_run(tmp_path / "bad", TASKS[1], "qflow", 0, [0.5, 0.5, 0.5])
    (tmp_path / "bad" / "summary.json").write_text("{not json")
    assert main(["report", str(tmp_path / "bad"), "--out", str(tmp_path / "o")]) == 2
    assert str(tmp_path / "bad" / "summary.json") in capsys.readouterr().err

    write_run(tmp_path / "badcsv", TASKS[1], "qflow", 0, [0.5, 0.5, 0.5])
    (tmp_path / "badcsv" / "eval.csv").write_text("step,wins\n1,0.5\n")
    assert main(["report", str(tmp_path / "badcsv"), "--out", str(tmp_path / "o")]) == 2
    assert str(tmp_path / "badcsv" / "eval.csv") in capsys.readouterr().err

    write_run(tmp_path / "nokey", TASKS[1], "qflow", 0, [0.5, 0.5, 0.5])
    info = json.loads((tmp_path / "nokey" / "summary.json").read_text())
    del info["data"]["origin"]
    (tmp_path / "nokey" / "summary.json").write_text(json.dumps(info))
    assert main(["report", str(tmp_path / "nokey"), "--out", str(tmp_path / "o")]) == 2
    assert "nokey" in (err := capsys.readouterr().err) and "data.origin" in err

    for name in ("dup1", "dup2"):
        write_run(tmp_path / "dups" / name, TASKS[1], "qflow", 0, [0.5, 0.5, 0.5])
    assert main(["report", str(tmp_path / "dups"), "--out", str(tmp_path / "o")]) == 2
    assert "dup1" in (err := capsys.readouterr().err) and "dup2" in err

    monkeypatch.setitem(__import__("sys").modules, "rliable", None)  # as if the optional extra were missing
    write_run(tmp_path / "ok", TASKS[1], "qflow", 0, [0.5, 0.5, 0.5])
    assert main(["report", str(tmp_path / "ok"), "--out", str(tmp_path / "o")]) == 2
    assert "pip install 'qflow[report]'" in capsys.readouterr().err


def test_compare_two_agents_with_a_permutation_test(runs, tmp_path, capsys):
    root, expected = runs
    out = tmp_path / "report"
    assert main(["report", str(root), "--out", str(out), "--reps", "100", "--compare", "qflow,flow_bc"]) == 0
    printed = capsys.readouterr().out
    table = {r["tasks"]: r for r in rows(out / "comparison.csv")}
    assert set(table) == {"1 2", "1", "2"}
    # task 1: 5 runs against 3, every qflow run above every flow_bc run: of the C(8, 3) = 56 relabellings
    # only the observed one is as extreme (unequal groups: its mirror is not), so p = 1 / 56
    assert float(table["1"]["p_value"]) == pytest.approx(1 / 56) and int(table["1"]["permutations"]) == 56
    assert float(table["1"]["prob_improvement"]) == 1.0
    diff = np.mean(expected[(TASKS[1], "qflow")]) - np.mean(expected[(TASKS[1], "flow_bc")])
    assert float(table["1"]["mean_difference"]) == pytest.approx(diff)
    # both tasks as strata: 56 x C(7, 3) = 1,960 relabellings, all enumerated
    assert int(table["1 2"]["permutations"]) == 1960 and float(table["1 2"]["p_value"]) == pytest.approx(1 / 1960)
    assert "permutation p = 0.00051" in printed and "qflow against flow_bc" in (out / "results.md").read_text()
    assert main(["report", str(root), "--out", str(out), "--compare", "qflow,nope"]) == 2
    assert "no task has runs of both" in capsys.readouterr().err


def test_caption_names_settings_away_from_the_defaults():
    from types import SimpleNamespace

    from qflow.envs import agent_config
    from qflow.reporting.report import _changed_settings

    env = "cube-single-play-singletask-task2-v0"
    config = json.loads(json.dumps(agent_config("qflow", env, "cpu").as_dict()))
    run = SimpleNamespace(agent="qflow", env=env, preset="cpu", config=config)
    assert _changed_settings(run) == []  # what `qflow train` gives: nothing to name
    run.config = {**config, "guidance_lambda": 10.0, "time_features": "2pi_f_tau"}
    assert _changed_settings(run) == ["guidance_lambda=10.0"]  # time features have their own caption line
    assert _changed_settings(SimpleNamespace(agent="gone", env=env, preset="cpu", config=config)) == []


def test_intervals_of_rates_near_zero_stay_in_range(tmp_path):
    """Three seeds at 0, 0, 9 %: the t-interval's lower end would be -10.6 points; a rate cannot be below 0."""
    for seed, s in enumerate((0.0, 0.0, 0.09)):
        write_run(tmp_path / "runs" / f"s{seed}", TASKS[1], "flow_bc", seed, [s, s, s])
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "r"), "--reps", "50"]) == 0
    (row,) = rows(tmp_path / "r" / "per_task.csv")
    assert float(row["mean_ci_low"]) == 0.0 and 0.03 < float(row["mean_ci_high"]) < 0.3
    (env_row,) = rows(tmp_path / "r" / "per_env.csv")
    assert float(env_row["mean_ci_low"]) == 0.0


def test_compare_takes_labels_with_their_own_commas():
    from qflow.cli import _split_outside_parentheses

    assert _split_outside_parentheses("qflow (lr=0.001, q_agg=min),fql") == ["qflow (lr=0.001, q_agg=min)", "fql"]
    assert _split_outside_parentheses("qflow,fql") == ["qflow", "fql"]
    assert len(_split_outside_parentheses("a,b,c")) == 3  # refused by the caller: two labels, not three
    assert main(["report", "nowhere", "--out", "x", "--compare", "a,b,c"]) == 2
