"""A one-step, two-mode bandit: how Q-Flow's reward and diagnostics move with training length.

The data hold two action modes in equal shares, at (+0.6, 0) and (-0.6, 0) with N(0, 0.05^2) noise;
the reward is -|a_x - 0.6|, so flow BC scores about -0.6 and the best policy 0. With masks = 0 the
critic is a plain regression onto r, which isolates the inner value V and the guided flow from any
bootstrapping. Seeds train side by side; every ``--every`` updates each seed's policy is scored on
2,000 samples and the diagnostics of that chunk are recorded.

    qflow bandit --out results/bandit [--updates 3000] [--seeds 0-5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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


def bandit_config(agent: str, overrides: dict, hidden=(64, 64), batch_size: int = 128):
    """The bandit's config of ``agent``: small networks and batch, then ``overrides`` (e.g. guidance_lambda)."""
    from qflow.agents import get_agent
    from qflow.agents.base import build_config

    config_cls = get_agent(agent)[1]
    config = dataclasses.replace(build_config(config_cls, "paper"), actor_dims=tuple(hidden),
                                 critic_dims=tuple(hidden), batch_size=batch_size, **overrides)
    config.validate()
    return config


def run(agent: str, overrides: dict, seeds, updates: int, every: int, hidden=(64, 64), batch_size: int = 128):
    """Rows {update, seed, reward, diag_*...} every ``every`` updates."""
    from qflow.training import loop

    return loop.run(BanditJob(agent, overrides, seeds, updates, every, hidden, batch_size), progress=False)


class BanditJob:
    """Seeds of one agent trained side by side, a chunk of ``every`` updates per step of the loop, and a row
    per seed after each chunk (a ``loop.Job``). Nothing is checkpointed or exported: a run takes minutes."""

    def __init__(self, agent: str, overrides: dict, seeds, updates: int, every: int, hidden, batch_size: int):
        from qflow.agents import get_agent
        from qflow.training.loop import stack
        from qflow.training.steps import make_train_chunk

        config = bandit_config(agent, overrides, hidden, batch_size)
        self.agent, self.overrides, self.seeds, self.length = agent, overrides, list(seeds), every
        self.agents = stack([get_agent(agent)[0].create(s, 1, 2, config) for s in self.seeds])
        self.data, self.chunk, self.rows = bandit_data(), make_train_chunk(every), []
        self.total = updates // every * every  # whole chunks only: a remainder short of ``every`` is not trained
        self.every, self.desc = {"log": every}, f"bandit {agent}"

    def restore(self) -> int:
        return 0

    def advance(self, step: int) -> tuple[int, dict]:
        import jax

        self.agents, info = self.chunk(self.agents, self.data)
        return step + self.length, jax.device_get(info)

    def log(self, step: int, means: dict) -> None:
        """``means``: the info of the one chunk since the previous row (a log falls after every chunk)."""
        for i, (seed, score) in enumerate(zip(self.seeds, policy_reward(self.agents, len(self.seeds)))):
            self.rows.append({"agent": self.agent, **self.overrides, "seed": seed, "update": step, "reward": score,
                              **{k: float(v[i]) for k, v in means.items() if k.startswith("diag_")}})

    def finish(self, step: int, stop: str) -> list[dict]:
        return self.rows


def write_summary(out: Path) -> Path:
    """bandit.md: per agent (and time features) and update count, the mean over seeds of the reward
    (with the min and max) beside the diagnostics, from bandit.csv and bandit.json."""
    from qflow.training.logs import read_rows
    from qflow.utils import atomic_writer

    meta = json.loads((out / "bandit.json").read_text())
    rows = read_rows(out / "bandit.csv")
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["agent"], r.get("time_features", ""), int(r["update"])), []).append(r)

    def mean(rs, key):
        vals = [float(r[key]) for r in rs if r.get(key) not in (None, "")]
        return f"{np.mean(vals):.3f}" if vals else ""

    lines = ["# One-step two-mode bandit: reward and diagnostics against training length", "",
             f"`{meta['command']}`: seeds {', '.join(map(str, meta['seeds']))}, nets {meta['nets']}, batch "
             f"{meta['batch_size']}, Q-Flow lambda = {meta['guidance_lambda']}; jax {meta['versions']['jax']}; "
             f"{meta['wall_time_s']:.0f} s. Reward -|a_x - 0.6|: flow BC about -0.6, best 0. Improvement = "
             "Qbar(s, pi) - Qbar(s, a_data) by the agent's own target critic; guidance / BC = "
             "mean ||grad V|| / lambda over mean ||a - x0||.", "",
             "| agent | time features | updates | reward, mean [min, max] over seeds | V explained var. | "
             "guidance / BC | improvement (critic) | distance from data |", "|---|---|---|---|---|---|---|---|"]
    for (agent, features, update), rs in sorted(groups.items()):
        rewards = [float(r["reward"]) for r in rs]
        ratio = ""
        if rs[0].get("diag_guidance_norm") not in (None, ""):
            ratio = f"{np.mean([float(r['diag_guidance_norm']) / float(r['diag_bc_velocity_norm']) for r in rs]):.2f}"
        lines.append(f"| {agent} | {features} | {update:,} | {np.mean(rewards):.3f} [{min(rewards):.3f}, "
                     f"{max(rewards):.3f}] | {mean(rs, 'diag_v_explained_var')} | {ratio} | "
                     f"{mean(rs, 'diag_policy_improvement')} | {mean(rs, 'diag_action_distance')} |")
    with atomic_writer(out / "bandit.md", "w") as f:
        f.write("\n".join(lines) + "\n")
    return out / "bandit.md"


def main(argv=None) -> int:
    from qflow.training.logs import write_rows
    from qflow.utils import atomic_write_json, package_versions, parse_int_list

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--updates", type=int, default=3000)
    p.add_argument("--every", type=int, default=250)
    p.add_argument("--seeds", default="0-5", help="e.g. 0-5 or 0,1,2")
    p.add_argument("--lambda", dest="lam", type=float, default=0.3, help="Q-Flow's guidance_lambda")
    p.add_argument("--target-update", choices=("pre", "post"), default="pre",
                   help="the target critic averages toward the critic before (pre) or after (post, the order of "
                        "results made before 2026-12-01) each update")
    p.add_argument("--summarize", action="store_true", help="only rebuild OUT/bandit.md from OUT/bandit.csv")
    a = p.parse_args(argv)
    if a.summarize:
        print(f"[qflow] bandit: {write_summary(Path(a.out))}")
        return 0
    seeds = parse_int_list(a.seeds)
    if a.updates < a.every or a.every < 1:
        raise SystemExit("qflow bandit: need --updates >= --every >= 1")
    started, rows = time.time(), []
    for features in ("f_tau", "2pi_f_tau"):
        rows += run("qflow", {"guidance_lambda": a.lam, "time_features": features, "target_update": a.target_update},
                    seeds, a.updates, a.every)
    rows += run("flow_bc", {}, seeds, a.updates, a.every)
    out = Path(a.out)
    write_rows(out / "bandit.csv", rows)
    atomic_write_json(out / "bandit.json", {
        "command": " ".join(["qflow bandit", *(argv if argv is not None else sys.argv[1:])]),
        "seeds": seeds, "updates": a.updates, "every": a.every, "guidance_lambda": a.lam,
        "target_update": a.target_update, "nets": "64x64", "batch_size": 128, "versions": package_versions(),
        "wall_time_s": round(time.time() - started, 1)})
    write_summary(out)
    print(f"[qflow] bandit: {len(rows)} rows in {out / 'bandit.csv'}, table in {out / 'bandit.md'} "
          f"({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
