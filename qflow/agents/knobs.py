"""Agents whose numeric settings differ, stacked in one compiled call.

A config is static (jit hashes it), so two agents that differ only in, say, ``guidance_lambda`` have
different pytree structures and cannot share a vmapped or mapped call: a grid of three values would
compile three programs, each too small to fill an accelerator. ``with_knobs`` wraps each member so the
settings that differ become array leaves ("knobs") and the static configs become equal. During
``update`` (and acting, and the diagnostics) the wrapper swaps the knob arrays into the inner agent's
config, so the agent's own code runs unchanged with traced values.

Only settings a config class lists in ``TRACEABLE`` may differ: settings used in arithmetic only
(never in Python control flow, never in a shape, never baked into the optimiser). Any other difference
is refused with the names of the settings.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax
import jax.numpy as jnp


def differing(configs) -> list[str]:
    """The config fields whose values are not the same in every config."""
    first = configs[0]
    return [f.name for f in dataclasses.fields(first) if any(getattr(c, f.name) != getattr(first, f.name)
                                                             for c in configs[1:])]


def untraceable(config_cls, names) -> list[str]:
    """The settings among ``names`` that may not differ between members of one call (not in ``TRACEABLE``)."""
    return [n for n in names if n not in config_cls.TRACEABLE]


def check_traceable(config_cls, names) -> None:
    """Refuse settings that shape the program (or the optimiser), naming them and the ones that may differ."""
    fixed = untraceable(config_cls, names)
    if fixed:
        raise ValueError(f"members of one stacked call differ in {', '.join(fixed)}, which shape the program (or "
                         f"the optimiser); settings that may differ: {', '.join(config_cls.TRACEABLE)}")


def with_knobs(agents, configs) -> list:
    """``agents`` (each built from its config) wrapped to share one static config, their differing settings
    as float32 leaves; unchanged when the configs agree."""
    names = differing(configs)
    if not names:
        return list(agents)
    if len({type(c) for c in configs}) > 1:
        kinds = sorted({type(c).__name__ for c in configs})
        raise ValueError(f"members of one stacked call must be one agent, got {kinds}")
    check_traceable(type(configs[0]), names)
    wrapper = knobbed_class(type(agents[0]))
    # the static parts every member shares: the first member's config (the knobs override it during every
    # call) and its optimiser (one per config; no traceable setting reaches the optimiser)
    shared = {"config": configs[0], **({"tx": agents[0].tx} if hasattr(agents[0], "tx") else {})}
    return [wrapper(agent.rng, agent.replace(**shared), {n: jnp.float32(getattr(c, n)) for n in names})
            for agent, c in zip(agents, configs)]


@functools.lru_cache(maxsize=None)
def knobbed_class(agent_cls):
    """A wrapper class per agent class, so that ``LOSSES`` and ``HAS_DIAGNOSTICS`` read as the agent's."""

    class Knobbed(flax.struct.PyTreeNode):
        LOSSES = agent_cls.LOSSES
        HAS_DIAGNOSTICS = agent_cls.HAS_DIAGNOSTICS
        ACTING_PARAMS = agent_cls.ACTING_PARAMS
        ACTING_FIELDS = agent_cls.ACTING_FIELDS

        rng: Any  # the training step replaces the rng of what it steps: the inner agent's, while inside
        inner: Any  # the agent; its static config holds the first member's values
        knobs: dict  # {setting: float32 array}: this member's values of the settings that differ

        @property
        def config(self):
            return self.inner.config

        @property
        def params(self):
            return self.inner.params

        def __getattr__(self, name):  # the agent's other state (target_critic, opt_state, nets...), read-only
            if name == "inner":  # not set yet (while being built): no recursion
                raise AttributeError(name)
            return getattr(self.inner, name)

        def tuned(self):
            """The inner agent with this member's values in its config (traced inside a jitted call)."""
            return self.inner.replace(rng=self.rng, config=dataclasses.replace(self.inner.config, **self.knobs))

        def update(self, batch):
            new, info = self.tuned().update(batch)
            return self.replace(rng=new.rng, inner=new.replace(config=self.inner.config)), info

        def sample_actions(self, obs, rng):
            return self.tuned().sample_actions(obs, rng)

        def diagnostics(self, batch, rng):
            return self.tuned().diagnostics(batch, rng)

    Knobbed.__name__ = Knobbed.__qualname__ = f"Knobbed{agent_cls.__name__}"
    return Knobbed
