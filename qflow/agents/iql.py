"""IQL, implicit Q-learning (Kostrikov, Nair, Levine 2022): a Gaussian-policy reference baseline.

Value learning never queries actions outside the dataset:
  V(s)     expectile regression (tau = ``expectile``) onto min_heads Qbar(s, a) at dataset actions;
  Q(s, a)  TD toward r + gamma * mask * V(s') (V frozen), EMA target Qbar;
  pi(a|s)  Gaussian, extracted by advantage-weighted regression (AWR): maximise
           exp(alpha * (Qbar(s, a) - V(s))) * log pi(a | s) on dataset actions, weights clipped.
Acting returns the Gaussian mean (deterministic evaluation, as in OGBench / FQL).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from qflow.agents.base import AgentConfig, clip_actions, make_optimizer, step_with_target_critic
from qflow.networks import MLP, Critic, Ensemble

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@dataclasses.dataclass(frozen=True)
class IQLConfig(AgentConfig):
    expectile: float = 0.9  # tau of the expectile loss for V: 0.5 = mean (SARSA), -> 1 = max over dataset actions
    alpha: float = 10.0  # AWR inverse temperature: larger follows the advantage more greedily
    max_weight: float = 100.0  # upper clip of the AWR weights exp(alpha * A), keeps a few rows from dominating

    def validate(self) -> None:
        super().validate()
        if not 0 < self.expectile < 1:
            raise ValueError(f"expectile must be in (0, 1), got {self.expectile} (e.g. --set expectile=0.9)")
        if not self.alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha} (e.g. --set alpha=10)")
        if not self.max_weight > 0:
            raise ValueError(f"max_weight must be > 0, got {self.max_weight} (e.g. --set max_weight=100)")


def expectile_loss(diff: jnp.ndarray, expectile: float) -> jnp.ndarray:
    """|tau - 1(diff < 0)| * diff^2 per row, diff = target - prediction."""
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return weight * diff**2


class Value(nn.Module):
    """V(s): a one-head LayerNorm ensemble (the same MLP as each critic head), output shape (batch,)."""

    hidden_dims: tuple
    precision: str = "float32"

    @nn.compact
    def __call__(self, obs):
        return Ensemble(self.hidden_dims, heads=1, precision=self.precision)(obs)[0]


class GaussianActor(nn.Module):
    """pi(a|s) = N(tanh(MLP(s)), diag(exp(log_std))^2), log_std a learned state-independent vector.

    As in the original IQL code: the mean is squashed by tanh (so the deterministic action lies in
    [-1, 1]) but the distribution itself is not, so log-probabilities stay exact and cheap.
    """

    hidden_dims: tuple
    action_dim: int
    precision: str = "float32"

    @nn.compact
    def __call__(self, obs):
        mean = jnp.tanh(MLP(self.hidden_dims, self.action_dim, precision=self.precision)(obs))
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


def gaussian_log_prob(mean, log_std, actions):
    z = (actions - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1)


class IQLAgent(flax.struct.PyTreeNode):
    ACTING_PARAMS = ("actor",)  # the params sample_actions reads (what an exported policy keeps)
    rng: Any
    params: Any  # {"actor", "critic", "value"}: one Adam over L_Q + L_V + L_pi
    target_critic: Any  # EMA of params["critic"]
    opt_state: Any
    config: IQLConfig = flax.struct.field(pytree_node=False)
    nets: Any = flax.struct.field(pytree_node=False)
    tx: Any = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, seed: int, obs_dim: int, action_dim: int, config: IQLConfig) -> "IQLAgent":
        config.validate()
        nets = {
            "actor": GaussianActor(config.actor_dims, action_dim, config.matmul_precision),
            "critic": Critic(config.critic_dims, precision=config.matmul_precision),
            "value": Value(config.critic_dims, config.matmul_precision),
        }
        rng, k_actor, k_critic, k_value = jax.random.split(jax.random.PRNGKey(seed), 4)
        obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
        params = {
            "actor": nets["actor"].init(k_actor, obs),
            "critic": nets["critic"].init(k_critic, obs, act),
            "value": nets["value"].init(k_value, obs),
        }
        tx = make_optimizer(config)
        return cls(rng, params, params["critic"], tx.init(params), config, nets, tx)

    def draw_noise(self, rng, batch_size: int, action_dim: int) -> dict:
        return {}  # an IQL update is deterministic given the batch

    def losses(self, params, batch, noise):
        cfg = self.config
        obs, actions = batch["observations"], clip_actions(batch["actions"])
        q_data = self.nets["critic"].apply(self.target_critic, obs, actions).min(0)  # target net: no gradient path

        # L_V: upper expectile of Qbar over dataset actions.
        v = self.nets["value"].apply(params["value"], obs)
        loss_v = expectile_loss(q_data - v, cfg.expectile).mean()

        # L_Q: TD toward r + gamma * mask * V(s'), V frozen (it has its own loss).
        v_next = self.nets["value"].apply(jax.lax.stop_gradient(params["value"]), batch["next_observations"])
        td_target = batch["rewards"] + cfg.discount * batch["masks"] * v_next
        q = self.nets["critic"].apply(params["critic"], obs, actions)
        loss_q = jnp.mean((q - td_target[None]) ** 2)

        # L_pi: AWR; the advantage only weights the likelihood (stop_gradient into V).
        adv = jax.lax.stop_gradient(q_data - v)
        weights = jnp.minimum(jnp.exp(cfg.alpha * adv), cfg.max_weight)
        mean, log_std = self.nets["actor"].apply(params["actor"], obs)
        log_prob = gaussian_log_prob(mean, log_std, actions)
        loss_actor = -jnp.mean(weights * log_prob)

        info = {
            "loss_q": loss_q, "loss_v": loss_v, "loss_actor": loss_actor,
            "q_mean": q.mean(), "v_mean": v.mean(), "adv_mean": adv.mean(), "weight_mean": weights.mean(),
            "std_mean": jnp.exp(log_std).mean(),
            "td_target": td_target, "weights": weights,  # per-row, for tests only
        }
        return loss_q + loss_v + loss_actor, info

    def update(self, batch):
        return step_with_target_critic(self, batch)

    def sample_actions(self, obs, rng):
        del rng  # deterministic evaluation: the mean action
        mean, _ = self.nets["actor"].apply(self.params["actor"], obs)
        return jnp.clip(mean, -1, 1)
