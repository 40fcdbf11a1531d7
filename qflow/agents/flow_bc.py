"""Flow behaviour cloning: flow matching on dataset actions only (Q-Flow with lambda -> infinity).

The lower bound every value-guided flow policy must beat; acting is the same K-step Euler sampler.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from qflow.agents.base import Agent, AgentConfig, clip_actions, flow_matching_loss, require
from qflow.networks import VelocityField, euler_sample


@dataclasses.dataclass(frozen=True)
class FlowBCConfig(AgentConfig):
    flow_steps: int = 10  # K: Euler steps when acting

    def validate(self) -> None:
        super().validate()
        require(self.flow_steps >= 1, "flow_steps", self.flow_steps, ">= 1", 10)

    @classmethod
    def legacy_defaults(cls) -> dict:
        """No target network, so target_update changes nothing here: an old record reads as today's value
        (and an old run resumes as the same run)."""
        return {**super().legacy_defaults(), "target_update": "pre"}


class FlowBCAgent(Agent):
    """params {"actor"}: one Adam over L_pi; no target network (nothing here bootstraps)."""

    LOSSES = ("loss_pi",)

    @classmethod
    def networks(cls, obs_dim: int, action_dim: int, config: FlowBCConfig) -> dict:
        return {"actor": VelocityField(config.actor_dims, action_dim, config.matmul_precision)}

    def draw_noise(self, rng, batch_size: int, action_dim: int) -> dict:
        k_x0, k_tau = jax.random.split(rng)
        return {"x0": jax.random.normal(k_x0, (batch_size, action_dim)), "tau": jax.random.uniform(k_tau, (batch_size,))}

    def losses(self, params, batch, noise):
        actions = clip_actions(batch["actions"])
        x0, tau = noise["x0"], noise["tau"]
        actor = lambda o, x, t: self.nets["actor"].apply(params["actor"], o, x, t)  # noqa: E731
        loss = flow_matching_loss(actor, batch["observations"], actions, x0, tau)
        return loss, {"loss_pi": loss}

    def sample_actions(self, obs, rng):
        x0 = jax.random.normal(rng, (*obs.shape[:-1], self.nets["actor"].action_dim))
        velocity = lambda o, x, t: self.nets["actor"].apply(self.params["actor"], o, x, t)  # noqa: E731
        return jnp.clip(euler_sample(velocity, obs, x0, self.config.flow_steps), -1, 1)
