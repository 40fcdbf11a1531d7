"""V's time features and the guidance diagnostics, each against a hand computation."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qflow.agents.base import build_config, config_from_record
from qflow.agents.fbrac import FBRACAgent, FBRACConfig
from qflow.agents.fql import FQLAgent, FQLConfig
from qflow.agents.qflow import QFlowConfig
from qflow.networks import fourier_features
from qflow.reporting.diagnostics import improvement_onset
from qflow.training.loop import stack
from qflow.training.steps import make_train_chunk
from tests.helpers import ACT, B, OBS, perturb, random_batch, tiny_agent


def test_time_features_are_sin_and_cos_of_f_tau():
    tau = np.array([0.0, 0.013, 0.37, 0.999], np.float32)
    freqs = 2.0 ** np.linspace(0.0, 8.0, 4)  # dim 8: 4 log-spaced frequencies 1 .. 256
    angles = tau[:, None] * freqs
    expected = np.concatenate([np.sin(angles), np.cos(angles)], -1)
    np.testing.assert_allclose(fourier_features(jnp.asarray(tau), 8), expected, atol=2e-5)
    np.testing.assert_allclose(fourier_features(jnp.asarray(tau), 8, 2 * math.pi),
                               np.concatenate([np.sin(2 * np.pi * angles), np.cos(2 * np.pi * angles)], -1), atol=2e-4)


def test_qflow_uses_f_tau_by_default_and_old_records_keep_2pi():
    assert build_config(QFlowConfig).time_features == "f_tau"
    assert tiny_agent().nets["value"].time_scale == 1.0
    assert tiny_agent(time_features="2pi_f_tau").nets["value"].time_scale == pytest.approx(2 * math.pi)
    record = json_like(build_config(QFlowConfig).as_dict())
    assert config_from_record(QFlowConfig, record).time_features == "f_tau"
    del record["time_features"]  # a summary written before the key existed ran with 2 pi f tau
    assert config_from_record(QFlowConfig, record).time_features == "2pi_f_tau"
    with pytest.raises(ValueError, match="time_features must be one of"):
        build_config(QFlowConfig, overrides=["time_features=2pi"])


def json_like(d):
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _policy_terms(agent, batch, rng):
    """Hand computation of the policy diagnostics from the networks' outputs."""
    s, a = np.asarray(batch["observations"]), np.clip(np.asarray(batch["actions"]), -1, 1)
    pi = np.asarray(agent.sample_actions(batch["observations"], rng))
    qbar = lambda x: np.asarray(agent.nets["critic"].apply(agent.target_critic, s, x)).mean(0)  # noqa: E731
    return np.mean(qbar(pi) - qbar(a)), np.mean(np.sqrt(((pi - a) ** 2).sum(-1)))


def test_qflow_diagnostics_match_hand_computation():
    agent = perturb(tiny_agent(guidance_lambda=2.0, flow_steps=4, q_agg="min", stratify_tau=False))
    batch, rng = random_batch(seed=5), jax.random.PRNGKey(11)
    diag = agent.diagnostics(batch, rng)
    k_noise, k_pi = jax.random.split(rng)
    noise = agent.draw_noise(k_noise, B, ACT)
    _, info = agent.losses(agent.params, batch, noise)  # info["v_target"]: checked in test_qflow_agent

    s, a = np.asarray(batch["observations"]), np.asarray(batch["actions"])
    x0, tau = np.asarray(noise["x0"]), np.asarray(noise["tau"])
    x_tau = (1 - tau[:, None]) * x0 + tau[:, None] * a
    V = lambda x: np.asarray(agent.nets["value"].apply(agent.params["value"], s, x, tau))  # noqa: E731
    target, v = np.asarray(info["v_target"]), V(x_tau).min(0)
    np.testing.assert_allclose(diag["diag_v_explained_var"], 1 - np.var(target - v) / np.var(target), rtol=1e-3)
    eps, grad = 1e-3, np.zeros_like(x_tau)
    for j in range(ACT):  # central differences of mean_heads V
        e = np.zeros_like(x_tau)
        e[:, j] = eps
        grad[:, j] = (V(x_tau + e).mean(0) - V(x_tau - e).mean(0)) / (2 * eps)
    norm = lambda x: np.sqrt((x ** 2).sum(-1))  # noqa: E731
    np.testing.assert_allclose(diag["diag_guidance_norm"], norm(grad).mean() / 2.0, rtol=2e-2)
    np.testing.assert_allclose(diag["diag_bc_velocity_norm"], norm(a - x0).mean(), rtol=1e-5)
    improvement, distance = _policy_terms(agent, batch, k_pi)
    np.testing.assert_allclose(diag["diag_policy_improvement"], improvement, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(diag["diag_action_distance"], distance, rtol=1e-5)


def test_explained_variance_is_one_for_a_perfect_fit_and_weights_count():
    agent = tiny_agent(stratify_tau=True)
    batch, rng = random_batch(seed=2, batch=23), jax.random.PRNGKey(0)
    noise = agent.draw_noise(jax.random.split(rng)[0], 23, ACT)
    _, info = agent.losses(agent.params, batch, noise)
    w = np.asarray(info["weight"])
    assert np.ptp(w) > 0.01  # 23 rows in 10 buckets: unequal weights
    target, v = np.asarray(info["v_target"]), np.asarray(info["v"])
    w = w / w.sum()
    mean = lambda x: np.sum(w * x)  # noqa: E731
    err = target - v
    expected = 1 - mean((err - mean(err)) ** 2) / mean((target - mean(target)) ** 2)
    np.testing.assert_allclose(agent.diagnostics(batch, rng)["diag_v_explained_var"], expected, rtol=1e-4)


@pytest.mark.parametrize("agent_cls, config_cls", [(FQLAgent, FQLConfig), (FBRACAgent, FBRACConfig)])
def test_baseline_policy_diagnostics_match_hand_computation(agent_cls, config_cls):
    cfg = dataclasses.replace(build_config(config_cls), actor_dims=(8,), critic_dims=(8,), flow_steps=3)
    agent = perturb(agent_cls.create(0, OBS, ACT, cfg))
    batch, rng = random_batch(seed=7), jax.random.PRNGKey(4)
    diag = agent.diagnostics(batch, rng)
    improvement, distance = _policy_terms(agent, batch, rng)
    np.testing.assert_allclose(diag["diag_policy_improvement"], improvement, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(diag["diag_action_distance"], distance, rtol=1e-5)


def test_training_chunk_logs_diagnostics_without_changing_training():
    agent, data = tiny_agent(), random_batch(seed=3, batch=64)
    with_diag, info = make_train_chunk(15)(stack([agent]), data)
    without, plain = make_train_chunk(15, diagnostics=False)(stack([agent]), data)
    assert {k for k in info if k.startswith("diag_")} == {
        "diag_v_explained_var", "diag_guidance_norm", "diag_bc_velocity_norm", "diag_policy_improvement",
        "diag_action_distance"}
    assert not any(k.startswith("diag_") for k in plain)
    assert all(np.isfinite(v).all() for v in info.values())
    for x, y in zip(jax.tree.leaves(with_diag), jax.tree.leaves(without)):
        np.testing.assert_array_equal(x, y)


# Reading the logged diagnostics (qflow.reporting.diagnostics): pure functions, checked by hand.

def test_critic_turns_and_q_rise_by_hand():
    from qflow.reporting.diagnostics import critic_turns, q_rise_before

    steps = np.arange(1, 9) * 1000
    q = np.array([-1.0, -3.0, -5.0, -4.0, -2.0, -3.0, -3.5, -1.0])  # lowest at 3k; turns at 5k (max), 7k (min)
    assert critic_turns(steps, q) == [5000, 7000]
    assert critic_turns(steps, np.array([-1.0, -3.0, -5.0, -4.0, -2.0, -1.0, 0.0, 0.5])) == []  # climbs steadily
    assert critic_turns(steps, np.array([-1.0, -3.0, -5.0, -3.0, -3.0, -4.0, -4.5, -5.0])) == [5000]  # plateau, then down
    assert q_rise_before(steps, q, 8000, 3000) == pytest.approx(-1.0 - (-2.0))
    assert q_rise_before(steps, q, 2000, 3000) is None  # no row 3k before


def test_improvement_onset_is_the_start_of_the_last_positive_stretch():
    steps = np.array([1000, 2000, 3000, 4000])
    assert improvement_onset(steps, np.array([-1.0, 1.0, -0.5, 2.0])) == 4000
    assert improvement_onset(steps, np.array([0.1, 1.0, 0.5, 2.0])) == 1000
    assert improvement_onset(steps, np.array([0.1, 1.0, 0.5, 0.0])) is None


def test_return_ratio_is_two_for_steady_motion_and_small_for_a_swing_back():
    from qflow.reporting.diagnostics import return_ratios

    line = {(s, u): (u - s) / 1000 for s in (0, 1000, 2000) for u in (1000, 2000, 3000) if s < u}
    assert return_ratios(line, 1000) == {1000: 2.0, 2000: 2.0}
    # A -> B -> A -> B: the policy at 0 and 2000 is the same, at 1000 and 3000 the same
    swing = {(s, u): 0.0 if (u - s) % 2000 == 0 else 1.0 for s in (0, 1000, 2000) for u in (1000, 2000, 3000) if s < u}
    assert return_ratios(swing, 1000) == {1000: 0.0, 2000: 0.0}
    # independent jitter around one policy: every pair equally far apart
    jitter = {(s, u): 0.3 for s in (0, 1000, 2000) for u in (1000, 2000, 3000) if s < u}
    assert return_ratios(jitter, 1000) == {1000: 1.0, 2000: 1.0}
    # a gap in the exports leaves that step out; a spacing with no neighbours gives nothing
    del line[(1000, 2000)]
    assert return_ratios(line, 1000) == {}
    assert return_ratios(line, 5000) == {}


def test_drift_tables_put_seeds_side_by_side_and_average_dimensions(tmp_path):
    from qflow.reporting.policy_drift import dims_table, distance_table, ratio_table, read_distances
    from qflow.training.logs import write_rows

    def run(agent, seed, d01, d12, d02, dims):
        pairs = {(0, 1000): d01, (1000, 2000): d12, (0, 2000): d02}
        return [{"agent": agent, "task": 2, "seed": seed, "step_a": s, "step_b": u, "distance": d,
                 "abs_diff_dim0": dims[0] * d, "abs_diff_dim1": dims[1] * d} for (s, u), d in pairs.items()]

    rows = run("fql", 0, 1.0, 1.0, 2.0, (0.5, 0.1)) + run("qflow", 0, 1.0, 1.0, 2.0, (0.2, 0.2)) \
        + run("qflow", 1, 1.0, 3.0, 0.5, (0.4, 0.0))
    write_rows(tmp_path / "distances.csv", rows)
    rows = read_distances(tmp_path / "distances.csv")  # numbers come back as numbers
    assert rows[0]["task"] == 2 and rows[0]["distance"] == 1.0
    # qflow seed 0 moves steadily (2 / 1 = 2), seed 1 comes back (0.5 / 2 = 0.25); Q-Flow's column first
    assert ratio_table(rows, 1000).splitlines() == [
        "| task | step | qflow, seeds 0, 1 | fql, seeds 0 |", "|---|---|---|---|", "| 2 | 1,000 | 2.00, 0.25 | 2.00 |"]
    table = dims_table(rows, [(0, 2000), (5000, 6000)], dim_names=("x", "gripper")).splitlines()
    assert table[0] == "| agent | task | exports | distance | mean abs. diff., x | mean abs. diff., gripper |"
    # mean over seeds: distance (2 + 0.5) / 2, x (0.4 + 0.2) / 2, gripper (0.4 + 0) / 2; missing pairs are left out
    assert table[2:] == ["| qflow | 2 | 0k - 2k | 1.250 | 0.300 | 0.200 |", "| fql | 2 | 0k - 2k | 2.000 | 1.000 | 0.200 |"]
    with pytest.raises(ValueError, match="1 dimension names for 2"):
        dims_table(rows, [(0, 2000)], dim_names=("x",))
    assert dims_table(rows, [(0, 2000)]).splitlines()[0].endswith("| mean abs. diff., dim0 | mean abs. diff., dim1 |")
    assert ratio_table([], 1000) == dims_table([], [(0, 2000)]) == "(no exports to compare)"  # a group with no exports
    # per run, one column per pair, Q-Flow's runs first; a pair a run lacks is "-"
    assert distance_table(rows, [(1000, 2000), (0, 2000), (0, 500)]).splitlines() == [
        "| agent | task | seed | d(1k, 2k) | d(0k, 2k) | d(0k, 0.5k) |", "|---|---|---|---|---|---|",
        "| qflow | 2 | 0 | 1.000 | 2.000 | - |", "| qflow | 2 | 1 | 3.000 | 0.500 | - |",
        "| fql | 2 | 0 | 1.000 | 2.000 | - |"]


def test_setting_comparison_averages_each_seed_and_measures_the_drops(tmp_path):
    from qflow.reporting.diagnostics import setting_comparison_table
    from qflow.training.logs import write_rows

    def runs(folder, agent, curves):
        for seed, curve in enumerate(curves):
            write_rows(tmp_path / folder / f"env-task2__{agent}" / f"seed{seed}" / "eval.csv",
                       [{"step": step, "success": v} for step, v in curve.items()])

    runs("a", "qflow", [{10: 0.2, 20: 0.6, 30: 0.4}, {10: 0.4, 20: 0.2, 30: 0.6}, {10: 1.0, 20: 1.0}])  # seed 2 stops early
    runs("a", "fql", [{10: 0.5, 20: 0.5, 30: 0.5}])
    runs("b", "qflow", [{10: 0.0, 20: 0.2, 30: 0.4}])
    table = setting_comparison_table([({"qflow": "lam 5", "fql": "alpha 300"}, tmp_path / "a"),
                                      ({"qflow": "lam 10"}, tmp_path / "b")], steps=(30, 10, 20), reps=50)
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    # Q-Flow first, then its settings in the order given; seed 2 lacks 30k and is left out.
    # Seed averages 0.4 and 0.4; drops (0, 0.2) and (0.2, 0): mean 0.1; per step means 0.3, 0.4, 0.5
    assert [r[1:4] for r in rows] == [["qflow", "lam 5", "2"], ["qflow", "lam 10", "1"], ["fql", "alpha 300", "1"]]
    assert rows[0][4].startswith("40.0 [") and rows[0][5:] == ["10.0", "30.0, 40.0, 50.0 |"]
    assert rows[1][5:] == ["0.0", "0.0, 20.0, 40.0 |"] and rows[2][4] == "50.0"  # one seed: no interval


def test_success_correlations_use_the_evaluations_after_q_lowest(tmp_path):
    from types import SimpleNamespace

    from qflow.reporting.diagnostics import critic_swings, mean_before

    steps, values = np.array([1000, 2000, 3000, 4000]), np.array([1.0, 2.0, 4.0, 8.0])
    assert mean_before(steps, values, 3000, 2000) == 3.0  # rows 2000 and 3000: (1000, 3000]
    assert mean_before(steps, values, 4000, 1000) == 8.0 and mean_before(steps, values, 500, 1000) is None

    # Q falls to its lowest at 2k, then rises; the policy's improvement by its critic is logged with it
    q = [-1, -5, -4, -2, -3, 0, -1]
    improvement = [0, 0, 3, 1, 4, 2, 5]
    run = tmp_path / "env__qflow" / "seed0"
    run.mkdir(parents=True)
    lines = ["step,q_mean,diag_policy_improvement"]
    lines += [f"{1000 * (i + 1)},{qv},{iv}" for i, (qv, iv) in enumerate(zip(q, improvement))]
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    evals = np.array([1000, 3000, 4000, 5000, 6000, 7000])
    success = np.array([0.9, 0.1, 0.5, 0.0, 0.4, 0.0])
    fake = SimpleNamespace(env="env", agent="qflow", seed=0, path=run / "summary.json", curve=(evals, success))
    per_run, per_agent = critic_swings([fake], window=1000)
    assert per_run[0]["q_lowest_step"] == 2000
    (row,) = per_agent
    # evaluations after 2k: 3k..7k; Q's rise over the 1k before them: 1, 2, -1, 3, -1
    assert row["evaluations"] == 5
    assert row["correlation"] == pytest.approx(np.corrcoef([1, 2, -1, 3, -1], success[1:])[0, 1])
    # the improvement's mean over (step - 1000, step] is the row at the step itself: 3, 1, 4, 2, 5
    assert row["r_diag_policy_improvement"] == pytest.approx(np.corrcoef([3, 1, 4, 2, 5], success[1:])[0, 1])
    assert "r_diag_guidance_norm" not in row  # not logged by this run


def test_success_intervals_are_t_intervals_cut_to_rates(tmp_path):
    from qflow.reporting.diagnostics import rate_interval, setting_comparison_table
    from qflow.training.logs import write_rows

    # 0.2, 0.4, 0.6: sd 0.2, se 0.2 / sqrt(3) = 0.11547, t(0.975, 2) = 4.30265: 0.4 -+ 0.49683, cut at 0
    mean, low, high = rate_interval([0.2, 0.4, 0.6])
    assert (mean, low, high) == (pytest.approx(0.4), 0.0, pytest.approx(0.89683, abs=1e-5))
    assert rate_interval([0.9, 1.0, 1.0])[2] == 1.0  # never above 1
    for seed, (a, b) in enumerate([(0.0, 0.4), (0.4, 0.4), (0.8, 0.4)]):  # seed averages 0.2, 0.4, 0.6
        write_rows(tmp_path / "env-task2__qflow" / f"seed{seed}" / "eval.csv",
                   [{"step": 10, "success": a}, {"step": 20, "success": b}])
    row = setting_comparison_table([({"qflow": "lam 5"}, tmp_path)], steps=(10, 20)).splitlines()[2].split(" | ")
    assert row[4] == "40.0 [0.0, 89.7]"
