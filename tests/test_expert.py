"""The ant expert (SAC on online-ant-xy-v0) and antmaze generation with it."""

import json

import gymnasium
import numpy as np
import pytest

from qflow.agents.base import build_config
from qflow.agents.sac import SACAgent, SACConfig
from qflow.data.replay import load_segments
from qflow.training import expert as expert_mod
from qflow.training.expert import EXPERT_FILE, STATE, Expert, save_expert, train_expert
from qflow.training.settings import ExpertSettings

pytestmark = pytest.mark.e2e

SMALL = ExpertSettings(steps=300, random_steps=100, eval_every=10_000, eval_episodes=1, log_every=50,
                       checkpoint_every=100, overrides=("target_entropy_scale=-0.5", "batch_size=32"))


class CrashAfter(gymnasium.Wrapper):
    """Raises (like a killed process) at the ``limit``-th env step."""

    def __init__(self, env, limit):
        super().__init__(env)
        self.limit, self.count = limit, 0

    def step(self, action):
        self.count += 1
        if self.count == self.limit:
            raise KeyboardInterrupt("simulated kill")
        return self.env.step(action)


def read_state(run_dir):
    with np.load(run_dir / STATE) as z:
        meta = json.loads(bytes(z["meta"]).decode())
    _, rows = load_segments(run_dir / "replay", meta["segments"], meta["env_step"], SMALL.steps)
    return meta, rows


def test_expert_training_resumes_with_every_checkpointed_transition(tmp_path, monkeypatch):
    stub = {"return": 0.0, "return_std": 0.0, "length": 1.0, "speed": 0.0, "episodes": 1}
    monkeypatch.setattr(expert_mod, "run_episodes", lambda *a, **k: dict(stub))  # evaluation is tested below
    real_env = expert_mod.make_ant_xy_env
    monkeypatch.setattr(expert_mod, "make_ant_xy_env", lambda: CrashAfter(real_env(), limit=250))
    with pytest.raises(KeyboardInterrupt):
        train_expert(tmp_path, SMALL, progress=False)
    meta, before = read_state(tmp_path)
    assert meta["env_step"] == 200 and len(before["observations"]) == 200

    monkeypatch.setattr(expert_mod, "make_ant_xy_env", real_env)
    summary = train_expert(tmp_path, SMALL, progress=False)
    meta, after = read_state(tmp_path)
    assert summary["env_steps"] == meta["env_step"] == 300 and len(after["observations"]) == 300
    for key in before:  # the transitions collected before the kill survive unchanged
        np.testing.assert_array_equal(after[key][:200], before[key])
    steps = [int(r["step"]) for r in expert_mod.CSVLog(tmp_path / "metrics.csv", after_step=10**9).read()]
    assert steps == sorted(set(steps)) and steps[-1] == 300  # no step logged twice across the resume
    with pytest.raises(ValueError, match="other settings"):
        train_expert(tmp_path, ExpertSettings(steps=301, overrides=SMALL.overrides), progress=False)

    expert = Expert(tmp_path / EXPERT_FILE)
    actions = expert.act(np.random.default_rng(0).normal(size=(5, 29)))
    assert actions.shape == (5, 8) and np.all(np.abs(actions) < 1)
    assert expert.record()["env_steps"] == 300


def test_run_episodes_reports_speed_along_the_direction():
    env = expert_mod.make_ant_xy_env()
    still = expert_mod.run_episodes(env, lambda obs: np.zeros(8), episodes=1, seed=0)
    assert still["length"] == 1000  # a motionless ant neither falls nor leaves the time limit early
    assert abs(still["speed"]) < 0.05 and still["speed"] == pytest.approx(still["return"] / (1000 * env.unwrapped.dt))


def test_antmaze_generation_with_an_untrained_expert_loads_through_ogbench(tmp_path):
    import ogbench

    from qflow.data.prepare import prepare, sha256

    config = build_config(SACConfig, "tiny")
    agent = SACAgent.create(0, 29, 8, config)
    path = tmp_path / EXPERT_FILE
    save_expert(path, agent, {"config": config.as_dict(), "obs_dim": 29, "action_dim": 8, "env_steps": 0})
    np.testing.assert_allclose(Expert(path).act(np.ones((2, 29))), agent.mean_actions(np.ones((2, 29), np.float32)),
                               rtol=1e-6)

    files = prepare("antmaze-large-navigate-v0", episodes=2, data_dir=tmp_path / "data", expert=path,
                    download=False, workers=1, progress=False)
    meta = files.metadata()
    assert meta["origin"] == "regenerated" and meta["recipe"]["noise"] == 0.2
    assert meta["expert"]["sha256"] == sha256(path)
    _, train, val = ogbench.make_env_and_datasets("antmaze-large-navigate-v0", dataset_dir=str(files.directory))
    assert train["observations"].shape == (2 * 1000, 29) and val["observations"].shape == (1000, 29)
    assert np.all(np.abs(train["actions"]) <= 1)
    # noise 0.2 around a near-zero untrained expert: clipped Gaussian actions with about that spread
    assert 0.15 < train["actions"].std() < 0.25

    from qflow.data.inspect import inspect_dataset

    stats = inspect_dataset("antmaze-large-navigate-v0", tmp_path / "inspect", episodes=2, data_dir=tmp_path / "data")
    assert stats["rows"] == 2002 and sorted(stats["tasks"]) == [f"task{i}" for i in range(1, 6)]
    assert all(0 <= t["success_fraction"] <= 1 for t in stats["tasks"].values()) and stats["free_cells_visited"] > 0
    assert (tmp_path / "inspect" / "antmaze-large-navigate-v0_xy.png").stat().st_size > 10_000
