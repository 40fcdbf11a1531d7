"""What every agent shares: the agent protocol (``Agent``), the common config keys, presets, --set
overrides, the optimiser, network initialisation and the update steps."""

from __future__ import annotations

import dataclasses
import functools
import math
import typing

import flax
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


def require(ok: bool, name: str, value, rule: str, example) -> None:
    """The error every config check raises: what the key must be, what it got, and a --set that fixes it."""
    if not ok:
        raise ValueError(f"{name} must be {rule}, got {value!r} (e.g. --set {name}={example})")


TARGET_UPDATES = ("pre", "post")  # see AgentConfig.target_update


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    # settings that members of one stacked call may hold different values of (see agents/knobs.py): used in
    # arithmetic only, never in control flow, a shape or the optimiser
    TRACEABLE = ("discount", "target_update_rate")

    preset: str = "paper"  # network-size preset recorded with every result ("paper" or "cpu")
    actor_dims: tuple = (512, 512, 512, 512)  # hidden widths of the policy network
    critic_dims: tuple = (512, 512, 512, 512)  # hidden widths of critic / value ensembles (LayerNorm)
    lr: float = 3e-4  # Adam learning rate, one optimiser over all networks
    batch_size: int = 256  # transitions per update
    discount: float = 0.99  # gamma
    target_update_rate: float = 0.005  # EMA rate of the target critic
    target_update: str = "pre"  # the EMA moves toward the critic as it was before this update ("pre": the
    # authors' code and FQL's reference) or after it ("post": this project's runs before 2026-12-01)
    freeze: str = ""  # comma-separated params held fixed, e.g. "critic" or "actor" (an intervention: the
    # others train as usual, the target still averages toward the fixed critic)
    matmul_precision: str = "float32"  # float32 | tf32 | bf16 | default: matmul arithmetic (qflow.networks.PRECISIONS)

    def validate(self) -> None:
        for f in dataclasses.fields(self):  # inf or nan would pass every range check below and train silently
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name} must be a finite number, got {value} (e.g. --set {f.name}=...)")
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
        require(self.target_update in TARGET_UPDATES, "target_update", self.target_update, "'pre' or 'post'", "pre")
        from qflow.networks import PRECISIONS

        if self.matmul_precision not in PRECISIONS:
            raise ValueError(f"matmul_precision must be one of {', '.join(PRECISIONS)}, got {self.matmul_precision!r}")

    @classmethod
    def legacy_defaults(cls) -> dict:
        """Values of keys that records written before the key existed ran with (see config_from_record):
        before matmul_precision, every matmul used the platform's default; before target_update, the target
        moved toward the updated critic."""
        return {"matmul_precision": "default", "target_update": "post", "freeze": ""}

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
    """The values runs recorded before a key of ``config_cls`` existed used for it (``AgentConfig.legacy_defaults``).
    Whole run records: ``training.record.RunRecord``."""
    return config_cls.legacy_defaults()


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


class Agent(flax.struct.PyTreeNode):
    """The agent protocol: every member the training code, checkpoints and exports rely on.

    An agent is an immutable pytree (a flax ``PyTreeNode``): its array fields (``rng``, ``params``,
    target networks, ``opt_state``, counters) are leaves that the loop jits, stacks over seeds with
    ``vmap`` / ``lax.map``, checkpoints by field name (``flax.serialization``) and donates between
    calls; ``config``, ``nets`` (flax modules) and ``tx`` (the optimiser) are static fields, declared
    with ``flax.struct.field(pytree_node=False)``. Renaming a field or a params key breaks every
    saved checkpoint and export.

    Fields (here, shared by every agent): ``rng``, ``params`` ({name: network params}), ``opt_state``, and
    the static ``config``, ``nets`` ({name: flax module}) and ``tx``. A subclass adds the others (target
    networks, counters) and builds them in ``extra_state``.

    Required
      ``networks(obs_dim, action_dim, config)``      {name: flax module} (classmethod). Its keys name the
          ``params`` entries and its order decides which random key initialises which network.
      ``draw_noise(rng, batch_size, action_dim)``    every random draw of one update, as a dict ({} if none),
          so that ``losses`` is a pure function of (params, batch, noise) and tests can fix the noise.
      ``losses(params, batch, noise)``                (total loss, info dict); pure and differentiable in params.
          Info values are scalars (averaged into the log rows) or per-row arrays (for tests and
          ``diagnostics``; ``gradient_step`` drops them from the step's info: only scalars are logged).
      ``sample_actions(obs, rng)``                    actions in [-1, 1] for observations of any leading shape;
          reads only ``ACTING_PARAMS`` and ``ACTING_FIELDS`` (the exports keep nothing else).
      ``LOSSES``          the info keys that are losses, whatever their names. ``gradient_step`` refuses
          an info without them or with a non-scalar one, and ``training.loop.check_finite`` stops the
          run when one of them is not finite.

    Optional (the defaults below)
      ``ACTING_PARAMS``   the ``params`` keys ``sample_actions`` reads (what ``acting_state`` exports);
          ``("actor",)`` unless the acting network has another name.
      ``ACTING_FIELDS``   other fields ``sample_actions`` reads (e.g. a target critic that ranks actions).
      ``update(batch)``  (new agent, scalar info): one jittable training step, which the loop scans over a
          chunk. Here one ``gradient_step``; an agent with target networks adds their updates after it.
      ``extra_params(config)``  arrays trained with the networks that are not networks (SAC's temperature).
      ``extra_state(params)``  the subclass's other fields at creation ({} here): target copies, counters.
      ``create(seed, obs_dim, action_dim, config)``  a fresh agent (classmethod): validates the config,
          initialises ``networks`` (``init_networks``), adds ``extra_params``, builds one Adam over all
          params (``make_optimizer``) and the ``extra_state``. Override only for another recipe.
      ``diagnostics(batch, rng)``  extra ``diag_*`` scalars, computed once per training chunk on a fresh
          batch. Defining it sets ``HAS_DIAGNOSTICS``, the flag the loop and the benchmark test: an agent
          without diagnostics compiles exactly the program it would without this hook.
      On the config (``AgentConfig``): ``extra_data()`` names dataset keys beyond the standard transition
      the losses read (the loader then provides them), and ``legacy_defaults()`` the values a key took
      in runs recorded before it existed (so an old run reloads as what it was).
    """

    LOSSES: typing.ClassVar[tuple[str, ...]] = ()
    ACTING_PARAMS: typing.ClassVar[tuple[str, ...]] = ("actor",)
    ACTING_FIELDS: typing.ClassVar[tuple[str, ...]] = ()
    HAS_DIAGNOSTICS: typing.ClassVar[bool] = False

    rng: typing.Any
    params: typing.Any  # {name: network params} for every entry of nets, plus extra_params
    opt_state: typing.Any  # one Adam over all of params
    config: AgentConfig = flax.struct.field(pytree_node=False)
    nets: typing.Any = flax.struct.field(pytree_node=False)  # {name: flax module}
    tx: typing.Any = flax.struct.field(pytree_node=False)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Derived, not declared: a subclass that defines diagnostics can never forget to say so.
        cls.HAS_DIAGNOSTICS = cls.diagnostics is not Agent.diagnostics
        if cls.extra_state.__func__ is not Agent.extra_state.__func__ and cls.update is Agent.update:
            raise TypeError(f"{cls.__name__} adds state in extra_state but keeps the plain gradient-step update, "
                            f"which never updates that state; write its update (see TargetCriticAgent.update)")

    @classmethod
    def networks(cls, obs_dim: int, action_dim: int, config: AgentConfig) -> dict:
        raise NotImplementedError

    @classmethod
    def extra_params(cls, config: AgentConfig) -> dict:
        return {}

    @classmethod
    def extra_state(cls, params: dict) -> dict:
        return {}

    @classmethod
    def create(cls, seed: int, obs_dim: int, action_dim: int, config: AgentConfig) -> "Agent":
        config.validate()
        nets = cls.networks(obs_dim, action_dim, config)
        rng, params = init_networks(seed, nets, obs_dim, action_dim)
        params.update(cls.extra_params(config))
        unknown = [k for k in cls.ACTING_PARAMS if k not in params]
        if unknown:
            raise TypeError(f"{cls.__name__}.ACTING_PARAMS names {unknown}, which networks/extra_params do not make "
                            f"(params: {sorted(params)}); set ACTING_PARAMS to the params sample_actions reads")
        tx = make_optimizer(config)
        check_frozen(config, params)
        return cls(rng=rng, params=params, opt_state=tx.init(params), config=config, nets=nets, tx=tx,
                   **cls.extra_state(params))

    def draw_noise(self, rng, batch_size: int, action_dim: int) -> dict:
        raise NotImplementedError

    def losses(self, params, batch, noise):
        raise NotImplementedError

    def update(self, batch):
        rng, params, opt_state, info = gradient_step(self, batch)
        return self.replace(rng=rng, params=params, opt_state=opt_state), info

    def sample_actions(self, obs, rng):
        raise NotImplementedError

    def diagnostics(self, batch, rng) -> dict:
        return {}


class TargetCriticAgent(Agent):
    """An actor-critic whose only target network is an EMA of ``params["critic"]`` (most agents here):
    ``create`` starts the target critic as a copy of the critic; ``update`` is ``step_with_target_critic``."""

    target_critic: typing.Any  # EMA of params["critic"]

    @classmethod
    def extra_state(cls, params: dict) -> dict:
        return {"target_critic": params["critic"]}

    def update(self, batch):
        return step_with_target_critic(self, batch)


def init_networks(seed: int, nets: dict, obs_dim: int, action_dim: int):
    """(rng, params) of a fresh agent: PRNGKey(seed) split into the agent's rng and one key per network,
    in the order of ``nets``; each network is initialised on one zero row of its ``INPUTS``."""
    rng, *keys = jax.random.split(jax.random.PRNGKey(seed), len(nets) + 1)
    examples = {"obs": jnp.zeros((1, obs_dim)), "action": jnp.zeros((1, action_dim)), "time": jnp.zeros((1,))}
    params = {name: net.init(key, *(examples[x] for x in net.INPUTS)) for (name, net), key in zip(nets.items(), keys)}
    return rng, params


def td_loss(agent, params, batch, actions, next_value):
    """(loss_q, q, td_target): every head of Q(s, a) regressed onto r + gamma * mask * ``next_value``.

    ``next_value`` must carry no gradient into ``params`` (the caller builds it from target networks or
    stop_gradient'ed ones)."""
    td_target = batch["rewards"] + agent.config.discount * batch["masks"] * next_value
    q = agent.nets["critic"].apply(params["critic"], batch["observations"], actions)
    return jnp.mean((q - td_target[None]) ** 2), q, td_target


def expectile_loss(diff: jnp.ndarray, expectile: float) -> jnp.ndarray:
    """|tau - 1(diff < 0)| * diff^2 per row, diff = target - prediction."""
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return weight * diff**2


def implicit_value_networks(config: AgentConfig, actor_name: str, actor) -> dict:
    """The networks of an agent with IQL's value learning (``implicit_value_losses``): its actor, the
    critic Q(s, a) and the state value V(s), in that order (the order fixes which key initialises which)."""
    from qflow.networks import Critic, Value

    return {actor_name: actor, "critic": Critic(config.critic_dims, precision=config.matmul_precision),
            "value": Value(config.critic_dims, config.matmul_precision)}


def implicit_value_losses(agent, params, batch, actions) -> dict:
    """IQL's value learning (IQL and IFQL), which never queries actions outside the dataset.

    L_V  expectile regression (tau = config.expectile) of V(s) onto min_heads Qbar(s, a), dataset a;
    L_Q  TD toward r + gamma * mask * V(s'), V frozen there (it has its own loss).
    Returns the losses and what the callers log or reuse: q, v, q_data (= min_heads Qbar(s, a)), td_target.
    """
    obs = batch["observations"]
    q_data = agent.nets["critic"].apply(agent.target_critic, obs, actions).min(0)  # target net: no gradient path
    v = agent.nets["value"].apply(params["value"], obs)
    loss_v = expectile_loss(q_data - v, agent.config.expectile).mean()
    v_next = agent.nets["value"].apply(jax.lax.stop_gradient(params["value"]), batch["next_observations"])
    loss_q, q, td_target = td_loss(agent, params, batch, actions, v_next)
    return {"loss_v": loss_v, "loss_q": loss_q, "q": q, "v": v, "q_data": q_data, "td_target": td_target}


def gradient_step(agent, batch):
    """The update every agent shares: draw the step's noise, one Adam step on the summed losses.

    Returns (rng, params, opt_state, scalar info). Per-row arrays in the info (kept for tests and
    diagnostics) are dropped, by the rule in ``Agent``; a declared loss (``LOSSES``) that is missing or
    not a scalar is an error (raised once, when the update is traced), never silently dropped.
    """
    rng, key = jax.random.split(agent.rng)
    noise = agent.draw_noise(key, *batch["actions"].shape)
    held = frozen(agent.config)  # no gradient is worked out for a frozen network (its update is zeroed below)
    losses = lambda p: agent.losses({k: jax.lax.stop_gradient(v) if k in held else v for k, v in p.items()},  # noqa: E731
                                    batch, noise)
    grads, info = jax.grad(losses, has_aux=True)(agent.params)
    check_declared_losses(type(agent), info)
    updates, opt_state = agent.tx.update(grads, agent.opt_state, agent.params)
    for name in held:  # the update, not only the gradient, is zeroed: Adam's momentum would move it
        updates[name] = jax.tree.map(jnp.zeros_like, updates[name])
    scalars = {k: v for k, v in info.items() if v.ndim == 0}
    return rng, optax.apply_updates(agent.params, updates), opt_state, scalars


def frozen(config) -> list[str]:
    """The params entries ``config.freeze`` holds fixed."""
    return [name.strip() for name in config.freeze.split(",") if name.strip()]


def check_frozen(config, params: dict) -> None:
    """Refuse a ``freeze`` that names no params entry of the agent (a typo would freeze nothing)."""
    unknown = [name for name in frozen(config) if name not in params]
    if unknown:
        raise ValueError(f"freeze names {unknown}, which this agent does not have; its params are "
                         f"{', '.join(sorted(params))} (e.g. --set freeze=critic)")


def check_declared_losses(agent_cls, info: dict) -> None:
    """Raise unless ``info`` holds every loss ``agent_cls.LOSSES`` declares, each a scalar."""
    if not agent_cls.LOSSES:
        raise TypeError(f"{agent_cls.__name__} declares no LOSSES: name the info keys that are losses "
                        "(training stops when one of them is not finite)")
    missing = [k for k in agent_cls.LOSSES if k not in info]
    non_scalar = [k for k in agent_cls.LOSSES if k in info and jnp.ndim(info[k]) != 0]
    if missing or non_scalar:
        raise ValueError(f"{agent_cls.__name__}.losses must return every declared loss as a scalar: "
                         f"missing {missing}, not scalar {non_scalar}")


def ema(target, params, rate):
    """Polyak averaging of target networks: target <- (1 - rate) * target + rate * params."""
    return jax.tree.map(lambda t, p: (1 - rate) * t + rate * p, target, params)


def ema_source(config, before, after):
    """What the target networks average toward: the parameters before this update or after it."""
    return before if config.target_update == "pre" else after


def step_with_target_critic(agent, batch):
    """``gradient_step`` then EMA of ``target_critic`` toward the critic (before or after the step, as
    ``target_update`` says): the whole update of every agent whose only target network is its critic's."""
    rng, params, opt_state, info = gradient_step(agent, batch)
    critic = ema_source(agent.config, agent.params["critic"], params["critic"])
    target = ema(agent.target_critic, critic, agent.config.target_update_rate)
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
    by ``ACTING_FIELDS``. Works on stacked agents too. An exported policy keeps only this."""
    return {"params": {k: agent.params[k] for k in type(agent).ACTING_PARAMS},
            **{f: getattr(agent, f) for f in type(agent).ACTING_FIELDS}}


def with_acting_state(agent, state: dict):
    """``agent`` with its acting state replaced by ``state`` (from ``acting_state``)."""
    return agent.replace(params={**agent.params, **state["params"]},
                         **{f: state[f] for f in type(agent).ACTING_FIELDS})
