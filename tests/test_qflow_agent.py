"""Q-Flow's losses, gradient routing, Psi and learning, checked on tiny networks."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qflow.agents.base import build_config
from qflow.agents.flow_bc import FlowBCAgent, FlowBCConfig
from qflow.agents.qflow import QFlowAgent, QFlowConfig, finish_flow, sample_tau
from qflow.experiments.bandit import bandit_data, reward
from qflow.training.loop import stack
from qflow.training.steps import make_train_chunk
from tests.helpers import ACT, B, perturb, random_batch, tiny_agent


def test_losses_match_hand_computation():
    agent = perturb(tiny_agent(guidance_lambda=2.0, flow_steps=4, q_agg="min", stratify_tau=False))
    batch = random_batch()
    noise = agent.draw_noise(jax.random.PRNGKey(3), B, ACT)
    total, info = agent.losses(agent.params, batch, noise)

    # Plain NumPy re-derivation from the network outputs.
    K, lam, gamma = 4, 2.0, agent.config.discount
    actor = lambda o, x, t: np.asarray(agent.nets["actor"].apply(agent.params["actor"], o, x, t))  # noqa: E731
    qbar = lambda o, a: np.asarray(agent.nets["critic"].apply(agent.target_critic, o, a))  # noqa: E731
    q = np.asarray(agent.nets["critic"].apply(agent.params["critic"], batch["observations"], batch["actions"]))
    V = lambda x: np.asarray(agent.nets["value"].apply(agent.params["value"], batch["observations"], x, tau))  # noqa: E731
    s, s2, a = (np.asarray(batch[k]) for k in ("observations", "next_observations", "actions"))
    r, m = np.asarray(batch["rewards"]), np.asarray(batch["masks"])
    x0, tau = np.asarray(noise["x0"]), np.asarray(noise["tau"])

    x = np.asarray(noise["x_next"])
    for i in range(K):
        x = x + actor(s2, x, np.full(B, i / K, np.float32)) / K
    td = r + gamma * m * qbar(s2, np.clip(x, -1, 1)).min(0)
    np.testing.assert_allclose(info["td_target"], td, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(info["loss_q"], np.mean((q - td) ** 2), rtol=1e-5)

    x_tau = (1 - tau[:, None]) * x0 + tau[:, None] * a
    x, t = x_tau.copy(), tau.copy()
    while np.any(t < 1 - 1e-7):  # Euler from tau until t = 1, last step shortened
        dt = np.clip(1 - t, 0, 1 / K)
        x = x + dt[:, None] * actor(s, x, t.astype(np.float32))
        t = t + dt
    v_target = qbar(s, np.clip(x, -1, 1)).min(0)
    np.testing.assert_allclose(info["v_target"], v_target, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(info["loss_v"], np.mean((V(x_tau).min(0) - v_target) ** 2), rtol=1e-4)

    eps = 1e-3  # central differences of mean_heads V in each action coordinate
    grad = np.zeros_like(x_tau)
    for j in range(ACT):
        e = np.zeros_like(x_tau)
        e[:, j] = eps
        grad[:, j] = (V(x_tau + e).mean(0) - V(x_tau - e).mean(0)) / (2 * eps)
    v_star = (a - x0) + grad / lam
    np.testing.assert_allclose(info["velocity_target"], v_star, rtol=2e-2, atol=2e-3)
    pred = actor(s, x_tau.astype(np.float32), tau)
    np.testing.assert_allclose(info["loss_pi"], np.mean((pred - v_star) ** 2), rtol=1e-3)
    np.testing.assert_allclose(total, info["loss_q"] + info["loss_v"] + info["loss_pi"], rtol=1e-6)


@pytest.mark.parametrize("loss, frozen", [("loss_pi", ("critic", "value")), ("loss_v", ("actor",)),
                                          ("loss_q", ("actor",))])
def test_gradients_do_not_cross_modules(loss, frozen):
    agent = perturb(tiny_agent())
    batch = random_batch()
    noise = agent.draw_noise(jax.random.PRNGKey(0), B, ACT)
    grads = jax.grad(lambda p: agent.losses(p, batch, noise)[1][loss])(agent.params)
    for name in frozen:
        assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grads[name])), f"{loss} leaks into {name}"
    own = {"loss_pi": "actor", "loss_v": "value", "loss_q": "critic"}[loss]
    assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(grads[own]))


@pytest.mark.parametrize("stratified", [False, True])
def test_psi_ends_at_t_equal_one(stratified):
    steps, batch = 10, 23
    if stratified:
        tau, _ = sample_tau(jax.random.PRNGKey(0), batch, steps, True)
    else:
        tau = jnp.array([0.0, 0.05, 0.999, 0.5, 0.1, 0.95] + [0.3] * (batch - 6))
    # With unit velocity, Psi(x_tau) - x_tau is the flow time travelled: exactly 1 - tau.
    unit = lambda o, x, t: jnp.ones_like(x)  # noqa: E731
    x = finish_flow(unit, jnp.zeros((batch, 1)), jnp.zeros((batch, 2)), tau, steps, stratified)
    np.testing.assert_allclose(x, np.repeat(1 - np.asarray(tau)[:, None], 2, 1), atol=1e-6)


def test_stratified_psi_equals_fixed_loop():
    agent = tiny_agent(flow_steps=10)
    batch = random_batch(batch=37)
    tau, _ = sample_tau(jax.random.PRNGKey(1), 37, 10, True)
    x_tau = jax.random.normal(jax.random.PRNGKey(2), (37, ACT))
    a = finish_flow(agent.velocity(agent.params["actor"]), batch["observations"], x_tau, tau, 10, True)
    b = finish_flow(agent.velocity(agent.params["actor"]), batch["observations"], x_tau, tau, 10, False)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_stratified_tau_is_uniform_and_weights_unbiased():
    tau, w = sample_tau(jax.random.PRNGKey(0), 256, 10, True)
    tau, w = np.asarray(tau), np.asarray(w)
    buckets = np.floor(tau * 10).astype(int)
    assert np.all(np.diff(buckets) >= 0), "rows must be ordered by bucket"
    # Weighted share of every bucket is exactly 1/K: the weighted loss estimates E_{tau~U(0,1)}.
    shares = np.array([w[buckets == j].sum() for j in range(10)]) / w.sum()
    np.testing.assert_allclose(shares, 0.1, rtol=1e-6)
    np.testing.assert_allclose(w.mean(), 1.0, rtol=1e-6)


def test_invalid_hyperparameters_raise_clear_errors():
    with pytest.raises(ValueError, match="guidance_lambda must be > 0"):
        build_config(QFlowConfig, overrides=["guidance_lambda=0"])
    with pytest.raises(ValueError, match="flow_steps must be >= 1"):
        build_config(QFlowConfig, overrides=["flow_steps=0"])
    with pytest.raises(ValueError, match="key one of"):
        build_config(QFlowConfig, overrides=["no_such_key=1"])
    assert build_config(QFlowConfig, overrides=["guidance_lambda=5", "flow_steps=20"]).flow_steps == 20


@pytest.mark.slow
def test_qflow_earns_more_than_flow_bc_on_a_bandit():
    data = bandit_data()
    seeds = [0, 1, 2]
    results = {}
    for name, cls, cfg_cls, extra in [("qflow", QFlowAgent, QFlowConfig, dict(guidance_lambda=0.3)),
                                      ("bc", FlowBCAgent, FlowBCConfig, {})]:
        cfg = dataclasses.replace(build_config(cfg_cls, "paper"), actor_dims=(64, 64), critic_dims=(64, 64),
                                  batch_size=128, **extra)
        agents = stack([cls.create(s, 1, 2, cfg) for s in seeds])
        # 1000 updates: with this strong guidance (lambda 0.3) Q-Flow's reward peaks near 750-1000
        # updates (-0.27 over seeds 0-5) and then falls (-0.61 at 3000) as the policy moves into the
        # data-free gap between the modes, where the critic's extrapolated Q is highest; its own
        # improvement estimate keeps rising meanwhile (results/bandit). This checks guidance works.
        agents, _ = make_train_chunk(1000)(agents, data)
        scores = []
        for i in range(len(seeds)):
            agent = jax.tree.map(lambda x: x[i], agents)
            acts = agent.sample_actions(jnp.zeros((2000, 1)), jax.random.PRNGKey(100 + i))
            scores.append(reward(acts).mean())
        results[name] = np.array(scores)
    # Flow BC reproduces both modes (mean reward about -0.6); value guidance moves mass to +0.6.
    assert results["bc"].max() < -0.4, results
    assert results["qflow"].min() > results["bc"].max() + 0.2, results
