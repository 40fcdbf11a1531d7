"""Networks shared by every agent: MLPs, critic ensembles, time features, Euler flow sampling."""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

default_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


class MLP(nn.Module):
    hidden_dims: Sequence[int]
    out_dim: int
    layer_norm: bool = False
    activation: Callable = nn.gelu

    @nn.compact
    def __call__(self, x):
        for width in self.hidden_dims:
            x = self.activation(nn.Dense(width, kernel_init=default_init)(x))
            if self.layer_norm:
                x = nn.LayerNorm()(x)
        return nn.Dense(self.out_dim, kernel_init=default_init)(x)


class Ensemble(nn.Module):
    """``heads`` independent scalar MLPs on the same input; output shape (heads, batch)."""

    hidden_dims: Sequence[int]
    heads: int = 2
    layer_norm: bool = True

    @nn.compact
    def __call__(self, x):
        stacked = nn.vmap(
            MLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.heads,
        )
        return stacked(self.hidden_dims, 1, self.layer_norm)(x)[..., 0]


def fourier_features(tau: jax.Array, dim: int, scale: float = 1.0) -> jax.Array:
    """[sin(scale f tau), cos(scale f tau)] for dim/2 log-spaced frequencies f in [1, 256].

    scale = 1 is METHOD.md and the authors' code; scale = 2 pi is what this project used before
    2026-11-30 (only 4 of 32 features then vary slowly in tau, against 15 of 32 with scale = 1).
    """
    freqs = jnp.logspace(0.0, 8.0, dim // 2, base=2.0)
    angles = scale * tau[..., None] * freqs
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class Critic(nn.Module):
    """Q(s, a) ensemble."""

    hidden_dims: Sequence[int]
    heads: int = 2

    @nn.compact
    def __call__(self, obs, actions):
        return Ensemble(self.hidden_dims, self.heads)(jnp.concatenate([obs, actions], -1))


class FlowValue(nn.Module):
    """Inner value V(s, x_tau, tau) ensemble, with Fourier features of the flow time."""

    hidden_dims: Sequence[int]
    time_embed_dim: int
    heads: int = 2
    time_scale: float = 1.0  # angle = time_scale * f * tau (see fourier_features)

    @nn.compact
    def __call__(self, obs, x, tau):
        feats = fourier_features(tau, self.time_embed_dim, self.time_scale)
        return Ensemble(self.hidden_dims, self.heads)(jnp.concatenate([obs, x, feats], -1))


class VelocityField(nn.Module):
    """v(s, x_t, t): the flow policy's velocity; t enters as a raw scalar, no LayerNorm."""

    hidden_dims: Sequence[int]
    action_dim: int

    @nn.compact
    def __call__(self, obs, x, t):
        return MLP(self.hidden_dims, self.action_dim)(jnp.concatenate([obs, x, t[..., None]], -1))


def euler_sample(velocity: Callable, obs, x0, steps: int):
    """Integrate dx/dt = velocity(obs, x, t) from t = 0 to 1 with ``steps`` Euler steps."""
    # A Python loop (K is static) unrolls the steps, so XLA's cost analysis counts all of them.
    dt = 1.0 / steps
    x = x0
    for i in range(steps):
        x = x + dt * velocity(obs, x, jnp.full(x.shape[:-1], i * dt, x.dtype))
    return x
