"""SAC, soft actor-critic (Haarnoja et al. 2018): the online RL agent (e.g. for training experts).

  pi(a|s)  tanh-squashed Gaussian with state-dependent mean and log-std, reparameterised;
  Q(s, a)  twin critics with an EMA target, TD toward r + gamma * mask * (min_heads Qbar(s', a') - alpha log pi(a'|s')),
           a' ~ pi(.|s');
  alpha    entropy temperature, tuned so the policy's entropy tracks ``target_entropy``.
One Adam over all three losses; each loss reaches only its own parameters (the others enter through
stop_gradient). ``sample_actions`` samples (exploration); ``mean_actions`` is the deterministic
tanh(mean), what an expert acts with when it generates data.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from qflow.agents.base import AgentConfig, TargetCriticAgent, require, td_loss
from qflow.networks import Critic, TanhGaussianActor, tanh_gaussian_sample


@dataclasses.dataclass(frozen=True)
class SACConfig(AgentConfig):
    init_temperature: float = 1.0  # alpha at the start
    target_entropy_scale: float = -1.0  # target entropy = scale x action_dim (the usual -|A| at -1)

    def validate(self) -> None:
        super().validate()
        require(self.init_temperature > 0, "init_temperature", self.init_temperature, "> 0", 1)


class SACAgent(TargetCriticAgent):
    """params {"actor", "critic", "log_alpha"}: one Adam over L_Q + L_pi + L_alpha; target_critic: EMA."""

    LOSSES = ("loss_q", "loss_actor", "loss_alpha")

    @classmethod
    def networks(cls, obs_dim: int, action_dim: int, config: SACConfig) -> dict:
        return {"actor": TanhGaussianActor(config.actor_dims, action_dim, config.matmul_precision),
                "critic": Critic(config.critic_dims, precision=config.matmul_precision)}

    @classmethod
    def extra_params(cls, config: SACConfig) -> dict:
        return {"log_alpha": jnp.asarray(math.log(config.init_temperature), jnp.float32)}

    def draw_noise(self, rng, batch_size: int, action_dim: int) -> dict:
        k_next, k_pi = jax.random.split(rng)
        return {"eps_next": jax.random.normal(k_next, (batch_size, action_dim)),
                "eps": jax.random.normal(k_pi, (batch_size, action_dim))}

    def losses(self, params, batch, noise):
        cfg = self.config
        obs, actions, next_obs = batch["observations"], batch["actions"], batch["next_observations"]
        actor = lambda p, o: self.nets["actor"].apply(p, o)  # noqa: E731
        alpha = jnp.exp(jax.lax.stop_gradient(params["log_alpha"]))

        # L_Q: soft TD target from the current policy at s' (actor frozen) and the target critic.
        a_next, logp_next = tanh_gaussian_sample(*actor(jax.lax.stop_gradient(params["actor"]), next_obs),
                                                 noise["eps_next"])
        q_next = self.nets["critic"].apply(self.target_critic, next_obs, a_next).min(0)
        loss_q, q, td_target = td_loss(self, params, batch, actions, q_next - alpha * logp_next)

        # L_pi: maximise min_heads Q(s, a) + alpha * entropy, a reparameterised (critic frozen).
        a_pi, logp = tanh_gaussian_sample(*actor(params["actor"], obs), noise["eps"])
        q_pi = self.nets["critic"].apply(jax.lax.stop_gradient(params["critic"]), obs, a_pi).min(0)
        loss_actor = jnp.mean(alpha * logp - q_pi)

        # L_alpha: raise alpha when the entropy -log pi is below its target, lower it when above.
        target_entropy = cfg.target_entropy_scale * actions.shape[-1]
        loss_alpha = -jnp.exp(params["log_alpha"]) * jnp.mean(jax.lax.stop_gradient(logp) + target_entropy)

        info = {"loss_q": loss_q, "loss_actor": loss_actor, "loss_alpha": loss_alpha, "alpha": alpha,
                "entropy": -logp.mean(), "q_mean": q.mean(), "td_target": td_target}
        return loss_q + loss_actor + loss_alpha, info

    def sample_actions(self, obs, rng):
        mean, log_std = self.nets["actor"].apply(self.params["actor"], obs)
        return tanh_gaussian_sample(mean, log_std, jax.random.normal(rng, mean.shape))[0]

    def mean_actions(self, obs):
        return jnp.tanh(self.nets["actor"].apply(self.params["actor"], obs)[0])
