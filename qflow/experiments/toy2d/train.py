"""Training the methods on a 2-D dataset, and sampling from them.

Phases. (1) Pretraining (CPU default only; 0 in --paper): the velocity field is flow-matched on the
data once per seed with the flow-BC agent (about 1 ms per update) and copied into every method's
velocity field (Q-Flow and FBRAC: the policy; FQL: its BC flow). This buys a far better BC fit than
the methods' own losses could afford on a CPU. (2) BC phase (the paper's 2000 epochs): every method
runs its own losses with the knob at ``bc_knob`` = 1e6, i.e. the value term off in effect, while the
critic (and Q-Flow's inner value, FQL's one-step policy) learn. (3) RL phase (the paper's 100
epochs): Adam re-initialised, knob = strength * knob_scale. Flow BC trains through all three phases.
All strengths x seeds of one method train as one stack (``agents.knobs`` makes the knob a traced
leaf), so a method compiles once per phase and the compiled chunks are reused by every dataset.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from qflow.experiments.toy2d.settings import KNOBS, SCALE, ToySettings

# jax / flax / the agents are imported inside the functions that need them, so that building the
# command-line parser (which imports this package for the settings) stays fast.


def method_config(method: str, settings: ToySettings, knob: float | None):
    """``method``'s config at the study's sizes; ``knob``: the value of its strength key (None: the preset's)."""
    from qflow.agents import get_agent
    from qflow.agents.base import build_config

    _, config_cls = get_agent(method)
    overrides = {"actor_dims": tuple(settings.hidden_dims), "critic_dims": tuple(settings.hidden_dims),
                 "batch_size": settings.batch_size, "lr": settings.lr, "flow_steps": settings.flow_steps,
                 "target_update": settings.target_update}
    if knob is not None:
        overrides[KNOBS[method]] = knob
    config = dataclasses.replace(build_config(config_cls, "paper"), **overrides)
    config.validate()
    return config


class ChunkRunner:
    """What every phase shares: one jitted function per chunk length (reused by all runs and datasets),
    the study's progress bar and the tags of phases whose losses went non-finite."""

    def __init__(self, length: int, bar):
        from qflow.training.steps import make_train_chunk

        # the study logs no diagnostics, so none are traced
        self.length, self.bar, self.fn = length, bar, make_train_chunk(length, diagnostics=False)
        self.nonfinite: list[str] = []

    def run(self, agents, data, steps: int, tag: str, every: int = 0, measure=None):
        """``steps`` updates; ``measure(agents, updates_done)`` after every ``every`` chunks when given."""
        from qflow.training import loop

        # the study's one bar spans every phase, so the loop draws none of its own
        return loop.run(PhaseJob(self, agents, data, steps, tag, every, measure), progress=False)


class PhaseJob:
    """One training phase of stacked agents (a ``loop.Job``); ``measure`` is its log event. ``steps`` is a
    whole number of chunks (``ToySettings.phase_steps`` rounds every phase up to one).

    Nothing is checkpointed or exported: a study takes minutes, and a rerun starts over.
    """

    def __init__(self, runner: ChunkRunner, agents, data, steps: int, tag: str, every: int, measure):
        self.runner, self.agents, self.data, self.tag, self.measure = runner, agents, data, tag, measure
        self.total, self.desc = steps, tag
        self.every = {} if measure is None else {"log": every * runner.length}

    def restore(self) -> int:
        return 0

    def advance(self, step: int) -> tuple[int, dict]:
        self.agents, info = self.runner.fn(self.agents, self.data)
        bad = [k for k in type(self.agents).LOSSES if not np.all(np.isfinite(np.asarray(info[k])))]
        if bad and self.tag not in self.runner.nonfinite:
            self.runner.nonfinite.append(self.tag)  # recorded, not fatal: BPTT blowing up is one of the outcomes
        if self.runner.bar is not None:
            self.runner.bar.update(self.runner.length)
        return step + self.runner.length, {}  # no losses are logged: the measurements are the study's record

    def log(self, step: int, means: dict) -> None:
        self.measure(self.agents, step)

    def finish(self, step: int, stop: str):
        return self.agents


ACTOR_KEY = {"qflow": "actor", "fbrac": "actor", "fql": "flow"}  # where the pretrained velocity field goes


def pretrain_flow(data: dict, settings: ToySettings, runner: ChunkRunner, tag: str):
    """Flow-BC agents (stacked over seeds) after the pretraining phase: the shared starting velocity field."""
    from qflow.agents import get_agent
    from qflow.training.loop import stack

    agent_cls, _ = get_agent("flow_bc")
    config = method_config("flow_bc", settings, None)
    agents = stack([agent_cls.create(seed, 1, 2, config) for seed in settings.seeds])
    _, pre_steps, _, _ = settings.phase_steps()
    return runner.run(agents, data, pre_steps, f"{tag} pretraining")


def train_method(method: str, data: dict, settings: ToySettings, runner: ChunkRunner, tag: str, pretrained,
                 measure=None) -> dict:
    """{strength: stacked agents over seeds}; flow BC has a single entry under key None.

    ``measure({strength: agents}, rl_updates)``, when given, is called ``settings.curve_points``
    times during the RL phase (flow BC: during its last ``rl_steps`` updates).

    ``pretrained``: flow-BC agents after pretraining; their velocity field starts every method.
    BC phase: one stack over seeds with the knob at ``bc_knob``. RL phase: those agents copied once per
    strength (Adam re-initialised, knob = strength * knob_scale) and trained as ONE stack of
    strengths x seeds, so each method compiles two chunk shapes in all, shared by every dataset.
    """
    import jax
    import jax.numpy as jnp

    from qflow.agents import get_agent
    from qflow.training.loop import stack

    length, pre_steps, bc_steps, rl_steps = settings.phase_steps()
    n_seeds = len(settings.seeds)
    copy = lambda tree: jax.tree.map(jnp.copy, tree)  # noqa: E731  (training chunks donate their input)
    every = max(1, (rl_steps // length) // max(1, settings.curve_points))
    if method == "flow_bc":
        agents = runner.run(copy(pretrained), data, bc_steps, tag)
        on_curve = measure and (lambda agents, done: measure({None: agents}, done))  # noqa: E731
        return {None: runner.run(agents, data, rl_steps, tag, every, on_curve)}

    from qflow.agents.knobs import knobbed_class

    agent_cls, _ = get_agent(method)
    config = method_config(method, settings, 1.0)  # placeholder knob; the real one is the traced leaf
    inner = stack([agent_cls.create(seed, 1, 2, config) for seed in settings.seeds])
    if pre_steps:
        inner = inner.replace(params={**inner.params, ACTOR_KEY[method]: copy(pretrained.params["actor"])})
        inner = inner.replace(opt_state=jax.vmap(inner.tx.init)(inner.params))
    wrap = lambda inner, knobs: knobbed_class(agent_cls)(  # noqa: E731  (a stack: one knob per member)
        jnp.copy(inner.rng), inner, {KNOBS[method]: jnp.asarray(knobs, jnp.float32)})
    agents = runner.run(wrap(inner, [settings.bc_knob] * n_seeds), data, bc_steps, f"{tag} BC phase")

    strengths = list(settings.strengths)
    tiled = jax.tree.map(lambda x: jnp.concatenate([x] * len(strengths)), agents.inner.replace(rng=agents.rng))
    tiled = tiled.replace(opt_state=jax.vmap(tiled.tx.init)(tiled.params))  # fresh Adam for the RL phase
    knobs = np.repeat(np.asarray(strengths, np.float64) * settings.knob_scale, n_seeds)
    split = lambda trained: {s: jax.tree.map(lambda x, i=i: x[i * n_seeds:(i + 1) * n_seeds], trained)  # noqa: E731
                             for i, s in enumerate(strengths)}
    on_curve = measure and (lambda agents, done: measure(split(agents), done))  # noqa: E731
    return split(runner.run(wrap(tiled, knobs), data, rl_steps, f"{tag} RL phase", every, on_curve))


@functools.lru_cache(maxsize=None)
def _sampler():
    import jax

    return jax.jit(lambda agents, keys, obs: jax.vmap(lambda agent, key: agent.sample_actions(obs, key))(agents, keys))


def sample_actions(agents, n: int, seed: int) -> np.ndarray:
    """(seeds, n, 2) samples in [-4, 4] units."""
    import jax
    import jax.numpy as jnp

    count = jax.tree.leaves(agents)[0].shape[0]
    keys = jax.random.split(jax.random.PRNGKey(seed), count)
    return SCALE * np.asarray(_sampler()(agents, keys, jnp.zeros((n, 1), jnp.float32)))


def flow_states(agent, n: int, seed: int, steps: int) -> np.ndarray:
    """(K + 1, n, 2) Euler states of one agent's velocity field from x0 to the (clipped) action, [-4, 4] units."""
    import jax
    import jax.numpy as jnp

    @jax.jit
    def run(params, key):
        obs = jnp.zeros((n, 1), jnp.float32)
        x = jax.random.normal(key, (n, 2))
        states = [x]
        for i in range(steps):
            x = x + agent.nets["actor"].apply(params, obs, x, jnp.full((n,), i / steps)) / steps
            states.append(x)
        states[-1] = jnp.clip(x, -1, 1)
        return jnp.stack(states)

    return SCALE * np.asarray(run(agent.params["actor"], jax.random.PRNGKey(seed)))
