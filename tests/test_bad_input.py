"""Every command with bad values: a clear error line naming the flag, exit status 2, no traceback.

New flags join the table. Zero is refused wherever it is not meaningful (it used to mean "unset"
for --eval-every and --dataset-episodes, which silently started a 20-minute full regeneration).
"""

import pytest

from qflow.cli import main

ENV = ["--env", "pointmaze-medium-navigate-singletask-task1-v0"]
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
    from qflow.training.trainer import TrainArgs

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
