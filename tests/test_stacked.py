"""Stacked training of several tasks of one dataset: per-member data, policy export, evaluation."""

import csv
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qflow.agents import AGENTS, get_agent
from qflow.agents.base import acting_state, build_config, with_acting_state
from qflow.data.loading import load_single_task
from qflow.cli import main
from qflow.experiments import stacked
from qflow.reporting import policy_drift
from qflow.reporting.diagnostics import make_diagnostics_report
from qflow.reporting.report import find_runs
from qflow.training.loop import stack
from qflow.training.steps import make_train_chunk
from tests.helpers import ACT, OBS, random_batch, rows, tiny_agent

pytestmark = pytest.mark.e2e

FAMILY = "pointmaze-medium-navigate"
SMALL = ["--set", "actor_dims=32,32", "--set", "critic_dims=32,32", "--set", "batch_size=32"]


@pytest.mark.parametrize("seed_axis", ["map", "vmap"])
def test_per_member_rewards_match_training_each_alone(seed_axis):
    data = random_batch(0, batch=64)
    rewards = jnp.stack([data["rewards"], -1.0 - data["rewards"]])  # two tasks, same transitions
    masks = jnp.stack([data["masks"], jnp.ones_like(data["masks"])])
    agent = tiny_agent()  # the same seed for both members: only their data differs
    fn = make_train_chunk(20, seed_axis, per_member=("rewards", "masks"))
    together, _ = fn(stack([agent, agent]), {**data, "rewards": rewards, "masks": masks})
    for i in range(2):
        alone, _ = make_train_chunk(20)(stack([agent]), {**data, "rewards": rewards[i], "masks": masks[i]})
        for a, b in zip(jax.tree.leaves(together.params), jax.tree.leaves(alone.params)):
            np.testing.assert_allclose(a[i], b[0], atol=2e-5)
    critic = jax.tree.leaves(together.params["critic"])
    assert max(float(jnp.abs(x[0] - x[1]).max()) for x in critic) > 1e-3  # the tasks really differ


def tiny(name, seed=0):
    agent_cls, config_cls = get_agent(name)
    config = build_config(config_cls, "paper")
    small = {f.name: (8,) for f in dataclasses.fields(config) if f.name.endswith("_dims")}
    return agent_cls.create(seed, OBS, ACT, dataclasses.replace(config, **small, **(
        {"time_embed_dim": 4} if hasattr(config, "time_embed_dim") else {})))


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_acting_state_is_all_that_acting_reads(name):
    trained, other = tiny(name, seed=0), tiny(name, seed=1)  # every array differs between the two
    obs, rng = jax.random.normal(jax.random.PRNGKey(3), (5, OBS)), jax.random.PRNGKey(4)
    expected = trained.sample_actions(obs, rng)
    state = acting_state(trained)
    # an agent that shares nothing else with `trained` acts identically once it has the acting state
    np.testing.assert_array_equal(with_acting_state(other, state).sample_actions(obs, rng), expected)
    # and every exported piece is needed: keeping `other`'s version of any one of them changes the actions
    theirs = acting_state(other)
    pieces = [("params", k) for k in state["params"]] + [(f, None) for f in state if f != "params"]
    for field, key in pieces:
        mixed = {**state, "params": dict(state["params"])}
        if key is None:
            mixed[field] = theirs[field]
        else:
            mixed["params"][key] = theirs["params"][key]
        assert not np.array_equal(with_acting_state(other, mixed).sample_actions(obs, rng), expected), (field, key)


def test_family_data_stacks_each_tasks_rewards(data_dir):
    members = stacked.member_list([1, 2], [0, 5])
    data, files = stacked.load_family(FAMILY, [1, 2], members, episodes=3, data_dir=data_dir, extra=("next_actions",))
    assert files.episodes == 3 and data["rewards"].shape == (4, len(data["actions"]))
    for i, (task, _) in enumerate(members):
        alone, _ = load_single_task(f"{FAMILY}-singletask-task{task}-v0", 3, 0, data_dir, progress=False)
        np.testing.assert_array_equal(data["rewards"][i], alone["rewards"])
        np.testing.assert_array_equal(data["masks"][i], alone["masks"])
        np.testing.assert_array_equal(data["observations"], alone["observations"])
    assert not np.array_equal(data["rewards"][0], data["rewards"][2])  # task 1 vs task 2
    # next_actions: the next row's action wherever the next row continues the episode
    cont = np.all(data["observations"][1:] == data["next_observations"][:-1], axis=1)
    assert cont.mean() > 0.99
    np.testing.assert_array_equal(data["next_actions"][:-1][cont], data["actions"][1:][cont])


def test_train_export_evaluate_report(data_dir, tmp_path, capsys):
    out, runs = tmp_path / "gpu", tmp_path / "runs"
    base = ["train", "--family", FAMILY, "--agents", "qflow,flow_bc", "--tasks", "1-2", "--seeds", "0",
            "--dataset-episodes", "3", "--data-dir", str(data_dir), "--chunk", "25", "--export-every", "50"]
    assert main(["stacked", *base, "--steps", "100", "--log-every", "25", "--keep-exports", "--out", str(out), *SMALL]) == 0
    for name in ("qflow", "flow_bc"):
        group = out / f"{FAMILY}__{name}"
        info = json.loads((group / "group.json").read_text())
        assert info["step"] == 100 and info["stop"] == "steps reached" and len(info["members"]) == 2
        with open(group / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert [(int(r["step"]), int(r["task"])) for r in rows] == [(s, t) for s in (25, 50, 75, 100) for t in (1, 2)]
        assert ("diag_v_explained_var" in rows[0]) == (name == "qflow")  # flow BC has no critic to judge by
        assert stacked.kept_exports(group) == [50, 100]
        assert main(["stacked", "evaluate", str(group), "--episodes", "2", "--out", str(runs)]) == 0
    found, notes = find_runs([runs], metric="success")
    assert sorted((r.agent, r.task, r.steps) for r in found) == [
        ("flow_bc", "1", 100), ("flow_bc", "2", 100), ("qflow", "1", 100), ("qflow", "2", 100)]
    summary = json.loads((runs / f"{FAMILY}-singletask-task2-v0__qflow" / "seed0" / "summary.json").read_text())
    assert summary["eval_steps"] == [100] and 0 <= summary["success"] <= 1 and summary["data"]["episodes"] == 3

    # --all-exports adds the evaluations it lacks (step 50) and keeps the one it has (step 100)
    qflow_group = out / f"{FAMILY}__qflow"
    for _ in range(2):  # the second call finds nothing left to do
        assert main(["stacked", "evaluate", str(qflow_group), "--episodes", "2", "--all-exports", "--out", str(runs)]) == 0
    for task in (1, 2):
        run = runs / f"{FAMILY}-singletask-task{task}-v0__qflow" / "seed0"
        with open(run / "eval.csv", newline="") as f:
            evals = list(csv.DictReader(f))
        assert [int(r["step"]) for r in evals] == [50, 100]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["eval_steps"] == [50, 100] and summary["steps"] == 100
        assert summary["success_last3"] == pytest.approx(np.mean([float(r["success"]) for r in evals]))

    # the diagnostics report reads those curves and the diag_* columns the training logged
    report = make_diagnostics_report([runs], tmp_path / "diag", reps=50)
    assert {(r["agent"], r["step"]) for r in report["success"]} == {
        ("qflow", 50), ("qflow", 100), ("flow_bc", 100)}
    assert sorted((r["agent"], r["env"][-4]) for r in report["onset"]) == [("qflow", "1"), ("qflow", "2")]
    assert all(r["last_step"] == 100 for r in report["onset"])
    assert (tmp_path / "diag" / "diagnostics.png").stat().st_size > 0

    # the policy-drift analysis on the kept exports: an export is at distance 0 from itself, the two differ
    assert main(["policy-drift", str(qflow_group), "--states", "64", "--spacing", "50", "--data-dir", str(data_dir),
                              "--dataset-episodes", "3", "--out", str(tmp_path / "drift")]) == 0
    rows = policy_drift.read_distances(tmp_path / "drift" / "distances.csv")
    pairs = {(r["task"], r["step_a"], r["step_b"]): r["distance"] for r in rows}
    assert sorted(pairs) == [(t, a, b) for t in (1, 2) for a, b in ((50, 50), (50, 100), (100, 100))]
    assert all(pairs[(t, s, s)] == 0 for t in (1, 2) for s in (50, 100))
    assert all(pairs[(t, 50, 100)] > 0 for t in (1, 2))
    summary = (tmp_path / "drift" / "policy_drift.md").read_text()
    assert "| qflow | 1 | 0 | 100 |" in summary and "| task | step | qflow, seeds 0 |" in summary

    # a deadline already past stops every agent before its first update, and evaluation says so
    late = tmp_path / "late"
    assert main(["stacked", *base, "--agents", "flow_bc", "--steps", "100", "--deadline", "1", "--out", str(late)]) == 0
    info = json.loads((late / f"{FAMILY}__flow_bc" / "group.json").read_text())
    assert info["step"] == 0 and info["stop"] == "deadline"
    assert main(["stacked", "evaluate", str(late / f"{FAMILY}__flow_bc"), "--out", str(runs)]) == 2
    assert "no policies" in capsys.readouterr().err

    # evaluations scored another way never mix into the same run directories
    assert main(["stacked", "evaluate", str(out / f"{FAMILY}__qflow"), "--episodes", "3", "--out", str(runs)]) == 2
    assert "differs in eval_episodes); pass another --out" in capsys.readouterr().err


def test_a_killed_group_resumes_to_the_same_parameters(data_dir, tmp_path, monkeypatch, capsys):
    """kill -9 between two checkpoints, rerun: the resumed group ends with the parameters of an
    uninterrupted run, and every step is logged once."""
    base = ["stacked", "train", "--family", FAMILY, "--agents", "flow_bc", "--tasks", "1-2", "--seeds", "0",
            "--dataset-episodes", "3", "--data-dir", str(data_dir), "--chunk", "25", "--export-every", "50",
            "--log-every", "25", "--steps", "150", *SMALL]
    assert main([*base, "--out", str(tmp_path / "whole")]) == 0

    real, calls = stacked.StackedJob.advance, []

    def dies_at_step_100(self, step):  # after the checkpoint at 50, before the one at 100
        if step == 75:
            raise KeyboardInterrupt("simulated kill")
        calls.append(step)
        return real(self, step)

    monkeypatch.setattr(stacked.StackedJob, "advance", dies_at_step_100)
    with pytest.raises(KeyboardInterrupt):
        main([*base, "--out", str(tmp_path / "cut")])
    monkeypatch.setattr(stacked.StackedJob, "advance", real)
    assert main([*base, "--out", str(tmp_path / "cut")]) == 0

    group = f"{FAMILY}__flow_bc"
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "cut" / group / "metrics.csv"))]
    assert steps == [s for s in (25, 50, 75, 100, 125, 150) for _ in range(2)]  # two members, each step once
    data, _ = load_single_task(f"{FAMILY}-singletask-task1-v0", 3, 0, data_dir, progress=False)
    read = stacked.member_policies(json.loads((tmp_path / "whole" / group / "group.json").read_text()),
                                   data["observations"].shape[1], data["actions"].shape[1])
    whole, cut = read(tmp_path / "whole" / group / "policies.msgpack"), read(tmp_path / "cut" / group / "policies.msgpack")
    assert whole[0] == cut[0] == 150
    for a, b in zip(whole[1], cut[1]):
        for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
            np.testing.assert_array_equal(x, y)
    info = json.loads((tmp_path / "cut" / group / "group.json").read_text())
    assert info["step"] == 150 and info["stop"] == "steps reached"
    assert main([*base, "--out", str(tmp_path / "cut"), "--set", "lr=1e-3"]) == 2  # another run: refused

    # a family checkpoint whose group directories are gone is not taken for another run's
    import shutil

    shutil.rmtree(tmp_path / "cut" / group)
    other_seed = [*base[:base.index("--seeds")], "--seeds", "1", *base[base.index("--seeds") + 2:]]
    assert main([*other_seed, "--out", str(tmp_path / "cut")]) == 2
    assert "was written by another stacked run" in capsys.readouterr().err
    # a trained group whose checkpoint is gone is refused, not silently trained again from step 0
    (tmp_path / "whole" / f"{FAMILY}.checkpoint.msgpack").unlink()
    assert main([*base, "--out", str(tmp_path / "whole")]) == 2
    assert "but no checkpoint" in capsys.readouterr().err


def test_exports_are_evaluated_while_the_group_trains(data_dir, tmp_path):
    """--evaluate-into: the trainer runs in a process of its own, every kept export is evaluated beside it."""
    out, runs = tmp_path / "train", tmp_path / "runs"
    assert main(["stacked", "train", "--family", FAMILY, "--agents", "flow_bc", "--tasks", "1", "--seeds", "0",
                 "--dataset-episodes", "3", "--data-dir", str(data_dir), "--steps", "100", "--chunk", "25",
                 "--export-every", "50", "--out", str(out), "--evaluate-into", str(runs), "--eval-episodes", "1",
                 *SMALL]) == 0
    summary = json.loads((runs / f"{FAMILY}-singletask-task1-v0__flow_bc" / "seed0" / "summary.json").read_text())
    assert summary["eval_steps"] == [50, 100] and summary["budget"] == 100
    assert "stopped at step 100" in (out / f"{FAMILY}.train.log").read_text()


def test_a_grid_of_settings_trains_in_one_group_as_separate_groups_would(data_dir, tmp_path):
    """--set qflow.guidance_lambda=[2,8]: one Q-Flow group of settings x tasks x seeds in one call, whose
    members log what a group of one setting logs, and whose evaluations land in OUT/SETTING/ as a sweep's do."""
    base = ["stacked", "train", "--family", FAMILY, "--tasks", "1", "--seeds", "0,1", "--dataset-episodes", "3",
            "--data-dir", str(data_dir), "--chunk", "25", "--export-every", "50", "--log-every", "25",
            "--steps", "50", *SMALL, "--set", "qflow.time_embed_dim=4"]
    assert main([*base, "--agents", "qflow,fql", "--set", "qflow.guidance_lambda=[2,8]", "--keep-exports",
                 "--out", str(tmp_path / "grid")]) == 0
    assert main([*base, "--agents", "qflow", "--set", "qflow.guidance_lambda=8", "--out", str(tmp_path / "one")]) == 0
    group = json.loads((tmp_path / "grid" / f"{FAMILY}__qflow" / "group.json").read_text())
    assert [(m["setting"], m["seed"]) for m in group["members"]] == [
        ("guidance_lambda=2", 0), ("guidance_lambda=2", 1), ("guidance_lambda=8", 0), ("guidance_lambda=8", 1)]
    assert {k: c["guidance_lambda"] for k, c in group["configs"].items()} == {"guidance_lambda=2": 2.0,
                                                                             "guidance_lambda=8": 8.0}
    fql = json.loads((tmp_path / "grid" / f"{FAMILY}__fql" / "group.json").read_text())
    assert "configs" not in fql and all("setting" not in m for m in fql["members"])  # no grid: as before

    grid = [r for r in rows(tmp_path / "grid" / f"{FAMILY}__qflow" / "metrics.csv") if r["setting"] == "guidance_lambda=8"]
    alone = rows(tmp_path / "one" / f"{FAMILY}__qflow" / "metrics.csv")
    assert [(r["step"], r["seed"]) for r in grid] == [(r["step"], r["seed"]) for r in alone]
    for a, b in zip(grid, alone):
        for key in ("loss_q", "loss_v", "loss_pi"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-5, abs=1e-7)

    runs = tmp_path / "runs"
    assert main(["stacked", "evaluate", str(tmp_path / "grid" / f"{FAMILY}__qflow"), "--episodes", "1",
                 "--out", str(runs)]) == 0
    run = runs / "guidance_lambda=2" / f"{FAMILY}-singletask-task1-v0__qflow" / "seed1"
    assert json.loads((run / "summary.json").read_text())["config"]["guidance_lambda"] == 2.0
    assert {r["setting"] for r in rows(run / "metrics.csv")} == {"guidance_lambda=2"}

    # the policy drift of a group of settings: each setting's members are runs of their own
    assert main(["policy-drift", str(tmp_path / "grid" / f"{FAMILY}__qflow"), "--states", "16", "--spacing", "50",
                 "--data-dir", str(data_dir), "--dataset-episodes", "3", "--out", str(tmp_path / "drift")]) == 0
    drift = policy_drift.read_distances(tmp_path / "drift" / "distances.csv")
    assert sorted({(r["agent"], r["seed"]) for r in drift}) == [
        ("qflow guidance_lambda=2", 0), ("qflow guidance_lambda=2", 1),
        ("qflow guidance_lambda=8", 0), ("qflow guidance_lambda=8", 1)]
    assert all(r["distance"] == 0 for r in drift if r["step_a"] == r["step_b"])
