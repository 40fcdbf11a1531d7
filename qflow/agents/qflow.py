"""Q-Flow (Doo et al., ICML 2026): flow policy steered by the gradient of an inner value.

Three networks (docs/method.md):
  Q(s, a)            outer critic ensemble with EMA target, TD-trained;
  V(s, x_tau, tau)   inner value, regressed onto Q_target(s, Psi(x_tau)) where Psi finishes the
                     flow from tau with the current actor (no gradient);
  v(s, x, t)         velocity field, flow-matched toward (a - x0) + grad_x V / lambda.
No loss back-propagates through the ODE solver, and no gradient crosses modules: each loss sees
only its own network's parameters (the others enter through stop_gradient).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from qflow.agents.base import (
    AgentConfig, TargetCriticAgent, aggregate, clip_actions, interpolate, policy_diagnostics, require, td_loss,
)
from qflow.networks import Critic, FlowValue, VelocityField, euler_sample

# V's time features: angle = scale * f * tau. "f_tau" is the paper and the authors' code; "2pi_f_tau"
# is what this project used until 2026-11-30 (kept so those runs can be reloaded and re-run).
TIME_FEATURE_SCALES = {"f_tau": 1.0, "2pi_f_tau": 2.0 * math.pi}


@dataclasses.dataclass(frozen=True)
class QFlowConfig(AgentConfig):
    TRACEABLE = (*AgentConfig.TRACEABLE, "guidance_lambda")

    guidance_lambda: float = 5.0  # lambda: behaviour-regularisation strength (smaller = stronger value guidance)
    flow_steps: int = 10  # K: Euler steps for acting, for the TD target action and for Psi
    q_agg: str = "mean"  # how target-critic heads (and V heads in L_V) are aggregated: "mean" or "min"
    time_embed_dim: int = 64  # Fourier features of tau fed to V (log-spaced frequencies 1..256)
    time_features: str = "f_tau"  # sin/cos(f tau) ("f_tau", the paper) or sin/cos(2 pi f tau) ("2pi_f_tau", old runs)
    stratify_tau: bool = True  # sample tau per step bucket so Psi runs only the steps each row needs
    shared_draw: bool = True  # L_V and L_pi share one (x0, tau) draw; false: one draw each, as the authors' code

    def validate(self) -> None:
        super().validate()
        require(self.guidance_lambda > 0, "guidance_lambda", self.guidance_lambda, "> 0", 5)
        require(self.flow_steps >= 1, "flow_steps", self.flow_steps, ">= 1", 10)
        require(self.q_agg in ("mean", "min"), "q_agg", self.q_agg, "'mean' or 'min'", "mean")
        if self.time_embed_dim < 2 or self.time_embed_dim % 2:
            raise ValueError(f"time_embed_dim must be an even number >= 2, got {self.time_embed_dim}")
        if self.time_features not in TIME_FEATURE_SCALES:
            raise ValueError(f"time_features must be one of {sorted(TIME_FEATURE_SCALES)}, got {self.time_features!r}")

    @classmethod
    def legacy_defaults(cls) -> dict:
        """Values of keys that records written before the key existed ran with (see config_from_record)."""
        return {**super().legacy_defaults(), "time_features": "2pi_f_tau", "shared_draw": True}


def bucket_sizes(batch: int, steps: int) -> list[int]:
    """Rows per tau bucket [j/K, (j+1)/K): as equal as possible, larger buckets first."""
    base, extra = divmod(batch, steps)
    return [base + (j < extra) for j in range(steps)]


def sample_tau(rng, batch: int, steps: int, stratify: bool):
    """tau in [0, 1) and per-row loss weights whose weighted mean is unbiased for tau ~ U(0, 1).

    Stratified: bucket j holds n_j rows with tau = (j + u) / K, weight (B / K) / n_j. Rows are
    ordered by bucket, so rows still integrating at Euler step i form a prefix of the batch.
    """
    u = jax.random.uniform(rng, (batch,))
    if not stratify:
        return u, jnp.ones((batch,))
    sizes = bucket_sizes(batch, steps)
    bucket = jnp.repeat(jnp.arange(steps), jnp.array(sizes), total_repeat_length=batch)
    weight = jnp.repeat(jnp.array([batch / steps / max(n, 1) for n in sizes]), jnp.array(sizes),
                        total_repeat_length=batch)
    return (bucket + u) / steps, weight


def finish_flow(velocity, obs, x_tau, tau, steps: int, stratified: bool):
    """Psi: Euler from tau to 1 with dt = clip(1 - t, 0, 1/K) (K steps, dt = 0 past t = 1).

    With stratified tau only the prefix of rows that still has time left is evaluated at step i,
    which skips the zero-dt calls (about 45% of them at K = 10) and gives the same result.
    """
    if not stratified:
        x = x_tau
        for i in range(steps):
            t = tau + i / steps
            x = x + jnp.clip(1.0 - t, 0.0, 1.0 / steps)[:, None] * velocity(obs, x, t)
        return x

    sizes = bucket_sizes(obs.shape[0], steps)
    x = x_tau
    for i in range(steps):
        active = sum(sizes[: steps - i])  # buckets j < K - i still need step i
        if active == 0:
            continue
        t = tau[:active] + i / steps
        dt = jnp.clip(1.0 - t, 0.0, 1.0 / steps)
        x = x.at[:active].add(dt[:, None] * velocity(obs[:active], x[:active], t))
    return x


class QFlowAgent(TargetCriticAgent):
    """params {"actor", "critic", "value"}: all trained by one Adam on L_Q + L_V + L_pi; target_critic: EMA."""

    LOSSES = ("loss_q", "loss_v", "loss_pi")

    @classmethod
    def networks(cls, obs_dim: int, action_dim: int, config: QFlowConfig) -> dict:
        return {
            "actor": VelocityField(config.actor_dims, action_dim, config.matmul_precision),
            "critic": Critic(config.critic_dims, precision=config.matmul_precision),
            "value": FlowValue(config.critic_dims, config.time_embed_dim,
                               time_scale=TIME_FEATURE_SCALES[config.time_features], precision=config.matmul_precision),
        }

    # ------------------------------------------------------------------ losses
    def velocity(self, actor_params):
        return lambda obs, x, t: self.nets["actor"].apply(actor_params, obs, x, t)

    def draw_noise(self, rng, batch_size: int, action_dim: int) -> dict:
        """Every random draw of one update: TD-target noise, flow noise x0, flow time tau (and, without
        ``shared_draw``, a second x0 and tau for L_pi, suffixed ``_pi``)."""
        cfg = self.config
        k_next, k_x0, k_tau, *k_pi = jax.random.split(rng, 3 if cfg.shared_draw else 5)
        tau, weight = sample_tau(k_tau, batch_size, cfg.flow_steps, cfg.stratify_tau)
        noise = {
            "x_next": jax.random.normal(k_next, (batch_size, action_dim)),
            "x0": jax.random.normal(k_x0, (batch_size, action_dim)),
            "tau": tau,
            "weight": weight,  # stratification weights (all ones when tau is iid uniform)
        }
        if k_pi:
            tau_pi, weight_pi = sample_tau(k_pi[1], batch_size, cfg.flow_steps, cfg.stratify_tau)
            noise.update(x0_pi=jax.random.normal(k_pi[0], (batch_size, action_dim)), tau_pi=tau_pi, weight_pi=weight_pi)
        return noise

    def losses(self, params, batch, noise):
        """(total, info) with the three losses; gradients flow into each loss's own network only."""
        cfg = self.config
        obs, actions = batch["observations"], clip_actions(batch["actions"])
        frozen_actor = self.velocity(jax.lax.stop_gradient(params["actor"]))
        critic_target = lambda o, a: self.nets["critic"].apply(self.target_critic, o, a)  # noqa: E731

        # L_Q: TD toward r + gamma * mask * agg Qbar(s', a'), a' a full K-step sample of the current policy.
        a_next = jnp.clip(euler_sample(frozen_actor, batch["next_observations"], noise["x_next"], cfg.flow_steps), -1, 1)
        q_next = aggregate(critic_target(batch["next_observations"], a_next), cfg.q_agg)
        loss_q, q, td_target = td_loss(self, params, batch, actions, q_next)

        # Shared interpolation point x_tau between noise and the data action.
        x0, tau, weight = noise["x0"], noise["tau"], noise["weight"]
        x_tau = interpolate(x0, actions, tau)

        # L_V: V(s, x_tau, tau) regresses onto agg Qbar(s, clip(Psi(x_tau))).
        terminal = finish_flow(frozen_actor, obs, x_tau, tau, cfg.flow_steps, cfg.stratify_tau)
        v_target = aggregate(critic_target(obs, jnp.clip(terminal, -1, 1)), cfg.q_agg)
        v = aggregate(self.nets["value"].apply(params["value"], obs, x_tau, tau), cfg.q_agg)
        loss_v = jnp.mean(weight * (v - v_target) ** 2)

        # L_pi: flow matching toward (a - x0) + grad_x mean_heads V / lambda (V frozen), at the same point
        # as L_V or (without shared_draw) at a second one.
        if not cfg.shared_draw:
            x0, tau, weight = noise["x0_pi"], noise["tau_pi"], noise["weight_pi"]
            x_tau = interpolate(x0, actions, tau)
        value_params = jax.lax.stop_gradient(params["value"])
        mean_v = lambda x: self.nets["value"].apply(value_params, obs, x, tau).mean(0).sum()  # noqa: E731
        grad_v = jax.grad(mean_v)(x_tau)
        velocity_target = jax.lax.stop_gradient((actions - x0) + grad_v / cfg.guidance_lambda)
        pred = self.nets["actor"].apply(params["actor"], obs, x_tau, tau)
        loss_pi = jnp.mean(weight[:, None] * (pred - velocity_target) ** 2)

        info = {
            "loss_q": loss_q, "loss_v": loss_v, "loss_pi": loss_pi,
            "q_mean": q.mean(), "v_mean": v.mean(), "grad_v_norm": jnp.linalg.norm(grad_v, axis=-1).mean(),
            # per-row arrays (dropped from logs by gradient_step; read by tests and diagnostics)
            "td_target": td_target, "v_target": v_target, "velocity_target": velocity_target,
            "v": v, "grad_v": grad_v, "bc_velocity": actions - x0,
            "weight": noise["weight"], "weight_pi": weight,  # the rows' weights in L_V and in L_pi
        }
        return loss_q + loss_v + loss_pi, info

    def diagnostics(self, batch, rng):
        """How the guidance is doing, on one batch (logged once per training chunk, not per update).

        diag_v_explained_var   1 - Var_w(v_target - V) / Var_w(v_target): V's fit to its target;
        diag_guidance_norm     mean ||grad_x V|| / lambda: the value term of the velocity target;
        diag_bc_velocity_norm  mean ||a - x0||: the behaviour-cloning term it is added to;
        plus the policy diagnostics every actor-critic agent logs (base.policy_diagnostics).
        Means over rows carry the stratification weights, like L_V and L_pi.
        """
        k_noise, k_pi = jax.random.split(rng)
        _, info = self.losses(self.params, batch, self.draw_noise(k_noise, *batch["actions"].shape))
        w, w_pi = info["weight"] / info["weight"].sum(), info["weight_pi"] / info["weight_pi"].sum()
        wmean = lambda x: jnp.sum(w * x)  # noqa: E731
        wmean_pi = lambda x: jnp.sum(w_pi * x)  # noqa: E731  (the same as wmean with a shared draw)
        err = info["v_target"] - info["v"]
        target_var = wmean((info["v_target"] - wmean(info["v_target"])) ** 2)
        residual_var = wmean((err - wmean(err)) ** 2)
        return {
            "diag_v_explained_var": 1.0 - residual_var / jnp.maximum(target_var, 1e-12),
            "diag_guidance_norm": wmean_pi(jnp.linalg.norm(info["grad_v"], axis=-1)) / self.config.guidance_lambda,
            "diag_bc_velocity_norm": wmean_pi(jnp.linalg.norm(info["bc_velocity"], axis=-1)),
            **policy_diagnostics(self, batch, k_pi),
        }

    # ------------------------------------------------------------------ public API
    def sample_actions(self, obs, rng):
        x0 = jax.random.normal(rng, (*obs.shape[:-1], self.nets["actor"].action_dim))
        return jnp.clip(euler_sample(self.velocity(self.params["actor"]), obs, x0, self.config.flow_steps), -1, 1)
