"""Run a grid of (environment, task, agent) with several seeds, resumably, keeping only small files.

    python -m qflow.experiments.suite --envs cube-single-play puzzle-3x3-play --tasks 1-5 \
        --agents qflow,fql,flow_bc --seeds 0,1,2 --steps 30000 --preset cpu --out results/runs/h2h

Each cell trains with ``qflow train --seeds ...`` in ``runs/`` (checkpoints stay there, resumable)
and, once finished, copies every seed's summary.json, eval.csv and metrics.csv into
``OUT/ENV__AGENT/seedS/``. Cells whose copied summaries already exist are skipped, so the suite
continues from the last committed summary after any interruption.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

SMALL_FILES = ("summary.json", "eval.csv", "metrics.csv", "run.json")


def parse_tasks(text: str) -> list[int]:
    tasks = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        tasks.extend(range(int(lo), int(hi or lo) + 1))
    return tasks


def cell_dirs(out: Path, env_id: str, agent: str, seeds) -> list[Path]:
    return [out / f"{env_id}__{agent}" / f"seed{s}" for s in seeds]


def run_cell(env_id: str, agent: str, seeds, args) -> None:
    run_dir = Path(args.runs) / f"{env_id}__{agent}__{args.preset}__seeds{'-'.join(map(str, seeds))}"
    cmd = [sys.executable, "-m", "qflow.cli", "train", "--env", env_id, "--agent", agent,
           "--seeds", ",".join(map(str, seeds)), "--steps", str(args.steps), "--eval-every", str(args.eval_every),
           "--eval-episodes", str(args.eval_episodes), "--preset", args.preset, "--run-dir", str(run_dir),
           "--no-progress"]
    if args.dataset_episodes:
        cmd += ["--dataset-episodes", str(args.dataset_episodes)]
    print("[suite] " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    sources = [run_dir] if len(seeds) == 1 else [run_dir / f"seed{s}" for s in seeds]
    for src, dst in zip(sources, cell_dirs(Path(args.out), env_id, agent, seeds)):
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)  # our own half-copied directory from a killed copy
        tmp.mkdir(parents=True)
        for name in SMALL_FILES:
            if (src / name).exists():
                shutil.copy2(src / name, tmp / name)
        tmp.replace(dst)  # summary.json appears only together with its CSVs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", required=True, help="environment families, e.g. cube-single-play")
    p.add_argument("--tasks", default="1-5")
    p.add_argument("--agents", default="qflow,fql,flow_bc")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--eval-every", type=int, default=None, help="default: steps / 5")
    p.add_argument("--eval-episodes", type=int, default=50)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--dataset-episodes", type=int, default=None, help="default: the official size")
    p.add_argument("--runs", default="runs/suite", help="where checkpoints live (not committed)")
    p.add_argument("--out", required=True, help="where the small result files are copied (commit these)")
    p.add_argument("--order", choices=("task", "agent"), default="task",
                   help="outer loop: finish all agents of a task first (default) or all tasks of an agent")
    args = p.parse_args(argv)
    args.eval_every = args.eval_every or max(1, args.steps // 5)
    seeds = [int(s) for s in args.seeds.split(",")]
    agents = [a for a in args.agents.split(",") if a]
    cells = [(f"{env}-singletask-task{t}-v0", agent) for env in args.envs for t in parse_tasks(args.tasks)
             for agent in agents]
    if args.order == "agent":
        cells.sort(key=lambda c: agents.index(c[1]))
    for env_id, agent in cells:
        if all((d / "summary.json").exists() for d in cell_dirs(Path(args.out), env_id, agent, seeds)):
            print(f"[suite] done already: {env_id} {agent}", flush=True)
            continue
        run_cell(env_id, agent, seeds, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
