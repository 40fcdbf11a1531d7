"""`qflow bench throughput`: updates/s of the fused and per-update loops, FLOPs, GFLOP/s, memory.

The matmul reference (batch x width @ width x width, float32) is timed in the same process, so
the achieved fraction of the machine's matmul rate is comparable across machines.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from qflow.agents import get_agent
from qflow.agents.base import build_config
from qflow.bench.compute import random_data
from qflow.training.loop import stack
from qflow.training.steps import make_train_chunk


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost.get("flops", float("nan")))


def _timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best


def matmul_rate(rows: int, width: int, precision: str = "float32") -> float:
    """GFLOP/s of one layer-shaped matmul in the agents' arithmetic (qflow.networks.PRECISIONS)."""
    from qflow.networks import dense

    layer = dense(width, precision)
    a = jnp.ones((rows, width), jnp.float32)
    b = layer.init(jax.random.PRNGKey(0), a)
    mm = jax.jit(lambda a, b: layer.apply(b, a))
    mm(a, b).block_until_ready()
    n = 50
    seconds = _timed(lambda: [mm(a, b) for _ in range(n)][-1], 3)
    return 2.0 * rows * width * width * n / seconds / 1e9


def run_throughput(agent_name: str, preset: str, overrides, obs_dim: int, action_dim: int, updates: int,
                   members=()) -> dict:
    """One agent's update rates; ``members``: also N agents stacked in one jitted call, for each N."""
    import psutil

    agent_cls, config_cls = get_agent(agent_name)
    config = build_config(config_cls, preset, overrides=overrides)
    data = random_data(100_000, obs_dim, action_dim)

    def rate(chunk_length: int, seeds, calls: int) -> float:
        # new agents each time: the training chunk donates its input
        agents = stack([agent_cls.create(s, obs_dim, action_dim, config) for s in seeds])
        return _seed_update_rate(make_train_chunk(chunk_length, diagnostics=False), agents, data, updates, calls)

    # the update alone: diagnostics (once per chunk in training) are measured separately below
    fused_rate = rate(updates, [0], 1)
    single_rate = rate(1, [0], updates)
    pair_rate = rate(updates, [0, 1], 1)  # seed-updates/s, 2 seeds/call
    # what a GPU grid does: every task x seed x setting of a family in one call; and what it costs to compile
    # (measured first, before any call of that shape has run)
    compile_s = {str(n): round(compile_seconds(agent_cls, config, n, obs_dim, action_dim, data, updates), 2)
                 for n in members}
    stacked = {str(n): round(rate(updates, range(n), 1), 2) for n in members}

    batch = jax.tree.map(lambda x: x[: config.batch_size], data)
    one = agent_cls.create(0, obs_dim, action_dim, config)
    compiled = jax.jit(lambda a, b: a.update(b)).lower(one, batch).compile()
    flops = _flops(compiled)
    width = max(config.critic_dims)
    # The reference is timed twice more (around the FLOP count) and the best kept: on a shared
    # CPU a single timing swings by 30 % or more.
    mm = max(matmul_rate(config.batch_size, width, config.matmul_precision) for _ in range(3))
    achieved = flops * fused_rate / 1e9
    diagnostics = _diagnostics_cost(one, batch, flops, fused_rate) if agent_cls.HAS_DIAGNOSTICS else {}
    return {
        "agent": agent_name, "preset": preset, "matmul_precision": config.matmul_precision, "config": config.as_dict(),
        "device": jax.devices()[0].device_kind, "jax": jax.__version__,
        "updates_per_s_fused": round(fused_rate, 2),
        "updates_per_s_per_call": round(single_rate, 2),
        "seed_updates_per_s_two_seeds_one_call": round(pair_rate, 2),
        "gflop_per_update": round(flops / 1e9, 3),
        "achieved_gflop_s": round(achieved, 1),
        f"matmul_{config.batch_size}x{width}@{width}x{width}_gflop_s": round(mm, 1),
        "fraction_of_matmul_rate": round(achieved / mm, 3),
        **diagnostics,
        **({"stacked_agent_updates_per_s": stacked, "stacked_compile_s": compile_s,
            "stacked_tflop_s": {n: round(r * flops / 1e12, 3) for n, r in stacked.items()},
            "stacked_fraction_of_matmul_rate": {n: round(r * flops / 1e9 / mm, 3) for n, r in stacked.items()}}
           if stacked else {}),
        "peak_rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
    }


def compile_seconds(agent_cls, config, members: int, obs_dim: int, action_dim: int, data: dict, updates: int) -> float:
    """Seconds XLA takes to compile one training call of ``members`` stacked agents (lowering included)."""
    agents = stack([agent_cls.create(s, obs_dim, action_dim, config) for s in range(members)])
    chunk = make_train_chunk(updates, diagnostics=False)  # a jitted function of its own
    start = time.perf_counter()
    chunk.lower(agents, data).compile()
    return time.perf_counter() - start


def grid_comparison(agent_name: str, preset: str, overrides, key: str, values: list[str], seeds: int, obs_dim: int,
                    action_dim: int, updates: int) -> dict:
    """A grid of one setting's values x ``seeds``, trained as one call (the values traced, agents/knobs.py)
    and as one call per value: compile seconds and agent-updates/s of each way."""
    from qflow.agents.knobs import with_knobs

    agent_cls, config_cls = get_agent(agent_name)
    configs = [build_config(config_cls, preset, overrides=[*overrides, f"{key}={v}"]) for v in values]
    data = random_data(100_000, obs_dim, action_dim)

    def measure(groups) -> dict:
        """Compile seconds and agent-updates/s of one call per group (a group: a list of agents)."""
        compile_s, seconds = 0.0, 0.0
        for agents in groups:
            chunk = make_train_chunk(updates, diagnostics=False)
            start = time.perf_counter()
            compiled = chunk.lower(stack(agents), data).compile()
            compile_s += time.perf_counter() - start
            state = compiled(stack(agents), data)[0]  # a warm-up call (the agents are donated to it)
            jax.block_until_ready(state)
            seconds += _timed(lambda: compiled(state, data)[0], 1)
        return {"calls": len(groups), "compile_s": round(compile_s, 2),
                "agent_updates_per_s": round(len(values) * seeds * updates / seconds, 1)}

    def members(config, offset=0):
        return [agent_cls.create(offset + s, obs_dim, action_dim, config) for s in range(seeds)]

    one = with_knobs([a for i, c in enumerate(configs) for a in members(c, i * seeds)],
                     [c for c in configs for _ in range(seeds)])
    return {"agent": agent_name, "preset": preset, "grid": {key: values}, "seeds_per_value": seeds,
            "updates_per_call": updates, "device": jax.devices()[0].device_kind, "jax": jax.__version__,
            "one_call": measure([one]),
            "one_call_per_value": measure([members(c, i * seeds) for i, c in enumerate(configs)])}


def update_rate(agent_name: str, preset: str, overrides, obs_dim: int, action_dim: int, updates: int = 20) -> float:
    """Updates/s of one agent on this machine, from one short fused call after a warm-up (no compile time):
    the rate `qflow sweep --dry-run` prices a grid with."""
    agent_cls, config_cls = get_agent(agent_name)
    config = build_config(config_cls, preset, overrides=overrides)
    agents = stack([agent_cls.create(0, obs_dim, action_dim, config)])
    data = random_data(max(10 * config.batch_size, 1000), obs_dim, action_dim)
    return _seed_update_rate(make_train_chunk(updates, diagnostics=False), agents, data, updates, 1)


def _seed_update_rate(chunk_fn, agents, data: dict, updates: int, calls: int) -> float:
    """Seed-updates per second of ``calls`` calls of ``chunk_fn`` (after one warm-up call); ``updates``:
    the updates per seed that the ``calls`` calls make together."""
    seeds = jax.tree.leaves(agents)[0].shape[0]
    state = {"agents": chunk_fn(agents, data)[0]}
    jax.block_until_ready(state["agents"])

    def run():
        for _ in range(calls):
            state["agents"] = chunk_fn(state["agents"], data)[0]
        return state["agents"]

    return seeds * updates / _timed(run, 2)


def _diagnostics_cost(agent, batch, update_flops: float, update_rate: float, chunk: int = 1000) -> dict:
    """What logging the diagnostics costs: one call per training chunk of ``chunk`` updates."""
    diag = jax.jit(lambda a, b, k: a.diagnostics(b, k))
    key = jax.random.PRNGKey(0)
    flops = _flops(diag.lower(agent, batch, key).compile())
    jax.block_until_ready(diag(agent, batch, key))
    seconds = _timed(lambda: [diag(agent, batch, key) for _ in range(10)][-1], 3) / 10
    return {
        "diagnostics_gflop_per_call": round(flops / 1e9, 3),
        "diagnostics_ms_per_call": round(1e3 * seconds, 2),
        f"diagnostics_flop_fraction_per_{chunk}_updates": round(flops / (chunk * update_flops), 5),
        f"diagnostics_time_fraction_per_{chunk}_updates": round(seconds * update_rate / chunk, 5),
    }
