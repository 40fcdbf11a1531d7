"""What every agent shares: the common config keys, presets, --set overrides, optimiser."""

from __future__ import annotations

import dataclasses
import functools
import typing

import jax
import jax.numpy as jnp
import optax

# Network sizes. "paper" is the published setting; "cpu" is what a 2-core CPU trains in minutes.
PRESETS = {
    "paper": {"actor_dims": (512, 512, 512, 512), "critic_dims": (512, 512, 512, 512)},
    "cpu": {"actor_dims": (256, 256, 256), "critic_dims": (256, 256, 256)},
    "tiny": {"actor_dims": (256, 256), "critic_dims": (256, 256)},  # the 10-minute demo
}


ACTION_CLIP = 1.0 - 1e-5  # dataset actions are clipped into the open interval before any loss reads them


def clip_actions(actions):
    return jnp.clip(actions, -ACTION_CLIP, ACTION_CLIP)


def interpolate(x0, actions, tau):
    """x_tau on the straight path from the noise x0 (tau = 0) to the action (tau = 1)."""
    return (1.0 - tau[:, None]) * x0 + tau[:, None] * actions


def flow_matching_loss(velocity, obs, actions, x0, tau):
    """Plain conditional flow matching: mean ||v(s, x_tau, tau) - (a - x0)||^2."""
    pred = velocity(obs, interpolate(x0, actions, tau), tau)
    return jnp.mean((pred - (actions - x0)) ** 2)


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    preset: str = "paper"  # network-size preset recorded with every result ("paper" or "cpu")
    actor_dims: tuple = (512, 512, 512, 512)  # hidden widths of the policy network
    critic_dims: tuple = (512, 512, 512, 512)  # hidden widths of critic / value ensembles (LayerNorm)
    lr: float = 3e-4  # Adam learning rate, one optimiser over all networks
    batch_size: int = 256  # transitions per update
    discount: float = 0.99  # gamma
    target_update_rate: float = 0.005  # EMA rate of the target critic
    matmul_precision: str = "float32"  # float32 | tf32 | bf16 | default: matmul arithmetic (qflow.networks.PRECISIONS)

    def validate(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        if not 0 < self.discount <= 1:
            raise ValueError(f"discount must be in (0, 1], got {self.discount}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        for name in ("actor_dims", "critic_dims"):
            dims = getattr(self, name)
            if not dims or min(dims) < 1:
                raise ValueError(f"{name} must be one or more widths >= 1, got {dims} (e.g. --set {name}=256,256)")
        if not 0 < self.target_update_rate <= 1:
            raise ValueError(f"target_update_rate must be in (0, 1], got {self.target_update_rate}")
        from qflow.networks import PRECISIONS

        if self.matmul_precision not in PRECISIONS:
            raise ValueError(f"matmul_precision must be one of {', '.join(PRECISIONS)}, got {self.matmul_precision!r}")

    @classmethod
    def legacy_defaults(cls) -> dict:
        """Values of keys that records written before the key existed ran with (see config_from_record):
        before matmul_precision, every matmul used the platform's default."""
        return {"matmul_precision": "default"}

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def extra_data(self) -> tuple[str, ...]:
        """Dataset keys beyond the standard transition this config's losses read (e.g. "next_actions")."""
        return ()


def _coerce(value: str, current):
    kind = type(current)
    if kind is bool:
        if value.lower() in ("1", "true", "yes"):
            return True
        if value.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"expected true/false, got {value!r}")
    if kind is tuple:
        return tuple(int(v) for v in value.replace("x", ",").split(",") if v)
    return kind(value)


def overrides_for(agent: str, overrides: typing.Sequence[str], agents: typing.Sequence[str]) -> list[str]:
    """The ``key=value`` overrides that apply to ``agent``: bare keys apply to every agent, ``agent.key=value``
    to that agent only. A prefix naming no agent of the run is an error (a typo would otherwise be ignored)."""
    mine = []
    for item in overrides:
        key, sep, value = item.partition("=")
        prefix, dot, bare = key.partition(".")
        if not dot:
            mine.append(item)
        elif prefix not in agents:
            raise ValueError(f"bad --set {item!r}: {prefix!r} is not an agent of this run ({', '.join(agents)})")
        elif prefix == agent:
            mine.append(f"{bare}{sep}{value}")
    return mine


def build_config(config_cls, preset: str = "paper", env_defaults: dict | None = None,
                 overrides: typing.Sequence[str] = ()) -> AgentConfig:
    """Defaults <- preset network sizes <- per-environment table <- ``key=value`` overrides."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    base = config_cls()
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    values = {"preset": preset, **PRESETS[preset]}
    unknown = sorted(set(env_defaults or {}) - set(fields))
    if unknown:  # a typo in qflow/envs.py would otherwise be dropped silently
        raise ValueError(f"the per-environment table gives {config_cls.__name__} unknown keys {unknown}; "
                         f"valid keys: {', '.join(sorted(fields))}")
    values.update(env_defaults or {})
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            known = ", ".join(sorted(fields))
            raise ValueError(f"bad --set {item!r}: expected key=value with key one of: {known}")
        try:
            values[key] = _coerce(raw.strip(), getattr(base, key))
        except ValueError as err:
            raise ValueError(f"bad --set {item!r}: {err}") from None
    config = dataclasses.replace(base, **values)
    config.validate()
    return config


def legacy_values(config_cls) -> dict:
    """The values runs recorded before a key of ``config_cls`` existed used for it ({} for a class without
    ``legacy_defaults``). Whole run records: ``training.checkpoint.RunRecord``."""
    return config_cls.legacy_defaults() if hasattr(config_cls, "legacy_defaults") else {}


def config_from_record(config_cls, record: dict) -> AgentConfig:
    """A config back from its ``as_dict()`` as stored in JSON (lists become the tuples they were).

    A key the record lacks because it was written before the key existed takes the value such runs
    used (``legacy_defaults``), never today's default: an old run is never relabelled as a new one.
    """
    values = {**legacy_values(config_cls), **record}
    return config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def aggregate(q: jnp.ndarray, how: str) -> jnp.ndarray:
    """Reduce the ensemble axis 0: mean or min of the heads."""
    return q.min(0) if how == "min" else q.mean(0)


@functools.lru_cache(maxsize=None)
def make_optimizer(config: AgentConfig) -> optax.GradientTransformation:
    # Cached: agents with equal configs share one optimiser object, so their static pytree metadata
    # compares equal (needed to stack seeds and to reuse compiled functions).
    return optax.adam(config.lr)


def gradient_step(agent, batch):
    """The update every agent shares: draw the step's noise, one Adam step on the summed losses.

    Returns (rng, params, opt_state, scalar info); per-row arrays in the info (kept for tests) are dropped.
    """
    rng, key = jax.random.split(agent.rng)
    noise = agent.draw_noise(key, *batch["actions"].shape)
    grads, info = jax.grad(agent.losses, has_aux=True)(agent.params, batch, noise)
    updates, opt_state = agent.tx.update(grads, agent.opt_state, agent.params)
    scalars = {k: v for k, v in info.items() if v.ndim == 0}
    return rng, optax.apply_updates(agent.params, updates), opt_state, scalars


def ema(target, params, rate):
    """Polyak averaging of target networks: target <- (1 - rate) * target + rate * params."""
    return jax.tree.map(lambda t, p: (1 - rate) * t + rate * p, target, params)


def step_with_target_critic(agent, batch):
    """``gradient_step`` then EMA of ``target_critic`` toward ``params["critic"]``: the whole update of
    every agent whose only target network is its critic's."""
    rng, params, opt_state, info = gradient_step(agent, batch)
    target = ema(agent.target_critic, params["critic"], agent.config.target_update_rate)
    return agent.replace(rng=rng, params=params, target_critic=target, opt_state=opt_state), info


def policy_diagnostics(agent, batch, rng) -> dict:
    """What the acting policy gains over the data, judged by the target critic (mean over heads).

    diag_policy_improvement  mean Qbar(s, pi(s)) - Qbar(s, a_data), pi = ``sample_actions``;
    diag_action_distance     mean ||pi(s) - a_data||.
    """
    obs, data_actions = batch["observations"], jnp.clip(batch["actions"], -1.0, 1.0)
    pi = agent.sample_actions(obs, rng)
    q_target = lambda a: agent.nets["critic"].apply(agent.target_critic, obs, a).mean(0)  # noqa: E731
    return {
        "diag_policy_improvement": jnp.mean(q_target(pi) - q_target(data_actions)),
        "diag_action_distance": jnp.mean(jnp.linalg.norm(pi - data_actions, axis=-1)),
    }


def acting_state(agent) -> dict:
    """What ``sample_actions`` reads: the params named by ``ACTING_PARAMS`` and the other fields named
    by ``ACTING_FIELDS`` (if any). Works on stacked agents too. An exported policy keeps only this."""
    fields = getattr(type(agent), "ACTING_FIELDS", ())
    return {"params": {k: agent.params[k] for k in type(agent).ACTING_PARAMS},
            **{f: getattr(agent, f) for f in fields}}


def with_acting_state(agent, state: dict):
    """``agent`` with its acting state replaced by ``state`` (from ``acting_state``)."""
    fields = getattr(type(agent), "ACTING_FIELDS", ())
    return agent.replace(params={**agent.params, **state["params"]}, **{f: state[f] for f in fields})
