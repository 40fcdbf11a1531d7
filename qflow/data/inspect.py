"""What a dataset holds, in numbers that two copies of it can be compared by.

``qflow data inspect NAME --out DIR`` writes ``DIR/NAME.json``: for every dataset a fingerprint of the
training and validation files (sha256, rows, episodes, and per key its dtype, shape, mean, standard
deviation, minimum and maximum), so that two regenerations (on two machines, say) can be compared key by
key where their bytes differ. Navigate datasets (pointmaze / antmaze) add, per task, the fraction of
training rows within the success radius of the task's goal (rows whose single-task reward would be 0
instead of -1), the fraction of free maze cells the data visits and the mean speed, and
``DIR/NAME_xy.png`` (xy coverage over the maze walls, the five task goals marked).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from qflow.data.prepare import prepare
from qflow.utils import atomic_write_json, package_versions


def is_navigate(name: str) -> bool:
    return "maze" in name and "navigate" in name


def navigate_stats(name: str, files) -> tuple[dict, dict]:
    """(statistics, plotting material) of the training file (of ``files``, prepared) of navigate dataset ``name``."""
    import gymnasium

    import ogbench.locomaze  # noqa: F401

    from qflow.data.registry import REGENERABLE

    if not is_navigate(name):
        raise ValueError(f"navigate statistics are for pointmaze/antmaze ...-navigate-v0 datasets, not {name}")
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


def fingerprint(path: Path) -> dict:
    """sha256 (from the sidecar when there is one), rows, episodes and per-key summary statistics of one file."""
    from qflow.data.prepare import sha256, sidecar

    meta = sidecar(path)
    digest = json.loads(meta.read_text()).get("sha256") if meta.exists() else sha256(path)
    keys = {}
    with np.load(path) as data:
        for key in sorted(data.files):
            x = data[key]
            values = x.astype(np.float64)
            keys[key] = {"dtype": str(x.dtype), "shape": list(x.shape), "mean": float(values.mean()),
                         "std": float(values.std()), "min": float(values.min()), "max": float(values.max())}
        episodes = int(np.sum(data["terminals"])) if "terminals" in data.files else None
    rows = keys["observations"]["shape"][0] if "observations" in keys else None
    return {"file": path.name, "sha256": digest, "rows": rows, "episodes": episodes, "keys": keys}


def inspect_dataset(name: str, out: Path | str, episodes: int | None = None, data_dir=None, seed: int = 0,
                    command: str | None = None) -> dict:
    from qflow.data.registry import check_dataset_name

    check_dataset_name(name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = prepare(name, episodes=episodes, seed=seed, data_dir=data_dir, download=False, progress=False)
    stats = {"dataset": name, "origin": files.origin, "machine": files.metadata().get("machine"), "command": command,
             "date": time.strftime("%Y-%m-%d"), "versions": package_versions(),
             "fingerprint": {"train": fingerprint(files.train), "val": fingerprint(files.val)}}
    if is_navigate(name):
        navigate, material = navigate_stats(name, files)
        stats.update(navigate)
        plot_coverage(out / f"{name}_xy.png", name, material["xy"], material["env"], stats)
    atomic_write_json(out / f"{name}.json", stats)
    return stats
