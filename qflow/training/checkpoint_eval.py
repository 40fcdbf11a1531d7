"""`qflow eval`: rebuild a run's agent from run.json, load its checkpoint, evaluate tasks."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp

from qflow.agents import get_agent
from qflow.agents.base import config_from_record
from qflow.data.registry import family_of
from qflow.evaluation.evaluate import Evaluator, act
from qflow.training import checkpoint, record
from qflow.training.record import RunRecord
from qflow.utils import atomic_write_json


def load_agent(run_dir: Path):
    info_path = run_dir / record.RUN_INFO
    if not info_path.exists():
        raise FileNotFoundError(f"{info_path} not found: is {run_dir} a single-seed run directory of qflow train?")
    info = RunRecord.read(info_path, fix="it records what the run is, so the checkpoint beside it cannot be "
                                         "evaluated without it")
    if not (run_dir / checkpoint.CHECKPOINT).exists():
        raise record.CheckpointError(f"{run_dir} has no checkpoint yet (training writes one every "
                                         f"--checkpoint-every steps); evaluate it after the first one")
    agent_cls, config_cls = get_agent(info["agent"])
    config = config_from_record(config_cls, info["config"])
    env = Evaluator(info["env"], 1).envs[0]
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    template = agent_cls.create(info["seed"], obs_dim, action_dim, config)
    agent, step = checkpoint.load(run_dir, template)
    return agent, step, info


def _task_ids(env_id: str, task: str | None) -> list[str]:
    """The ids ``--task`` names: the run's own (None), one task of its family, or all of them ("all")."""
    if task is None:
        return [env_id]
    family = family_of(env_id)
    if task == "all":
        return [family.env_id(n) for n in family.tasks]
    if task.isdigit() and int(task) in family.tasks:
        return [family.env_id(int(task))]
    raise ValueError(f"--task must be {family.tasks[0]}-{family.tasks[-1]} or 'all', got {task!r}")


def evaluate_run(run_dir: Path, episodes: int, task: str | None, seed: int, report=print,
                 progress: bool = True) -> dict:
    """Evaluate a run's checkpoint; each result is reported (printed) before it is written to
    RUN_DIR/eval_tasks.json, so a run directory that cannot be written loses nothing."""
    info_path = run_dir / record.RUN_INFO
    if info_path.exists():  # a bad --task is refused before anything is loaded
        _task_ids(RunRecord.read(info_path)["env"], task)
    agent, step, info = load_agent(run_dir)
    env_ids = _task_ids(info["env"], task)
    keys = iter(jax.random.split(jax.random.PRNGKey(seed), 1_000_000))
    results = {}
    for env_id in env_ids:
        evaluator = Evaluator(env_id, min(10, episodes))
        results[env_id] = {**evaluator.run(lambda o: act(agent, jnp.asarray(o), next(keys)), episodes, seed,
                                           desc=env_id.replace("-singletask", "") if progress else None),
                           "checkpoint_step": step}
        r = results[env_id]
        report(f"{env_id}: success {r['success']:.3f} over {r['episodes']} episodes (checkpoint step {step})")
    out = run_dir / "eval_tasks.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    atomic_write_json(out, {**previous, **results})
    return results
