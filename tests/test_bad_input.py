"""Every command with bad values: a clear error line naming the flag, exit status 2, no traceback.

New flags join the table. Zero is refused wherever it is not meaningful (it used to mean "unset"
for --eval-every and --dataset-episodes, which silently started a 20-minute full regeneration).

Bad files too: a dataset whose contents cannot train (refused where it is loaded, naming the file, the
key and the fix), a full disk (the error names the file being written), and the checkpoints of several
seeds left one save apart by a kill (the run resumes from the step every seed holds).
"""

import pytest

from qflow.cli import main
from tests.helpers import ENV as HELPERS_ENV

ENV = ["--env", HELPERS_ENV]
CASES = [
    (["train", *ENV, "--eval-every", "0"], "--eval-every: must be >= 1, got 0"),
    (["train", *ENV, "--dataset-episodes", "0"], "--dataset-episodes: must be >= 1, got 0"),
    (["train", *ENV, "--eval-episodes", "0"], "--eval-episodes: must be >= 1"),
    (["train", *ENV, "--eval-envs", "0"], "--eval-envs: must be >= 1"),
    (["train", *ENV, "--log-every", "0"], "--log-every: must be >= 1"),
    (["train", *ENV, "--checkpoint-every", "0"], "--checkpoint-every: must be >= 1"),
    (["train", *ENV, "--chunk", "0"], "--chunk: must be >= 1"),
    (["train", *ENV, "--steps", "-5"], "--steps: must be >= 0"),
    (["train", *ENV, "--seed", "-1"], "expected comma-separated integers"),
    (["train", *ENV, "--seeds", "0,-1"], "expected comma-separated integers"),
    (["train", *ENV, "--seeds", "0,x"], "expected comma-separated integers"),
    (["train", *ENV, "--updates-per-step", "0"], "--updates-per-step: must be >= 1"),
    (["train", *ENV, "--buffer-size", "0"], "--buffer-size: must be >= 1"),
    (["train", *ENV, "--online-steps", "-1"], "--online-steps: must be >= 0"),
    (["train", *ENV, "--steps", "ten"], "expected an integer, got 'ten'"),
    (["eval", "--run-dir", "x", "--episodes", "0"], "--episodes: must be >= 1"),
    (["data", "prepare", "cube-single-play-v0", "--episodes", "0"], "--episodes: must be >= 1"),
    (["data", "prepare", "cube-single-play-v0", "--workers", "0"], "--workers: must be >= 1"),
    (["data", "inspect", "antmaze-large-navigate-v0", "--episodes", "0", "--out", "x"], "--episodes: must be >= 1"),
    (["expert", "train", "--run-dir", "x", "--steps", "0"], "--steps: must be >= 1"),
    (["bench", "throughput", "--updates", "0"], "--updates: must be >= 1"),
    (["bench", "compute", "--repeats", "0"], "--repeats: must be >= 1"),
    (["report", "x", "--out", "y", "--reps", "0"], "--reps: must be >= 1"),
    (["toy2d", "--n-data", "0"], "--n-data: must be >= 1"),
    (["toy2d", "--curve-points", "-1"], "--curve-points: must be >= 0"),
]


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in CASES])
def test_bad_value_is_one_clear_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "Traceback" not in err
    assert message in err.splitlines()[-1], err


@pytest.mark.parametrize("argv, message", [
    (["train", *ENV, "--set", "guidance_lambda=0"], "guidance_lambda must be > 0"),
    (["train", *ENV, "--set", "guidance_lambda=inf"], "guidance_lambda must be a finite number, got inf"),
    (["train", *ENV, "--set", "lr=nan"], "lr must be a finite number, got nan"),
    (["train", *ENV, "--set", "time_features=2pi"], "time_features must be one of"),
    (["train", *ENV, "--agent", "nope"], "unknown agent 'nope'"),
    (["train", "--env", "no-such-env-v0"], "no-such-env"),
])
def test_bad_setting_is_one_clear_line(argv, message, capsys, tmp_path):
    assert main([*argv, "--run-dir", str(tmp_path / "run"), "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("qflow: error:") and message in err, err


def test_os_errors_are_one_line_naming_the_path(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    garbage_run = tmp_path / "garbage_run"
    garbage_run.mkdir()
    (garbage_run / "run.json").write_text("{not json")
    cases = [
        (["train", *ENV, "--run-dir", str(a_file / "run"), "--data-dir", str(tmp_path / "d")], str(a_file)),
        (["toy2d", "--out", str(a_file / "out"), "--datasets", "moons", "--no-progress"], str(a_file)),
        (["train", *ENV, "--set", "actor_dims=0", "--run-dir", str(tmp_path / "r")], "actor_dims must be one or more"),
        (["eval", "--run-dir", str(garbage_run)], f"{garbage_run / 'run.json'} is unreadable"),
        (["eval", "--run-dir", str(tmp_path / "missing")], "run.json not found"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("qflow: error:") and message in err, (argv, err)


def test_one_source_of_training_defaults():
    from qflow.cli import build_parser
    from qflow.training.settings import TrainArgs

    from qflow.settings import from_flags

    parsed = from_flags(TrainArgs, build_parser().parse_args(["train", *ENV]))
    defaults = TrainArgs()
    for key in ("steps", "eval_every", "eval_episodes", "eval_envs", "log_every", "checkpoint_every", "chunk",
                "dataset_seed", "updates_per_step", "online_steps"):
        assert getattr(parsed, key) == getattr(defaults, key), key


def test_unknown_env_table_keys_are_an_error():
    from qflow.agents.base import build_config
    from qflow.agents.qflow import QFlowConfig

    with pytest.raises(ValueError, match=r"unknown keys \['guidance_lambd'\]; valid keys: .*guidance_lambda"):
        build_config(QFlowConfig, "cpu", {"guidance_lambd": 5.0})


# ---------------------------------------------------------------- dataset contents, checked where they are loaded
TASK = ENV[1]
PUZZLE = "puzzle-3x3-play-singletask-task1-v0"


def place_dataset(root, name, arrays, episodes=3):
    """``arrays`` as NAME.npz and NAME-val.npz of a regenerated dataset under ``root``, with sidecars that
    match them: a file that passes every check of its bytes, whatever it holds."""
    import json

    import numpy as np

    from qflow.data.prepare import dataset_dir, sha256, sidecar

    directory, _ = dataset_dir(name, episodes, 0, root)
    directory.mkdir(parents=True, exist_ok=True)
    for path in (directory / f"{name}.npz", directory / f"{name}-val.npz"):
        np.savez(path, **arrays)
        sidecar(path).write_text(json.dumps({"dataset": name, "origin": "regenerated", "episodes": episodes,
                                             "seed": 0, "sha256": sha256(path)}))
    return directory / f"{name}.npz"


def regenerated_arrays(data_dir):
    """The tiny regenerated pointmaze dataset's training file, as arrays to spoil."""
    import numpy as np

    from qflow.data.prepare import dataset_dir

    directory, _ = dataset_dir("pointmaze-medium-navigate-v0", 3, 0, data_dir)
    with np.load(directory / "pointmaze-medium-navigate-v0.npz") as npz:
        return {k: npz[k] for k in npz.files}


def with_nan(arrays):
    observations = arrays["observations"].copy()
    observations[5:8, 0] = float("nan")
    observations[9, 1] = float("inf")
    return {**arrays, "observations": observations}


SPOILED = [  # (what is wrong, how to spoil the pointmaze arrays, what the first line must say)
    ("nan", with_nan, "observations has 4 non-finite values (NaN or inf)"),
    ("int-actions", lambda a: {**a, "actions": a["actions"].astype("int8")},
     "actions are int8, but actions must be floating point"),
    ("wide-actions", lambda a: {**a, "actions": a["actions"][:, [0, 1, 1]]},
     f"actions have 3 columns, but {TASK} takes 2-D actions"),
    ("short-qpos", lambda a: {**a, "qpos": a["qpos"][:-1]}, "keys hold different numbers of rows (observations 3,003, "
                                                            "actions 3,003, terminals 3,003, qpos 3,002, qvel 3,003)"),
    ("no-qpos", lambda a: {k: v for k, v in a.items() if k != "qpos"}, f"lacks qpos, which {TASK} needs"),
]


@pytest.mark.e2e
@pytest.mark.parametrize("spoil, message", [c[1:] for c in SPOILED], ids=[c[0] for c in SPOILED])
def test_bad_dataset_contents_are_refused_at_load(data_dir, tmp_path, spoil, message):
    from qflow.data.loading import load_single_task
    from qflow.data.prepare import DatasetError
    from qflow.experiments import stacked

    arrays = regenerated_arrays(data_dir)
    intact = tmp_path / "intact"
    place_dataset(intact, "pointmaze-medium-navigate-v0", arrays)
    data, _ = load_single_task(TASK, 3, 0, intact, progress=False)  # the copy itself is fine
    assert len(data["actions"]) == 3000
    path = place_dataset(tmp_path / "spoiled", "pointmaze-medium-navigate-v0", spoil(arrays))
    fix = "regenerate it with `qflow data prepare pointmaze-medium-navigate-v0 --episodes 3 --seed 0 --data-dir "
    for load in (lambda: load_single_task(TASK, 3, 0, tmp_path / "spoiled", progress=False),
                 lambda: stacked.load_family("pointmaze-medium-navigate", [1, 2], [(1, 0), (2, 0)], 3,
                                             tmp_path / "spoiled")):
        with pytest.raises(DatasetError) as err:
            load()
        first = str(err.value).splitlines()[0]
        assert first.startswith(f"{path}: {message}") and fix in first, first


@pytest.mark.e2e
def test_dataset_without_button_states_is_refused_in_one_line(tmp_path, capsys):
    import numpy as np

    rows = 1001
    arrays = {"observations": np.zeros((rows, 4), np.float32), "actions": np.zeros((rows, 5), np.float32),
              "terminals": np.arange(rows) == rows - 1, "qpos": np.zeros((rows, 4), np.float32),
              "qvel": np.zeros((rows, 4), np.float32)}  # puzzle rewards are read from button_states
    path = place_dataset(tmp_path / "data", "puzzle-3x3-play-v0", arrays, episodes=1)
    argv = ["train", "--env", PUZZLE, "--dataset-episodes", "1", "--data-dir", str(tmp_path / "data"),
            "--run-dir", str(tmp_path / "run"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"qflow: error: {path}: lacks button_states, which {PUZZLE} needs; "
                                                   f"regenerate it with `qflow data prepare puzzle-3x3-play-v0"), err
    assert not (tmp_path / "run" / "run.json").exists()  # refused before the run was recorded


# ---------------------------------------------------------------- a full disk names the file
def full_disk(*args, **kwargs):
    import errno
    import os

    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.e2e
def test_full_disk_names_the_file_being_written(data_dir, tmp_path, capsys, monkeypatch):
    import os

    from qflow.utils import atomic_write_json, atomic_writer

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError) as err:
        atomic_write_json(tmp_path / "a.json", {"a": 1})
    assert err.value.filename == str(tmp_path / "a.json") and "No space left on device" in err.value.strerror
    monkeypatch.undo()
    with pytest.raises(OSError) as err, atomic_writer(tmp_path / "b.npz") as f:
        f.write(b"half")
        full_disk()  # a write inside the block
    assert err.value.filename == str(tmp_path / "b.npz") and not list(tmp_path.glob(".b.npz.*"))

    monkeypatch.setattr(os, "fsync", full_disk)
    run = tmp_path / "run"
    argv = ["train", "--env", TASK, "--dataset-episodes", "3", "--data-dir", str(data_dir), "--run-dir", str(run),
            "--no-progress"]
    assert main(argv) == 2  # its first write: the run record
    assert capsys.readouterr().err == f"qflow: error: No space left on device: {run / 'run.json'}\n"


def test_full_disk_while_logging_names_the_log(tmp_path, monkeypatch):
    import io

    from qflow.training import logs

    class FullDisk(io.StringIO):
        write = full_disk

    monkeypatch.setattr(logs, "open", lambda *args, **kwargs: FullDisk(), raising=False)
    with pytest.raises(OSError) as err:
        logs.CSVLog(tmp_path / "metrics.csv").write({"step": 1, "loss": 0.5})
    assert err.value.filename == str(tmp_path / "metrics.csv") and "No space left on device" in str(err.value)


# ---------------------------------------------------------------- several seeds killed between their saves
class Killed(BaseException):
    """What a kill does to a save: nothing after it runs."""


def kill_at_save(monkeypatch, call):
    """Make the ``call``-th seed checkpoint written from now on the last one (1: the first)."""
    from qflow.training import checkpoint

    real, calls = checkpoint.save, []

    def save(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise Killed()
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "save", save)


@pytest.mark.parametrize("before_rename", [False, True], ids=["in-write", "before-rename"])
def test_seeds_killed_one_save_apart_resume_from_the_step_all_hold(tmp_path, monkeypatch, capsys, before_rename):
    import jax
    import numpy as np

    from qflow.training import checkpoint
    from qflow.training.loop import stack
    from tests.helpers import perturb, tiny_agent

    dirs = [tmp_path / "seed0", tmp_path / "seed1"]
    for d in dirs:
        d.mkdir()
    fresh = stack([tiny_agent(), tiny_agent()])
    at = {step: stack([perturb(tiny_agent(), seed=step), perturb(tiny_agent(), seed=step + 1)])
          for step in (1000, 2000, 3000)}

    def leaves(agents):
        return [np.asarray(x) for x in jax.tree.leaves(agents)]

    checkpoint.save_all(dirs, at[1000], 1000)
    kill_at_save(monkeypatch, 2)  # seed0 writes step 2000, seed1 never does
    with pytest.raises(Killed):
        checkpoint.save_all(dirs, at[2000], 2000)
    monkeypatch.undo()
    if before_rename:  # the kill came before seed1's checkpoint was renamed to make room for the new one
        (dirs[1] / checkpoint.PREVIOUS).rename(dirs[1] / checkpoint.CHECKPOINT)
    held = [checkpoint.load(d, None, name)[1] for d in dirs for name in (checkpoint.CHECKPOINT, checkpoint.PREVIOUS)
            if (d / name).exists()]
    assert held == [2000, 1000, 1000]  # what the kill left: seed0 at 2000 (and 1000 before it), seed1 at 1000
    agents, step = checkpoint.restore_all(dirs, fresh)
    assert step == 1000 and all(np.array_equal(a, b) for a, b in zip(leaves(agents), leaves(at[1000])))
    assert "the save at step 2000" in capsys.readouterr().out and not (tmp_path / checkpoint.SAVING).exists()
    assert [checkpoint.load(d, None)[1] for d in dirs] == [1000, 1000]  # the files agree again

    checkpoint.save_all(dirs, at[2000], 2000)  # the resumed run goes on, and is killed the same way again
    kill_at_save(monkeypatch, 2)
    with pytest.raises(Killed):
        checkpoint.save_all(dirs, at[3000], 3000)
    monkeypatch.undo()
    assert checkpoint.restore_all(dirs, fresh)[1] == 2000


def test_seeds_killed_in_their_first_save_start_again(tmp_path, monkeypatch):
    from qflow.training import checkpoint
    from qflow.training.loop import stack
    from tests.helpers import perturb, tiny_agent

    dirs = [tmp_path / "seed0", tmp_path / "seed1"]
    for d in dirs:
        d.mkdir()
    kill_at_save(monkeypatch, 2)
    with pytest.raises(Killed):
        checkpoint.save_all(dirs, stack([perturb(tiny_agent()), perturb(tiny_agent())]), 1000)
    monkeypatch.undo()
    assert checkpoint.restore_all(dirs, stack([tiny_agent(), tiny_agent()])) is None  # both start at step 0
    assert not list(tmp_path.glob("seed*/checkpoint*"))
    for step in (2000, 3000):
        checkpoint.save_all(dirs, stack([tiny_agent(), tiny_agent()]), step)
    (dirs[1] / checkpoint.CHECKPOINT).unlink()  # files removed by hand are no kill's doing: refused
    (dirs[1] / checkpoint.PREVIOUS).unlink()
    with pytest.raises(checkpoint.CheckpointError, match=r"seed1 of .* have no checkpoint while the other seeds do"):
        checkpoint.restore_all(dirs, stack([tiny_agent(), tiny_agent()]))
    assert (dirs[0] / checkpoint.CHECKPOINT).exists() and (dirs[0] / checkpoint.PREVIOUS).exists()  # kept


def test_a_finished_run_with_one_save_resumes_and_a_seed_added_later_is_refused(tmp_path):
    """No PREVIOUS file (one save, finished) is no sign of a kill: the run resumes at its step; a seed added
    to its directory afterwards has nothing to resume from, and the others' checkpoints are kept."""
    from qflow.training import checkpoint
    from qflow.training.loop import stack
    from tests.helpers import tiny_agent

    dirs = [tmp_path / f"seed{s}" for s in range(3)]
    for d in dirs:
        d.mkdir()
    checkpoint.save_all(dirs[:2], stack([tiny_agent(), tiny_agent()]), 5000)
    assert checkpoint.restore_all(dirs[:2], stack([tiny_agent(), tiny_agent()]))[1] == 5000
    with pytest.raises(checkpoint.CheckpointError, match="seed2 of .* have no checkpoint"):
        checkpoint.restore_all(dirs, stack([tiny_agent(), tiny_agent(), tiny_agent()]))
    assert all((d / checkpoint.CHECKPOINT).exists() for d in dirs[:2])


def test_seeds_apart_without_an_earlier_save_are_refused_not_restarted(tmp_path):
    """Checkpoints written one at a time (no PREVIOUS file) and left at different steps: the only common step
    is 0, and going back to it would throw trained steps away, so the run is refused and nothing deleted."""
    from qflow.training import checkpoint
    from qflow.training.loop import stack
    from tests.helpers import tiny_agent

    dirs = [tmp_path / "seed0", tmp_path / "seed1"]
    for d, step in zip(dirs, (2000, 1000)):
        d.mkdir()
        checkpoint.save(d, tiny_agent(), step)
    with pytest.raises(checkpoint.CheckpointError, match=r"different steps \(seed0 at 2000, seed1 at 1000\).*move"):
        checkpoint.restore_all(dirs, stack([tiny_agent(), tiny_agent()]))
    assert all((d / checkpoint.CHECKPOINT).exists() for d in dirs)


@pytest.mark.e2e
def test_several_seeds_killed_between_their_saves_resume_and_finish(data_dir, tmp_path, monkeypatch):
    import json

    from tests.helpers import rows

    run = tmp_path / "run"
    argv = ["train", "--env", TASK, "--dataset-episodes", "3", "--data-dir", str(data_dir), "--run-dir", str(run),
            "--seeds", "0,1", "--steps", "200", "--eval-every", "200", "--eval-episodes", "1", "--eval-envs", "1",
            "--log-every", "50", "--checkpoint-every", "100", "--chunk", "50", "--no-progress",
            "--set", "actor_dims=16", "--set", "critic_dims=16", "--set", "batch_size=16"]
    kill_at_save(monkeypatch, 4)  # step 100: both seeds; step 200: seed0 only
    with pytest.raises(Killed):
        main(argv)
    monkeypatch.undo()
    assert main(argv) == 0
    for seed in (0, 1):
        assert [int(r["step"]) for r in rows(run / f"seed{seed}" / "metrics.csv")] == [50, 100, 150, 200]
        assert json.loads((run / f"seed{seed}" / "summary.json").read_text())["steps"] == 200
