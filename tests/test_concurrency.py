"""Two processes on one dataset: the second waits for the first and uses its files."""

import subprocess
import sys

import numpy as np
import pytest

from qflow.data import prepare as prep
from qflow.data.prepare import DatasetError, prepare

pytestmark = pytest.mark.e2e

NAME = "pointmaze-medium-navigate-v0"
_real_merge = prep._merge


def _prepare_cmd(root):
    return [sys.executable, "-m", "qflow.cli", "data", "prepare", NAME, "--episodes", "2", "--data-dir", str(root),
            "--workers", "1", "--no-download"]


def test_concurrent_regenerations_make_one_correct_file(tmp_path):
    alone = prepare(NAME, episodes=2, seed=0, data_dir=tmp_path / "alone", workers=1, download=False, progress=False)
    shared = tmp_path / "shared"
    procs = [subprocess.Popen(_prepare_cmd(shared), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    files = prepare(NAME, episodes=2, seed=0, data_dir=shared, workers=1, download=False, progress=False)
    assert prep.sha256(files.train) == prep.sha256(alone.train)
    assert prep.sha256(files.val) == prep.sha256(alone.val)
    assert not (files.directory / f".{NAME}.partial").exists()


def test_merge_refuses_missing_or_short_shards(tmp_path, monkeypatch):
    monkeypatch.setattr(prep, "SHARD_EPISODES", 1)  # 2 + 1 episodes: three shards
    merges = []

    def stop_before_merge(*args):
        merges.append(args)
        raise KeyboardInterrupt  # as if killed between the shards and the merge

    monkeypatch.setattr(prep, "_merge", stop_before_merge)
    with pytest.raises(KeyboardInterrupt):
        prepare(NAME, episodes=2, seed=0, data_dir=tmp_path, workers=1, download=False, progress=False)
    monkeypatch.setattr(prep, "_merge", _real_merge)
    (files, partial, n_train, total, rows), = merges
    shards = sorted(partial.glob("shard-*.npz"))
    assert len(shards) == 3
    keep = shards[1].read_bytes()
    shards[1].unlink()
    with pytest.raises(DatasetError, match="lacks 1 of 3 shards"):
        prep._merge(files, partial, n_train, total, rows)
    assert not files.train.exists()  # nothing half-made reached the data dir
    with np.load(shards[0]) as data:  # a shard one row short
        short = {k: v[:-1] for k, v in data.items()}
    with open(shards[1], "wb") as f:
        np.savez(f, **short)
    with pytest.raises(DatasetError, match="rows of"):
        prep._merge(files, partial, n_train, total, rows)
    shards[1].write_bytes(keep)
    prep._merge(files, partial, n_train, total, rows)
    assert files.train.exists()


def test_a_second_run_in_a_busy_run_dir_is_refused_naming_the_holder(tmp_path, capsys):
    from qflow.cli import main as cli
    from qflow.training.trainer import RUN_LOCK
    from qflow.utils import file_lock

    run = tmp_path / "run"
    with file_lock(run / RUN_LOCK, "a test holding the run", wait=False):
        code = cli(["train", "--env", "pointmaze-medium-navigate-singletask-task1-v0", "--run-dir", str(run),
                    "--steps", "10", "--data-dir", str(tmp_path / "data"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"{run} is in use by pid" in err and "a test holding the run" in err and "--run-dir" in err
    assert not (tmp_path / "data").exists()  # refused before touching anything else


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    from qflow.utils import LockHeld, file_lock

    path = tmp_path / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from qflow.utils import file_lock\n"
        f"with file_lock({str(path)!r}, 'holder', wait=False):\n"
        "    print('held', flush=True); time.sleep(600)")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(LockHeld, match=f"pid {holder.pid} \\(holder\\)"):
        with file_lock(path, "second", wait=False):
            pass
    holder.kill()  # SIGKILL: no cleanup code runs
    holder.wait()
    with file_lock(path, "after the kill", wait=False):
        assert "after the kill" in path.read_text()


def test_generation_workers_die_with_a_killed_prepare(tmp_path):
    """kill -9 of `qflow data prepare` mid-way takes its generation workers with it: none goes on with its
    shard (an orphan used to write shards for minutes into a dataset nobody was making)."""
    import signal
    import time

    import psutil

    cmd = [*_prepare_cmd(tmp_path), "--workers", "2"]
    cmd[cmd.index("--episodes") + 1] = "200"  # long enough to be killed mid-way
    parent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not list(tmp_path.rglob(".*.partial/*.npz")):
            time.sleep(0.1)  # the first shard is written: the workers are inside a shard now
        workers = psutil.Process(parent.pid).children(recursive=True)
        assert workers, "no generation worker started"
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    shards = sorted(tmp_path.rglob(".*.partial/*.npz"))
    gone, alive = psutil.wait_procs(workers, timeout=60)
    assert not alive, f"orphaned workers: {[p.pid for p in alive]}"
    assert sorted(tmp_path.rglob(".*.partial/*.npz")) == shards, "a worker finished its shard after the kill"
