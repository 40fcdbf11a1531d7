"""FQL's losses and gradient routing on tiny networks, and a short stacked training run."""

import dataclasses

import jax
import numpy as np
import pytest

from qflow.agents.base import build_config
from qflow.agents.fql import FQLAgent, FQLConfig
from qflow.training.loop import stack
from qflow.training.steps import make_train_chunk
from tests.helpers import ACT, B, OBS, perturb, random_batch


def tiny_fql(**overrides):
    cfg = build_config(FQLConfig, "paper", overrides=[f"{k}={v}" for k, v in overrides.items()])
    return FQLAgent.create(0, OBS, ACT, dataclasses.replace(cfg, actor_dims=(8,), critic_dims=(8,)))


@pytest.mark.parametrize("normalize", [False, True])
def test_fql_losses_match_hand_computation(normalize):
    agent = perturb(tiny_fql(alpha=3.0, flow_steps=4, q_agg="min", normalize_q_loss=normalize))
    batch = random_batch()
    noise = agent.draw_noise(jax.random.PRNGKey(5), B, ACT)
    total, info = agent.losses(agent.params, batch, noise)

    p, nets = agent.params, agent.nets
    s, s2, a = (np.asarray(batch[k]) for k in ("observations", "next_observations", "actions"))
    r, m, gamma = np.asarray(batch["rewards"]), np.asarray(batch["masks"]), agent.config.discount
    mu = lambda o, z: np.asarray(nets["onestep"].apply(p["onestep"], o, z))  # noqa: E731
    flow = lambda o, x, t: np.asarray(nets["flow"].apply(p["flow"], o, x, t))  # noqa: E731
    q = lambda params, o, act: np.asarray(nets["critic"].apply(params, o, act))  # noqa: E731

    td = r + gamma * m * q(agent.target_critic, s2, np.clip(mu(s2, noise["z_next"]), -1, 1)).min(0)
    np.testing.assert_allclose(info["td_target"], td, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(info["loss_q"], np.mean((q(p["critic"], s, a) - td) ** 2), rtol=1e-5)

    x0, tau = np.asarray(noise["x0"]), np.asarray(noise["tau"])
    x_tau = (1 - tau[:, None]) * x0 + tau[:, None] * a
    np.testing.assert_allclose(info["loss_flow"], np.mean((flow(s, x_tau.astype(np.float32), tau) - (a - x0)) ** 2),
                               rtol=1e-5)

    x = np.asarray(noise["z"])
    for i in range(4):
        x = x + flow(s, x, np.full(B, i / 4, np.float32)) / 4
    raw = mu(s, noise["z"])
    distill = np.mean((raw - np.clip(x, -1, 1)) ** 2)
    q_pi = q(p["critic"], s, np.clip(raw, -1, 1)).mean(0)
    scale = 1 / np.abs(q_pi).mean() if normalize else 1.0
    np.testing.assert_allclose(info["distill"], distill, rtol=1e-5)
    np.testing.assert_allclose(info["loss_onestep"], 3.0 * distill - scale * q_pi.mean(), rtol=1e-5)
    np.testing.assert_allclose(total, info["loss_q"] + info["loss_flow"] + info["loss_onestep"], rtol=1e-6)


@pytest.mark.parametrize("loss, frozen", [("loss_q", ("flow", "onestep")), ("loss_flow", ("critic", "onestep")),
                                          ("loss_onestep", ("critic", "flow"))])
def test_fql_gradients_do_not_cross_modules(loss, frozen):
    agent = perturb(tiny_fql())
    noise = agent.draw_noise(jax.random.PRNGKey(0), B, ACT)
    grads = jax.grad(lambda p: agent.losses(p, random_batch(), noise)[1][loss])(agent.params)
    for name in frozen:
        assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grads[name])), f"{loss} leaks into {name}"
    own = {"loss_q": "critic", "loss_flow": "flow", "loss_onestep": "onestep"}[loss]
    assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(grads[own]))


def test_fql_trains_stacked_seeds_and_acts_in_bounds():
    config = tiny_fql().config
    agents = stack([FQLAgent.create(s, OBS, ACT, config) for s in (0, 1)])
    data = random_batch(batch=512)
    agents, info = make_train_chunk(200)(agents, data)
    assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(info))
    one = jax.tree.map(lambda x: x[1], agents)
    acts = np.asarray(one.sample_actions(data["observations"][:50], jax.random.PRNGKey(0)))
    assert acts.shape == (50, ACT) and np.all(np.abs(acts) <= 1)


def test_fql_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        build_config(FQLConfig, overrides=["alpha=-1"])
    with pytest.raises(ValueError, match="flow_steps must be >= 1"):
        build_config(FQLConfig, overrides=["flow_steps=0"])
