"""Networks shared by every agent: MLPs, critic and value ensembles, Gaussian actors, time features,
Euler flow sampling.

Every module an agent builds as one of its networks says what ``init`` feeds it in ``INPUTS`` (names
from ``("obs", "action", "time")``, in call order), so ``qflow.agents.base.init_networks`` can
initialise any agent's networks in one place.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

default_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")

# Matmul arithmetic of every Dense layer (config key matmul_precision). Parameters, activations,
# losses and optimiser state stay float32 in all of them.
#   float32: exact float32 products everywhere (lax.Precision.HIGHEST);
#   tf32:    TensorFloat-32 tensor cores on NVIDIA Ampere or later; exact float32 on a CPU;
#   bf16:    inputs and weights rounded to bfloat16, products accumulated in float32 (tensor cores
#            on GPUs; the same rounding, emulated, on a CPU);
#   default: the platform's own choice: float32 on a CPU, TF32 on recent NVIDIA GPUs (what runs
#            recorded before this setting existed used).
PRECISIONS = ("float32", "tf32", "bf16", "default")


def _bf16_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    return jax.lax.dot_general(lhs.astype(jnp.bfloat16), rhs.astype(jnp.bfloat16), dimension_numbers,
                               preferred_element_type=jnp.float32)


def dense(width: int, precision: str = "float32") -> nn.Dense:
    """A Dense layer computing its matmul in ``precision`` (see PRECISIONS)."""
    if precision == "bf16":
        return nn.Dense(width, kernel_init=default_init, dot_general=_bf16_dot_general)
    levels = {"float32": jax.lax.Precision.HIGHEST, "tf32": "tensorfloat32", "default": None}
    if precision not in levels:
        raise ValueError(f"matmul_precision must be one of {PRECISIONS}, got {precision!r}")
    return nn.Dense(width, kernel_init=default_init, precision=levels[precision])


class MLP(nn.Module):
    INPUTS = ("obs",)  # as a whole agent network (ReBRAC's actor), an MLP reads the state

    hidden_dims: Sequence[int]
    out_dim: int
    layer_norm: bool = False
    activation: Callable = nn.gelu
    precision: str = "float32"  # matmul arithmetic (PRECISIONS)

    @nn.compact
    def __call__(self, x):
        for width in self.hidden_dims:
            x = self.activation(dense(width, self.precision)(x))
            if self.layer_norm:
                x = nn.LayerNorm()(x)
        return dense(self.out_dim, self.precision)(x)


class Ensemble(nn.Module):
    """``heads`` independent scalar MLPs on the same input; output shape (heads, batch)."""

    hidden_dims: Sequence[int]
    heads: int = 2
    layer_norm: bool = True
    precision: str = "float32"

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
        return stacked(self.hidden_dims, 1, self.layer_norm, precision=self.precision)(x)[..., 0]


def fourier_features(tau: jax.Array, dim: int, scale: float = 1.0) -> jax.Array:
    """[sin(scale f tau), cos(scale f tau)] for dim/2 log-spaced frequencies f in [1, 256].

    scale = 1 is the paper and the authors' code; scale = 2 pi is what this project used before
    2026-11-30 (only 4 of 32 features then vary slowly in tau, against 15 of 32 with scale = 1).
    """
    freqs = jnp.logspace(0.0, 8.0, dim // 2, base=2.0)
    angles = scale * tau[..., None] * freqs
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class Critic(nn.Module):
    """Q(s, a) ensemble."""

    INPUTS = ("obs", "action")

    hidden_dims: Sequence[int]
    heads: int = 2
    precision: str = "float32"

    @nn.compact
    def __call__(self, obs, actions):
        return Ensemble(self.hidden_dims, self.heads, precision=self.precision)(jnp.concatenate([obs, actions], -1))


class FlowValue(nn.Module):
    """Inner value V(s, x_tau, tau) ensemble, with Fourier features of the flow time."""

    INPUTS = ("obs", "action", "time")

    hidden_dims: Sequence[int]
    time_embed_dim: int
    heads: int = 2
    time_scale: float = 1.0  # angle = time_scale * f * tau (see fourier_features)
    precision: str = "float32"

    @nn.compact
    def __call__(self, obs, x, tau):
        feats = fourier_features(tau, self.time_embed_dim, self.time_scale)
        return Ensemble(self.hidden_dims, self.heads, precision=self.precision)(jnp.concatenate([obs, x, feats], -1))


class VelocityField(nn.Module):
    """v(s, x_t, t): the flow policy's velocity; t enters as a raw scalar, no LayerNorm."""

    INPUTS = ("obs", "action", "time")

    hidden_dims: Sequence[int]
    action_dim: int
    precision: str = "float32"

    @nn.compact
    def __call__(self, obs, x, t):
        return MLP(self.hidden_dims, self.action_dim, precision=self.precision)(jnp.concatenate([obs, x, t[..., None]], -1))


class Value(nn.Module):
    """V(s): a one-head LayerNorm ensemble (the same MLP as each critic head), output shape (batch,)."""

    INPUTS = ("obs",)
    hidden_dims: tuple
    precision: str = "float32"

    @nn.compact
    def __call__(self, obs):
        return Ensemble(self.hidden_dims, heads=1, precision=self.precision)(obs)[0]


LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # bounds of every Gaussian actor's log standard deviation


def _normal_log_density(z, log_std):
    """Sum over action dims of log N(z std; 0, std^2) for standardised residuals ``z``."""
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1)


class _StateActor(nn.Module):
    """The fields of an actor that reads only the state."""

    INPUTS = ("obs",)
    hidden_dims: tuple
    action_dim: int
    precision: str = "float32"


class GaussianActor(_StateActor):
    """pi(a|s) = N(tanh(MLP(s)), diag(exp(log_std))^2), log_std a learned state-independent vector (IQL).

    As in the original IQL code: the mean is squashed by tanh (so the deterministic action lies in
    [-1, 1]) but the distribution itself is not, so log-probabilities stay exact and cheap.
    """

    @nn.compact
    def __call__(self, obs):
        mean = jnp.tanh(MLP(self.hidden_dims, self.action_dim, precision=self.precision)(obs))
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


def gaussian_log_prob(mean, log_std, actions):
    """log N(actions; mean, diag(exp(log_std))^2), summed over action dims."""
    return _normal_log_density((actions - mean) * jnp.exp(-log_std), log_std)


class TanhGaussianActor(_StateActor):
    """SAC's actor: state-dependent mean and log-std of the Gaussian before the tanh squash."""

    @nn.compact
    def __call__(self, obs):
        out = MLP(self.hidden_dims, 2 * self.action_dim, precision=self.precision)(obs)
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


def tanh_gaussian_sample(mean, log_std, eps):
    """(action in (-1, 1), its log-probability) for pre-squash noise ``eps`` ~ N(0, I)."""
    u = mean + jnp.exp(log_std) * eps
    # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|
    log_det = jnp.sum(2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u)), axis=-1)
    return jnp.tanh(u), _normal_log_density(eps, log_std) - log_det


def euler_sample(velocity: Callable, obs, x0, steps: int):
    """Integrate dx/dt = velocity(obs, x, t) from t = 0 to 1 with ``steps`` Euler steps."""
    # A Python loop (K is static) unrolls the steps, so XLA's cost analysis counts all of them.
    dt = 1.0 / steps
    x = x0
    for i in range(steps):
        x = x + dt * velocity(obs, x, jnp.full(x.shape[:-1], i * dt, x.dtype))
    return x
