"""How far a stacked group's policy moves between its kept exports: does Q-Flow's policy swing back
and forth (a dip's policy closer to the previous dip's than to the peak between them) while FQL's
moves steadily?

    qflow policy-drift GROUP_DIR [GROUP_DIR ...] --states 4096 --spacing 5000 --out DIR

For every member and every pair of kept exports (steps s < t), both policies act on the same
dataset states with the same noise (``sample_actions`` with one fixed key: Q-Flow's ODE and FQL's
one-step policy both start from one standard-normal draw per state), and the row gives the mean
Euclidean distance between the two actions, per dimension the mean absolute difference, and each
policy's mean distance from the dataset's action at those states (DIR/distances.csv). DIR/policy_drift.md
tabulates, per run and export step t, the drift d(t - spacing, t) and the return ratio
d(t - spacing, t + spacing) / mean(d(t - spacing, t), d(t, t + spacing)) (``return_ratios``: 2 for
steady motion, about 1.4 for a random walk, 1 for jitter around a fixed policy, below 1 for a policy
that swings back), then the ratios with each agent's seeds side by side. Deterministic given --seed.
Run it as ``qflow policy-drift GROUP_DIR... --out DIR``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from qflow.data.registry import family_of
from qflow.reporting.diagnostics import return_ratios
from qflow.training.logs import write_rows
from qflow.utils import atomic_writer


def member_actions(group_dir: Path, group: dict, obs: dict[int, np.ndarray], action_dim: int, key) -> dict:
    """{(task, seed): {step: actions}} for every kept export of the group."""
    import jax  # JAX and the agents load only here and in main, so `--help` answers at once
    import jax.numpy as jnp

    from qflow.experiments.stacked import export_path, kept_exports, member_policies

    read = member_policies(group, next(iter(obs.values())).shape[1], action_dim)
    act = jax.jit(lambda agent, o: agent.sample_actions(o, key))
    out = {}
    for step in kept_exports(group_dir):
        got, agents = read(export_path(group_dir, step))
        for m, agent in zip(group["members"], agents):
            run = (m.get("setting", ""), m["task"], m["seed"])
            out.setdefault(run, {})[got] = np.asarray(act(agent, jnp.asarray(obs[m["task"]])))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("groups", nargs="+")
    p.add_argument("--states", type=int, default=4096, help="dataset states the policies act on")
    p.add_argument("--seed", type=int, default=0, help="picks the states and the noise")
    p.add_argument("--spacing", type=int, default=5000, help="export spacing of the drift and return ratios")
    p.add_argument("--data-dir", default=None, help="where the datasets are (default: qflow's data dir)")
    p.add_argument("--dataset-episodes", type=int, default=None, help="the training episodes the runs used")
    p.add_argument("--out", required=True, help="folder for distances.csv and policy_drift.md")
    a = p.parse_args(argv)
    import jax

    from qflow.data.loading import load_single_task

    rng = np.random.default_rng(a.seed)
    key = jax.random.PRNGKey(a.seed)
    data_cache, rows = {}, []
    for group_dir in map(Path, a.groups):
        group = json.loads((group_dir / "group.json").read_text())
        obs, data_actions = {}, {}
        family = family_of(group["family"])
        for task in sorted({m["task"] for m in group["members"]}):
            env_id = family.env_id(task)
            if env_id not in data_cache:
                data, _ = load_single_task(env_id, a.dataset_episodes, data_dir=a.data_dir, progress=False)
                pick = np.sort(rng.choice(len(data["observations"]), min(a.states, len(data["observations"])),
                                          replace=False))
                data_cache[env_id] = (data["observations"][pick], data["actions"][pick])
            obs[task], data_actions[task] = data_cache[env_id]
        action_dim = next(iter(data_actions.values())).shape[1]
        actions = member_actions(group_dir, group, obs, action_dim, key)
        for (setting, task, seed), by_step in sorted(actions.items()):
            agent = f"{group['agent']} {setting}".strip()  # a group of several settings: one row label each
            steps = sorted(by_step)
            for i, s in enumerate(steps):
                for t in steps[i:]:
                    diff = by_step[t] - by_step[s]
                    rows.append({
                        "agent": agent, "task": task, "seed": seed, "step_a": s, "step_b": t,
                        "distance": float(np.linalg.norm(diff, axis=-1).mean()),
                        **{f"abs_diff_dim{d}": float(np.abs(diff[:, d]).mean()) for d in range(diff.shape[1])},
                        "from_data_a": float(np.linalg.norm(by_step[s] - data_actions[task], axis=-1).mean()),
                        "from_data_b": float(np.linalg.norm(by_step[t] - data_actions[task], axis=-1).mean()),
                    })
            print(f"{agent} task {task} seed {seed}: {len(steps)} exports", flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_rows(out / "distances.csv", rows)
    with atomic_writer(out / "policy_drift.md", "w") as f:
        f.write(summary(rows, a, argv))
    print(f"wrote {len(rows)} rows to {out / 'distances.csv'} and {out / 'policy_drift.md'}")
    return 0


def read_distances(path: Path) -> list[dict]:
    """distances.csv's rows with numbers as numbers (what the tables below take)."""
    with open(path, newline="") as f:
        return [{k: v if k == "agent" else (int(v) if k in ("task", "seed", "step_a", "step_b")
                                            else None if v == "" else float(v))  # "": a dimension this run lacks
                 for k, v in r.items()} for r in csv.DictReader(f)]


def _qflow_first(run: tuple) -> tuple:
    # runs (agent, ...) and agents alike: Q-Flow first (each of its settings, "qflow guidance_lambda=2"), then
    # the baselines
    return (run[0].split()[0] != "qflow", run)


def _agent_order(agents) -> list[str]:
    return sorted(set(agents), key=lambda a: _qflow_first((a,)))


def distances_by_run(rows: list[dict]) -> dict[tuple, dict[tuple[int, int], float]]:
    """{(agent, task, seed): {(step_a, step_b): distance}}, runs in table order (Q-Flow's first)."""
    dist = {}
    for r in rows:
        dist.setdefault((r["agent"], r["task"], r["seed"]), {})[(r["step_a"], r["step_b"])] = r["distance"]
    return dict(sorted(dist.items(), key=lambda item: _qflow_first(item[0])))


def ratios_by_run(rows: list[dict], spacing: int) -> dict[tuple, dict[int, float]]:
    """{(agent, task, seed): {step: return ratio}} (``return_ratios`` of each run's distances)."""
    return {run: return_ratios(d, spacing) for run, d in distances_by_run(rows).items()}


def ratio_table(rows: list[dict], spacing: int) -> str:
    """Return ratios per task and export step, each agent's seeds side by side (one column per agent;
    "-" where a seed has no ratio at that step)."""
    if not rows:
        return "(no exports to compare)"
    ratios = ratios_by_run(rows, spacing)
    agents = _agent_order(a for a, _, _ in ratios)
    seeds = {a: sorted({s for b, _, s in ratios if b == a}) for a in agents}
    out = ["| task | step | " + " | ".join(f"{a}, seeds {', '.join(map(str, seeds[a]))}" for a in agents) + " |",
           "|---|---|" + "---|" * len(agents)]
    for task in sorted({t for _, t, _ in ratios}):
        for t in sorted({t for run, by_step in ratios.items() if run[1] == task for t in by_step}):
            cells = [", ".join(f"{ratios[(a, task, s)][t]:.2f}" if t in ratios.get((a, task, s), {}) else "-"
                               for s in seeds[a]) for a in agents]
            out.append(f"| {task} | {t:,} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _k(step: int) -> str:
    return f"{step / 1000:g}k"  # 36500 -> 36.5k


def dims_table(rows: list[dict], pairs, dim_names=None) -> str:
    """Per agent, task and pair of exports (s, u): the distance and each action dimension's mean absolute
    difference, mean over seeds. ``dim_names`` label the dimensions (default dim0, dim1, ...)."""
    if not rows:
        return "(no exports to compare)"
    dims = sorted(int(k[len("abs_diff_dim"):]) for k in rows[0] if k.startswith("abs_diff_dim"))
    names = list(dim_names) if dim_names is not None else [f"dim{d}" for d in dims]
    if len(names) != len(dims):
        raise ValueError(f"{len(names)} dimension names for {len(dims)} action dimensions")
    out = ["| agent | task | exports | distance | " + " | ".join(f"mean abs. diff., {n}" for n in names) + " |",
           "|---|---|---|---|" + "---|" * len(dims)]
    for agent in _agent_order(r["agent"] for r in rows):
        for task in sorted({r["task"] for r in rows if r["agent"] == agent}):
            for s, u in pairs:
                sel = [r for r in rows if (r["agent"], r["task"], r["step_a"], r["step_b"]) == (agent, task, s, u)]
                if not sel:
                    continue
                cells = [np.mean([r["distance"] for r in sel])]
                cells += [np.mean([r[f"abs_diff_dim{d}"] for r in sel]) for d in dims]
                out.append(f"| {agent} | {task} | {_k(s)} - {_k(u)} | "
                           + " | ".join(f"{c:.3f}" for c in cells) + " |")
    return "\n".join(out)


def distance_table(rows: list[dict], pairs) -> str:
    """Per run (agent, task, seed), the distance between the exports of each pair (s, u): which of two
    earlier policies is a later one nearer to? ("-" where a run lacks an export.)"""
    out = ["| agent | task | seed | " + " | ".join(f"d({_k(s)}, {_k(u)})" for s, u in pairs) + " |",
           "|---|---|---|" + "---|" * len(pairs)]
    for run, dist in distances_by_run(rows).items():
        cells = [f"{dist[pair]:.3f}" if pair in dist else "-" for pair in pairs]
        out.append(f"| {run[0]} | {run[1]} | {run[2]} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def summary(rows: list[dict], a, argv) -> str:
    command = " ".join(["qflow policy-drift", *(argv if argv is not None else sys.argv[1:])])
    lines = [f"# How far each policy moves between exports (`{command}`)", "",
             f"{a.states} dataset states, one noise draw per state shared by every export (seed {a.seed}); "
             f"distance = mean Euclidean distance between two exports' actions. Return ratio at t = "
             f"d(t-{a.spacing}, t+{a.spacing}) / mean(d(t-{a.spacing}, t), d(t, t+{a.spacing})): 2 for steady "
             "motion, about 1.4 for a random walk, 1 for jitter around a fixed policy, below 1 when the policy "
             "swings back.", "",
             "| agent | task | seed | step | drift since the previous export | return ratio |", "|---|---|---|---|---|---|"]
    for (agent, task, seed), dist in distances_by_run(rows).items():
        by_step = return_ratios(dist, a.spacing)
        steps = sorted({s for pair in dist for s in pair if s % a.spacing == 0})
        for t in steps[1:]:
            drift = dist.get((t - a.spacing, t))
            lines.append(f"| {agent} | {task} | {seed} | {t:,} | {'' if drift is None else f'{drift:.3f}'} | "
                         f"{'' if t not in by_step else f'{by_step[t]:.2f}'} |")
    lines += ["", "Return ratios, each agent's seeds side by side:", "", ratio_table(rows, a.spacing)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
