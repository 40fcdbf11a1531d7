"""Which OGBench datasets exist, which we can regenerate, and how to name them.

Names follow OGBench: a dataset is ``<family>-<type>-v0`` (``cube-single-play-v0``); a single-task
environment id adds ``-singletask[-taskN]`` before the version
(``cube-single-play-singletask-task2-v0``). All five tasks of a family share one dataset.
"""

from __future__ import annotations

import dataclasses
import re

from qflow.errors import QFlowError


@dataclasses.dataclass(frozen=True)
class Recipe:
    """OGBench's published generation recipe for one dataset (see shared docs, OGBENCH.md)."""

    kind: str  # "manipspace" (plan oracles), "pointmaze" (maze oracle subgoal direction) or "antmaze" (+ ant expert)
    env_name: str  # goal-conditioned gymnasium id the generator drives, e.g. "cube-single-v0"
    episodes: int  # official number of training episodes (validation adds 10 %)
    episode_rows: int  # rows stored per episode (max_episode_steps of the generator)
    noise: float  # manipspace: plan noise; mazes: std of Gaussian action noise
    noise_smoothing: float = 0.0  # manipspace only: temporal smoothing of the plan noise

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _manip(env_name: str) -> Recipe:
    return Recipe("manipspace", env_name, episodes=1000, episode_rows=1001, noise=0.1, noise_smoothing=0.5)


def _pointmaze(env_name: str, episodes: int = 1000, rows: int = 1001) -> Recipe:
    return Recipe("pointmaze", env_name, episodes=episodes, episode_rows=rows, noise=0.5)


def _antmaze(env_name: str, episodes: int = 1000, rows: int = 1001) -> Recipe:
    return Recipe("antmaze", env_name, episodes=episodes, episode_rows=rows, noise=0.2)


REGENERABLE: dict[str, Recipe] = {
    "cube-single-play-v0": _manip("cube-single-v0"),
    "cube-double-play-v0": _manip("cube-double-v0"),
    "scene-play-v0": _manip("scene-v0"),
    "puzzle-3x3-play-v0": _manip("puzzle-3x3-v0"),
    "puzzle-4x4-play-v0": _manip("puzzle-4x4-v0"),
    "pointmaze-medium-navigate-v0": _pointmaze("pointmaze-medium-v0"),
    "pointmaze-large-navigate-v0": _pointmaze("pointmaze-large-v0"),
    "pointmaze-giant-navigate-v0": _pointmaze("pointmaze-giant-v0", episodes=500, rows=2001),
    # need a trained ant expert (`qflow expert train`, then `qflow data prepare ... --expert`)
    "antmaze-medium-navigate-v0": _antmaze("antmaze-medium-v0"),
    "antmaze-large-navigate-v0": _antmaze("antmaze-large-v0"),
    "antmaze-giant-navigate-v0": _antmaze("antmaze-giant-v0", episodes=500, rows=2001),
}

# Generation needs an expert we do not train (days on a CPU): loadable from official files only.
OFFICIAL_ONLY_PREFIXES = ("humanoidmaze-", "antsoccer-")
EXPERT_KINDS = ("antmaze",)  # recipes whose generation needs --expert

_SINGLETASK = re.compile(r"^(?P<base>.+)-singletask(?:-task(?P<task>[1-5]))?-(?P<version>v\d+)$")


class UnknownDatasetError(QFlowError, ValueError):
    pass


def supported_names() -> str:
    return ", ".join(sorted(REGENERABLE))


def check_dataset_name(name: str) -> str:
    """Return ``name`` if it is a dataset we can load or regenerate, else raise a helpful error."""
    if name in REGENERABLE:
        return name
    if name.startswith(OFFICIAL_ONLY_PREFIXES + ("antmaze-",)) and name.endswith("-v0") and "singletask" not in name:
        return name
    raise UnknownDatasetError(
        f"unknown dataset '{name}'. Regenerable datasets: {supported_names()} (antmaze with a trained ant "
        "expert); other antmaze-*, humanoidmaze-* and antsoccer-* datasets load from official files only."
    )


def parse_env_id(env_id: str) -> tuple[str, int | None]:
    """Split a single-task env id into (dataset name, task number or None for the default task)."""
    match = _SINGLETASK.match(env_id)
    if match is None:
        raise UnknownDatasetError(
            f"'{env_id}' is not an OGBench single-task id; expected e.g. 'cube-single-play-singletask-task2-v0'"
        )
    dataset = f"{match['base']}-{match['version']}"
    check_dataset_name(dataset)
    return dataset, (int(match["task"]) if match["task"] else None)


def env_id_for_task(env_id: str, task: int) -> str:
    """The id of task ``task`` in the same family as ``env_id``."""
    dataset, _ = parse_env_id(env_id)
    base, version = dataset.rsplit("-", 1)
    return f"{base}-singletask-task{task}-{version}"


def env_family(env_id_or_dataset: str) -> str:
    """'cube-single-play-singletask-task2-v0' -> 'cube-single-play'; also accepts dataset names."""
    name = env_id_or_dataset
    if "singletask" in name:
        name, _ = parse_env_id(name)
    return name.rsplit("-", 1)[0]
