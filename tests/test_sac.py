"""SAC: squashed-Gaussian log-probabilities, gradient routing, and learning a one-step bandit."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qflow.agents.base import build_config
from qflow.agents.sac import SACAgent, SACConfig, tanh_gaussian_sample
from qflow.training.loop import stack
from qflow.training.steps import make_train_chunk
from tests.helpers import ACT, B, OBS, assert_routing, random_batch


def sac_agent(seed=0, obs_dim=OBS, action_dim=ACT, **overrides):
    cfg = build_config(SACConfig, "paper", overrides=[f"{k}={v}" for k, v in overrides.items()])
    return SACAgent.create(seed, obs_dim, action_dim, dataclasses.replace(cfg, actor_dims=(32, 32),
                                                                          critic_dims=(32, 32)))


def test_tanh_gaussian_log_prob_is_the_change_of_variables():
    r = np.random.default_rng(0)
    mean, log_std, eps = (jnp.asarray(r.normal(size=(6, 3)), jnp.float32) for _ in range(3))
    action, logp = tanh_gaussian_sample(mean, log_std, eps)
    u = np.asarray(mean, np.float64) + np.exp(np.asarray(log_std, np.float64)) * np.asarray(eps, np.float64)
    normal = np.sum(-0.5 * np.asarray(eps, np.float64) ** 2 - np.asarray(log_std) - 0.5 * math.log(2 * math.pi), -1)
    expected = normal - np.sum(np.log(1 - np.tanh(u) ** 2), -1)
    np.testing.assert_allclose(action, np.tanh(u), rtol=1e-5)
    np.testing.assert_allclose(logp, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("loss, own, frozen", [("loss_q", "critic", ("actor", "log_alpha")),
                                               ("loss_actor", "actor", ("critic", "log_alpha")),
                                               ("loss_alpha", "log_alpha", ("actor", "critic"))])
def test_sac_gradients_do_not_cross_modules(loss, own, frozen):
    agent = sac_agent()
    assert_routing(agent, random_batch(), agent.draw_noise(jax.random.PRNGKey(0), B, ACT), loss, own, frozen)


@pytest.mark.slow
def test_sac_learns_a_one_step_bandit():
    """Reward -(a - 0.5)^2 per action dim on uniform random data: SAC's actions must beat random ones."""
    r = np.random.default_rng(1)
    n = 2048
    actions = r.uniform(-1, 1, size=(n, 1)).astype(np.float32)
    data = {"observations": jnp.ones((n, 1)), "next_observations": jnp.ones((n, 1)), "actions": jnp.asarray(actions),
            "rewards": jnp.asarray(-((actions[:, 0] - 0.5) ** 2)), "masks": jnp.zeros(n)}
    seeds = [0, 1, 2]
    agents = stack([sac_agent(s, 1, 1, batch_size=128, init_temperature=0.1) for s in seeds])
    agents, _ = make_train_chunk(1500)(agents, data)
    obs = jnp.ones((512, 1))
    for i in range(len(seeds)):
        agent = jax.tree.map(lambda x: x[i], agents)
        sampled = np.asarray(agent.sample_actions(obs, jax.random.PRNGKey(i)))
        reward = float(np.mean(-((sampled[:, 0] - 0.5) ** 2)))
        random_reward = float(np.mean(-((actions[:, 0] - 0.5) ** 2)))  # about -0.58
        assert reward > random_reward + 0.3, (i, reward, random_reward)
        assert abs(float(agent.mean_actions(obs[:1])[0, 0]) - 0.5) < 0.15
