"""Offline-to-online runs: success before and after the online phase, per seed and over seeds.

    python -m qflow.reporting.online RUN_DIR... --out DIR

"Before" is the evaluation at the last offline step (``steps``), "after" the one at the end of the online
phase (``steps + online_steps``); both from ``eval.csv`` (deterministic evaluation episodes). The
change is after - before per run. Over seeds: mean with a 95 % percentile-bootstrap interval (rliable,
runs resampled). Also the training episodes' success (stochastic policy) over the last 20 online
episodes, from ``online.csv``. Writes DIR/before_after.csv and DIR/before_after.md.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from qflow.reporting.report import ReportError, bootstrap_interval
from qflow.training.record import RunRecord
from qflow.utils import atomic_writer

REPS = 2_000


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_run(run_dir: Path) -> dict | None:
    """One finished offline-to-online run's before/after numbers; None if it has not finished."""
    run_dir = Path(run_dir)
    if not (run_dir / "summary.json").exists():
        return None
    summary = RunRecord.read(run_dir / "summary.json", fix="repair it or leave its run out", error=ReportError)
    if not summary.get("online_steps"):
        return None
    at = {int(float(r["step"])): float(r["success"]) for r in _rows(run_dir / "eval.csv")}
    before, after = summary["steps"], summary["steps"] + summary["online_steps"]
    if before not in at or after not in at:
        raise ValueError(f"{run_dir}/eval.csv lacks an evaluation at step {before} or {after}; evaluate with "
                         f"--eval-every dividing both")
    episodes = _rows(run_dir / "online.csv")
    throughput = summary.get("online", {}).get("throughput", {})
    return {"env": summary["env"], "agent": summary["agent"], "seed": summary["seed"], "preset": summary["preset"],
            "offline_steps": before, "online_steps": summary["online_steps"], "before": at[before],
            "after": at[after], "change": at[after] - at[before],
            "online_episode_success_last20": float(np.mean([float(r["success"]) for r in episodes[-20:]]))
            if episodes else None,
            "env_steps_per_s": throughput.get("env_steps_per_s"), "share_agent": throughput.get("share_agent"),
            "eval_episodes": summary["eval_episodes"], "data": summary["data"], "versions": summary["versions"]}


def _mean_ci(values) -> tuple[float, float, float]:
    """Mean over runs and its 95 % interval, by the same rliable bootstrap as ``qflow report``."""
    points, cis = bootstrap_interval(np.asarray(values, np.float64)[:, None], REPS)
    return float(points[0]), float(cis[0, 0]), float(cis[1, 0])


def before_after(run_dirs) -> tuple[list[dict], str]:
    """(per-run rows, Markdown with a per-run table and a per-agent table) for finished runs."""
    runs = [r for r in (read_run(d) for d in run_dirs) if r is not None]
    if not runs:
        raise ValueError("no finished offline-to-online run (summary.json with online_steps) among the given dirs")
    pct = lambda x: f"{100 * x:.0f}"  # noqa: E731
    lines = ["| env | agent | seed | before (%) | after (%) | change (points) | online episodes, last 20 (%) | "
             "env steps/s online |", "|" + "---|" * 8]
    for r in sorted(runs, key=lambda r: (r["env"], r["agent"], r["seed"])):
        last20 = pct(r["online_episode_success_last20"]) if r["online_episode_success_last20"] is not None else "-"
        speed = f"{r['env_steps_per_s']:.1f}" if r["env_steps_per_s"] else "-"
        lines.append(f"| {r['env']} | {r['agent']} | {r['seed']} | {pct(r['before'])} | {pct(r['after'])} | "
                     f"{100 * r['change']:+.0f} | {last20} | {speed} |")
    groups = defaultdict(list)
    for r in runs:
        groups[(r["env"], r["agent"])].append(r)
    lines += ["", "| env | agent | seeds | before, mean [95 % CI] | after, mean [95 % CI] | change, mean [95 % CI] |",
              "|" + "---|" * 6]
    for (env, agent), rs in sorted(groups.items()):
        cells = []
        for key in ("before", "after", "change"):
            m, lo, hi = _mean_ci([100 * r[key] for r in rs])
            cells.append(f"{m:+.1f} [{lo:+.1f}, {hi:+.1f}]" if key == "change" else f"{m:.1f} [{lo:.1f}, {hi:.1f}]")
        lines.append(f"| {env} | {agent} | {len(rs)} ({', '.join(str(r['seed']) for r in rs)}) | " + " | ".join(cells)
                     + " |")
    first = runs[0]
    lines += ["", f"Success in % of {first['eval_episodes']} deterministic evaluation episodes: before = at the last "
              f"of {first['offline_steps']:,} offline steps, after = after {first['online_steps']:,} online env "
              f"steps (one update each). Preset {first['preset']}; data {first['data']['dataset']} "
              f"({first['data']['origin']}, {first['data']['episodes']} episodes); ogbench "
              f"{first['versions'].get('ogbench')}, jax {first['versions'].get('jax')}. Intervals: rliable "
              f"percentile bootstrap over runs, {REPS:,} resamples; with 3 seeds they are rough."]
    return runs, "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories (qflow train --online-steps ...)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    runs, text = before_after([Path(p) for p in args.runs])
    out = Path(args.out)
    with atomic_writer(out / "before_after.md", "w") as f:
        f.write("# Offline-to-online: success before and after the online phase\n\n" + text + "\n")
    keys = [k for k in runs[0] if k not in ("data", "versions")]
    with atomic_writer(out / "before_after.csv", "w") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(runs)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
