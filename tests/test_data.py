"""Regenerated datasets load through OGBench's own loader and agree with the environment."""

import json
import shutil

import numpy as np
import ogbench
import pytest

from qflow.data import prepare as prep
from qflow.data.prepare import DatasetError, prepare, sidecar
from qflow.data.registry import UnknownDatasetError, parse_env_id

pytestmark = pytest.mark.e2e

CASES = {
    "cube-single-play-v0": ("cube-single-play-singletask-task1-v0", 28, 5),
    "pointmaze-medium-navigate-v0": ("pointmaze-medium-navigate-singletask-task1-v0", 2, 2),
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    files = {name: prepare(name, episodes=2, seed=3, data_dir=root, workers=1, download=False, progress=False)
             for name in CASES}
    return root, files


@pytest.mark.parametrize("name", sorted(CASES))
def test_regenerated_files_load_through_ogbench(data_root, name):
    _, all_files = data_root
    files = all_files[name]
    env_id, obs_dim, act_dim = CASES[name]
    assert files.directory.name == "episodes2-seed3"  # never the full-size location
    raw = np.load(files.train)
    assert raw["observations"].dtype == np.float32 and raw["terminals"].dtype == bool
    assert raw["observations"].shape == (2 * 1001, obs_dim)
    # Terminals mark exactly the last row of each episode.
    assert np.flatnonzero(raw["terminals"]).tolist() == [1000, 2001]

    env, train, val = ogbench.make_env_and_datasets(env_id, dataset_dir=str(files.directory), add_info=True)
    assert set(train) >= {"observations", "actions", "next_observations", "terminals", "rewards", "masks"}
    assert train["observations"].shape == (2000, obs_dim) and train["actions"].shape == (2000, act_dim)
    assert val["observations"].shape == (1000, obs_dim)  # max(1, 2 // 10) validation episode
    # next_observations[t] is observations[t + 1] inside an episode.
    obs = raw["observations"]
    np.testing.assert_array_equal(train["next_observations"][:1000], obs[1:1001])
    np.testing.assert_array_equal(train["next_observations"][1000:], obs[1002:2002])
    np.testing.assert_array_equal(train["masks"], 1.0 - (train["rewards"] == 0))

    # The relabelled reward equals the environment's own reward for the replayed state.
    env.reset(seed=0)
    unwrapped = env.unwrapped
    rows = np.linspace(0, 1999, 40).astype(int)
    if np.any(train["rewards"] == 0):
        rows = np.concatenate([rows, np.flatnonzero(train["rewards"] == 0)[:10]])
    for t in rows:
        unwrapped.set_state(train["qpos"][t].astype(np.float64), train["qvel"][t].astype(np.float64))
        if hasattr(unwrapped, "compute_reward"):
            own = unwrapped.compute_reward()
        else:
            own = float(unwrapped.compute_success()) - 1.0
        assert own == pytest.approx(train["rewards"][t]), f"row {t}"


def test_metadata_sidecars(data_root):
    _, files = data_root
    meta = json.loads(sidecar(files["cube-single-play-v0"].train).read_text())
    assert meta["origin"] == "regenerated" and meta["seed"] == 3 and meta["episodes"] == 2
    assert meta["recipe"]["noise"] == 0.1 and meta["versions"]["ogbench"]
    assert meta["machine"]["cpu"] and meta["machine"]["arch"]  # bytes can differ between CPUs: say which made it
    assert meta["sha256"] == prep.sha256(files["cube-single-play-v0"].train)
    assert json.loads(sidecar(files["cube-single-play-v0"].val).read_text())["episodes"] == 1


def test_worker_count_does_not_change_the_data(tmp_path, data_root):
    _, files = data_root
    again = prepare("pointmaze-medium-navigate-v0", episodes=2, seed=3, data_dir=tmp_path, workers=2,
                    download=False, progress=False)
    a, b = np.load(files["pointmaze-medium-navigate-v0"].train), np.load(again.train)
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])


def test_truncated_file_gives_clear_error(tmp_path, data_root):
    _, files = data_root
    src = files["pointmaze-medium-navigate-v0"]
    target = tmp_path / "regenerated" / "episodes2-seed3"
    shutil.copytree(src.directory, target)
    path = target / src.train.name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DatasetError) as err:
        prepare(src.name, episodes=2, seed=3, data_dir=tmp_path, download=False, progress=False)
    assert str(path) in str(err.value) and "qflow data prepare pointmaze-medium-navigate-v0" in str(err.value)
    assert path.exists()  # the user's file is never deleted


def test_files_without_metadata_are_official_only_on_the_users_word(tmp_path, data_root):
    _, files = data_root
    src = files["pointmaze-medium-navigate-v0"]
    for p in (src.train, src.val):
        shutil.copy(p, tmp_path / p.name)  # files placed in the data dir with no sidecars
    with pytest.raises(DatasetError, match="origin is unknown.*--assume-official"):
        prepare(src.name, data_dir=tmp_path, download=False, progress=False)
    assert not sidecar(tmp_path / src.train.name).exists()  # nothing was recorded on a guess
    got = prepare(src.name, data_dir=tmp_path, download=False, progress=False, assume_official=True)
    assert got.origin == "official" and got.directory == tmp_path
    assert json.loads(sidecar(tmp_path / src.train.name).read_text())["origin"] == "official"


def test_a_deleted_sidecar_never_relabels_regenerated_data(tmp_path, data_root):
    _, files = data_root
    src = files["pointmaze-medium-navigate-v0"]
    root = tmp_path / "copy"
    shutil.copytree(src.directory, root / src.directory.relative_to(src.directory.parents[1]))
    directory = root / src.directory.relative_to(src.directory.parents[1])
    val_meta = sidecar(directory / src.val.name).read_text()
    sidecar(directory / src.train.name).unlink()
    for assume in (False, True):
        with pytest.raises(DatasetError, match="is missing while its partner's exists"):
            prepare(src.name, episodes=2, seed=3, data_dir=root, download=False, progress=False,
                    assume_official=assume)
    assert sidecar(directory / src.val.name).read_text() == val_meta  # the partner's sidecar is untouched
    # both sidecars gone: --assume-official is refused where regenerations live, however the dir is named
    sidecar(directory / src.val.name).unlink()
    for data_dir, episodes, seed in ((root, 2, 3), (directory, None, 0)):
        with pytest.raises(DatasetError, match="cannot be OGBench's official files; move them away"):
            prepare(src.name, episodes=episodes, seed=seed, data_dir=data_dir, download=False, progress=False,
                    assume_official=True)
    assert not sidecar(directory / src.train.name).exists()  # nothing recorded on a guess


def test_killed_generation_resumes_from_finished_shards(tmp_path, monkeypatch):
    monkeypatch.setattr(prep, "SHARD_EPISODES", 1)
    name = "pointmaze-medium-navigate-v0"
    directory, _ = prep.dataset_dir(name, 3, 5, tmp_path)
    partial = directory / f".{name}.partial"
    partial.mkdir(parents=True)
    prep.atomic_write_json(partial / "job.json", {"name": name, "seed": 5, "episodes": 3, "shard": 1})
    prep._make_shard((name, 5, 0, 1, str(partial / "shard-000000.npz"), None))  # the shard done before the kill
    (partial / ".shard-000001.npz.abc.tmp").write_bytes(b"half")  # a write that was cut off
    resumed = prepare(name, episodes=3, seed=5, data_dir=tmp_path, workers=1, download=False, progress=False)
    assert not partial.exists()
    fresh = prepare(name, episodes=3, seed=5, data_dir=tmp_path / "fresh", workers=1, download=False, progress=False)
    a, b = np.load(resumed.train), np.load(fresh.train)
    np.testing.assert_array_equal(a["observations"], b["observations"])


def test_unknown_names_list_the_supported_ones(tmp_path):
    with pytest.raises(UnknownDatasetError, match="cube-single-play-v0"):
        prepare("cube-triple-play-v7", data_dir=tmp_path)
    with pytest.raises(UnknownDatasetError, match="single-task id"):
        parse_env_id("cube-single-play-v0")


def test_expert_datasets_ask_for_an_expert_or_official_files(tmp_path):
    with pytest.raises(DatasetError, match="qflow expert train") as err:
        prepare("antmaze-large-navigate-v0", data_dir=tmp_path, download=False)
    assert "antmaze-large-navigate-v0.npz and antmaze-large-navigate-v0-val.npz" in str(err.value)
    for name in ("humanoidmaze-medium-navigate-v0", "antmaze-large-stitch-v0"):  # no recipe: official files only
        with pytest.raises(DatasetError, match=f"{name}.npz and {name}-val.npz"):
            prepare(name, data_dir=tmp_path, download=False)


def test_next_actions_follow_the_episode_and_stop_at_its_end():
    from qflow.data.loading import next_actions

    actions = np.arange(10, dtype=np.float32).reshape(5, 2)  # rows 0-2: episode 1, rows 3-4: episode 2
    terminals = np.array([0, 0, 1, 0, 1])
    np.testing.assert_array_equal(next_actions(actions, terminals)[:, 0], [2, 4, 4, 8, 8])


def test_extra_data_errors_name_the_fix(tmp_path):
    from qflow.data.loading import load_single_task
    from qflow.training.settings import TrainArgs
    from qflow.training.trainer import train

    with pytest.raises(ValueError, match="unknown extra dataset keys.*available: next_actions"):
        load_single_task("cube-single-play-singletask-task1-v0", 2, 0, tmp_path, extra=("next_obs2",))
    # ReBRAC's critic penalty on scene reads next actions, which online transitions do not have
    args = TrainArgs(env="scene-play-singletask-task2-v0", agent="rebrac", steps=0, online_steps=10,
                     data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="online transitions lack.*alpha_critic=0"):
        train(args)


def test_a_fingerprint_gives_each_key_its_statistics_and_the_files_sha256(data_root, tmp_path):
    from qflow.cli import main

    root, files = data_root
    name = "cube-single-play-v0"  # not a navigate dataset: the fingerprint alone, no maze statistics
    assert main(["data", "inspect", name, "--episodes", "2", "--seed", "3", "--data-dir", str(root),
                 "--out", str(tmp_path)]) == 0
    stats = json.loads((tmp_path / f"{name}.json").read_text())
    train = stats["fingerprint"]["train"]
    assert train["sha256"] == json.loads(sidecar(files[name].train).read_text())["sha256"]
    assert train["rows"] == 2 * 1001 and train["episodes"] == 2 and stats["origin"] == "regenerated"
    with np.load(files[name].train) as data:
        qpos = data["qpos"].astype(np.float64)
    assert train["keys"]["qpos"]["shape"] == list(qpos.shape)
    assert train["keys"]["qpos"]["mean"] == pytest.approx(qpos.mean()) and train["keys"]["qpos"]["max"] == qpos.max()
    assert "tasks" not in stats and not (tmp_path / f"{name}_xy.png").exists()
