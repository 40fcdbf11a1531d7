"""Load a single-task OGBench environment and its relabelled dataset as float32 arrays."""

from __future__ import annotations

import numpy as np

from qflow.data.prepare import DatasetFiles, prepare
from qflow.data.registry import parse_env_id
from qflow.utils import quiet_env_warnings

TRAIN_KEYS = ("observations", "actions", "next_observations", "rewards", "masks")


def make_env(env_id: str):
    import ogbench

    parse_env_id(env_id)
    quiet_env_warnings()
    return ogbench.make_env_and_datasets(env_id, env_only=True)


def next_actions(actions: np.ndarray, terminals: np.ndarray) -> np.ndarray:
    """The action taken one row later in the same episode; an episode's last row keeps its own action
    (the data holds no action after it)."""
    nxt = np.concatenate([actions[1:], actions[-1:]])
    last = np.asarray(terminals, bool)
    nxt[last] = actions[last]
    return nxt


def data_record(files: DatasetFiles, transitions: int) -> dict:
    """What a run records about its data: name, origin, size, generation seed, sha256."""
    return {"dataset": files.name, "origin": files.origin, "episodes": files.episodes, "seed": files.seed,
            "transitions": int(transitions), "sha256": files.metadata().get("sha256")}


def load_single_task(env_id: str, episodes: int | None = None, seed: int = 0, data_dir=None,
                     progress: bool = True, extra: tuple[str, ...] = ()) -> tuple[dict[str, np.ndarray], DatasetFiles]:
    """Training transitions (rewards/masks relabelled for the task) and the files they came from.

    ``extra`` adds keys some losses need: "next_actions" (see ``next_actions``).
    """
    unknown = sorted(set(extra) - {"next_actions"})
    if unknown:
        raise ValueError(f"unknown extra dataset keys {unknown}; available: next_actions")
    import ogbench

    dataset, _ = parse_env_id(env_id)
    quiet_env_warnings()
    files = prepare(dataset, episodes=episodes, seed=seed, data_dir=data_dir, progress=progress)
    _, train, _ = ogbench.make_env_and_datasets(env_id, dataset_dir=str(files.directory))
    data = {k: np.asarray(train[k], np.float32) for k in TRAIN_KEYS}
    if "next_actions" in extra:
        data["next_actions"] = next_actions(data["actions"], train["terminals"])
    return data, files
