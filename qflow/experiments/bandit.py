"""A one-step, two-mode bandit: how Q-Flow's reward and diagnostics move with training length.

The data hold two action modes in equal shares, at (+0.6, 0) and (-0.6, 0) with N(0, 0.05^2) noise;
the reward is -|a_x - 0.6|, so flow BC scores about -0.6 and the best policy 0. With masks = 0 the
critic is a plain regression onto r, which isolates the inner value V and the guided flow from any
bootstrapping. Seeds train side by side; every ``--every`` updates each seed's policy is scored on
2,000 samples and the diagnostics of that chunk are recorded.

    python -m qflow.experiments.bandit --out results/bandit [--updates 3000] [--seeds 0-5]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np


def bandit_data(n: int = 4096, seed: int = 0) -> dict:
    import jax.numpy as jnp

    r = np.random.default_rng(seed)
    sign = np.where(r.random(n) < 0.5, 1.0, -1.0)
    actions = np.clip(np.stack([sign * 0.6, np.zeros(n)], 1) + 0.05 * r.normal(size=(n, 2)), -1, 1)
    return {
        "observations": jnp.zeros((n, 1)), "next_observations": jnp.zeros((n, 1)),
        "actions": jnp.asarray(actions, jnp.float32), "rewards": jnp.asarray(reward(actions), jnp.float32),
        "masks": jnp.zeros(n),
    }


def reward(actions) -> np.ndarray:
    return -np.abs(np.asarray(actions)[..., 0] - 0.6)


def policy_reward(agents, count: int, samples: int = 2000) -> np.ndarray:
    """Mean reward of each stacked agent's actions (fixed sampling keys)."""
    import jax
    import jax.numpy as jnp

    scores = []
    for i in range(count):
        agent = jax.tree.map(lambda x: x[i], agents)
        scores.append(float(reward(agent.sample_actions(jnp.zeros((samples, 1)), jax.random.PRNGKey(100 + i))).mean()))
    return np.array(scores)


def run(agent: str, overrides: dict, seeds, updates: int, every: int, hidden=(64, 64), batch_size: int = 128):
    """Rows {update, seed, reward, diag_*...} every ``every`` updates."""
    import jax

    from qflow.agents import get_agent
    from qflow.agents.base import build_config
    from qflow.training.trainer import make_train_chunk, stack

    agent_cls, config_cls = get_agent(agent)
    config = dataclasses.replace(build_config(config_cls, "paper"), actor_dims=tuple(hidden),
                                 critic_dims=tuple(hidden), batch_size=batch_size, **overrides)
    config.validate()
    agents = stack([agent_cls.create(s, 1, 2, config) for s in seeds])
    data, chunk, rows = bandit_data(), make_train_chunk(every), []
    for done in range(every, updates + 1, every):
        agents, info = chunk(agents, data)
        info = jax.device_get(info)
        for i, (seed, score) in enumerate(zip(seeds, policy_reward(agents, len(seeds)))):
            rows.append({"agent": agent, **{k: v for k, v in overrides.items()}, "seed": seed, "update": done,
                         "reward": score, **{k: float(v[i]) for k, v in info.items() if k.startswith("diag_")}})
    return rows


def main(argv=None) -> int:
    from qflow.training.logs import write_rows
    from qflow.utils import atomic_write_json, package_versions

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--updates", type=int, default=3000)
    p.add_argument("--every", type=int, default=250)
    p.add_argument("--seeds", default="0-5", help="e.g. 0-5 or 0,1,2")
    p.add_argument("--lambda", dest="lam", type=float, default=0.3, help="Q-Flow's guidance_lambda")
    a = p.parse_args(argv)
    lo, _, hi = a.seeds.partition("-")
    seeds = list(range(int(lo), int(hi) + 1)) if hi else [int(s) for s in a.seeds.split(",")]
    if a.updates < a.every or a.every < 1:
        raise SystemExit("qflow bandit: need --updates >= --every >= 1")
    started, rows = time.time(), []
    for features in ("f_tau", "2pi_f_tau"):
        rows += run("qflow", {"guidance_lambda": a.lam, "time_features": features}, seeds, a.updates, a.every)
    rows += run("flow_bc", {}, seeds, a.updates, a.every)
    out = Path(a.out)
    write_rows(out / "bandit.csv", rows)
    atomic_write_json(out / "bandit.json", {
        "command": " ".join(["python -m qflow.experiments.bandit", *(argv if argv is not None else sys.argv[1:])]),
        "seeds": seeds, "updates": a.updates, "every": a.every, "guidance_lambda": a.lam,
        "nets": "64x64", "batch_size": 128, "versions": package_versions(),
        "wall_time_s": round(time.time() - started, 1)})
    print(f"[qflow] bandit: {len(rows)} rows in {out / 'bandit.csv'} ({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
