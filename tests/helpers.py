"""Helpers shared by the tests: tiny Q-Flow agents, random batches, gradient-routing checks, CSV rows."""

import csv
import dataclasses
import socket

import jax
import numpy as np

from qflow.agents.base import build_config
from qflow.agents.qflow import QFlowAgent, QFlowConfig

OBS, ACT, B = 3, 2, 8
ENV = "pointmaze-medium-navigate-singletask-task1-v0"  # the end-to-end tests' task (a tiny regenerated dataset)


def free_port() -> int:
    """A local TCP port nothing listens on (bound, read, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_agent(**overrides):
    cfg = build_config(QFlowConfig, "paper", overrides=[f"{k}={v}" for k, v in overrides.items()])
    cfg = dataclasses.replace(cfg, actor_dims=(8,), critic_dims=(8,), time_embed_dim=4)
    return QFlowAgent.create(0, OBS, ACT, cfg)


def random_batch(seed=0, batch=B):
    import jax.numpy as jnp

    r = np.random.default_rng(seed)
    return {
        "observations": jnp.asarray(r.normal(size=(batch, OBS)), jnp.float32),
        "next_observations": jnp.asarray(r.normal(size=(batch, OBS)), jnp.float32),
        "actions": jnp.asarray(r.uniform(-1, 1, size=(batch, ACT)), jnp.float32),
        "rewards": jnp.asarray(r.uniform(-1, 0, size=batch), jnp.float32),
        "masks": jnp.asarray(r.integers(0, 2, size=batch), jnp.float32),
    }


def perturb(agent, scale=0.3, seed=1):
    """Make the target critic differ from the critic so the two cannot be confused."""
    leaves, tree = jax.tree.flatten(agent.target_critic)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    leaves = [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    return agent.replace(target_critic=jax.tree.unflatten(tree, leaves))


def assert_routing(agent, batch, noise, loss, own, frozen):
    """``loss`` trains the ``own`` network and sends exactly zero gradient into every ``frozen`` one."""
    grads = jax.jit(jax.grad(lambda p: agent.losses(p, batch, noise)[1][loss]))(agent.params)
    for name in frozen:
        assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grads[name])), f"{loss} leaks into {name}"
    assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(grads[own])), f"{loss} does not train {own}"


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
