"""Small-sample statistics for a handful of seeds: intervals that keep their coverage at n = 3-10, the
probability of improvement, a permutation test between two agents, a sign-flip test for paired
differences, and a permutation test of a correlation whose steps are shared by several seeds.

Why not the percentile bootstrap for the mean: resampling 3 scores can never give an interval wider
than their range, so its nominal 95 % covers far less (about 73 % at n = 3, measured). The t-interval
on per-seed scores assumes roughly normal seed-to-seed variation (success rates averaged over 50
episodes and three evaluations are close to it) and keeps its coverage at small n; the test
``tests/test_stats.py`` checks it by simulation.

Across tasks (an environment's score) the tasks are strata: mean = average of the task means,
standard error from each task's variance, degrees of freedom by Welch-Satterthwaite.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import stats as st

LEVEL = 0.95


def t_interval(scores, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high) of one group of per-seed scores; (mean, nan, nan) with fewer than two."""
    return stratified_t_interval([scores], level)


def stratified_t_interval(groups, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high) of the average of the groups' means (one group per task, one score per seed)."""
    groups = [np.asarray(g, np.float64) for g in groups]
    mean = float(np.mean([g.mean() for g in groups]))
    if any(len(g) < 2 for g in groups):
        return mean, float("nan"), float("nan")
    k = len(groups)
    parts = np.array([g.var(ddof=1) / (len(g) * k * k) for g in groups])  # each task's share of the variance
    se2 = parts.sum()
    if se2 == 0:
        return mean, mean, mean
    df = se2 ** 2 / np.sum(parts ** 2 / np.array([len(g) - 1 for g in groups]))
    half = st.t.ppf(0.5 + level / 2, df) * np.sqrt(se2)
    return mean, float(mean - half), float(mean + half)


def rate_bounds(low: float, high: float) -> tuple[float, float]:
    """An interval of success rates cut to [0, 1]: no rate lies outside, so coverage only grows."""
    return float(np.clip(low, 0.0, 1.0)), float(np.clip(high, 0.0, 1.0))


def probability_of_improvement(a_groups, b_groups) -> float:
    """P(a run of A scores above a run of B on the same task), ties counting half, averaged over tasks."""
    values = []
    for a, b in zip(a_groups, b_groups):
        a, b = np.asarray(a)[:, None], np.asarray(b)[None, :]
        values.append(float(np.mean((a > b) + 0.5 * (a == b))))
    return float(np.mean(values))


def probability_of_improvement_interval(a_groups, b_groups, reps: int = 2000, level: float = LEVEL,
                                        seed: int = 0) -> tuple[float, float, float]:
    """(P, low, high): a stratified bootstrap over each agent's runs within each task (percentile; with few
    runs it is narrower than it should be, so read it beside the permutation test)."""
    rng = np.random.default_rng(seed)
    point = probability_of_improvement(a_groups, b_groups)
    draws = [probability_of_improvement([rng.choice(a, len(a)) for a in a_groups],
                                        [rng.choice(b, len(b)) for b in b_groups]) for _ in range(reps)]
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return point, float(low), float(high)


def permutation_test(a_groups, b_groups, reps: int = 20_000, seed: int = 0) -> tuple[float, float, int]:
    """(difference of the mean scores A - B, two-sided p-value, permutations used): agent labels are
    permuted within each task. Exact (every relabelling) when there are at most ``reps`` of them,
    else ``reps`` random ones with the +1 correction, so p is never 0."""
    a_groups = [np.asarray(a, np.float64) for a in a_groups]
    b_groups = [np.asarray(b, np.float64) for b in b_groups]
    observed = _difference(a_groups, b_groups)
    pooled = [np.concatenate([a, b]) for a, b in zip(a_groups, b_groups)]
    choices = [list(itertools.combinations(range(len(p)), len(a))) for p, a in zip(pooled, a_groups)]
    total = int(np.prod([len(c) for c in choices], dtype=np.float64))
    if total <= reps:
        relabellings = itertools.product(*choices)
        exact = True
    else:
        rng = np.random.default_rng(seed)
        relabellings = (tuple(tuple(rng.permutation(len(p))[:len(a)]) for p, a in zip(pooled, a_groups))
                        for _ in range(reps))
        exact = False
    extreme = count = 0
    for picks in relabellings:
        a_new = [p[list(i)] for p, i in zip(pooled, picks)]
        b_new = [np.delete(p, list(i)) for p, i in zip(pooled, picks)]
        extreme += abs(_difference(a_new, b_new)) >= abs(observed) - 1e-12
        count += 1
    p = extreme / count if exact else (extreme + 1) / (count + 1)
    return observed, float(p), count


def _difference(a_groups, b_groups) -> float:
    return float(np.mean([a.mean() - b.mean() for a, b in zip(a_groups, b_groups)]))


def sign_flip_test(differences, reps: int = 20_000, seed: int = 0) -> tuple[float, float, int]:
    """(mean difference, two-sided p-value, sign patterns used) for paired data: under no effect each pair's
    difference is as likely negative as positive. Exact (all 2^n sign patterns) when 2^n <= ``reps``, so
    the smallest p is 2 / 2^n (0.25 at n = 3); else ``reps`` random patterns with the +1 correction."""
    d = np.asarray(differences, np.float64)
    observed = float(d.mean())
    if 2 ** len(d) <= reps:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
        exact = True
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(reps, len(d)))
        exact = False
    extreme = int(np.sum(np.abs(signs @ d / len(d)) >= abs(observed) - 1e-12))
    p = extreme / len(signs) if exact else (extreme + 1) / (len(signs) + 1)
    return observed, float(p), len(signs)


def correlation_permutation_test(x, y, reps: int = 20_000, seed: int = 0) -> tuple[float, float, int]:
    """(Pearson r, two-sided p-value, orderings used) of x and y given as (units, steps) arrays, e.g. seeds x
    evaluation steps: the steps of y are permuted with each step's units kept together, so a step effect
    that all seeds share counts once, not once per seed. One row is the ordinary permutation test. Exact
    (every ordering) when steps! <= ``reps``: the smallest p is then 1 / steps! at best (1/120 for 5
    steps); else ``reps`` random orderings with the +1 correction."""
    x, y = np.atleast_2d(np.asarray(x, np.float64)), np.atleast_2d(np.asarray(y, np.float64))
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {x.shape} and {y.shape}")
    r = float(np.corrcoef(x.ravel(), y.ravel())[0, 1])
    k = x.shape[1]
    if math.factorial(k) <= reps:
        orders, exact = itertools.permutations(range(k)), True
    else:
        rng = np.random.default_rng(seed)
        orders, exact = (rng.permutation(k) for _ in range(reps)), False
    extreme = count = 0
    for order in orders:
        extreme += abs(np.corrcoef(x.ravel(), y[:, list(order)].ravel())[0, 1]) >= abs(r) - 1e-12
        count += 1
    p = extreme / count if exact else (extreme + 1) / (count + 1)
    return r, float(p), count
