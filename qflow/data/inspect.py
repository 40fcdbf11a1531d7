"""Sanity checks of a navigate dataset (pointmaze / antmaze): how often each task's goal is reached,
and where in the maze the data lies.

``qflow data inspect NAME --out DIR`` writes ``DIR/NAME.json`` (per task: fraction of training rows
within the success radius of that task's goal, i.e. rows whose single-task reward would be 0 instead
of -1; fraction of free maze cells the data visits; mean speed) and ``DIR/NAME_xy.png`` (xy coverage
over the maze walls, the five task goals marked).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qflow.data.prepare import prepare
from qflow.utils import atomic_write_json


def navigate_stats(name: str, episodes: int | None = None, data_dir: Path | str | None = None) -> tuple[dict, dict]:
    """(statistics, plotting material) of the training file of navigate dataset ``name``."""
    import gymnasium

    import ogbench.locomaze  # noqa: F401

    from qflow.data.registry import REGENERABLE, check_dataset_name

    check_dataset_name(name)
    if "maze" not in name or "navigate" not in name:
        raise ValueError(f"qflow data inspect reads navigate datasets (pointmaze/antmaze ...-navigate-v0), not {name}")
    files = prepare(name, episodes=episodes, data_dir=data_dir, download=False, progress=False)
    recipe = REGENERABLE[name]
    env = gymnasium.make(recipe.env_name).unwrapped
    with np.load(files.train) as data:
        xy = data["qpos"][:, :2].astype(np.float64)
        terminals = data["terminals"]
    tol = env._goal_tol  # the env's success radius (0.5 for the ant, 1.0 for the point mass)
    tasks = {}
    for info in env.task_infos:
        goal = np.asarray(info["goal_xy"], np.float64)
        tasks[info["task_name"]] = {"goal_xy": goal.tolist(),
                                    "success_fraction": float(np.mean(np.linalg.norm(xy - goal, axis=1) <= tol))}
    cells = {env.xy_to_ij(p) for p in xy[:: max(1, len(xy) // 200_000)]}
    free = {(i, j) for i in range(env.maze_map.shape[0]) for j in range(env.maze_map.shape[1]) if env.maze_map[i, j] == 0}
    steps = np.linalg.norm(np.diff(xy, axis=0), axis=1)[~terminals[:-1].astype(bool)]
    stats = {"dataset": name, "file": str(files.train), "origin": files.origin, "rows": int(len(xy)),
             "episodes": int(terminals.sum()), "success_radius": float(tol), "tasks": tasks,
             "free_cells_visited": len(cells & free) / len(free),
             "mean_speed_per_s": float(steps.mean() / env.dt), "metadata": files.metadata()}
    return stats, {"xy": xy, "env": env}


def plot_coverage(path: Path, name: str, xy: np.ndarray, env, stats: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    unit = env._maze_unit
    fig, ax = plt.subplots(figsize=(8, 6))
    ax.hexbin(xy[:, 0], xy[:, 1], gridsize=120, bins="log", cmap="viridis", mincnt=1)
    for i in range(env.maze_map.shape[0]):
        for j in range(env.maze_map.shape[1]):
            if env.maze_map[i, j] == 1:
                x, y = env.ij_to_xy((i, j))
                ax.add_patch(Rectangle((x - unit / 2, y - unit / 2), unit, unit, color="0.25"))
    for task, info in stats["tasks"].items():
        ax.plot(*info["goal_xy"], "r*", ms=14)
        ax.annotate(task, info["goal_xy"], color="r", xytext=(4, 4), textcoords="offset points")
    ax.set_aspect("equal")
    ax.autoscale_view()
    ax.set_title(f"{name}: xy of {stats['rows']:,} training rows (log density), task goals *")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def inspect_dataset(name: str, out: Path | str, episodes: int | None = None, data_dir=None) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stats, material = navigate_stats(name, episodes, data_dir)
    plot_coverage(out / f"{name}_xy.png", name, material["xy"], material["env"], stats)
    atomic_write_json(out / f"{name}.json", stats)
    return stats
