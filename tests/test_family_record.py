"""The family record (qflow.data.registry.Family) and the configs composed from it (qflow.envs)."""

import dataclasses
import json
from pathlib import Path

import pytest

from qflow.agents import AGENTS
from qflow.agents.base import PRESETS
from qflow.data.registry import (REGENERABLE, UnknownDatasetError, env_family, env_id_for_task, family_of,
                                 parse_env_id)
from qflow.envs import ENV_TABLE, agent_config

# agent_config(agent, env, preset).as_dict() for every agent, preset and a task-1 id of every family in
# ENV_TABLE and a few without a row, as the code gave them before the discount moved into the family record
# ("None": agent_config without an environment). Rows: [env, agent, preset, config].
BEFORE = json.loads((Path(__file__).parent / "data" / "family_record" / "configs_before.json").read_text())


def _has_row(env_id: str, agent: str) -> bool:
    name = family_of(env_id).name
    return any(name.startswith(k) and agent in ENV_TABLE[k] for k in ENV_TABLE)


def test_the_frozen_configs_cover_every_agent_preset_and_table_family():
    envs = {env for env, _, _, _ in BEFORE if env != "None"}
    assert {a for _, a, _, _ in BEFORE} == set(AGENTS) and {p for _, _, p, _ in BEFORE} == set(PRESETS)
    assert all(any(family_of(e).name.startswith(k) for e in envs) for k in ENV_TABLE)
    assert {family_of(d).dataset for d in REGENERABLE} <= {family_of(e).dataset for e in envs}


# Keys every config gained after the fixture was frozen, with the values a config then gets.
ADDED_SINCE = {"target_update": "pre", "freeze": ""}
ADDED_SINCE_FOR = {"qflow": {"shared_draw": True}}


def test_configs_are_the_ones_given_before_the_discount_moved():
    changed = set()
    for env, agent, preset, before in BEFORE:
        now = json.loads(json.dumps(agent_config(agent, None if env == "None" else env, preset).as_dict()))
        added = {**ADDED_SINCE, **ADDED_SINCE_FOR.get(agent, {})}
        assert {k: now.pop(k) for k in added} == added, (env, agent)
        if now != before:
            assert {k for k in now if now[k] != before.get(k)} == {"discount"} and now.keys() == before.keys()
            assert now["discount"] == family_of(env).discount and not _has_row(env, agent), (env, agent)
            changed.add((family_of(env).name, agent))
    # The one intended change: agents without a row of their own (flow_bc, sac) now train at their family's
    # discount, as every other agent does, where that is not the 0.99 default.
    long_horizon = {"antmaze-giant-navigate", "antsoccer-arena-navigate", "humanoidmaze-medium-navigate",
                    "humanoidmaze-large-navigate"}
    assert changed == {(f, a) for f in long_horizon for a in ("flow_bc", "sac")}


def test_every_agent_gets_the_family_discount_and_rows_hold_only_agent_knobs():
    assert not [(k, a) for k, rows in ENV_TABLE.items() for a, row in rows.items() if "discount" in row]
    for agent in AGENTS:
        assert agent_config(agent, "antmaze-giant-navigate-singletask-task3-v0", "cpu").discount == 0.995
        assert agent_config(agent, "cube-single-play-singletask-task3-v0", "cpu").discount == 0.99
    overridden = agent_config("fql", "antmaze-giant-navigate-singletask-task1-v0", "cpu", ["discount=0.9"])
    assert overridden.discount == 0.9  # --set still wins over the environment


def test_family_names_datasets_and_task_ids():
    family = family_of("cube-single-play-singletask-task2-v0")
    assert family == family_of("cube-single-play-v0") == family_of("cube-single-play")
    assert (family.name, family.dataset, family.tasks) == ("cube-single-play", "cube-single-play-v0", (1, 2, 3, 4, 5))
    assert family.env_id(4) == "cube-single-play-singletask-task4-v0"
    assert family.env_id() == "cube-single-play-singletask-v0"
    assert [parse_env_id(family.env_id(t)) for t in family.tasks] == [("cube-single-play-v0", t) for t in range(1, 6)]
    assert family.recipe is REGENERABLE["cube-single-play-v0"] and family.horizon == 1001
    with pytest.raises(dataclasses.FrozenInstanceError):
        family.discount = 0.5  # a fact of the environment: one value for every run on it
    giant = family_of("pointmaze-giant-navigate-singletask-v0")
    assert giant.horizon == 2001 and giant.discount == 0.99
    official = family_of("humanoidmaze-medium-navigate-singletask-task1-v0")
    assert official.recipe is None and official.horizon is None and official.discount == 0.995
    assert env_id_for_task("scene-play-singletask-v0", 5) == "scene-play-singletask-task5-v0"
    assert env_family("scene-play-v0") == env_family("scene-play-singletask-task1-v0") == "scene-play"


@pytest.mark.parametrize("name, message", [
    ("cube-sextuple-play", "unknown dataset 'cube-sextuple-play-v0' (from 'cube-sextuple-play'): pass one of"),
    ("cube-sextuple-play-singletask-task1-v0", "unknown dataset 'cube-sextuple-play-v0'"),
    ("cube-single-play-singletask-task6-v0", "pass a task in 1-5: cube-single-play has no task 6"),
    ("cube-single-play-singletask-task0-v0", "not an OGBench single-task id"),
    ("cube-single-play-singletask", "not an OGBench single-task id"),
])
def test_unknown_families_and_tasks_are_one_line(name, message):
    with pytest.raises(UnknownDatasetError) as err:
        family_of(name)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_task_outside_the_family_is_refused():
    with pytest.raises(UnknownDatasetError, match="pass a task in 1-5: scene-play has no task 7"):
        family_of("scene-play").env_id(7)
    with pytest.raises(UnknownDatasetError, match="pass a task in 1-5"):
        env_id_for_task("scene-play-singletask-task1-v0", 0)
