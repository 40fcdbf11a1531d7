"""`qflow bench compute`: milliseconds per update and memory against the number of flow steps K.

For Q-Flow, FQL and FBRAC at K in {1, 5, 10, 20, 50}, on random data (batch 256, obs_dim 28,
action_dim 5 by default, paper network sizes):
- ms/update: a chunk of ``updates`` fused updates (the trainer's jit(vmap(lax.scan))) is compiled
  once, then called ``repeats`` times; the best call divided by ``updates``.
- XLA scratch memory: ``compiled.memory_analysis().temp_size_in_bytes`` of that chunk. The scan body
  reuses its buffers across iterations, so this is the working memory of one update (activations
  kept for the backward pass, gradients, optimiser temporaries), excluding the agent and the data
  (``argument_size``), which are listed separately.
- Peak RSS: the process's resident-memory high-water mark (``ru_maxrss``). With ``isolate`` (the
  CLI default) every (agent, K) runs in a fresh Python process, so it is that configuration's own
  peak; otherwise it is the running maximum of the whole benchmark.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from qflow.agents import get_agent
from qflow.agents.base import build_config
from qflow.training.loop import stack
from qflow.training.steps import make_train_chunk

AGENTS = ("qflow", "fql", "fbrac")
KS = (1, 5, 10, 20, 50)
FIELDS = ["agent", "flow_steps", "preset", "batch_size", "ms_per_update", "compile_s", "xla_temp_mb",
          "xla_argument_mb", "xla_output_mb", "xla_peak_mb", "rss_peak_mb", "rss_per_config"]


def random_data(size: int, obs_dim: int, action_dim: int) -> dict:
    """A fixed random dataset of ``size`` transitions: an update's cost does not depend on the values."""
    rng = np.random.default_rng(0)
    return {
        "observations": jnp.asarray(rng.normal(size=(size, obs_dim)), jnp.float32),
        "next_observations": jnp.asarray(rng.normal(size=(size, obs_dim)), jnp.float32),
        "actions": jnp.asarray(rng.uniform(-1, 1, size=(size, action_dim)), jnp.float32),
        "rewards": jnp.asarray(-rng.random(size), jnp.float32),
        "masks": jnp.ones(size, jnp.float32),
    }


def _rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def bench_one(agent: str, flow_steps: int, preset: str = "paper", overrides=(), obs_dim: int = 28,
              action_dim: int = 5, batch_size: int = 256, updates: int = 5, repeats: int = 3,
              data_size: int = 10_000) -> dict:
    """One (agent, K): compile a fused chunk of ``updates`` updates, time it, read XLA's memory analysis."""
    agent_cls, config_cls = get_agent(agent)
    config = build_config(config_cls, preset,
                          overrides=[*overrides, f"flow_steps={flow_steps}", f"batch_size={batch_size}"])
    data = random_data(data_size, obs_dim, action_dim)
    agents = stack([agent_cls.create(0, obs_dim, action_dim, config)])

    chunk = make_train_chunk(updates)
    started = time.perf_counter()
    compiled = chunk.lower(agents, data).compile()
    compile_s = time.perf_counter() - started
    memory = compiled.memory_analysis()

    agents, _ = compiled(agents, data)  # warm-up call (first execution allocates)
    jax.block_until_ready(agents)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        agents, info = compiled(agents, data)
        jax.block_until_ready((agents, info))
        best = min(best, time.perf_counter() - started)
    losses = {k: float(np.asarray(info[k]).mean()) for k in agent_cls.LOSSES}
    if not all(np.isfinite(list(losses.values()))):
        raise RuntimeError(f"non-finite losses in the {agent} K={flow_steps} benchmark: {losses}")

    mb = lambda name: round(float(getattr(memory, name, float("nan")) or 0) / 2**20, 2)  # noqa: E731
    return {
        "agent": agent, "flow_steps": flow_steps, "preset": preset, "batch_size": batch_size,
        "ms_per_update": round(1000 * best / updates, 2),
        "compile_s": round(compile_s, 1),
        "xla_temp_mb": mb("temp_size_in_bytes"),
        "xla_argument_mb": mb("argument_size_in_bytes"),
        "xla_output_mb": mb("output_size_in_bytes"),
        "xla_peak_mb": mb("peak_memory_in_bytes"),
        "rss_peak_mb": round(_rss_peak_mb(), 1),
        "config": config.as_dict(),
        "updates_per_call": updates, "repeats": repeats,
    }


def _bench_isolated(kwargs: dict) -> dict:
    code = ("import json, sys; from qflow.bench.compute import bench_one; "
            "print('RESULT ' + json.dumps(bench_one(**json.loads(sys.argv[1]))))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"benchmark of {kwargs['agent']} K={kwargs['flow_steps']} failed "
                           f"(exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1][len("RESULT "):])


def run_compute(agents=AGENTS, ks=KS, preset: str = "paper", overrides=(), obs_dim: int = 28, action_dim: int = 5,
                batch_size: int = 256, updates: int = 5, repeats: int = 3, isolate: bool = True,
                out_dir: str | Path | None = None, progress: bool = True, command: str | None = None) -> dict:
    """Benchmark every (agent, K); write compute.{md,csv,png,json} to ``out_dir`` when given."""
    from qflow.utils import package_versions

    for name in agents:
        get_agent(name)
    if not ks or min(ks) < 1:
        raise ValueError(f"--ks must be positive integers, got {ks}")
    if updates < 1 or repeats < 1:
        raise ValueError(f"--updates and --repeats must be >= 1, got {updates}, {repeats}")
    started = time.time()
    jobs = [(a, k) for a in agents for k in ks]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), unit="config", dynamic_ncols=True, desc="bench compute")
    rows = []
    for name, k in jobs:
        if bar is not None:
            bar.set_postfix_str(f"{name} K={k}")
        kwargs = dict(agent=name, flow_steps=k, preset=preset, overrides=list(overrides), obs_dim=obs_dim,
                      action_dim=action_dim, batch_size=batch_size, updates=updates, repeats=repeats)
        row = _bench_isolated(kwargs) if isolate else bench_one(**kwargs)
        row["rss_per_config"] = bool(isolate)
        rows.append(row)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    result = {
        "rows": rows,
        "settings": {"agents": list(agents), "ks": list(ks), "preset": preset, "overrides": list(overrides),
                     "obs_dim": obs_dim, "action_dim": action_dim, "batch_size": batch_size,
                     "updates_per_call": updates, "repeats": repeats, "isolate": isolate},
        "device": jax.devices()[0].device_kind,
        "cpu_count": _cpu_count(),
        "versions": package_versions(),
        "wall_time_s": round(time.time() - started, 1),
        "command": command if command is not None else " ".join(sys.argv),
    }
    if out_dir is not None:
        write_outputs(Path(out_dir), result)
    return result


def _cpu_count() -> int | None:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def write_outputs(out: Path, result: dict) -> None:
    import csv

    from qflow.utils import atomic_write_json, atomic_writer

    out.mkdir(parents=True, exist_ok=True)
    rows = result["rows"]
    with atomic_writer(out / "compute.csv", "w") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in FIELDS})
    s = result["settings"]
    lines = [
        "# Compute against the number of flow steps K",
        "",
        f"{result['device']} ({result['cpu_count']} cores visible), jax {result['versions'].get('jax')}; preset "
        f"{s['preset']}, batch {s['batch_size']}, obs_dim {s['obs_dim']}, action_dim {s['action_dim']}, random data; "
        f"best of {s['repeats']} calls of {s['updates_per_call']} fused updates. XLA temp = scratch memory of the "
        f"compiled update (buffers reused across the fused steps); RSS = process peak "
        f"({'one process per row' if s['isolate'] else 'running maximum of one process'}).",
        "",
        "| agent | K | ms / update | compile s | XLA temp MB | XLA arguments MB | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row['agent']} | {row['flow_steps']} | {row['ms_per_update']:.1f} | {row['compile_s']:.1f} | "
                     f"{row['xla_temp_mb']:.1f} | {row['xla_argument_mb']:.1f} | {row['rss_peak_mb']:.0f} |")
    with atomic_writer(out / "compute.md", "w") as f:
        f.write("\n".join(lines) + "\n")
    atomic_write_json(out / "compute.json", result)
    plot(out / "compute.png", result)


def plot(path: Path, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = result["rows"]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for name in dict.fromkeys(r["agent"] for r in rows):
        mine = sorted((r for r in rows if r["agent"] == name), key=lambda r: r["flow_steps"])
        k = [r["flow_steps"] for r in mine]
        line, = ax_t.plot(k, [r["ms_per_update"] for r in mine], "o-", label=name)
        ax_m.plot(k, [r["xla_temp_mb"] for r in mine], "o-", color=line.get_color(), label=f"{name} XLA temp")
        ax_m.plot(k, [r["rss_peak_mb"] for r in mine], "s--", color=line.get_color(), alpha=0.6,
                  label=f"{name} peak RSS")
    ks = sorted({r["flow_steps"] for r in rows})
    for ax in (ax_t, ax_m):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("flow steps K")
        ax.grid(True, which="both", alpha=0.3)
    ax_t.set_ylabel("ms per update")
    ax_m.set_ylabel("MB")
    ax_t.legend(fontsize=8)
    ax_m.legend(fontsize=7)
    s = result["settings"]
    fig.suptitle(f"{result['device']}: preset {s['preset']}, batch {s['batch_size']}, obs {s['obs_dim']}, "
                 f"act {s['action_dim']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
