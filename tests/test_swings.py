"""The swing study's planned statistics (docs/analysis_plan_swings.md) on hand-made evaluations."""

import json
import math

import numpy as np
import pytest

from qflow.reporting import swings
from qflow.training.logs import write_rows


def test_swing_floor_and_fall_by_hand():
    s = [0.2, 0.6, 0.4, 0.4, 0.0]
    assert swings.swing(s) == pytest.approx((0.4 + 0.2 + 0.0 + 0.4) / 4)
    assert swings.largest_fall(s) == pytest.approx(0.6)  # 0.6 at the second evaluation, 0.0 at the last
    assert swings.largest_fall([0.1, 0.2, 0.4]) == pytest.approx(-0.1)  # only rises: the smallest rise, negated
    # E|X - Y| of two binomial rates at p = 0.3, 50 episodes, by the normal approximation
    assert swings.noise_floor(0.3) == pytest.approx(math.sqrt(2 * 0.3 * 0.7 / 50) * math.sqrt(2 / math.pi))
    assert swings.noise_floor(0.3) == pytest.approx(0.073, abs=5e-4)  # the plan's worked value
    r = swings.run_statistics(s)
    assert r["E"] == pytest.approx(r["S"] - swings.noise_floor(np.mean(s))) and r["M"] == pytest.approx(0.32)


def test_the_noise_floor_matches_simulated_binomial_evaluations():
    rng = np.random.default_rng(0)
    x, y = rng.binomial(50, 0.3, 200_000) / 50, rng.binomial(50, 0.3, 200_000) / 50
    assert swings.noise_floor(0.3) == pytest.approx(np.mean(np.abs(x - y)), rel=0.05)


def write_study(root, arm, seeds, steps, series):
    for seed in seeds:
        write_rows(root / arm / f"seed{seed}" / "eval.csv",
                   [{"step": t, "success": v, "episodes": 50} for t, v in zip(steps, series(seed))])


def test_a_frozen_critic_that_removes_the_swings_is_supported_and_a_short_run_is_left_out(tmp_path):
    seeds = range(8)
    swinging = lambda seed: [0.5 if i % 2 else 0.1 + 0.01 * seed for i in range(10)]  # noqa: E731
    steady = lambda seed: [0.3 + 0.001 * seed] * 10  # noqa: E731
    steps_ad = range(26_000, 35_001, 1_000)
    write_study(tmp_path, "a_no_change", seeds, steps_ad, swinging)
    write_study(tmp_path, "b_critic_frozen", seeds, steps_ad, steady)
    write_study(tmp_path, "c_actor_frozen", seeds, steps_ad, swinging)
    write_study(tmp_path, "d_slow_target", seeds[:7], steps_ad, steady)
    write_study(tmp_path, "d_slow_target", [7], steps_ad[:5], steady)  # unfinished: not scored
    rows = {r["hypothesis"]: r for r in swings.analyse(tmp_path, tmp_path / "report")}
    assert rows["H1"]["decision"] == "supported" and rows["H1"]["p"] == pytest.approx(2 / 2 ** 8)
    assert rows["H1"]["n"] == 8 and rows["H1"]["high"] < 0
    assert rows["H2"]["decision"] == "no evidence either way"  # identical arms: every difference is 0
    assert rows["H3"]["n"] == 7 and rows["H3"]["decision"] == "supported"
    assert rows["H4"]["decision"] == "supported"  # S = 0.4 against a floor of about 0.09
    assert rows["H5"]["decision"] == "not enough seeds"  # no (e) runs yet
    assert rows["H5 (e vs a)"]["decision"] == "not enough seeds"  # planned, so listed even without runs
    assert rows["H1 secondary"]["decision"].startswith("a difference: the arm's mean success is lower")
    report = (tmp_path / "report" / "hypotheses.md").read_text()
    assert "d_slow_target/seed7: lacks the scored evaluations" in report
    # E / M of seed 7 by hand: swinging 0.17, 0.5, ...: S = 0.33, M = 0.335, F = sqrt(2 .335 .665 / 50) sqrt(2 / pi)
    # = 0.0753; steady 0.307: S = 0, F = 0.0736; (d) has no complete seed 7
    assert "| 7 | +0.255 / 0.335 | -0.074 / 0.307 | +0.255 / 0.335 | - |" in report
    assert len((tmp_path / "report" / "per_run.csv").read_text().splitlines()) == 1 + 8 * 3 + 7


def test_four_seeds_can_only_give_a_lead():
    rows = swings._test([-0.1, -0.2, -0.15, -0.3, -0.2], -1, hypothesis="H1", statistic="")
    assert rows["p"] == pytest.approx(0.0625)  # 2 / 2^5: even 5 seeds cannot reach 0.05
    assert rows["decision"] == "no evidence either way (5 seeds cannot reach p < 0.05: a lead)"
    assert "lead" not in swings._test([-0.1] * 6, -1, hypothesis="H1", statistic="")["decision"]


def test_a_run_evaluated_with_other_episodes_is_left_out(tmp_path):
    steps = range(26_000, 35_001, 1_000)
    for seed in range(2):
        write_rows(tmp_path / "a_no_change" / f"seed{seed}" / "eval.csv",
                   [{"step": t, "success": 0.2, "episodes": 50 if seed == 0 else 25} for t in steps])
    arm, notes = swings.read_arm(tmp_path, "a_no_change")
    assert list(arm) == [0] and notes == ["a_no_change/seed1: evaluated with [25] episodes, not the plan's 50; left out"]


def test_the_curves_of_a_branch_start_with_its_base_runs_evaluations(tmp_path):
    write_rows(tmp_path / "base" / "seed0" / "eval.csv",
               [{"step": t, "success": 0.1, "episodes": 50} for t in (5_000, 25_000, 30_000)])
    # the record names the machine the runs were made on; the copy under tmp_path keeps the directory's name
    for arm, init_from in (("a_no_change", {"run_dir": "/elsewhere/runs/base", "step": 25_000}),
                           ("e_reference_sampling", None)):
        write_rows(tmp_path / arm / "seed0" / "eval.csv", [{"step": 26_000, "success": 0.3, "episodes": 50}])
        (tmp_path / arm / "seed0" / "run.json").write_text(json.dumps({"init_from": init_from}))
    write_rows(tmp_path / "base" / "seed1" / "eval.csv", [{"step": t, "success": 0.1, "episodes": 50}
                                                          for t in (25_000, 30_000)])
    (tmp_path / "a_no_change" / "seed1").mkdir()  # a branch that has not evaluated yet
    (tmp_path / "a_no_change" / "seed1" / "run.json").write_text(
        json.dumps({"init_from": {"run_dir": "/elsewhere/runs/base", "step": 25_000}}))
    found = swings.curves(tmp_path)
    assert found["a_no_change"][1] == ([25_000], [0.1])  # nothing of base after the step the branch started from
    assert found["a_no_change"][0] == ([5_000, 25_000, 26_000], [0.1, 0.1, 0.3])  # base's evaluations up to the branch's start
    assert found["e_reference_sampling"][0] == ([26_000], [0.3])  # trained from step 0: no base before it
    assert found["f_dataset_seed1"] == {}
    swings.analyse(tmp_path, tmp_path / "report")
    assert (tmp_path / "report" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "| (a) no change | none complete |" in (tmp_path / "report" / "hypotheses.md").read_text()  # 1 of 10 evals
