"""`qflow toy2d`: the paper's 2-D bandit illustration of the BC-versus-value dilemma.

Setting (shared/docs/METHOD.md, "2-D illustration"): a one-step bandit whose actions are 2-D points.
The data are 10k points of a 2-D shape in [-4, 4]^2 with a reward r(a) per point; every method first
clones the data (BC epochs), then trains with its own value term (RL epochs) at four
behaviour-regularisation strengths. We reuse the project's agents unchanged: a constant dummy
observation (obs_dim 1, zeros), masks = 0 and reward = r(a), so the TD target is r itself and the
critic is a plain regression Q(a) -> r (no bootstrapping).

Choices of ours, all recorded in the output JSON:
- Action units. The agents clip actions to [-1, 1], so training uses a / 4 and plots and rewards use
  4 * action. The flow-matching, distillation and -Q / grad-V trade-offs then sit in agent units,
  where squared action distances are 16x smaller and action gradients 4x larger than in [-4, 4] units.
  Each method's knob is therefore set to strength * 16 (``knob_scale``), which reproduces the
  strength's trade-off in the paper's units exactly for all three methods (FBRAC / FQL: alpha * BC - Q;
  Q-Flow: (a - x0) + grad V / lambda). One side effect remains: the base noise N(0, I) in agent units
  is N(0, 16 I) in plot units.
- Strength -> knob: Q-Flow guidance_lambda, FQL alpha, FBRAC alpha (larger = closer to the data in
  all three).
- Phases. (1) Pretraining (CPU default only; 0 in --paper): the velocity field is flow-matched on the
  data once per seed with the flow-BC agent (about 1 ms per update) and copied into every method's
  velocity field (Q-Flow and FBRAC: the policy; FQL: its BC flow). This buys a far better BC fit than
  the methods' own losses could afford on a CPU. (2) BC phase (the paper's 2000 epochs): every method
  runs its own losses with the knob at ``bc_knob`` = 1e6, i.e. the value term off in effect, while the
  critic (and Q-Flow's inner value, FQL's one-step policy) learn. (3) RL phase (the paper's 100
  epochs): Adam re-initialised, knob = strength * knob_scale. Flow BC trains through all three phases.
  All strengths x seeds of one method train as one vmapped stack (``KnobAgent`` makes the knob a
  traced leaf), so a method compiles once per phase and the compiled chunks are reused by every dataset.
- Datasets follow the FFJORD-style generators (two spirals: arc parameter n in [0, 3 pi], points
  (-n cos n, n sin n) / 3, mirrored, +N(0, 0.1^2); swiss roll: (t cos t, t sin t) / 5 with
  t in [1.5 pi, 4.5 pi] + N(0, 0.2^2); moons: sklearn-style moons * 2 + (-1, -0.2) + N(0, 0.2^2);
  eight gaussians: centres at radius 4 / 1.414, std 0.5 / 1.414), clipped to [-4, 4]^2.
- Rewards. Swiss roll r = |a|^2 / 9 and two spirals r = clip(1 - n / 10, 0, 1) are the paper's; for
  two spirals r must be defined everywhere, so n is read from the radius (n = 3 |a|, exact on the
  noiseless spiral up to the generator's small offset) for data and samples alike. METHOD.md gives
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

import csv
import dataclasses
import functools
import math
import sys
import time
from pathlib import Path

import numpy as np

# jax / flax / the agents are imported inside the functions that need them, so that building the
# command-line parser (which reads the defaults below) stays fast.

SCALE = 4.0  # plot / reward units = SCALE * agent units
DATASETS = ("swiss_roll", "two_spirals", "moons", "eight_gaussians")
METHODS = ("flow_bc", "fbrac", "fql", "qflow")
KNOBS = {"qflow": "guidance_lambda", "fql": "alpha", "fbrac": "alpha"}  # strength -> this config key
LABELS = {"flow_bc": "flow BC", "fbrac": "FBRAC (BPTT)", "fql": "FQL (one-step)", "qflow": "Q-Flow"}


@dataclasses.dataclass(frozen=True)
class ToySettings:
    datasets: tuple = DATASETS  # which 2-D datasets to run
    methods: tuple = METHODS  # which methods (flow_bc, fbrac, fql, qflow)
    strengths: tuple = (0.3, 0.5, 1.0, 5.0)  # behaviour-regularisation strengths (paper's grid)
    seeds: tuple = (0, 1)  # agent seeds, trained side by side with vmap
    n_data: int = 10_000  # points per dataset (paper: 10k)
    pretrain_epochs: float = 200.0  # epochs of shared flow-BC pretraining of the velocity field (paper: none)
    bc_epochs: float = 50.0  # epochs of each method's own losses with the value term off (paper: 2000)
    rl_epochs: float = 10.0  # epochs with the value term on (paper: 100)
    batch_size: int = 256  # transitions per update (paper: 4096)
    flow_steps: int = 10  # K Euler steps (paper: 25)
    hidden_dims: tuple = (64, 64, 64)  # widths of every network (paper: 4x512)
    lr: float = 3e-4  # Adam learning rate
    knob_scale: float = SCALE**2  # knob = strength * knob_scale (see the module docstring)
    bc_knob: float = 1e6  # knob value during the BC phase (value term off in effect)
    eval_samples: int = 2000  # action samples per agent for the metrics
    support_radius: float = 0.1  # "inside the data support": nearest data point closer than this ([-4, 4] units)
    chunk: int = 200  # updates per jitted call (rounded so both phases use whole chunks)
    curve_points: int = 0  # measure reward / support this many times during the RL phase (0: at the end only)
    data_seed: int = 0  # seed of the data generators
    evolution_strength: float = 1.0  # strength shown in the flow-evolution figure
    paper: bool = False  # True when these are the paper's settings (recorded in the outputs)

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(self.n_data / self.batch_size))

    def phase_steps(self) -> tuple[int, int, int, int]:
        """(chunk length, pretraining, BC and RL steps); every phase rounded up to whole chunks."""
        rl = max(1, round(self.rl_epochs * self.steps_per_epoch))
        length = min(self.chunk, rl)
        if self.curve_points > 1:  # every curve point falls on a chunk boundary
            length = min(length, max(1, rl // self.curve_points))
        whole = lambda epochs: length * math.ceil(round(epochs * self.steps_per_epoch) / length)  # noqa: E731
        return length, whole(self.pretrain_epochs), whole(self.bc_epochs), whole(self.rl_epochs)

    def validate(self) -> None:
        unknown = sorted(set(self.datasets) - set(DATASETS))
        if unknown:
            raise ValueError(f"unknown toy2d dataset(s) {unknown}; choose from {', '.join(DATASETS)}")
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ValueError(f"unknown toy2d method(s) {unknown}; choose from {', '.join(METHODS)}")
        if not self.strengths or min(self.strengths) <= 0:
            raise ValueError(f"--strengths must be positive numbers, got {self.strengths}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"--seeds must be distinct integers, got {self.seeds}")
        if self.curve_points < 0:
            raise ValueError(f"--curve-points must be >= 0, got {self.curve_points}")
        for name in ("n_data", "batch_size", "flow_steps", "eval_samples", "chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.pretrain_epochs < 0 or self.bc_epochs < 0 or self.rl_epochs <= 0:
            raise ValueError(f"need --pretrain-epochs >= 0, --bc-epochs >= 0 and --rl-epochs > 0, got "
                             f"{self.pretrain_epochs}, {self.bc_epochs}, {self.rl_epochs}")
        if self.support_radius <= 0:
            raise ValueError(f"--support-radius must be > 0, got {self.support_radius}")


PAPER = dict(n_data=10_000, pretrain_epochs=0.0, bc_epochs=2000.0, rl_epochs=100.0, batch_size=4096,
             flow_steps=25, hidden_dims=(512, 512, 512, 512), paper=True)


# ---------------------------------------------------------------------------------------------- data
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


# ---------------------------------------------------------------------------------------------- training
def method_config(method: str, settings: ToySettings, knob: float | None):
    from qflow.agents import get_agent
    from qflow.agents.base import build_config

    _, config_cls = get_agent(method)
    overrides = {"actor_dims": tuple(settings.hidden_dims), "critic_dims": tuple(settings.hidden_dims),
                 "batch_size": settings.batch_size, "lr": settings.lr, "flow_steps": settings.flow_steps}
    if knob is not None:
        overrides[KNOBS[method]] = knob
    config = dataclasses.replace(build_config(config_cls, "paper"), **overrides)
    config.validate()
    return config


@functools.lru_cache(maxsize=None)
def knob_agent_class():
    """The ``KnobAgent`` class (built on first use, so this module imports without jax)."""
    from typing import Any

    import flax

    class KnobAgent(flax.struct.PyTreeNode):
        """An agent whose strength knob is a traced leaf, so agents with different strengths stack in one vmap.

        The project's configs are static (hashed by jit), so agents with different knobs could not share a
        vmapped call. The wrapper keeps the knob as an array and swaps it into the inner agent's config only
        for the duration of ``update``; the agents use the knob in arithmetic only, so the result equals
        that of an agent built with the same knob in its config (tested in tests/test_toy2d.py).
        """

        rng: Any
        inner: Any  # the project's agent; its config holds a placeholder knob
        knob: Any  # scalar array: the value of config.<knob_name> used by update
        knob_name: str = flax.struct.field(pytree_node=False)

        @property
        def config(self):
            return self.inner.config

        def update(self, batch):
            config = dataclasses.replace(self.inner.config, **{self.knob_name: self.knob})
            new, info = self.inner.replace(rng=self.rng, config=config).update(batch)
            return self.replace(rng=new.rng, inner=new.replace(config=self.inner.config)), info

        def sample_actions(self, obs, rng):
            return self.inner.sample_actions(obs, rng)

        @property
        def params(self):
            return self.inner.params

        @property
        def nets(self):
            return self.inner.nets

    return KnobAgent


class _Runner:
    """Runs whole chunks of stacked updates; one jitted function per chunk length, shared by all runs."""

    def __init__(self, length: int, bar):
        from qflow.training.trainer import make_train_chunk

        self.length, self.bar, self.fn = length, bar, make_train_chunk(length)
        self.nonfinite: list[str] = []

    def run(self, agents, data, steps: int, tag: str, every: int = 0, measure=None):
        """``steps`` updates; ``measure(agents, updates_done)`` after every ``every`` chunks when given."""
        for i in range(steps // self.length):
            agents, info = self.fn(agents, data)
            if measure is not None and ((i + 1) % every == 0 or i + 1 == steps // self.length):
                measure(agents, (i + 1) * self.length)
            bad = [k for k, v in info.items() if k.startswith("loss") and not np.all(np.isfinite(np.asarray(v)))]
            if bad and tag not in self.nonfinite:
                self.nonfinite.append(tag)  # recorded, not fatal: BPTT blowing up is one of the outcomes
            if self.bar is not None:
                self.bar.update(self.length)
        return agents


ACTOR_KEY = {"qflow": "actor", "fbrac": "actor", "fql": "flow"}  # where the pretrained velocity field goes


def pretrain_flow(data: dict, settings: ToySettings, runner: _Runner, tag: str):
    """Flow-BC agents (stacked over seeds) after the pretraining phase: the shared starting velocity field."""
    from qflow.agents import get_agent
    from qflow.training.trainer import stack

    agent_cls, _ = get_agent("flow_bc")
    config = method_config("flow_bc", settings, None)
    agents = stack([agent_cls.create(seed, 1, 2, config) for seed in settings.seeds])
    _, pre_steps, _, _ = settings.phase_steps()
    return runner.run(agents, data, pre_steps, f"{tag} pretraining")


def train_method(method: str, data: dict, settings: ToySettings, runner: _Runner, tag: str, pretrained,
                 measure=None) -> dict:
    """{strength: stacked agents over seeds}; flow BC has a single entry under key None.

    ``measure({strength: agents}, rl_updates)``, when given, is called ``settings.curve_points``
    times during the RL phase (flow BC: during its last ``rl_steps`` updates).

    ``pretrained``: flow-BC agents after pretraining; their velocity field starts every method.
    BC phase: one stack over seeds with the knob at ``bc_knob``. RL phase: those agents copied once per
    strength (Adam re-initialised, knob = strength * knob_scale) and trained as ONE stack of
    strengths x seeds, so each method compiles two chunk shapes in all, shared by every dataset.
    """
    import jax
    import jax.numpy as jnp

    from qflow.agents import get_agent
    from qflow.training.trainer import stack

    length, pre_steps, bc_steps, rl_steps = settings.phase_steps()
    n_seeds = len(settings.seeds)
    copy = lambda tree: jax.tree.map(jnp.copy, tree)  # noqa: E731  (training chunks donate their input)
    every = max(1, (rl_steps // length) // max(1, settings.curve_points))
    if method == "flow_bc":
        agents = runner.run(copy(pretrained), data, bc_steps, tag)
        on_curve = measure and (lambda agents, done: measure({None: agents}, done))  # noqa: E731
        return {None: runner.run(agents, data, rl_steps, tag, every, on_curve)}

    KnobAgent = knob_agent_class()
    agent_cls, _ = get_agent(method)
    config = method_config(method, settings, 1.0)  # placeholder knob; the real one is the traced leaf
    inner = stack([agent_cls.create(seed, 1, 2, config) for seed in settings.seeds])
    if pre_steps:
        inner = inner.replace(params={**inner.params, ACTOR_KEY[method]: copy(pretrained.params["actor"])})
        inner = inner.replace(opt_state=jax.vmap(inner.tx.init)(inner.params))
    wrap = lambda inner, knobs: KnobAgent(jnp.copy(inner.rng), inner, jnp.asarray(knobs, jnp.float32),  # noqa: E731
                                          KNOBS[method])
    agents = runner.run(wrap(inner, [settings.bc_knob] * n_seeds), data, bc_steps, f"{tag} BC phase")

    strengths = list(settings.strengths)
    tiled = jax.tree.map(lambda x: jnp.concatenate([x] * len(strengths)), agents.inner.replace(rng=agents.rng))
    tiled = tiled.replace(opt_state=jax.vmap(tiled.tx.init)(tiled.params))  # fresh Adam for the RL phase
    knobs = np.repeat(np.asarray(strengths, np.float64) * settings.knob_scale, n_seeds)
    split = lambda trained: {s: jax.tree.map(lambda x, i=i: x[i * n_seeds:(i + 1) * n_seeds], trained)  # noqa: E731
                             for i, s in enumerate(strengths)}
    on_curve = measure and (lambda agents, done: measure(split(agents), done))  # noqa: E731
    return split(runner.run(wrap(tiled, knobs), data, rl_steps, f"{tag} RL phase", every, on_curve))


@functools.lru_cache(maxsize=None)
def _sampler():
    import jax

    return jax.jit(lambda agents, keys, obs: jax.vmap(lambda agent, key: agent.sample_actions(obs, key))(agents, keys))


def sample_actions(agents, n: int, seed: int) -> np.ndarray:
    """(seeds, n, 2) samples in [-4, 4] units."""
    import jax
    import jax.numpy as jnp

    count = jax.tree.leaves(agents)[0].shape[0]
    keys = jax.random.split(jax.random.PRNGKey(seed), count)
    return SCALE * np.asarray(_sampler()(agents, keys, jnp.zeros((n, 1), jnp.float32)))


def flow_states(agent, n: int, seed: int, steps: int) -> np.ndarray:
    """(K + 1, n, 2) Euler states of one agent's velocity field from x0 to the (clipped) action, [-4, 4] units."""
    import jax
    import jax.numpy as jnp

    @jax.jit
    def run(params, key):
        obs = jnp.zeros((n, 1), jnp.float32)
        x = jax.random.normal(key, (n, 2))
        states = [x]
        for i in range(steps):
            x = x + agent.nets["actor"].apply(params, obs, x, jnp.full((n,), i / steps)) / steps
            states.append(x)
        states[-1] = jnp.clip(x, -1, 1)
        return jnp.stack(states)

    return SCALE * np.asarray(run(agent.params["actor"], jax.random.PRNGKey(seed)))


# ---------------------------------------------------------------------------------------------- outputs
def _heat(ax, name: str):
    grid = np.linspace(-SCALE, SCALE, 161)
    xx, yy = np.meshgrid(grid, grid)
    r = reward(name, np.stack([xx, yy], -1))
    ax.imshow(r, origin="lower", extent=(-SCALE, SCALE, -SCALE, SCALE), cmap="YlGn", alpha=0.7, aspect="equal")


def plot_grid(path: Path, name: str, data: np.ndarray, results: dict, settings: ToySettings, caption: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in settings.methods]
    cols = list(settings.strengths)
    fig, axes = plt.subplots(len(methods), len(cols), figsize=(2.6 * len(cols), 2.6 * len(methods) + 0.8),
                             squeeze=False)
    shown = data[:: max(1, len(data) // 3000)]
    for i, method in enumerate(methods):
        for j, strength in enumerate(cols):
            ax = axes[i][j]
            res = results[method][None if method == "flow_bc" else strength]
            _heat(ax, name)
            ax.scatter(shown[:, 0], shown[:, 1], s=1, c="0.6", alpha=0.35, linewidths=0)
            pts = res["samples"][0][:1000]
            pts = pts[np.all(np.isfinite(pts), -1)]
            ax.scatter(pts[:, 0], pts[:, 1], s=1.5, c="tab:red", alpha=0.7, linewidths=0)
            ax.set_xlim(-SCALE, SCALE)
            ax.set_ylim(-SCALE, SCALE)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"r {res['reward_mean']:.3f}  in {100 * res['support_mean']:.0f}%", fontsize=8)
            if i == 0:
                ax.annotate(f"strength {strength:g}", (0.5, 1.18), xycoords="axes fraction", ha="center", fontsize=9)
            if j == 0:
                ax.set_ylabel(LABELS[method], fontsize=9)
    fig.suptitle(f"{name}: final samples (red, seed {settings.seeds[0]}) over r(a) (colour), data grey", fontsize=10)
    fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=6.5, wrap=True)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_evolution(path: Path, name: str, data: np.ndarray, rows: list[tuple[str, np.ndarray]], steps: int,
                   caption: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    taus = (0.0, 0.25, 0.5, 0.75, 1.0)
    fig, axes = plt.subplots(len(rows), len(taus), figsize=(2.6 * len(taus), 2.7 * len(rows) + 0.6), squeeze=False)
    shown = data[:: max(1, len(data) // 3000)]
    lim = 1.5 * SCALE
    for i, (label, states) in enumerate(rows):
        for j, tau in enumerate(taus):
            step = int(round(tau * steps))
            ax = axes[i][j]
            ax.scatter(shown[:, 0], shown[:, 1], s=1, c="0.8", alpha=0.5, linewidths=0)
            ax.scatter(states[step][:, 0], states[step][:, 1], s=1.5, c="tab:blue", alpha=0.6, linewidths=0)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_aspect("equal")
            if i == 0:
                ax.set_title(f"tau = {step / steps:.2f}", fontsize=9)
            if j == 0:
                ax.set_ylabel(label, fontsize=9)
    fig.suptitle(f"{name}: flow evolution x_tau (blue) over the data (grey)", fontsize=10)
    fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=6.5, wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def caption_for(settings: ToySettings) -> str:
    _, pre, bc, rl = settings.phase_steps()
    kind = "paper settings" if settings.paper else "REDUCED CPU settings (not the paper's; --paper restores them)"
    phases = f"{pre} shared flow-BC + " if pre else ""
    epochs = f"{settings.pretrain_epochs:g} + " if pre else ""
    nets, seeds = "x".join(map(str, settings.hidden_dims)), ",".join(map(str, settings.seeds))
    return (f"{kind}: {settings.n_data} points, batch {settings.batch_size}, {phases}{bc} BC + {rl} RL updates "
            f"({epochs}{settings.bc_epochs:g} + {settings.rl_epochs:g} epochs), K = {settings.flow_steps}, "
            f"nets {nets}, "
            f"seeds {seeds}; knob = strength x {settings.knob_scale:g} in agent units (actions / 4); 'in' = samples "
            f"within {settings.support_radius:g} of a data point.")


def _write_tables(out: Path, rows: list[dict], caption: str) -> None:
    from qflow.utils import atomic_writer

    fields = ["dataset", "method", "strength", "knob", "seed", "reward_mean", "support_fraction", "finite_fraction"]
    with atomic_writer(out / "toy2d.csv", "w") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in fields})

    groups: dict = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["method"], row["strength"], row["knob"]), []).append(row)
    lines = ["# Toy 2-D bandit: mean reward and share of samples inside the data support", "", caption, "",
             "| dataset | method | strength | knob | mean reward (sd over seeds) | in support % (sd) | seeds |",
             "|---|---|---|---|---|---|---|"]
    for (dataset, method, strength, knob), group in groups.items():
        r = np.array([g["reward_mean"] for g in group], float)
        s = 100 * np.array([g["support_fraction"] for g in group], float)
        sd = lambda x: f" ({np.std(x):.3f})" if len(x) > 1 else ""  # noqa: E731
        sd1 = lambda x: f" ({np.std(x):.1f})" if len(x) > 1 else ""  # noqa: E731
        lines.append(f"| {dataset} | {method} | {strength} | {knob} | {np.nanmean(r):.3f}{sd(r)} | "
                     f"{np.mean(s):.1f}{sd1(s)} | {len(group)} |")
    with atomic_writer(out / "toy2d.md", "w") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------- driver
def run_toy2d(settings: ToySettings, out_dir: str | Path | None = "results/toy2d", progress: bool = True,
              command: str | None = None, plots: bool = True) -> dict:
    """Train every (dataset, method, strength, seed), write figures / tables / JSON; return the summary."""
    import jax

    from qflow.utils import atomic_write_json, package_versions

    settings.validate()
    started = time.time()
    length, pre_steps, bc_steps, rl_steps = settings.phase_steps()
    n_seeds = len(settings.seeds)
    per_dataset = pre_steps + (bc_steps + rl_steps) * len(settings.methods)  # stacked updates (progress bar)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=per_dataset * len(settings.datasets), unit="upd", dynamic_ncols=True,
                   desc="toy2d", postfix={"seeds/call": n_seeds})
    runner = _Runner(length, bar)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    caption = caption_for(settings)

    rows, summary_results, timings, figures, curve = [], {}, {}, [], []
    for d_index, name in enumerate(settings.datasets):
        points = generate(name, settings.n_data, settings.data_seed + d_index)
        data = bandit_batch(name, points)
        fresh = generate(name, settings.eval_samples, settings.data_seed + 1000 + d_index)
        rows.append({"dataset": name, "method": "data", "strength": "", "knob": "", "seed": "",
                     "reward_mean": float(reward(name, points).mean()),
                     "support_fraction": support_fraction(fresh, points, settings.support_radius),
                     "finite_fraction": 1.0})
        results: dict = {}
        trained: dict = {}
        if bar is not None:
            bar.set_postfix_str(f"{name} / pretraining")
        t0 = time.time()
        pretrained = pretrain_flow(data, settings, runner, name)
        timings[f"{name}/pretraining"] = round(time.time() - t0, 1)
        for method in settings.methods:
            if bar is not None:
                bar.set_postfix_str(f"{name} / {method}")
            t0 = time.time()

            def measure(by_strength, rl_updates, name=name, method=method, points=points):
                for strength, agents in by_strength.items():
                    samples = sample_actions(agents, settings.eval_samples, seed=12345)
                    for i, seed in enumerate(settings.seeds):
                        finite = np.all(np.isfinite(samples[i]), -1)
                        curve.append({"dataset": name, "method": method, "strength": "" if strength is None else strength,
                                      "seed": seed, "rl_updates": rl_updates,
                                      "reward_mean": float(reward(name, samples[i][finite]).mean()) if finite.any()
                                      else float("nan"),
                                      "support_fraction": support_fraction(samples[i], points, settings.support_radius)})

            trained[method] = train_method(method, data, settings, runner, f"{name}/{method}", pretrained,
                                           measure if settings.curve_points else None)
            results[method] = {}
            for strength, agents in trained[method].items():
                samples = sample_actions(agents, settings.eval_samples, seed=12345)
                per_seed = []
                for i, seed in enumerate(settings.seeds):
                    finite = np.all(np.isfinite(samples[i]), -1)
                    r = reward(name, samples[i][finite]).mean() if finite.any() else float("nan")
                    row = {"dataset": name, "method": method, "strength": "" if strength is None else strength,
                           "knob": "" if strength is None else f"{KNOBS[method]}={strength * settings.knob_scale:g}",
                           "seed": seed, "reward_mean": float(r),
                           "support_fraction": support_fraction(samples[i], points, settings.support_radius),
                           "finite_fraction": float(finite.mean())}
                    rows.append(row)
                    per_seed.append(row)
                results[method][strength] = {
                    "samples": samples,
                    "reward_mean": float(np.nanmean([r["reward_mean"] for r in per_seed])),
                    "support_mean": float(np.mean([r["support_fraction"] for r in per_seed])),
                }
            timings[f"{name}/{method}"] = round(time.time() - t0, 1)
        summary_results[name] = {m: {str(k): {kk: vv for kk, vv in v.items() if kk != "samples"}
                                     for k, v in res.items()} for m, res in results.items()}
        if out is not None and plots:
            plot_grid(out / f"{name}_grid.png", name, points, results, settings, caption)
            figures.append(f"{name}_grid.png")
            if "flow_bc" in trained and "qflow" in trained:
                strength = min(settings.strengths, key=lambda s: abs(s - settings.evolution_strength))
                pick = lambda agents: jax.tree.map(lambda x: x[0], agents)  # noqa: E731
                evo = [("flow BC", flow_states(pick(trained["flow_bc"][None]), 1000, 7, settings.flow_steps)),
                       (f"Q-Flow, strength {strength:g}",
                        flow_states(pick(trained["qflow"][strength]), 1000, 7, settings.flow_steps))]
                plot_evolution(out / f"{name}_evolution.png", name, points, evo, settings.flow_steps,
                               caption + " Axes span +-6: x0 ~ N(0, I) in agent units is N(0, 16 I) here.")
                figures.append(f"{name}_evolution.png")
        del trained, pretrained
    if bar is not None:
        bar.close()

    summary = {
        "settings": {**dataclasses.asdict(settings), "steps_per_epoch": settings.steps_per_epoch,
                     "chunk_length": length, "pretrain_steps": pre_steps, "bc_steps": bc_steps,
                     "rl_steps": rl_steps},
        "results": summary_results,
        "nonfinite_losses": runner.nonfinite,
        "timings_s": timings,
        "wall_time_s": round(time.time() - started, 1),
        "versions": package_versions(),
        "device": jax.devices()[0].device_kind,
        "command": command if command is not None else " ".join(sys.argv),
        "caption": caption,
        "figures": figures,
        "rows": rows,
    }
    if curve:
        summary["curve"] = curve
        if out is not None and plots:
            summary["figures"] += [f"{name}_curve.png" for name in dict.fromkeys(r["dataset"] for r in curve)]
    if out is not None:
        _write_tables(out, rows, caption)
        if curve:
            _write_curve(out, curve, caption, plots)
        atomic_write_json(out / "toy2d.json", summary)
    return summary


def _write_curve(out: Path, curve: list[dict], caption: str, plots: bool) -> None:
    """toy2d_curve.csv (reward and support per seed at each measured RL update) and one figure per dataset."""
    from qflow.training.logs import write_rows

    write_rows(out / "toy2d_curve.csv", curve)
    if not plots:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name in dict.fromkeys(r["dataset"] for r in curve):
        rows = [r for r in curve if r["dataset"] == name]
        strengths = sorted({r["strength"] for r in rows if r["strength"] != ""})
        fig, axes = plt.subplots(2, len(strengths), figsize=(3.2 * len(strengths), 5.6), squeeze=False)
        for j, strength in enumerate(strengths):
            for method in dict.fromkeys(r["method"] for r in rows):
                pick = [r for r in rows if r["method"] == method and r["strength"] in (strength, "")]
                steps = sorted({r["rl_updates"] for r in pick})
                for k, key in enumerate(("reward_mean", "support_fraction")):
                    mean = [np.mean([r[key] for r in pick if r["rl_updates"] == u]) for u in steps]
                    axes[k][j].plot(steps, mean, marker=".", label=LABELS[method])
            axes[0][j].set_title(f"strength {strength:g}", fontsize=9)
            axes[1][j].set_xlabel("RL updates")
        axes[0][0].set_ylabel("mean reward")
        axes[1][0].set_ylabel("in support (fraction)")
        axes[0][-1].legend(fontsize=7)
        fig.suptitle(f"{name}: reward and support against RL updates (mean over seeds)", fontsize=10)
        fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=6.5, wrap=True)
        fig.tight_layout(rect=(0, 0.05, 1, 0.96))
        fig.savefig(out / f"{name}_curve.png", dpi=110)
        plt.close(fig)
