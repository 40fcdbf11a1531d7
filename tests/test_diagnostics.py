"""V's time features and the guidance diagnostics, each against a hand computation."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qflow.agents.base import build_config, config_from_record
from qflow.agents.fbrac import FBRACAgent, FBRACConfig
from qflow.agents.fql import FQLAgent, FQLConfig
from qflow.agents.qflow import QFlowConfig
from qflow.networks import fourier_features
from qflow.training.trainer import make_train_chunk, stack
from tests.helpers import ACT, B, OBS, perturb, random_batch, tiny_agent


def test_time_features_are_sin_and_cos_of_f_tau():
    tau = np.array([0.0, 0.013, 0.37, 0.999], np.float32)
    freqs = 2.0 ** np.linspace(0.0, 8.0, 4)  # dim 8: 4 log-spaced frequencies 1 .. 256
    angles = tau[:, None] * freqs
    expected = np.concatenate([np.sin(angles), np.cos(angles)], -1)
    np.testing.assert_allclose(fourier_features(jnp.asarray(tau), 8), expected, atol=2e-5)
    np.testing.assert_allclose(fourier_features(jnp.asarray(tau), 8, 2 * math.pi),
                               np.concatenate([np.sin(2 * np.pi * angles), np.cos(2 * np.pi * angles)], -1), atol=2e-4)


def test_qflow_uses_f_tau_by_default_and_old_records_keep_2pi():
    assert build_config(QFlowConfig).time_features == "f_tau"
    assert tiny_agent().nets["value"].time_scale == 1.0
    assert tiny_agent(time_features="2pi_f_tau").nets["value"].time_scale == pytest.approx(2 * math.pi)
    record = json_like(build_config(QFlowConfig).as_dict())
    assert config_from_record(QFlowConfig, record).time_features == "f_tau"
    del record["time_features"]  # a summary written before the key existed ran with 2 pi f tau
    assert config_from_record(QFlowConfig, record).time_features == "2pi_f_tau"
    with pytest.raises(ValueError, match="time_features must be one of"):
        build_config(QFlowConfig, overrides=["time_features=2pi"])


def json_like(d):
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _policy_terms(agent, batch, rng):
    """Hand computation of the policy diagnostics from the networks' outputs."""
    s, a = np.asarray(batch["observations"]), np.clip(np.asarray(batch["actions"]), -1, 1)
    pi = np.asarray(agent.sample_actions(batch["observations"], rng))
    qbar = lambda x: np.asarray(agent.nets["critic"].apply(agent.target_critic, s, x)).mean(0)  # noqa: E731
    return np.mean(qbar(pi) - qbar(a)), np.mean(np.sqrt(((pi - a) ** 2).sum(-1)))


def test_qflow_diagnostics_match_hand_computation():
    agent = perturb(tiny_agent(guidance_lambda=2.0, flow_steps=4, q_agg="min", stratify_tau=False))
    batch, rng = random_batch(seed=5), jax.random.PRNGKey(11)
    diag = agent.diagnostics(batch, rng)
    k_noise, k_pi = jax.random.split(rng)
    noise = agent.draw_noise(k_noise, B, ACT)
    _, info = agent.losses(agent.params, batch, noise)  # info["v_target"]: checked in test_qflow_agent

    s, a = np.asarray(batch["observations"]), np.asarray(batch["actions"])
    x0, tau = np.asarray(noise["x0"]), np.asarray(noise["tau"])
    x_tau = (1 - tau[:, None]) * x0 + tau[:, None] * a
    V = lambda x: np.asarray(agent.nets["value"].apply(agent.params["value"], s, x, tau))  # noqa: E731
    target, v = np.asarray(info["v_target"]), V(x_tau).min(0)
    np.testing.assert_allclose(diag["diag_v_explained_var"], 1 - np.var(target - v) / np.var(target), rtol=1e-3)
    eps, grad = 1e-3, np.zeros_like(x_tau)
    for j in range(ACT):  # central differences of mean_heads V
        e = np.zeros_like(x_tau)
        e[:, j] = eps
        grad[:, j] = (V(x_tau + e).mean(0) - V(x_tau - e).mean(0)) / (2 * eps)
    norm = lambda x: np.sqrt((x ** 2).sum(-1))  # noqa: E731
    np.testing.assert_allclose(diag["diag_guidance_norm"], norm(grad).mean() / 2.0, rtol=2e-2)
    np.testing.assert_allclose(diag["diag_bc_velocity_norm"], norm(a - x0).mean(), rtol=1e-5)
    improvement, distance = _policy_terms(agent, batch, k_pi)
    np.testing.assert_allclose(diag["diag_policy_improvement"], improvement, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(diag["diag_action_distance"], distance, rtol=1e-5)


def test_explained_variance_is_one_for_a_perfect_fit_and_weights_count():
    agent = tiny_agent(stratify_tau=True)
    batch, rng = random_batch(seed=2, batch=23), jax.random.PRNGKey(0)
    noise = agent.draw_noise(jax.random.split(rng)[0], 23, ACT)
    _, info = agent.losses(agent.params, batch, noise)
    w = np.asarray(info["weight"])
    assert np.ptp(w) > 0.01  # 23 rows in 10 buckets: unequal weights
    target, v = np.asarray(info["v_target"]), np.asarray(info["v"])
    w = w / w.sum()
    mean = lambda x: np.sum(w * x)  # noqa: E731
    err = target - v
    expected = 1 - mean((err - mean(err)) ** 2) / mean((target - mean(target)) ** 2)
    np.testing.assert_allclose(agent.diagnostics(batch, rng)["diag_v_explained_var"], expected, rtol=1e-4)


@pytest.mark.parametrize("agent_cls, config_cls", [(FQLAgent, FQLConfig), (FBRACAgent, FBRACConfig)])
def test_baseline_policy_diagnostics_match_hand_computation(agent_cls, config_cls):
    cfg = dataclasses.replace(build_config(config_cls), actor_dims=(8,), critic_dims=(8,), flow_steps=3)
    agent = perturb(agent_cls.create(0, OBS, ACT, cfg))
    batch, rng = random_batch(seed=7), jax.random.PRNGKey(4)
    diag = agent.diagnostics(batch, rng)
    improvement, distance = _policy_terms(agent, batch, rng)
    np.testing.assert_allclose(diag["diag_policy_improvement"], improvement, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(diag["diag_action_distance"], distance, rtol=1e-5)


def test_training_chunk_logs_diagnostics_without_changing_training():
    agent, data = tiny_agent(), random_batch(seed=3, batch=64)
    with_diag, info = make_train_chunk(15)(stack([agent]), data)
    without, plain = make_train_chunk(15, diagnostics=False)(stack([agent]), data)
    assert {k for k in info if k.startswith("diag_")} == {
        "diag_v_explained_var", "diag_guidance_norm", "diag_bc_velocity_norm", "diag_policy_improvement",
        "diag_action_distance"}
    assert not any(k.startswith("diag_") for k in plain)
    assert all(np.isfinite(v).all() for v in info.values())
    for x, y in zip(jax.tree.leaves(with_diag), jax.tree.leaves(without)):
        np.testing.assert_array_equal(x, y)
