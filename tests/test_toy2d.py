"""The 2-D bandit study: data generators, rewards, the knob wrapper, and a short run showing the effect."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qflow.experiments import toy2d
from qflow.experiments.toy2d import DATASETS, SCALE, ToySettings, generate, reward, support_fraction


@pytest.mark.parametrize("name", DATASETS)
def test_generators_shapes_ranges_and_reproducibility(name):
    pts = generate(name, 3000, seed=4)
    assert pts.shape == (3000, 2) and pts.dtype == np.float32
    assert np.all(np.abs(pts) <= SCALE)
    np.testing.assert_array_equal(pts, generate(name, 3000, seed=4))
    assert not np.array_equal(pts, generate(name, 3000, seed=5))
    radius = np.linalg.norm(pts, axis=1)
    if name == "swiss_roll":  # (t cos t, t sin t) / 5, t in [1.5 pi, 4.5 pi], noise 0.2
        assert 0.3 < radius.min() and np.percentile(radius, 99) < 3.4 and radius.max() > 2.4
    if name == "two_spirals":  # both arms start at the centre and end near radius pi
        assert radius.min() < 0.3 and 2.8 < radius.max() < 4.0
        assert abs(np.mean(pts[:, 0])) < 0.2  # mirrored arms
    if name == "eight_gaussians":  # mass concentrated near eight centres at radius 4 / 1.414
        angles = np.round(np.arctan2(pts[:, 1], pts[:, 0]) / (np.pi / 4)) % 8
        assert len(np.unique(angles)) == 8 and abs(np.median(radius) - 4 / 1.414) < 0.2
    if name == "moons":
        assert pts[:, 0].min() < -2.5 and pts[:, 0].max() > 2.5 and -2.2 < pts[:, 1].min() < -1.0


def test_rewards_at_hand_picked_points():
    pts = np.array([[0.0, 0.0], [3.0, 0.0], [1.0, 2.0], [-4.0, 4.0]])
    np.testing.assert_allclose(reward("swiss_roll", pts), [0.0, 1.0, 5 / 9, 32 / 9])
    # Two spirals: r = clip(1 - n / 10, 0, 1) with arc parameter n = 3 |a| (centre best).
    np.testing.assert_allclose(reward("two_spirals", [[0.0, 0.0], [1.0, 0.0], [0.0, -2.0], [4.0, 0.0]]),
                               [1.0, 0.7, 0.4, 0.0])
    np.testing.assert_allclose(reward("moons", [[0.0, 1.0], [4.0, 0.0], [-4.0, 0.0], [2.0, -1.0]]),
                               [0.0, 2.0, -2.0, 1.0])
    np.testing.assert_allclose(reward("eight_gaussians", [[0.0, 0.0], [2.0, 2.0], [-2.0, 2.0], [4.0, 4.0]]),
                               [0.0, np.sqrt(2), 0.0, 2 * np.sqrt(2)])
    batch = toy2d.bandit_batch("swiss_roll", np.array([[3.0, 0.0], [0.0, -1.5]], np.float32))
    np.testing.assert_allclose(batch["actions"], [[0.75, 0.0], [0.0, -0.375]])  # agent units = a / 4
    np.testing.assert_allclose(batch["rewards"], [1.0, 0.25])
    assert float(jnp.abs(batch["masks"]).sum()) == 0 and batch["observations"].shape == (2, 1)


def test_support_fraction():
    data = np.array([[0.0, 0.0], [1.0, 1.0]])
    samples = np.array([[0.05, 0.0], [1.0, 1.09], [0.5, 0.5], [np.nan, 0.0]])
    assert support_fraction(samples, data, 0.1) == pytest.approx(0.5)
    assert support_fraction(data, data, 0.1) == 1.0


@pytest.mark.parametrize("method", ["qflow", "fql", "fbrac"])
def test_knob_agent_equals_agent_with_the_knob_in_its_config(method):
    """The traced-knob wrapper used to stack strengths gives exactly the update of a static-config agent."""
    from qflow.agents import get_agent

    settings = ToySettings(hidden_dims=(16,), batch_size=32, flow_steps=3)
    agent_cls, _ = get_agent(method)
    knob = 7.5
    plain = agent_cls.create(0, 1, 2, toy2d.method_config(method, settings, knob))
    inner = agent_cls.create(0, 1, 2, toy2d.method_config(method, settings, 1.0))
    from qflow.agents.knobs import knobbed_class

    wrapped = knobbed_class(agent_cls)(jnp.copy(inner.rng), inner, {toy2d.KNOBS[method]: jnp.float32(knob)})
    batch = jax.tree.map(lambda x: x[:32], toy2d.bandit_batch("moons", generate("moons", 32)))
    update = jax.jit(lambda ag, b: ag.update(b))
    a, _ = update(plain, batch)
    b, _ = update(wrapped, batch)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    assert b.inner.config == inner.config  # the placeholder is restored after the update
    # and the knob matters: another value gives another update
    other = wrapped.replace(knobs={toy2d.KNOBS[method]: jnp.float32(0.5)})
    c, _ = update(other, batch)  # same structure as ``wrapped``: no recompilation
    assert any(not np.allclose(x, y) for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(c.params)))


@pytest.mark.slow
def test_short_run_qflow_gains_reward_and_stays_in_support(tmp_path):
    settings = ToySettings(datasets=("swiss_roll",), methods=("flow_bc", "qflow"), strengths=(0.3,),
                           seeds=(0, 1, 2), n_data=4000, pretrain_epochs=60, bc_epochs=20, rl_epochs=10,
                           batch_size=128, hidden_dims=(64, 64), flow_steps=5, eval_samples=1000, chunk=200)
    summary = toy2d.run_toy2d(settings, tmp_path, progress=False, plots=True)
    rows = summary["rows"]
    bc = np.array([r["reward_mean"] for r in rows if r["method"] == "flow_bc"])
    qf = np.array([r["reward_mean"] for r in rows if r["method"] == "qflow"])
    support = np.array([r["support_fraction"] for r in rows if r["method"] == "qflow"])
    assert len(bc) == 3 and len(qf) == 3
    print("flow BC", bc, "Q-Flow", qf, "Q-Flow in support", support)
    assert qf.min() > bc.max() + 0.03, (qf, bc)  # every Q-Flow seed beats every flow-BC seed
    assert support.min() > 0.5, support
    for name in ("toy2d.csv", "toy2d.md", "toy2d.json", "swiss_roll_grid.png", "swiss_roll_evolution.png"):
        assert (tmp_path / name).exists(), name
    saved = json.loads((tmp_path / "toy2d.json").read_text())
    _, pre_steps, bc_steps, rl_steps = settings.phase_steps()
    assert (pre_steps, bc_steps, rl_steps) == (2000, 800, 400)  # 32 updates per epoch, whole chunks of 200
    assert [saved["settings"][k] for k in ("pretrain_steps", "bc_steps", "rl_steps")] == [2000, 800, 400]
    assert {"versions", "wall_time_s", "command", "caption"} <= set(saved)
    assert dataclasses.asdict(settings)["paper"] is False and "REDUCED" in saved["caption"]


def test_a_phase_measures_on_its_schedule_and_records_nonfinite_losses():
    from qflow.experiments.toy2d.train import ChunkRunner

    class Chunks(int):  # stands in for the agents: counts the chunks run, declares one loss
        LOSSES = ("td",)

        def __add__(self, other):
            return Chunks(int(self) + other)

    runner = ChunkRunner(5, bar=None)
    losses = iter([1.0, np.nan, 1.0, 1.0, 1.0, 1.0, 1.0])
    runner.fn = lambda agents, data: (agents + 1, {"td": np.float32(next(losses))})

    seen = []
    measure = lambda agents, done: seen.append((agents, done))  # noqa: E731
    out = runner.run(Chunks(0), None, 35, "moons/qflow RL phase", every=3, measure=measure)
    assert out == 7 and seen == [(3, 15), (6, 30), (7, 35)]  # every 3 chunks, and after the last
    assert runner.nonfinite == ["moons/qflow RL phase"]
    assert runner.run(Chunks(0), None, 0, "empty") == 0  # a phase of no steps (e.g. no pretraining) runs nothing
