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

import jax
import jax.numpy as jnp

from qflow.agents.base import (
    AgentConfig, TargetCriticAgent, clip_actions, implicit_value_losses, implicit_value_networks, require,
)
from qflow.networks import GaussianActor, gaussian_log_prob


@dataclasses.dataclass(frozen=True)
class IQLConfig(AgentConfig):
    TRACEABLE = (*AgentConfig.TRACEABLE, "expectile", "alpha", "max_weight")

    expectile: float = 0.9  # tau of the expectile loss for V: 0.5 = mean (SARSA), -> 1 = max over dataset actions
    alpha: float = 10.0  # AWR inverse temperature: larger follows the advantage more greedily
    max_weight: float = 100.0  # upper clip of the AWR weights exp(alpha * A), keeps a few rows from dominating

    def validate(self) -> None:
        super().validate()
        require(0 < self.expectile < 1, "expectile", self.expectile, "in (0, 1)", 0.9)
        require(self.alpha >= 0, "alpha", self.alpha, ">= 0", 10)
        require(self.max_weight > 0, "max_weight", self.max_weight, "> 0", 100)


class IQLAgent(TargetCriticAgent):
    """params {"actor", "critic", "value"}: one Adam over L_Q + L_V + L_pi; target_critic: EMA of the critic."""

    LOSSES = ("loss_q", "loss_v", "loss_actor")

    @classmethod
    def networks(cls, obs_dim: int, action_dim: int, config: IQLConfig) -> dict:
        return implicit_value_networks(config, "actor", GaussianActor(config.actor_dims, action_dim,
                                                                      config.matmul_precision))

    def draw_noise(self, rng, batch_size: int, action_dim: int) -> dict:
        return {}  # an IQL update is deterministic given the batch

    def losses(self, params, batch, noise):
        cfg = self.config
        obs, actions = batch["observations"], clip_actions(batch["actions"])

        # L_V and L_Q (base.implicit_value_losses): V frozen in the TD target, Qbar in V's.
        values = implicit_value_losses(self, params, batch, actions)
        q, v = values["q"], values["v"]

        # L_pi: AWR; the advantage only weights the likelihood (stop_gradient into V).
        adv = jax.lax.stop_gradient(values["q_data"] - v)
        weights = jnp.minimum(jnp.exp(cfg.alpha * adv), cfg.max_weight)
        mean, log_std = self.nets["actor"].apply(params["actor"], obs)
        log_prob = gaussian_log_prob(mean, log_std, actions)
        loss_actor = -jnp.mean(weights * log_prob)

        info = {
            "loss_q": values["loss_q"], "loss_v": values["loss_v"], "loss_actor": loss_actor,
            "q_mean": q.mean(), "v_mean": v.mean(), "adv_mean": adv.mean(), "weight_mean": weights.mean(),
            "std_mean": jnp.exp(log_std).mean(),
            "td_target": values["td_target"], "weights": weights,  # per-row, for tests only
        }
        return values["loss_q"] + values["loss_v"] + loss_actor, info

    def sample_actions(self, obs, rng):
        del rng  # deterministic evaluation: the mean action
        mean, _ = self.nets["actor"].apply(self.params["actor"], obs)
        return jnp.clip(mean, -1, 1)
