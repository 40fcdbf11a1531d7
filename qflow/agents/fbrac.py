"""FBRAC: a flow policy trained by back-propagating Q through the unrolled Euler solver (BPTT).

The route Q-Flow avoids (see docs/method.md). One velocity field v(s, x, t) is both the
behaviour-cloning flow and the policy:
  L_pi = alpha * ||v(s, x_tau, tau) - (a - x0)||^2  -  Q(s, clip(Euler_K(v)(s, z)))
where the -Q term differentiates through every one of the K Euler steps (no stop_gradient inside
the solver), with the critic frozen in that term. The critic is TD-trained toward
r + gamma * mask * agg Qbar(s', a'), a' a K-step sample of the current policy (no gradient).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from qflow.agents.base import (
    AgentConfig, TargetCriticAgent, aggregate, clip_actions, flow_matching_loss, policy_diagnostics, require, td_loss,
)
from qflow.networks import Critic, VelocityField, euler_sample


@dataclasses.dataclass(frozen=True)
class FBRACConfig(AgentConfig):
    TRACEABLE = (*AgentConfig.TRACEABLE, "alpha")

    alpha: float = 10.0  # weight of the flow-matching BC loss against -Q (larger = closer to the data)
    flow_steps: int = 10  # K: Euler steps for acting, for the TD target action and for the BPTT policy term
    q_agg: str = "mean"  # aggregation of target-critic heads in the TD target: "mean" or "min"
    normalize_q_loss: bool = False  # divide the actor's -Q term by stop_grad(mean |Q|) (reference default: off)

    def validate(self) -> None:
        super().validate()
        require(self.alpha >= 0, "alpha", self.alpha, ">= 0", 10)
        require(self.flow_steps >= 1, "flow_steps", self.flow_steps, ">= 1", 10)
        require(self.q_agg in ("mean", "min"), "q_agg", self.q_agg, "'mean' or 'min'", "mean")


class FBRACAgent(TargetCriticAgent):
    """params {"actor", "critic"}: one Adam over L_Q + L_pi; target_critic: EMA of the critic."""

    LOSSES = ("loss_q", "loss_pi")  # (loss_bc and loss_qpi are the two parts of loss_pi, logged too)

    @classmethod
    def networks(cls, obs_dim: int, action_dim: int, config: FBRACConfig) -> dict:
        return {"actor": VelocityField(config.actor_dims, action_dim, config.matmul_precision),
                "critic": Critic(config.critic_dims, precision=config.matmul_precision)}

    # ------------------------------------------------------------------ pieces
    def velocity(self, actor_params):
        return lambda obs, x, t: self.nets["actor"].apply(actor_params, obs, x, t)

    def policy_actions(self, actor_params, obs, z):
        """clip(Euler_K(v)(s, z)): differentiable in ``actor_params`` through every Euler step."""
        return jnp.clip(euler_sample(self.velocity(actor_params), obs, z, self.config.flow_steps), -1, 1)

    def draw_noise(self, rng, batch_size: int, action_dim: int) -> dict:
        """Every random draw of one update: TD-target noise, BC flow noise and time, policy noise."""
        k_next, k_x0, k_tau, k_z = jax.random.split(rng, 4)
        return {
            "x_next": jax.random.normal(k_next, (batch_size, action_dim)),  # start of a' = Euler_K(s', x_next)
            "x0": jax.random.normal(k_x0, (batch_size, action_dim)),  # flow-matching noise
            "tau": jax.random.uniform(k_tau, (batch_size,)),  # flow-matching time
            "z": jax.random.normal(k_z, (batch_size, action_dim)),  # start of the BPTT policy sample
        }

    def losses(self, params, batch, noise):
        """(total, info); the critic sees the actor only through stop_gradient and vice versa."""
        cfg = self.config
        obs, actions = batch["observations"], clip_actions(batch["actions"])

        # L_Q: TD toward r + gamma * mask * agg Qbar(s', a'), a' a K-step sample of the frozen actor.
        a_next = self.policy_actions(jax.lax.stop_gradient(params["actor"]), batch["next_observations"],
                                     noise["x_next"])
        q_next = aggregate(self.nets["critic"].apply(self.target_critic, batch["next_observations"], a_next), cfg.q_agg)
        loss_q, q, td_target = td_loss(self, params, batch, actions, q_next)

        # BC part of L_pi: plain flow matching on dataset actions.
        x0, tau = noise["x0"], noise["tau"]
        actor = lambda o, x, t: self.nets["actor"].apply(params["actor"], o, x, t)  # noqa: E731
        loss_bc = flow_matching_loss(actor, obs, actions, x0, tau)

        # Q part of L_pi: -mean_heads Q(s, clip(Euler_K(v)(s, z))), gradient through all K steps, critic frozen.
        a_pi = self.policy_actions(params["actor"], obs, noise["z"])
        q_pi = self.nets["critic"].apply(jax.lax.stop_gradient(params["critic"]), obs, a_pi).mean(0)
        scale = jax.lax.stop_gradient(1.0 / jnp.maximum(jnp.abs(q_pi).mean(), 1e-6)) if cfg.normalize_q_loss else 1.0
        loss_qpi = -scale * q_pi.mean()
        loss_pi = cfg.alpha * loss_bc + loss_qpi

        info = {
            "loss_q": loss_q, "loss_pi": loss_pi, "loss_bc": loss_bc, "loss_qpi": loss_qpi,
            "q_mean": q.mean(), "q_pi": q_pi.mean(), "td_target": td_target,
        }
        return loss_q + loss_pi, info

    # ------------------------------------------------------------------ public API
    def diagnostics(self, batch, rng):
        """Policy improvement and distance from the data (base.policy_diagnostics), once per chunk."""
        return policy_diagnostics(self, batch, rng)

    def sample_actions(self, obs, rng):
        z = jax.random.normal(rng, (*obs.shape[:-1], self.nets["actor"].action_dim))
        return self.policy_actions(self.params["actor"], obs, z)
