"""IFQL: the flow-policy version of IDQL (Hansen-Estruch et al. 2023), as defined in the FQL paper.

IQL value learning plus a behaviour-cloning flow, combined only at acting time:
  V(s)         expectile regression onto min_heads Qbar(s, a) at dataset actions (see iql.py);
  Q(s, a)      TD toward r + gamma * mask * V(s'), EMA target Qbar;
  v(s, x, t)   flow matching on dataset actions, no gradient from Q;
  acting       draw N = ``num_samples`` actions from the K-step Euler flow and return the one with the
               highest mean_heads Qbar(s, a) (the EMA target critic: smoother than the online one).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from qflow.agents.base import (
    AgentConfig, TargetCriticAgent, clip_actions, flow_matching_loss, implicit_value_losses, implicit_value_networks,
    require,
)
from qflow.networks import VelocityField, euler_sample


@dataclasses.dataclass(frozen=True)
class IFQLConfig(AgentConfig):
    TRACEABLE = (*AgentConfig.TRACEABLE, "expectile")

    expectile: float = 0.9  # tau of the expectile loss for V (0.5 = SARSA, -> 1 = max over dataset actions)
    num_samples: int = 32  # N: flow samples per state when acting; the argmax-Q one is executed
    flow_steps: int = 10  # K: Euler steps of the BC flow when acting

    def validate(self) -> None:
        super().validate()
        require(0 < self.expectile < 1, "expectile", self.expectile, "in (0, 1)", 0.9)
        require(self.num_samples >= 1, "num_samples", self.num_samples, ">= 1", 32)
        require(self.flow_steps >= 1, "flow_steps", self.flow_steps, ">= 1", 10)


class IFQLAgent(TargetCriticAgent):
    """params {"flow", "critic", "value"}: one Adam over L_Q + L_V + L_flow; target_critic: EMA of the critic."""

    LOSSES = ("loss_q", "loss_v", "loss_flow")
    ACTING_PARAMS = ("flow",)  # the params sample_actions reads (what an exported policy keeps)
    ACTING_FIELDS = ("target_critic",)  # best-of-N ranks the candidates with the target critic

    @classmethod
    def networks(cls, obs_dim: int, action_dim: int, config: IFQLConfig) -> dict:
        return implicit_value_networks(config, "flow", VelocityField(config.actor_dims, action_dim,
                                                                     config.matmul_precision))

    def draw_noise(self, rng, batch_size: int, action_dim: int) -> dict:
        k_x0, k_tau = jax.random.split(rng)
        return {
            "x0": jax.random.normal(k_x0, (batch_size, action_dim)),  # flow-matching noise
            "tau": jax.random.uniform(k_tau, (batch_size,)),  # flow-matching time
        }

    def losses(self, params, batch, noise):
        obs, actions = batch["observations"], clip_actions(batch["actions"])

        # L_V and L_Q (base.implicit_value_losses): V frozen in the TD target, Qbar in V's.
        values = implicit_value_losses(self, params, batch, actions)

        # L_flow: plain flow matching (the policy never sees Q during training).
        flow = lambda o, x, t: self.nets["flow"].apply(params["flow"], o, x, t)  # noqa: E731
        loss_flow = flow_matching_loss(flow, obs, actions, noise["x0"], noise["tau"])

        info = {
            "loss_q": values["loss_q"], "loss_v": values["loss_v"], "loss_flow": loss_flow,
            "q_mean": values["q"].mean(), "v_mean": values["v"].mean(),
            "adv_mean": (values["q_data"] - values["v"]).mean(),
            "td_target": values["td_target"],  # per-row, for tests only
        }
        return values["loss_q"] + values["loss_v"] + loss_flow, info

    def best_of_n(self, obs, x0):
        """obs (B, obs_dim), x0 (B, N, action_dim) -> (chosen (B, A), candidates (B, N, A), q (B, N))."""
        batch, n, action_dim = x0.shape
        obs_rep = jnp.repeat(obs, n, axis=0)  # row b * N + i is state b
        velocity = lambda o, x, t: self.nets["flow"].apply(self.params["flow"], o, x, t)  # noqa: E731
        cand = jnp.clip(euler_sample(velocity, obs_rep, x0.reshape(batch * n, action_dim), self.config.flow_steps),
                        -1, 1)
        q = self.nets["critic"].apply(self.target_critic, obs_rep, cand).mean(0).reshape(batch, n)
        cand = cand.reshape(batch, n, action_dim)
        best = jnp.take_along_axis(cand, jnp.argmax(q, axis=1)[:, None, None], axis=1)[:, 0]
        return best, cand, q

    def sample_actions(self, obs, rng):
        lead, obs_dim = obs.shape[:-1], obs.shape[-1]  # any leading shape, including none
        flat = obs.reshape(-1, obs_dim)
        action_dim = self.nets["flow"].action_dim
        x0 = jax.random.normal(rng, (flat.shape[0], self.config.num_samples, action_dim))
        best, _, _ = self.best_of_n(flat, x0)
        return best.reshape(*lead, action_dim)
