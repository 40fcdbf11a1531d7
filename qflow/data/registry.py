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

# The task number is checked against the family's tasks (Family.tasks), not here.
_SINGLETASK = re.compile(r"^(?P<base>.+)-singletask(?:-task(?P<task>[1-9]\d*))?-(?P<version>v\d+)$")
_VERSION = re.compile(r"-v\d+$")

TASKS = (1, 2, 3, 4, 5)  # every OGBench single-task family scores five evaluation tasks
DEFAULT_DISCOUNT = 0.99
# The discount (gamma) of a family, for every agent trained on it: 0.995 on the long-horizon families, as in
# the Q-Flow paper's and the FQL paper's per-environment tables (qflow/envs.py's rows for both agreed), else 0.99.
DISCOUNTS = {
    "antmaze-giant-navigate": 0.995,
    "antsoccer-arena-navigate": 0.995,
    "humanoidmaze-medium-navigate": 0.995,
    "humanoidmaze-large-navigate": 0.995,
}


class UnknownDatasetError(QFlowError, ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Family:
    """An OGBench single-task family: its tasks share one dataset, one discount and (if any) one recipe."""

    name: str  # "cube-single-play"
    dataset: str  # "cube-single-play-v0"
    recipe: Recipe | None  # None: loadable from official files only
    discount: float  # the environment's gamma, the same for every agent
    tasks: tuple[int, ...] = TASKS

    @property
    def horizon(self) -> int | None:
        """Steps in one episode of the dataset (the generator's time limit); None without a recipe."""
        return self.recipe.episode_rows if self.recipe else None

    def env_id(self, task: int | None = None) -> str:
        """'cube-single-play-singletask-task2-v0' for task 2; the default-task id for None."""
        version = self.dataset.rsplit("-", 1)[1]
        if task is None:
            return f"{self.name}-singletask-{version}"
        if task not in self.tasks:
            raise UnknownDatasetError(f"pass a task in {_span(self.tasks)}: {self.name} has no task {task!r}")
        return f"{self.name}-singletask-task{task}-{version}"


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


def _span(tasks) -> str:
    return f"{tasks[0]}-{tasks[-1]}"  # tasks are numbered from 1 without gaps


def _not_single_task(name: str) -> UnknownDatasetError:
    return UnknownDatasetError(f"'{name}' is not an OGBench single-task id; expected e.g. "
                               "'cube-single-play-singletask-task2-v0'")


def family_of(name: str) -> Family:
    """The family named by a family ('cube-single-play'), its dataset ('cube-single-play-v0') or one of its
    single-task ids ('cube-single-play-singletask-task2-v0'). A name without a version means v0."""
    match = _SINGLETASK.match(name)
    if match:
        dataset = f"{match['base']}-{match['version']}"
    elif "-singletask" in name:
        raise _not_single_task(name)
    else:
        dataset = name if _VERSION.search(name) else f"{name}-v0"
    try:
        check_dataset_name(dataset)
    except UnknownDatasetError:
        known = ", ".join(n.rsplit("-", 1)[0] for n in sorted(REGENERABLE))
        source = f" (from '{name}')" if name != dataset else ""
        raise UnknownDatasetError(
            f"unknown dataset '{dataset}'{source}: pass one of the families {known} (or its dataset or single-task "
            "id); other antmaze-*, humanoidmaze-* and antsoccer-* datasets load from official files only") from None
    base = dataset.rsplit("-", 1)[0]
    family = Family(base, dataset, REGENERABLE.get(dataset), DISCOUNTS.get(base, DEFAULT_DISCOUNT))
    if match and match["task"] and int(match["task"]) not in family.tasks:
        raise UnknownDatasetError(f"pass a task in {_span(family.tasks)}: {family.name} has no task {match['task']} "
                                  f"('{name}')")
    return family


def parse_env_id(env_id: str) -> tuple[str, int | None]:
    """Split a single-task env id into (dataset name, task number or None for the default task)."""
    match = _SINGLETASK.match(env_id)
    if match is None:
        raise _not_single_task(env_id)
    return family_of(env_id).dataset, (int(match["task"]) if match["task"] else None)


def env_id_for_task(env_id: str, task: int) -> str:
    """The id of task ``task`` in the same family as ``env_id``."""
    return family_of(env_id).env_id(task)


def env_family(env_id_or_dataset: str) -> str:
    """'cube-single-play-singletask-task2-v0' -> 'cube-single-play'; also accepts dataset names."""
    return family_of(env_id_or_dataset).name
