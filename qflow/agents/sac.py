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
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from qflow.agents.base import AgentConfig, make_optimizer, step_with_target_critic
from qflow.networks import MLP, Critic

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@dataclasses.dataclass(frozen=True)
class SACConfig(AgentConfig):
    init_temperature: float = 1.0  # alpha at the start
    target_entropy_scale: float = -1.0  # target entropy = scale x action_dim (the usual -|A| at -1)

    def validate(self) -> None:
        super().validate()
        if not self.init_temperature > 0:
            raise ValueError(f"init_temperature must be > 0, got {self.init_temperature} "
                             "(e.g. --set init_temperature=1)")


class TanhGaussianActor(nn.Module):
    hidden_dims: tuple
    action_dim: int
    precision: str = "float32"

    @nn.compact
    def __call__(self, obs):
        out = MLP(self.hidden_dims, 2 * self.action_dim, precision=self.precision)(obs)
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


def tanh_gaussian_sample(mean, log_std, eps):
    """(action in (-1, 1), its log-probability) for pre-squash noise ``eps`` ~ N(0, I)."""
    u = mean + jnp.exp(log_std) * eps
    log_normal = jnp.sum(-0.5 * eps**2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1)
    # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|
    log_det = jnp.sum(2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u)), axis=-1)
    return jnp.tanh(u), log_normal - log_det


class SACAgent(flax.struct.PyTreeNode):
    ACTING_PARAMS = ("actor",)  # the params sample_actions reads (what an exported policy keeps)
    rng: Any
    params: Any  # {"actor", "critic", "log_alpha"}: one Adam over L_Q + L_pi + L_alpha
    target_critic: Any  # EMA of params["critic"]
    opt_state: Any
    config: SACConfig = flax.struct.field(pytree_node=False)
    nets: Any = flax.struct.field(pytree_node=False)
    tx: Any = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, seed: int, obs_dim: int, action_dim: int, config: SACConfig) -> "SACAgent":
        config.validate()
        nets = {"actor": TanhGaussianActor(config.actor_dims, action_dim, config.matmul_precision),
                "critic": Critic(config.critic_dims, precision=config.matmul_precision)}
        rng, k_actor, k_critic = jax.random.split(jax.random.PRNGKey(seed), 3)
        obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
        params = {
            "actor": nets["actor"].init(k_actor, obs),
            "critic": nets["critic"].init(k_critic, obs, act),
            "log_alpha": jnp.asarray(math.log(config.init_temperature), jnp.float32),
        }
        tx = make_optimizer(config)
        return cls(rng, params, params["critic"], tx.init(params), config, nets, tx)

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
        td_target = batch["rewards"] + cfg.discount * batch["masks"] * (q_next - alpha * logp_next)
        q = self.nets["critic"].apply(params["critic"], obs, actions)
        loss_q = jnp.mean((q - td_target[None]) ** 2)

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

    def update(self, batch):
        return step_with_target_critic(self, batch)

    def sample_actions(self, obs, rng):
        mean, log_std = self.nets["actor"].apply(self.params["actor"], obs)
        return tanh_gaussian_sample(mean, log_std, jax.random.normal(rng, mean.shape))[0]

    def mean_actions(self, obs):
        return jnp.tanh(self.nets["actor"].apply(self.params["actor"], obs)[0])
