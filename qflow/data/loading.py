"""Load a single-task OGBench environment and its relabelled dataset as float32 arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qflow.data.prepare import DatasetError, DatasetFiles, default_data_dir, prepare, regenerate_command
from qflow.data.registry import parse_env_id
from qflow.utils import quiet_env_warnings

TRAIN_KEYS = ("observations", "actions", "next_observations", "rewards", "masks")
# The per-row keys OGBench's loader reads from a file (it computes rewards and masks from qpos and button_states).
FILE_KEYS = ("observations", "actions", "terminals", "qpos", "qvel", "button_states")
# What training reads: observations and actions as they are, qpos through the rewards; all must be finite.
FINITE_KEYS = ("observations", "actions", "qpos")


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
    env = make_env(env_id)
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    fix = (f"regenerate it with `{regenerate_command(dataset, files.episodes, seed, root)}` (move "
           f"{files.train.name} and {files.val.name} away first)")
    for path in (files.train, files.val):  # OGBench reads (and relabels) both
        check_contents(path, env_id, env, fix)
    train, _ = ogbench.make_env_and_datasets(env_id, dataset_dir=str(files.directory), dataset_only=True, cur_env=env)
    data = {k: np.asarray(train[k], np.float32) for k in TRAIN_KEYS}
    if "next_actions" in extra:
        data["next_actions"] = next_actions(data["actions"], train["terminals"])
    return data, files


def check_contents(path: Path, env_id: str, env, fix: str) -> None:
    """Refuse a dataset file whose contents cannot train on ``env``, in one line naming the file, the key and ``fix``.

    A file can match its sidecar and still be unusable (written so by another tool, or official files edited):
    keys the rewards of ``env_id`` are computed from missing, keys of unequal length, actions that are not
    floating point or not as wide as the environment's, NaN or inf in what training reads. OGBench's loader
    would cast, crash with a traceback, or let training diverge much later.
    """
    needed = ["observations", "actions", "terminals", "qpos"]
    if hasattr(env.unwrapped, "_cur_button_states"):  # puzzle, scene: rewards read the buttons' states
        needed.append("button_states")
    rows, bad = {}, []
    with np.load(path) as npz:
        missing = [k for k in needed if k not in npz.files]
        if missing:
            raise DatasetError(f"{path}: lacks {', '.join(missing)}, which {env_id} needs; {fix}")
        for key in (k for k in FILE_KEYS if k in npz.files):
            values = npz[key]
            rows[key] = values.shape[0] if values.ndim else 0
            if key == "actions":
                _check_actions(path, values, env.action_space.shape[-1], env_id, fix)
            if key in FINITE_KEYS and values.dtype.kind in "fc":
                count = int(values.size - np.count_nonzero(np.isfinite(values)))
                bad += [f"{key} has {count:,} non-finite values (NaN or inf)"] if count else []
    if len(set(rows.values())) > 1:
        counts = ", ".join(f"{k} {n:,}" for k, n in rows.items())
        raise DatasetError(f"{path}: keys hold different numbers of rows ({counts}); every key needs one row per "
                           f"step; {fix}")
    if bad:
        raise DatasetError(f"{path}: {'; '.join(bad)}; {fix}")


def _check_actions(path: Path, actions: np.ndarray, width: int, env_id: str, fix: str) -> None:
    if actions.dtype.kind != "f":
        raise DatasetError(f"{path}: actions are {actions.dtype}, but actions must be floating point "
                           f"(float32); {fix}")
    if actions.ndim != 2 or actions.shape[1] != width:
        found = f"{actions.shape[1]} columns" if actions.ndim == 2 else f"shape {actions.shape}"
        raise DatasetError(f"{path}: actions have {found}, but {env_id} takes {width}-D actions "
                           f"(expected {width} columns); {fix}")
