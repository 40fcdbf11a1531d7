"""ReBRAC (Tarasov et al. 2023): TD3+BC with LayerNorm critics and separate actor / critic BC terms.

  pi(s)    deterministic tanh actor, trained by  -Q(s, pi(s)) / stop_grad(mean |Q|) + alpha_actor * ||pi(s) - a||^2
           (Q = min of the critic heads), updated every ``actor_freq``-th step only;
  Q(s, a)  TD toward r + gamma * mask * (min_heads Qbar(s', a') - alpha_critic * ||a' - a'_data||^2),
           a' = clip(pibar(s') + clip(noise), -1, 1) from the EMA target actor (target policy smoothing).
Acting is one call of pi. Both the critic and the actor have EMA targets.

The critic penalty needs the dataset's next action a'_data (``batch["next_actions"]``): with
alpha_critic > 0 the config asks the loader for it (``extra_data``), offline only, since an online
transition's next action is not known when it is stored.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from qflow.agents.base import Agent, AgentConfig, clip_actions, ema, ema_source, gradient_step, require, td_loss
from qflow.networks import MLP, Critic


@dataclasses.dataclass(frozen=True)
class ReBRACConfig(AgentConfig):
    alpha_actor: float = 0.01  # actor BC weight on ||pi(s) - a||^2 (sum over action dims)
    alpha_critic: float = 0.0  # critic BC penalty on ||a' - a'_data||^2; > 0 loads the data's next actions
    actor_noise: float = 0.2  # std of the Gaussian smoothing noise added to the target action
    actor_noise_clip: float = 0.5  # the smoothing noise is clipped to [-clip, clip]
    actor_freq: int = 2  # the actor (and its EMA target) is updated every actor_freq-th update

    def validate(self) -> None:
        super().validate()
        require(self.alpha_actor >= 0, "alpha_actor", self.alpha_actor, ">= 0", 0.01)
        require(self.alpha_critic >= 0, "alpha_critic", self.alpha_critic, ">= 0", 0)
        require(self.actor_noise >= 0, "actor_noise", self.actor_noise, ">= 0", 0.2)
        require(self.actor_noise_clip >= 0, "actor_noise_clip", self.actor_noise_clip, ">= 0", 0.5)
        require(self.actor_freq >= 1, "actor_freq", self.actor_freq, ">= 1", 2)

    def extra_data(self) -> tuple[str, ...]:
        return ("next_actions",) if self.alpha_critic > 0 else ()


class ReBRACAgent(Agent):
    """params {"actor", "critic"}: one Adam over L_Q + L_pi; target_params: EMA targets of both."""

    LOSSES = ("loss_q", "loss_actor")

    target_params: Any  # {"actor", "critic"}: EMA targets
    step: Any  # int32 update counter: decides the delayed actor updates inside jit / vmap

    @classmethod
    def networks(cls, obs_dim: int, action_dim: int, config: ReBRACConfig) -> dict:
        return {"actor": MLP(config.actor_dims, action_dim, precision=config.matmul_precision),
                "critic": Critic(config.critic_dims, precision=config.matmul_precision)}

    @classmethod
    def extra_state(cls, params: dict) -> dict:
        return {"target_params": params, "step": jnp.zeros((), jnp.int32)}

    def draw_noise(self, rng, batch_size: int, action_dim: int) -> dict:
        return {"target_noise": jax.random.normal(rng, (batch_size, action_dim))}  # unit noise, scaled in losses

    def policy(self, actor_params, obs):
        return jnp.tanh(self.nets["actor"].apply(actor_params, obs))

    def actor_step(self):
        """1.0 on steps where the actor and its target are updated, else 0.0."""
        return (self.step % self.config.actor_freq == 0).astype(jnp.float32)

    def losses(self, params, batch, noise):
        cfg = self.config
        obs, actions = batch["observations"], clip_actions(batch["actions"])
        next_obs = batch["next_observations"]

        # L_Q: smoothed target action from the target actor; penalise its distance to the data's next action.
        eps = jnp.clip(cfg.actor_noise * noise["target_noise"], -cfg.actor_noise_clip, cfg.actor_noise_clip)
        a_next = jnp.clip(self.policy(self.target_params["actor"], next_obs) + eps, -1, 1)
        q_next = self.nets["critic"].apply(self.target_params["critic"], next_obs, a_next).min(0)
        if cfg.alpha_critic > 0:
            if "next_actions" not in batch:
                raise ValueError(f"alpha_critic={cfg.alpha_critic} needs batch['next_actions'], which this dataset "
                                 "does not provide (e.g. --set alpha_critic=0)")
            q_next = q_next - cfg.alpha_critic * jnp.sum((a_next - batch["next_actions"]) ** 2, -1)
        loss_q, q, td_target = td_loss(self, params, batch, actions, q_next)

        # L_pi: ascend the (frozen) critic at pi(s), normalised by |Q|, plus behaviour cloning.
        pi = self.policy(params["actor"], obs)
        q_pi = self.nets["critic"].apply(jax.lax.stop_gradient(params["critic"]), obs, pi).min(0)
        scale = jax.lax.stop_gradient(1.0 / jnp.maximum(jnp.abs(q_pi).mean(), 1e-6))
        bc = jnp.sum((pi - actions) ** 2, -1)
        loss_actor = -scale * q_pi.mean() + cfg.alpha_actor * bc.mean()

        info = {
            "loss_q": loss_q, "loss_actor": loss_actor, "bc": bc.mean(), "q_mean": q.mean(), "q_pi": q_pi.mean(),
            "td_target": td_target,  # per-row, for tests only
        }
        # Delayed actor: on off-steps the actor loss is masked out, so its gradient is exactly zero. As in
        # FQL's reference code one Adam serves both networks, so the actor still takes Adam's momentum step.
        return loss_q + self.actor_step() * loss_actor, info

    def update(self, batch):
        rng, params, opt_state, scalars = gradient_step(self, batch)
        rate, source = self.config.target_update_rate, ema_source(self.config, self.params, params)
        target = {
            "critic": ema(self.target_params["critic"], source["critic"], rate),
            # the actor target only moves on actor steps (rate 0 otherwise)
            "actor": ema(self.target_params["actor"], source["actor"], rate * self.actor_step()),
        }
        return self.replace(rng=rng, params=params, target_params=target, opt_state=opt_state,
                            step=self.step + 1), scalars

    def sample_actions(self, obs, rng):
        del rng  # deterministic policy
        return jnp.clip(self.policy(self.params["actor"], obs), -1, 1)
