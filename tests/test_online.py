"""Online fine-tuning: replay buffer, reward/mask convention, a CLI run, resume after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time

import gymnasium
import jax
import numpy as np
import pytest

from qflow.cli import main
from qflow.data.replay import KEYS, ReplayBuffer, load_segments, prune_segments, save_segment
from qflow.training import online
from tests.helpers import ENV, rows

pytestmark = pytest.mark.e2e

DIMS = {"observations": 2, "actions": 2, "rewards": None, "next_observations": 2, "masks": None}


def make_rows(values):
    """Transitions whose every field is filled with the given value (one row per value)."""
    v = np.asarray(values, np.float32)
    return {k: v if d is None else np.repeat(v[:, None], d, 1) for k, d in DIMS.items()}


insert = jax.jit(lambda buf, row: buf.insert(row))


def test_replay_wraps_over_oldest_online_rows_and_keeps_offline_rows():
    buf = ReplayBuffer.create(make_rows([1, 2, 3]), capacity=6)
    assert (buf.offline_size, buf.capacity, buf.online_capacity, int(buf.size())) == (3, 6, 3, 3)
    for i in range(5):
        buf = insert(buf, {k: v[0] for k, v in make_rows([100 + i]).items()})
    # inserts 0..4 land on rows 3, 4, 5, 3, 4: inserts 0 and 1 were overwritten, offline rows untouched
    np.testing.assert_array_equal(np.asarray(buf.data["rewards"]), [1, 2, 3, 103, 104, 102])
    np.testing.assert_array_equal(np.asarray(buf.data["observations"])[:, 1], [1, 2, 3, 103, 104, 102])
    assert int(buf.count) == 5 and int(buf.size()) == 6
    np.testing.assert_array_equal(buf.online_rows()["masks"], [102, 103, 104])  # oldest first
    with pytest.raises(ValueError, match="not held"):
        buf.rows(0, 5)

    # the default capacity is offline size + online rows: nothing is overwritten
    assert ReplayBuffer.create(make_rows([1, 2, 3]), online_rows=4).capacity == 7
    with pytest.raises(ValueError, match="--buffer-size must exceed the offline dataset"):
        ReplayBuffer.create(make_rows([1, 2, 3]), capacity=3)


def test_replay_samples_only_filled_rows():
    buf = ReplayBuffer.create(make_rows([1, 2, 3]), capacity=10)
    sample = jax.jit(lambda b, k: b.sample(k, 512))
    assert set(np.asarray(sample(buf, jax.random.PRNGKey(0))["rewards"]).tolist()) == {1, 2, 3}
    buf = insert(buf, {k: v[0] for k, v in make_rows([7]).items()})
    batch = sample(buf, jax.random.PRNGKey(1))
    assert set(np.asarray(batch["rewards"]).tolist()) == {1, 2, 3, 7}  # the new row is drawn, empty rows never
    np.testing.assert_array_equal(batch["observations"][:, 0], batch["rewards"])  # rows stay whole


def test_replay_segments_restore_the_online_rows(tmp_path):
    buf = ReplayBuffer.create(make_rows([1, 2, 3]), capacity=7)  # online capacity 4
    segments, saved = [], 0
    for i in range(10):
        buf = insert(buf, {k: v[0] for k, v in make_rows([100 + i]).items()})
        if i % 3 == 2 or i == 9:  # checkpoints after inserts 3, 6, 9, 10
            written = save_segment(tmp_path, buf, saved)
            segments.append(written)
            saved = int(buf.count)
            segments = [s for s in segments if s[1] > saved - buf.online_capacity]
            prune_segments(tmp_path, segments)
    assert segments == [(6, 9), (9, 10)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg_0000000006_0000000009.npz",
                                                          "seg_0000000009_0000000010.npz"]
    start, held = load_segments(tmp_path, segments, 10, buf.online_capacity)
    assert start == 6 and held["rewards"].tolist() == [106, 107, 108, 109]
    fresh = ReplayBuffer.create(make_rows([1, 2, 3]), capacity=7).with_rows(start, held)
    for k in KEYS:
        np.testing.assert_array_equal(np.asarray(fresh.data[k]), np.asarray(buf.data[k]))
    assert int(fresh.count) == 10
    with pytest.raises(ValueError, match="hold online inserts only up to"):
        load_segments(tmp_path, [(9, 10)], 10, 4)
    # a segment write killed before its rename leaves its temporary file: the next prune takes it away, and only it
    (tmp_path / ".seg_0000000010_0000000012.npz.k3x9q.tmp").write_bytes(b"half a segment")
    (tmp_path / "notes.seg.tmp").write_text("the user's")
    prune_segments(tmp_path, segments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.seg.tmp", "seg_0000000006_0000000009.npz",
                                                          "seg_0000000009_0000000010.npz"]


def test_real_env_reward_and_termination_match_the_dataset_relabel():
    """The loader relabels reward = success(s) - 1 and mask = 1 - success(s) from the state s before the
    action; online transitions take the env's reward and mask = 1 - terminated, so the env must judge
    success on s too (OGBench >= 1.2: success_timing='pre')."""
    from qflow.data.loading import make_env

    env = make_env(ENV)
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(np.zeros(2, np.float32))
    assert (reward, terminated, info["success"]) == (-1.0, False, 0.0)
    env.unwrapped.set_xy(np.asarray(env.unwrapped.cur_goal_xy))  # now s is at the goal
    _, reward, terminated, truncated, info = env.step(np.ones(2, np.float32))  # and the action leaves it
    assert (reward, terminated, info["success"]) == (0.0, True, 1.0)
    assert env.spec.max_episode_steps == 1000  # truncation is the TimeLimit wrapper's, never a termination


class FakeEnv:
    """obs = [episode, t]. Episode kinds cycle: 0 succeeds at t=3 (terminated), 1 hits the time limit at
    t=5 (truncated), 2 succeeds exactly at the time limit t=4 (terminated and truncated)."""

    observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gymnasium.spaces.Box(-1, 1, (2,), np.float32)
    LENGTH = {0: 3, 1: 5, 2: 4}

    def __init__(self):
        self.episode, self.t = -1, 0

    def reset(self, seed=None):
        self.episode, self.t = self.episode + 1, 0
        return np.array([self.episode, 0.0]), {}

    def step(self, action):
        assert np.all(np.abs(action) <= 1)
        self.t += 1
        kind = self.episode % 3
        end = self.t == self.LENGTH[kind]
        terminated = end and kind in (0, 2)
        truncated = end and kind in (1, 2)
        reward = 0.0 if terminated else -1.0
        return np.array([self.episode, float(self.t)]), reward, terminated, truncated, {"success": float(terminated)}


def online_args(data_dir, run_dir, *extra):
    return ["train", "--env", ENV, "--dataset-episodes", "3", "--data-dir", str(data_dir), "--run-dir", str(run_dir),
            "--steps", "0", "--eval-every", "1000000", "--eval-episodes", "1", "--eval-envs", "1",
            "--log-every", "100", "--checkpoint-every", "100", "--chunk", "50", "--no-progress",
            "--set", "actor_dims=16,16", "--set", "critic_dims=16,16", "--set", "batch_size=16",
            "--set", "flow_steps=2", *extra]


def test_masks_zero_only_at_success_and_truncation_bootstraps(data_dir, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(online, "make_env", lambda env_id: FakeEnv())
    run = tmp_path / "fake"
    assert main(online_args(data_dir, run, "--online-steps", "24", "--checkpoint-every", "12")) == 0
    meta, got = online.read_checkpoint(run)
    assert meta["env_step"] == 24 and len(got["rewards"]) == 24

    expected = {k: [] for k in ("observations", "next_observations", "rewards", "masks")}
    for e in range(6):
        kind, length = e % 3, FakeEnv.LENGTH[e % 3]
        for t in range(1, length + 1):
            last = t == length
            expected["observations"].append([e, t - 1])
            expected["next_observations"].append([e, t])  # the final observation, not the next reset's
            expected["rewards"].append(0.0 if last and kind != 1 else -1.0)
            expected["masks"].append(0.0 if last and kind != 1 else 1.0)  # truncation alone keeps mask 1
    for k, v in expected.items():
        np.testing.assert_array_equal(got[k], np.asarray(v, np.float32), err_msg=k)
    assert np.all(np.abs(got["actions"]) <= 1) and np.std(got["actions"]) > 0  # stochastic policy actions

    episodes = rows(run / "online.csv")
    assert [int(r["length"]) for r in episodes] == [3, 5, 4, 3, 5, 4]
    assert [float(r["success"]) for r in episodes] == [1, 0, 1, 1, 0, 1]
    assert [float(r["return"]) for r in episodes] == [-2, -5, -3, -2, -5, -3]
    assert [int(r["step"]) for r in episodes] == [3, 8, 12, 15, 20, 24]
    summary = json.loads((run / "summary.json").read_text())["online"]
    assert summary["episodes"] == 6 and summary["episode_success_last100"] == pytest.approx(4 / 6)
    # a rerun asking for fewer online steps than the run holds is refused, not relabelled
    assert main(online_args(data_dir, run, "--online-steps", "12", "--checkpoint-every", "12")) == 2
    assert json.loads((run / "summary.json").read_text())["online"]["env_steps"] == 24


def test_online_smoke_run_through_cli(data_dir, tmp_path, capsys):  # noqa: F811
    run = tmp_path / "run"
    args = online_args(data_dir, run, "--steps", "100", "--online-steps", "1000", "--eval-every", "500")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "env steps/s" in out and "+ 1000 online env steps" in out
    summary = json.loads((run / "summary.json").read_text())
    o = summary["online"]
    assert o["env_steps"] == 1000 and o["buffer_rows"] == 3000 + 1000 and o["offline_rows"] == 3000
    t = o["throughput"]
    assert t["env_steps_per_s"] > 0 and t["timed_steps"] == 999
    assert t["share_env"] + t["share_agent"] + t["share_other"] == pytest.approx(1.0)
    assert [int(r["step"]) for r in rows(run / "eval.csv")] == [100, 500, 1000, 1100]
    assert [int(r["step"]) for r in rows(run / "metrics.csv")] == list(range(100, 1101, 100))
    assert all(np.isfinite(float(r["loss_q"])) for r in rows(run / "metrics.csv"))
    episodes = rows(run / "online.csv")  # pointmaze: 1000-step time limit, so at least one episode ended
    assert episodes and all(int(r["step"]) == 100 + int(r["env_step"]) for r in episodes)
    assert sum(int(r["length"]) for r in episodes) <= 1000
    meta, held = online.read_checkpoint(run)
    assert meta["step"] == 1100 and len(held["masks"]) == 1000
    assert set(np.unique(held["rewards"])) <= {-1.0, 0.0} and set(np.unique(held["masks"])) <= {0.0, 1.0}


def test_online_errors_are_one_clear_line(data_dir, tmp_path, capsys):  # noqa: F811
    assert main(online_args(data_dir, tmp_path / "a", "--seeds", "0,1", "--online-steps", "10")) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "--online-steps runs one seed" in err[0] and "--seed S" in err[0]
    assert main(online_args(data_dir, tmp_path / "b", "--online-steps", "10", "--buffer-size", "100")) == 2
    assert "--buffer-size must exceed the offline dataset (3000 transitions)" in capsys.readouterr().err


def test_sigkill_during_online_then_rerun_keeps_collected_transitions(data_dir, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    args = [sys.executable, "-m", "qflow.cli", *online_args(data_dir, run, "--online-steps", "100000")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if (run / online.STATE).exists() and online.read_checkpoint(run)[0]["env_step"] >= 200:
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    meta, before = online.read_checkpoint(run)
    killed_at = meta["env_step"]
    assert 200 <= killed_at < 100000, "no online checkpoint at env step >= 200 before the kill"
    assert len(before["rewards"]) == killed_at

    final = killed_at + 150
    assert main(online_args(data_dir, run, "--online-steps", str(final))) == 0
    meta, after = online.read_checkpoint(run)
    assert meta["env_step"] == final and len(after["rewards"]) == final  # the buffer grew from what was saved
    for k in KEYS:
        np.testing.assert_array_equal(after[k][:killed_at], before[k])  # collected transitions kept as they were
    summary = json.loads((run / "summary.json").read_text())
    assert summary["online"]["env_steps"] == final and summary["online"]["buffer_rows"] == 3000 + final
    steps = [int(r["step"]) for r in rows(run / "metrics.csv")]
    assert steps == sorted(set(steps)) and steps[-1] == final  # no step logged twice
    assert sorted(p.name for p in (run / "replay").iterdir())[0].startswith("seg_0000000000_")
