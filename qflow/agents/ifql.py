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
from typing import Any

import flax
import jax
import jax.numpy as jnp

from qflow.agents.base import AgentConfig, clip_actions, flow_matching_loss, make_optimizer, step_with_target_critic
from qflow.agents.iql import Value, expectile_loss
from qflow.networks import Critic, VelocityField, euler_sample



@dataclasses.dataclass(frozen=True)
class IFQLConfig(AgentConfig):
    expectile: float = 0.9  # tau of the expectile loss for V (0.5 = SARSA, -> 1 = max over dataset actions)
    num_samples: int = 32  # N: flow samples per state when acting; the argmax-Q one is executed
    flow_steps: int = 10  # K: Euler steps of the BC flow when acting

    def validate(self) -> None:
        super().validate()
        if not 0 < self.expectile < 1:
            raise ValueError(f"expectile must be in (0, 1), got {self.expectile} (e.g. --set expectile=0.9)")
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples} (e.g. --set num_samples=32)")
        if self.flow_steps < 1:
            raise ValueError(f"flow_steps must be >= 1, got {self.flow_steps} (e.g. --set flow_steps=10)")


class IFQLAgent(flax.struct.PyTreeNode):
    ACTING_PARAMS = ("flow",)  # the params sample_actions reads (what an exported policy keeps)
    ACTING_FIELDS = ("target_critic",)  # best-of-N ranks the candidates with the target critic
    rng: Any
    params: Any  # {"flow", "critic", "value"}: one Adam over L_Q + L_V + L_flow
    target_critic: Any  # EMA of params["critic"]
    opt_state: Any
    config: IFQLConfig = flax.struct.field(pytree_node=False)
    nets: Any = flax.struct.field(pytree_node=False)
    tx: Any = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, seed: int, obs_dim: int, action_dim: int, config: IFQLConfig) -> "IFQLAgent":
        config.validate()
        nets = {
            "flow": VelocityField(config.actor_dims, action_dim, config.matmul_precision),
            "critic": Critic(config.critic_dims, precision=config.matmul_precision),
            "value": Value(config.critic_dims, config.matmul_precision),
        }
        rng, k_flow, k_critic, k_value = jax.random.split(jax.random.PRNGKey(seed), 4)
        obs, act, t = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim)), jnp.zeros((1,))
        params = {
            "flow": nets["flow"].init(k_flow, obs, act, t),
            "critic": nets["critic"].init(k_critic, obs, act),
            "value": nets["value"].init(k_value, obs),
        }
        tx = make_optimizer(config)
        return cls(rng, params, params["critic"], tx.init(params), config, nets, tx)

    def draw_noise(self, rng, batch_size: int, action_dim: int) -> dict:
        k_x0, k_tau = jax.random.split(rng)
        return {
            "x0": jax.random.normal(k_x0, (batch_size, action_dim)),  # flow-matching noise
            "tau": jax.random.uniform(k_tau, (batch_size,)),  # flow-matching time
        }

    def losses(self, params, batch, noise):
        cfg = self.config
        obs, actions = batch["observations"], clip_actions(batch["actions"])

        # L_V: upper expectile of the target critic over dataset actions.
        q_data = self.nets["critic"].apply(self.target_critic, obs, actions).min(0)
        v = self.nets["value"].apply(params["value"], obs)
        loss_v = expectile_loss(q_data - v, cfg.expectile).mean()

        # L_Q: TD toward r + gamma * mask * V(s'), V frozen.
        v_next = self.nets["value"].apply(jax.lax.stop_gradient(params["value"]), batch["next_observations"])
        td_target = batch["rewards"] + cfg.discount * batch["masks"] * v_next
        q = self.nets["critic"].apply(params["critic"], obs, actions)
        loss_q = jnp.mean((q - td_target[None]) ** 2)

        # L_flow: plain flow matching (the policy never sees Q during training).
        x0, tau = noise["x0"], noise["tau"]
        flow = lambda o, x, t: self.nets["flow"].apply(params["flow"], o, x, t)  # noqa: E731
        loss_flow = flow_matching_loss(flow, obs, actions, x0, tau)

        info = {
            "loss_q": loss_q, "loss_v": loss_v, "loss_flow": loss_flow,
            "q_mean": q.mean(), "v_mean": v.mean(), "adv_mean": (q_data - v).mean(),
            "td_target": td_target,  # per-row, for tests only
        }
        return loss_q + loss_v + loss_flow, info

    def update(self, batch):
        return step_with_target_critic(self, batch)

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
