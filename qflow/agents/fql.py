"""FQL, flow Q-learning (Park, Li, Levine 2025): the main baseline.

Two policies share the flow noise z:
  v(s, x, t)   a behaviour-cloning flow (flow matching on dataset actions, no gradient from Q);
  mu(s, z)     a one-step policy trained by  alpha * ||mu(s, z) - Euler_K(v)(s, z)||^2 - Q(s, mu(s, z)).
The critic is TD-trained toward r + gamma * mask * agg Qbar(s', mu(s', z')). Acting is one call of mu,
so FQL never back-propagates through the ODE solver either; it distils it instead.
"""

from __future__ import annotations

import dataclasses

import flax
import jax
import jax.numpy as jnp

from qflow.agents.base import (
    AgentConfig, TargetCriticAgent, aggregate, clip_actions, flow_matching_loss, policy_diagnostics, require, td_loss,
)
from qflow.networks import MLP, Critic, VelocityField, euler_sample


@dataclasses.dataclass(frozen=True)
class FQLConfig(AgentConfig):
    TRACEABLE = (*AgentConfig.TRACEABLE, "alpha")

    alpha: float = 10.0  # distillation weight: larger keeps mu closer to the BC flow
    flow_steps: int = 10  # K: Euler steps of the BC flow whose output mu is distilled onto
    q_agg: str = "mean"  # aggregation of target-critic heads in the TD target: "mean" or "min"
    normalize_q_loss: bool = False  # divide the actor's -Q term by stop_grad(mean |Q|)

    def validate(self) -> None:
        super().validate()
        require(self.alpha >= 0, "alpha", self.alpha, ">= 0", 300)
        require(self.flow_steps >= 1, "flow_steps", self.flow_steps, ">= 1", 10)
        require(self.q_agg in ("mean", "min"), "q_agg", self.q_agg, "'mean' or 'min'", "mean")


class OneStepPolicy(flax.linen.Module):
    """mu(s, z): maps a noise sample straight to an action."""

    INPUTS = ("obs", "action")  # z has the action's shape
    hidden_dims: tuple
    action_dim: int
    precision: str = "float32"

    @flax.linen.compact
    def __call__(self, obs, z):
        return MLP(self.hidden_dims, self.action_dim, precision=self.precision)(jnp.concatenate([obs, z], -1))


class FQLAgent(TargetCriticAgent):
    """params {"flow", "onestep", "critic"}: one Adam over L_Q + L_flow + L_onestep; target_critic: EMA."""

    LOSSES = ("loss_q", "loss_flow", "loss_onestep")
    ACTING_PARAMS = ("onestep",)  # the params sample_actions reads (what an exported policy keeps)

    @classmethod
    def networks(cls, obs_dim: int, action_dim: int, config: FQLConfig) -> dict:
        return {
            "flow": VelocityField(config.actor_dims, action_dim, config.matmul_precision),
            "onestep": OneStepPolicy(config.actor_dims, action_dim, config.matmul_precision),
            "critic": Critic(config.critic_dims, precision=config.matmul_precision),
        }

    def draw_noise(self, rng, batch_size: int, action_dim: int) -> dict:
        k_next, k_x0, k_tau, k_z = jax.random.split(rng, 4)
        return {
            "z_next": jax.random.normal(k_next, (batch_size, action_dim)),  # mu's noise for the TD target
            "x0": jax.random.normal(k_x0, (batch_size, action_dim)),  # BC flow-matching noise
            "tau": jax.random.uniform(k_tau, (batch_size,)),  # BC flow-matching time
            "z": jax.random.normal(k_z, (batch_size, action_dim)),  # noise shared by mu and the BC flow
        }

    def onestep(self, params, obs, z):
        return jnp.clip(self.nets["onestep"].apply(params, obs, z), -1, 1)

    def losses(self, params, batch, noise):
        cfg = self.config
        obs, actions = batch["observations"], clip_actions(batch["actions"])

        # L_Q: TD toward r + gamma * mask * agg Qbar(s', mu(s', z')); mu frozen here.
        a_next = self.onestep(jax.lax.stop_gradient(params["onestep"]), batch["next_observations"], noise["z_next"])
        q_next = aggregate(self.nets["critic"].apply(self.target_critic, batch["next_observations"], a_next), cfg.q_agg)
        loss_q, q, td_target = td_loss(self, params, batch, actions, q_next)

        # L_flow: plain flow matching on dataset actions (the BC flow never sees Q).
        x0, tau = noise["x0"], noise["tau"]
        flow = lambda o, x, t: self.nets["flow"].apply(params["flow"], o, x, t)  # noqa: E731
        loss_flow = flow_matching_loss(flow, obs, actions, x0, tau)

        # L_onestep: distil the K-step BC flow (frozen) into mu, and ascend Q (critic frozen).
        frozen_flow = lambda o, x, t: self.nets["flow"].apply(jax.lax.stop_gradient(params["flow"]), o, x, t)  # noqa: E731
        distill_target = jnp.clip(euler_sample(frozen_flow, obs, noise["z"], cfg.flow_steps), -1, 1)
        raw = self.nets["onestep"].apply(params["onestep"], obs, noise["z"])
        loss_distill = jnp.mean((raw - distill_target) ** 2)  # unclipped, so mu is pulled back inside [-1, 1]
        q_pi = self.nets["critic"].apply(jax.lax.stop_gradient(params["critic"]), obs, jnp.clip(raw, -1, 1)).mean(0)
        scale = jax.lax.stop_gradient(1.0 / jnp.maximum(jnp.abs(q_pi).mean(), 1e-6)) if cfg.normalize_q_loss else 1.0
        loss_qpi = -scale * q_pi.mean()
        loss_onestep = cfg.alpha * loss_distill + loss_qpi

        info = {
            "loss_q": loss_q, "loss_flow": loss_flow, "loss_onestep": loss_onestep,
            "distill": loss_distill, "q_mean": q.mean(), "q_pi": q_pi.mean(), "td_target": td_target,
        }
        return loss_q + loss_flow + loss_onestep, info

    def diagnostics(self, batch, rng):
        """Policy improvement and distance from the data (base.policy_diagnostics), once per chunk."""
        return policy_diagnostics(self, batch, rng)

    def sample_actions(self, obs, rng):
        z = jax.random.normal(rng, (*obs.shape[:-1], self.nets["flow"].action_dim))
        return self.onestep(self.params["onestep"], obs, z)
