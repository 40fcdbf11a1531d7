"""FBRAC: losses, the BPTT gradient through every Euler step, gradient routing, a short training run."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qflow.agents import get_agent
from qflow.agents.base import build_config
from qflow.agents.fbrac import FBRACAgent, FBRACConfig
from qflow.envs import env_defaults
from qflow.training.loop import stack
from qflow.training.steps import make_train_chunk

from tests.helpers import ACT, B, OBS, perturb, random_batch


def tiny_agent(seed=0, **overrides):
    cfg = build_config(FBRACConfig, "paper", overrides=[f"{k}={v}" for k, v in overrides.items()])
    cfg = dataclasses.replace(cfg, actor_dims=(8,), critic_dims=(8,))
    return FBRACAgent.create(seed, OBS, ACT, cfg)


def test_registered_with_env_defaults():
    assert get_agent("fbrac") == (FBRACAgent, FBRACConfig)
    assert env_defaults("cube-double-play-singletask-task1-v0", "fbrac")["alpha"] > 0
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        build_config(FBRACConfig, overrides=["alpha=-1"])
    with pytest.raises(ValueError, match="q_agg must be"):
        build_config(FBRACConfig, overrides=["q_agg=max"])


def test_losses_match_hand_computation():
    K, alpha = 3, 2.5
    agent = perturb(tiny_agent(alpha=alpha, flow_steps=K, q_agg="min", normalize_q_loss=True))
    batch = random_batch()
    noise = agent.draw_noise(jax.random.PRNGKey(3), B, ACT)
    total, info = jax.jit(agent.losses)(agent.params, batch, noise)

    actor = lambda o, x, t: np.asarray(agent.nets["actor"].apply(agent.params["actor"], o, x, t))  # noqa: E731
    critic = lambda p, o, a: np.asarray(agent.nets["critic"].apply(p, o, a))  # noqa: E731
    s, s2, a = (np.asarray(batch[k]) for k in ("observations", "next_observations", "actions"))
    r, m, gamma = np.asarray(batch["rewards"]), np.asarray(batch["masks"]), agent.config.discount

    def euler(obs, x):
        for i in range(K):
            x = x + actor(obs, x, np.full(B, i / K, np.float32)) / K
        return np.clip(x, -1, 1)

    td = r + gamma * m * critic(agent.target_critic, s2, euler(s2, np.asarray(noise["x_next"]))).min(0)
    np.testing.assert_allclose(info["td_target"], td, rtol=1e-5, atol=1e-5)
    q = critic(agent.params["critic"], s, a)
    np.testing.assert_allclose(info["loss_q"], np.mean((q - td) ** 2), rtol=1e-5)

    x0, tau = np.asarray(noise["x0"]), np.asarray(noise["tau"])
    x_tau = (1 - tau[:, None]) * x0 + tau[:, None] * a
    bc = np.mean((actor(s, x_tau.astype(np.float32), tau) - (a - x0)) ** 2)
    np.testing.assert_allclose(info["loss_bc"], bc, rtol=1e-5)

    q_pi = critic(agent.params["critic"], s, euler(s, np.asarray(noise["z"]))).mean(0)
    qpi = -q_pi.mean() / np.abs(q_pi).mean()  # normalize_q_loss=True
    np.testing.assert_allclose(info["loss_qpi"], qpi, rtol=1e-5)
    np.testing.assert_allclose(info["loss_pi"], alpha * bc + qpi, rtol=1e-5)
    np.testing.assert_allclose(total, info["loss_q"] + info["loss_pi"], rtol=1e-6)


def _q_term_with_detach(agent, actor_params, obs, z, detach_after):
    """-mean Q(s, clip(Euler_K)) re-derived here; the state is detached after step ``detach_after`` (None: never)."""
    steps = agent.config.flow_steps
    x = z
    for i in range(steps):
        if detach_after is not None and i == detach_after:
            x = jax.lax.stop_gradient(x)
        t = jnp.full(x.shape[:-1], i / steps, x.dtype)
        x = x + agent.nets["actor"].apply(actor_params, obs, x, t) / steps
    q = agent.nets["critic"].apply(agent.params["critic"], obs, jnp.clip(x, -1, 1))
    return -q.mean(0).mean()


def test_actor_gradient_flows_through_every_euler_step():
    K = 4
    agent = tiny_agent(flow_steps=K, normalize_q_loss=False)  # built in float32 (cached eager ops), cast below
    batch32, noise32 = random_batch(), agent.draw_noise(jax.random.PRNGKey(5), B, ACT)
    with jax.enable_x64(True):
        f64 = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)  # noqa: E731
        params = f64(agent.params)
        params["actor"] = jax.tree.map(lambda x: 0.5 * x, params["actor"])  # gentler velocities
        agent = agent.replace(params=params, target_critic=f64(agent.target_critic))
        batch, noise = f64(batch32), f64(noise32)
        noise["z"] = 0.3 * noise["z"]  # keep the policy's actions inside the clip box (no zero-gradient kinks)
        obs = batch["observations"]
        assert np.all(np.abs(agent.policy_actions(agent.params["actor"], obs, noise["z"])) < 0.99)

        @jax.jit
        def q_term(actor_params):
            params = {**agent.params, "actor": actor_params}
            return agent.losses(params, batch, noise)[1]["loss_qpi"]

        def detached_grad(j):
            return jax.jit(jax.grad(lambda p: _q_term_with_detach(agent, p, obs, noise["z"], j)))

        theta = agent.params["actor"]
        grad = jax.jit(jax.grad(q_term))(theta)
        leaves, tree = jax.tree.flatten(theta)
        keys = jax.random.split(jax.random.PRNGKey(9), len(leaves))
        direction = jax.tree.unflatten(tree, [jax.random.normal(k, x.shape, jnp.float64) for k, x in zip(keys, leaves)])
        pairs = lambda g: zip(jax.tree.leaves(g), jax.tree.leaves(direction))  # noqa: E731
        dot = lambda g: float(sum(jnp.vdot(a, b) for a, b in pairs(g)))  # noqa: E731
        shift = lambda e: jax.tree.map(lambda p, d: p + e * d, theta, direction)  # noqa: E731

        eps = 1e-6
        finite_diff = (float(q_term(shift(eps))) - float(q_term(shift(-eps)))) / (2 * eps)
        analytic = dot(grad)
        assert abs(analytic - finite_diff) <= 1e-6 * max(1.0, abs(finite_diff)), (analytic, finite_diff)

        # The re-derivation without detaching agrees; detaching the state at any intermediate step (the
        # one-step / truncated-BPTT shortcut) gives a measurably different gradient, so the check above
        # would catch an implementation that stops the gradient anywhere inside the solver.
        full = dot(detached_grad(None)(theta))
        assert abs(full - analytic) <= 1e-9 * max(1.0, abs(analytic))
        for j in range(1, K):
            g_cut = detached_grad(j)(theta)
            cut = dot(g_cut)
            assert abs(cut - finite_diff) > 1e-3 * max(1e-3, abs(finite_diff)), (j, cut, finite_diff)
            # Also per leaf: the detached gradient differs from the full one.
            diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(g_cut), jax.tree.leaves(grad)))
            assert diff > 1e-6, j


@pytest.mark.parametrize("loss, frozen, own", [("loss_q", "actor", "critic"), ("loss_pi", "critic", "actor")])
def test_gradients_do_not_cross_modules(loss, frozen, own):
    agent = perturb(tiny_agent())
    batch = random_batch()
    noise = agent.draw_noise(jax.random.PRNGKey(0), B, ACT)
    grads = jax.jit(jax.grad(lambda p: agent.losses(p, batch, noise)[1][loss]))(agent.params)
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grads[frozen])), f"{loss} leaks into {frozen}"
    assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(grads[own]))
    # The -Q term alone trains the actor (through the solver) and never the critic.
    g_qpi = jax.jit(jax.grad(lambda p: agent.losses(p, batch, noise)[1]["loss_qpi"]))(agent.params)
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(g_qpi["critic"]))
    assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(g_qpi["actor"]))


def test_a_few_hundred_stacked_updates_stay_finite():
    cfg = dataclasses.replace(build_config(FBRACConfig, "paper", overrides=["alpha=1", "flow_steps=4"]),
                              actor_dims=(32, 32), critic_dims=(32, 32), batch_size=64)
    data = random_batch(batch=1000)
    agents = stack([FBRACAgent.create(s, OBS, ACT, cfg) for s in (0, 1)])
    agents, info = make_train_chunk(250)(agents, data)
    for key in ("loss_q", "loss_pi", "loss_bc", "loss_qpi"):
        assert np.all(np.isfinite(np.asarray(info[key]))), key
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(agents.params))
    one = jax.tree.map(lambda x: x[0], agents)
    acts = one.sample_actions(jnp.zeros((16, OBS)), jax.random.PRNGKey(0))
    assert acts.shape == (16, ACT) and float(jnp.max(jnp.abs(acts))) <= 1.0
