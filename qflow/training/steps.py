"""The jitted step functions the loop advances by: device-side, one call per chunk or env step.

``make_train_chunk``: offline and stacked training, a whole chunk of updates per call on a dataset
that lives on the device. ``make_online_step``: online fine-tuning and the ant expert, one env
step per call pair (insert + sample, then update + act) on a replay buffer on the device.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

DIAGNOSTICS_STREAM = 0x646961  # fold_in constant of the diagnostics' random stream ("dia")


def make_train_chunk(length: int, seed_axis: str | None = None, per_member: tuple[str, ...] = (),
                     diagnostics: bool = True):
    """Jitted (agents, data) -> (agents, mean info) running ``length`` updates per stacked agent.

    ``seed_axis`` says how stacked agents share the call: "vmap" batches them (what a GPU wants),
    "map" runs them one after the other inside the call with plain matmuls (what a CPU wants:
    XLA's CPU backend runs the batched dot_generals of vmap markedly slower per seed). Default:
    "map" on CPU, "vmap" elsewhere. Both give the same numbers up to floating-point rounding.
    ``per_member`` names data keys that carry a leading agent axis (e.g. the rewards and masks of
    different tasks of one dataset); all other keys are shared by every agent. With ``diagnostics``,
    an agent with ``HAS_DIAGNOSTICS`` (see ``qflow.agents.base.Agent``) adds its ``diagnostics(batch,
    rng)`` values (``diag_*``), computed once at the end of the chunk on a fresh batch, to the chunk's
    info; for the others nothing is traced, so their program is the one without the hook.
    """
    seed_axis = seed_axis or ("map" if jax.default_backend() == "cpu" else "vmap")
    if seed_axis not in ("map", "vmap"):
        raise ValueError(f"seed_axis must be 'map' or 'vmap', got {seed_axis!r}")

    def one_agent(agent, data):
        size = data["observations"].shape[0]

        def step(agent, _):
            rng, key = jax.random.split(agent.rng)
            idx = jax.random.randint(key, (agent.config.batch_size,), 0, size)
            batch = jax.tree.map(lambda x: x[idx], data)
            agent, info = agent.replace(rng=rng).update(batch)
            return agent, info

        agent, infos = jax.lax.scan(step, agent, None, length=length)
        info = jax.tree.map(jnp.mean, infos)
        if diagnostics and type(agent).HAS_DIAGNOSTICS:  # once per chunk, on a fresh batch: ~1 update's cost per chunk
            # fold_in leaves agent.rng alone, so logging diagnostics never changes what is trained
            k_batch, k_diag = jax.random.split(jax.random.fold_in(agent.rng, DIAGNOSTICS_STREAM))
            idx = jax.random.randint(k_batch, (agent.config.batch_size,), 0, size)
            info.update(agent.diagnostics(jax.tree.map(lambda x: x[idx], data), k_diag))
        return agent, info

    def chunk(agents, data):
        own = {k: data[k] for k in per_member}
        shared = {k: v for k, v in data.items() if k not in own}
        if seed_axis == "vmap" and jax.tree.leaves(agents)[0].shape[0] > 1:
            return jax.vmap(lambda a, o: one_agent(a, {**shared, **o}))(agents, own)
        return jax.lax.map(lambda xs: one_agent(xs[0], {**shared, **xs[1]}), (agents, own))

    return jax.jit(chunk, donate_argnums=0)


@functools.lru_cache(maxsize=8)  # one compiled function per shape, shared by runs in one process
def make_online_step(obs_dim: int, action_dim: int, updates_per_step: int, batch_size: int):
    """(carry, packed transition) -> (carry, next action), by two jitted calls with donated state.

    carry = {"agent", "buffer", "sums" (metric sums since the last log), "rng" (action and batch noise)};
    packed = [obs, action, reward, next_obs, mask, obs_to_act_on] as one float32 vector.
    The buffer is written and sampled in its own call: in one program with the update, XLA copied the
    whole donated buffer every step (93 ms instead of 23 ms per SAC step at 400k rows, measured)."""

    def store_and_sample(buffer, packed, rng):
        buffer = buffer.insert(unpack_transition(packed, obs_dim, action_dim))
        keys = jax.random.split(jax.random.fold_in(rng, 1), updates_per_step)
        return buffer, jax.vmap(lambda k: buffer.sample(k, batch_size))(keys)

    def learn_and_act(state, batches, act_obs):
        agent, infos = jax.lax.scan(lambda ag, batch: ag.update(batch), state["agent"], batches)
        sums = jax.tree.map(lambda s, x: s + x.mean(), state["sums"], infos)
        rng, key = jax.random.split(state["rng"])
        action = agent.sample_actions(act_obs[None], key)[0]
        return {"agent": agent, "sums": sums, "rng": rng}, action

    store_and_sample = jax.jit(store_and_sample, donate_argnums=0)
    learn_and_act = jax.jit(learn_and_act, donate_argnums=0)

    def step(carry, packed):
        buffer, batches = store_and_sample(carry["buffer"], packed, carry["rng"])
        state, action = learn_and_act({k: carry[k] for k in ("agent", "sums", "rng")}, batches,
                                      packed[2 * obs_dim + action_dim + 2:])
        return {**state, "buffer": buffer}, action

    return step


def unpack_transition(packed, d: int, a: int) -> dict:
    """The replay row in ``packed`` = [obs (d), action (a), reward, next_obs (d), mask, ...]."""
    return {"observations": packed[:d], "actions": packed[d:d + a], "rewards": packed[d + a],
            "next_observations": packed[d + a + 1:2 * d + a + 1], "masks": packed[2 * d + a + 1]}


def zero_sums(agent, buffer):
    shapes = jax.eval_shape(lambda ag, bu: ag.update(bu.sample(jax.random.PRNGKey(0), ag.config.batch_size))[1],
                            agent, buffer)
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
