"""The 2-D datasets, their rewards and the in-support metric.

- Datasets follow the FFJORD-style generators (two spirals: arc parameter n in [0, 3 pi], points
  (-n cos n, n sin n) / 3, mirrored, +N(0, 0.1^2); swiss roll: (t cos t, t sin t) / 5 with
  t in [1.5 pi, 4.5 pi] + N(0, 0.2^2); moons: sklearn-style moons * 2 + (-1, -0.2) + N(0, 0.2^2);
  eight gaussians: centres at radius 4 / 1.414, std 0.5 / 1.414), clipped to [-4, 4]^2.
- Rewards. Swiss roll r = |a|^2 / 9 and two spirals r = clip(1 - n / 10, 0, 1) are the paper's; for
  two spirals r must be defined everywhere, so n is read from the radius (n = 3 |a|, exact on the
  noiseless spiral up to the generator's small offset) for data and samples alike. The paper gives
  no reward for moons and eight gaussians; ours are linear with slope 0.5 per unit, about the swiss
  roll's |grad r| = 2 |a| / 9 on its data: moons r = a_x / 2 (right tip best), eight gaussians
  r = (a_x + a_y) / (2 sqrt 2) (north-east mode best). Swiss roll, moons and eight gaussians keep
  growing past the data, so leaving the support is tempting; two spirals peaks at the centre,
  inside the data.
- In-support fraction: share of samples whose nearest data point is closer than ``support_radius``
  (0.1 in [-4, 4] units; among 10k data points the mean nearest-neighbour distance is 0.018-0.024
  and its 95th percentile 0.04-0.06). The "data" row reports the same fraction for fresh draws of
  the generator (the ceiling, 98-99.7 %).
"""

from __future__ import annotations

import numpy as np

from qflow.experiments.toy2d.settings import DATASETS, SCALE


def generate(name: str, n: int, seed: int = 0) -> np.ndarray:
    """``n`` points of dataset ``name`` in [-4, 4]^2 (float32)."""
    rng = np.random.default_rng(seed)
    if name == "swiss_roll":
        t = 1.5 * np.pi * (1 + 2 * rng.random(n))
        pts = np.stack([t * np.cos(t), t * np.sin(t)], 1) / 5 + 0.2 * rng.normal(size=(n, 2))
    elif name == "two_spirals":
        arc = np.sqrt(rng.random(n)) * 3 * np.pi
        side = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)[:, None]
        base = np.stack([-np.cos(arc) * arc, np.sin(arc) * arc], 1) + 0.5 * rng.random((n, 2))
        pts = side * base / 3 + 0.1 * rng.normal(size=(n, 2))
    elif name == "moons":
        theta = np.pi * rng.random(n)
        upper = np.arange(n) % 2 == 0
        pts = np.where(upper[:, None], np.stack([np.cos(theta), np.sin(theta)], 1),
                       np.stack([1 - np.cos(theta), 0.5 - np.sin(theta)], 1))
        pts = pts * 2 + np.array([-1.0, -0.2]) + 0.2 * rng.normal(size=(n, 2))
    elif name == "eight_gaussians":
        angles = np.pi / 4 * rng.integers(0, 8, n)
        centres = 4 * np.stack([np.cos(angles), np.sin(angles)], 1)
        pts = (centres + 0.5 * rng.normal(size=(n, 2))) / 1.414
    else:
        raise ValueError(f"unknown toy2d dataset {name!r}; choose from {', '.join(DATASETS)}")
    return np.clip(pts, -SCALE, SCALE).astype(np.float32)


def reward(name: str, actions) -> np.ndarray:
    """r(a) for actions in [-4, 4] units (last axis 2); see the module docstring."""
    a = np.asarray(actions, np.float64)
    if name == "swiss_roll":
        return (a**2).sum(-1) / 9
    if name == "two_spirals":
        return np.clip(1 - 3 * np.linalg.norm(a, axis=-1) / 10, 0, 1)
    if name == "moons":
        return a[..., 0] / 2
    if name == "eight_gaussians":
        return (a[..., 0] + a[..., 1]) / (2 * np.sqrt(2))
    raise ValueError(f"unknown toy2d dataset {name!r}; choose from {', '.join(DATASETS)}")


def bandit_batch(name: str, points: np.ndarray) -> dict:
    """The agents' dataset: dummy observation, actions in agent units, r(a), masks 0 (no bootstrapping)."""
    import jax.numpy as jnp

    n = len(points)
    return {
        "observations": jnp.zeros((n, 1), jnp.float32),
        "next_observations": jnp.zeros((n, 1), jnp.float32),
        "actions": jnp.asarray(points / SCALE, jnp.float32),
        "rewards": jnp.asarray(reward(name, points), jnp.float32),
        "masks": jnp.zeros((n,), jnp.float32),
    }


def support_fraction(samples: np.ndarray, data: np.ndarray, radius: float) -> float:
    """Share of samples whose nearest data point is closer than ``radius`` (non-finite samples: outside)."""
    from scipy.spatial import cKDTree

    samples = np.asarray(samples, np.float64)
    finite = np.all(np.isfinite(samples), -1)
    if not finite.any():
        return 0.0
    dist, _ = cKDTree(data).query(samples[finite], k=1)
    return float(np.sum(dist < radius) / len(samples))


def sample_scores(name: str, samples: np.ndarray, data: np.ndarray, radius: float) -> tuple[float, float, float]:
    """(mean reward of the finite samples, NaN if none; in-support fraction; finite fraction) of one agent."""
    finite = np.all(np.isfinite(samples), -1)
    r = reward(name, samples[finite]).mean() if finite.any() else float("nan")
    return float(r), support_fraction(samples, data, radius), float(finite.mean())
