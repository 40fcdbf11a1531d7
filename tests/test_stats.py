"""Small-sample statistics: coverage by simulation, and hand-computed probability of improvement and
permutation p-values."""

import numpy as np
import pytest

from qflow.reporting import stats


def _seed_scores(rng, n, mean=0.4, spread=0.15, episodes=150):
    """Per-seed success rates as runs give them: a seed-level rate, then 150 episodes (3 evaluations x 50)."""
    a = mean * (mean * (1 - mean) / spread ** 2 - 1)
    b = (1 - mean) * (mean * (1 - mean) / spread ** 2 - 1)
    return rng.binomial(episodes, rng.beta(a, b, size=n)) / episodes


@pytest.mark.parametrize("n", [3, 5, 8])
def test_t_interval_keeps_its_coverage_at_few_seeds(n):
    rng = np.random.default_rng(n)
    trials, covered, percentile = 3000, 0, 0
    for _ in range(trials):
        scores = _seed_scores(rng, n)
        _, low, high = stats.t_interval(scores)
        covered += low <= 0.4 <= high
        boots = rng.choice(scores, size=(200, n)).mean(axis=1)
        lo, hi = np.quantile(boots, [0.025, 0.975])
        percentile += lo <= 0.4 <= hi
    assert covered / trials >= 0.90, covered / trials
    if n == 3:  # what the report used before: a percentile bootstrap cannot be wider than the 3 scores
        assert percentile / trials < 0.85, percentile / trials


def test_stratified_interval_covers_an_environment_mean_over_tasks():
    rng = np.random.default_rng(1)
    means = [0.1, 0.3, 0.5, 0.7, 0.9]
    trials, covered = 2000, 0
    for _ in range(trials):
        groups = [_seed_scores(rng, 3, mean=m, spread=0.08) for m in means]
        _, low, high = stats.stratified_t_interval(groups)
        covered += low <= np.mean(means) <= high
    assert covered / trials >= 0.90, covered / trials


def test_interval_edge_cases():
    assert stats.t_interval([0.5]) == (0.5, pytest.approx(float("nan"), nan_ok=True),
                                       pytest.approx(float("nan"), nan_ok=True))
    assert stats.t_interval([0.2, 0.2, 0.2]) == (pytest.approx(0.2), pytest.approx(0.2), pytest.approx(0.2))
    mean, low, high = stats.t_interval([0.0, 1.0])  # sd 0.707, se 0.5, t(0.975, 1) = 12.706
    assert (mean, low, high) == (0.5, pytest.approx(0.5 - 6.353, abs=1e-3), pytest.approx(0.5 + 6.353, abs=1e-3))


def test_probability_of_improvement_by_hand():
    # pairs (1, 1.5) no, (1, 0) yes, (2, 1.5) yes, (2, 0) yes: 3/4 on task one; a tie counts half on task two
    assert stats.probability_of_improvement([[1, 2], [1]], [[1.5, 0], [1]]) == pytest.approx((0.75 + 0.5) / 2)
    p, low, high = stats.probability_of_improvement_interval([[3, 4, 5]], [[0, 1, 2]], reps=200)
    assert p == 1.0 and low == high == 1.0


def test_permutation_test_by_hand():
    # 20 ways to pick 3 of 6; only the observed split and its mirror are as extreme as |3|: p = 2/20
    diff, p, count = stats.permutation_test([[3, 4, 5]], [[0, 1, 2]])
    assert (diff, p, count) == (3.0, pytest.approx(0.1), 20)
    diff, p, count = stats.permutation_test([[1, 2, 3]], [[1, 2, 3]])
    assert diff == 0.0 and p == 1.0
    # too many relabellings for the budget: sampled, never p = 0
    a, b = [np.arange(5) + 10.0] * 5, [np.arange(5)] * 5
    diff, p, count = stats.permutation_test(a, b, reps=500)
    assert count == 500 and 0 < p < 0.01 and diff == 10.0


def test_sign_flip_test_by_hand():
    # d = 1, 2, 3: the 8 sign patterns give sums 6, 4, 2, 0, 0, -2, -4, -6; |sum| >= 6 twice: p = 2/8
    mean, p, count = stats.sign_flip_test([1.0, 2.0, 3.0])
    assert (mean, p, count) == (2.0, 0.25, 8)
    mean, p, count = stats.sign_flip_test([1.0, -1.0])  # sums 0, 2, -2, 0: all as extreme as 0
    assert (mean, p) == (0.0, 1.0)
    mean, p, count = stats.sign_flip_test(np.ones(20), reps=1000)  # 2^20 patterns: sampled, never 0
    assert count == 1000 and 0 < p < 0.01


def test_correlation_permutation_test_by_hand():
    # x = 1..4, y = 1, 2, 4, 3: r = (sum xy - 25) / 5 = 0.8. Of the 24 orderings of y, |r| >= 0.8 needs
    # sum xy >= 29 (the identity and its 3 adjacent swaps) or <= 21 (the reversal and its 3): p = 8/24
    r, p, count = stats.correlation_permutation_test([1, 2, 3, 4], [1, 2, 4, 3])
    assert (r, p, count) == (pytest.approx(0.8), pytest.approx(1 / 3), 24)
    # two seeds that share every step: the steps move together, so still 24 orderings and p = 8/24
    r, p, count = stats.correlation_permutation_test([[1, 2, 3, 4]] * 2, [[1, 2, 4, 3]] * 2)
    assert (r, p, count) == (pytest.approx(0.8), pytest.approx(1 / 3), 24)
    with pytest.raises(ValueError):
        stats.correlation_permutation_test([[1, 2, 3]], [[1, 2]])
