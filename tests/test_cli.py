"""End to end through the command line on a tiny regenerated dataset."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from qflow.cli import main
from tests.helpers import ENV, rows

pytestmark = pytest.mark.e2e


def train_args(data_dir, run_dir, *extra):
    return ["train", "--env", ENV, "--dataset-episodes", "3", "--data-dir", str(data_dir), "--run-dir", str(run_dir),
            "--steps", "200", "--eval-every", "100", "--eval-episodes", "2", "--eval-envs", "2", "--log-every", "50",
            "--checkpoint-every", "100", "--chunk", "50", "--no-progress",
            "--set", "actor_dims=32,32", "--set", "critic_dims=32,32", "--set", "batch_size=32", *extra]


def test_train_eval_and_summary(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(data_dir, run)) == 0
    summary = json.loads((run / "summary.json").read_text())
    for key in ("env", "agent", "seed", "steps", "config", "success", "success_last3", "data", "versions",
                "wall_time_s"):
        assert key in summary
    assert summary["data"]["origin"] == "regenerated" and summary["steps"] == 200
    assert [int(r["step"]) for r in rows(run / "eval.csv")] == [100, 200]
    assert [int(r["step"]) for r in rows(run / "metrics.csv")] == [50, 100, 150, 200]
    assert "success" in capsys.readouterr().out

    assert main(["eval", "--run-dir", str(run), "--episodes", "2", "--task", "3"]) == 0
    out = json.loads((run / "eval_tasks.json").read_text())
    assert list(out) == ["pointmaze-medium-navigate-singletask-task3-v0"] and out[list(out)[0]]["episodes"] == 2


def test_same_seed_same_metrics(data_dir, tmp_path):
    for name in ("a", "b"):
        assert main(train_args(data_dir, tmp_path / name, "--steps", "100", "--eval-every", "100")) == 0
    assert [{k: v for k, v in r.items() if k != "wall_time"} for r in rows(tmp_path / "a" / "metrics.csv")] == \
           [{k: v for k, v in r.items() if k != "wall_time"} for r in rows(tmp_path / "b" / "metrics.csv")]


def test_several_seeds_match_single_seed_training(data_dir, tmp_path):
    assert main(train_args(data_dir, tmp_path / "multi", "--seeds", "0,1", "--steps", "100", "--eval-every", "100")) == 0
    assert main(train_args(data_dir, tmp_path / "one", "--seed", "1", "--steps", "100", "--eval-every", "100")) == 0
    multi, one = rows(tmp_path / "multi" / "seed1" / "metrics.csv"), rows(tmp_path / "one" / "metrics.csv")
    for a, b in zip(multi, one):
        for key in ("loss_q", "loss_v", "loss_pi"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-3, abs=1e-5)
    assert json.loads((tmp_path / "multi" / "seed0" / "summary.json").read_text())["seed"] == 0


def test_sigkill_then_rerun_resumes_and_finishes(data_dir, tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "qflow.cli", *train_args(data_dir, run, "--steps", "100000",
                                                           "--eval-every", "100000")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.time() + 240
    while not (run / "checkpoint.msgpack").exists() and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run / "checkpoint.msgpack").exists(), "no checkpoint was written before the kill"
    killed_at = max(int(r["step"]) for r in rows(run / "metrics.csv"))
    assert killed_at < 100000
    final = killed_at + 200
    assert main(train_args(data_dir, run, "--steps", str(final), "--eval-every", "100000")) == 0  # same scoring
    steps = [int(r["step"]) for r in rows(run / "metrics.csv")]
    assert steps == list(range(50, final + 1, 50))  # resumed at the checkpoint, no step logged twice
    assert json.loads((run / "summary.json").read_text())["steps"] == final


def test_resume_continues_from_checkpoint(data_dir, tmp_path):
    run = tmp_path / "run"
    assert main(train_args(data_dir, run, "--steps", "100", "--eval-every", "100")) == 0
    stray = run / ".checkpoint.msgpack.k1ll3d.tmp"  # what a write killed mid-way leaves
    stray.write_bytes(b"\0" * 1000)
    assert main(train_args(data_dir, run, "--steps", "200", "--eval-every", "100")) == 0
    assert not stray.exists()
    steps = [int(r["step"]) for r in rows(run / "metrics.csv")]
    assert steps == [50, 100, 150, 200]  # nothing logged twice, nothing restarted
    wall = [float(r["wall_time"]) for r in rows(run / "metrics.csv")]
    assert wall == sorted(wall)  # the resumed run's clock counts on from where the first stopped
    straight = tmp_path / "straight"
    assert main(train_args(data_dir, straight)) == 0
    a, b = rows(run / "metrics.csv")[-1], rows(straight / "metrics.csv")[-1]
    assert float(a["loss_q"]) == pytest.approx(float(b["loss_q"]), rel=1e-4)


def test_resume_refuses_what_would_change_the_run(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(data_dir, run)) == 0
    before = (run / "eval.csv").read_text()
    cases = [(["--steps", "100"], "already holds 200 steps, more than --steps 100; pass --steps 200"),
             (["--eval-episodes", "3"], "differs in eval_episodes); to resume it pass --eval-episodes 2"),
             (["--eval-every", "50"], "to resume it pass --eval-every 100"),
             (["--seeds", "0,1"], "holds a single-seed run")]
    capsys.readouterr()
    for extra, message in cases:
        assert main(train_args(data_dir, run, *extra)) == 2, extra
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (extra, err)
    assert (run / "eval.csv").read_text() == before  # nothing was relabelled or appended
    assert not (run / "seed0").exists()
    several = tmp_path / "several"
    assert main(train_args(data_dir, several, "--seeds", "0,1", "--steps", "100")) == 0
    assert main(train_args(data_dir, several, "--steps", "100")) == 2
    assert "holds the runs of several seeds (seed0, seed1)" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--set", "guidance_lambda=-1"], "guidance_lambda must be > 0"),
    (["--set", "flow_steps=0"], "flow_steps must be >= 1"),
    (["--agent", "nope"], "unknown agent 'nope'"),
])
def test_bad_input_gives_one_clear_error_line(data_dir, tmp_path, capsys, extra, message):
    assert main(train_args(data_dir, tmp_path / "r", *extra)) == 2
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("qflow: error:") and message in first


def test_unknown_env_and_unreadable_checkpoint(data_dir, tmp_path, capsys):
    assert main(["train", "--env", "cube-sextuple-play-singletask-v0", "--run-dir", str(tmp_path / "x")]) == 2
    assert "unknown dataset" in capsys.readouterr().err
    run = tmp_path / "run"
    assert main(train_args(data_dir, run, "--steps", "100", "--eval-every", "100")) == 0
    (run / "checkpoint.msgpack").write_bytes(b"\x00garbage")
    assert main(train_args(data_dir, run, "--steps", "200")) == 2
    assert "unreadable checkpoint" in capsys.readouterr().err.splitlines()[0]


def test_nan_loss_stops_with_step_and_loss(data_dir, tmp_path, capsys, monkeypatch):
    import qflow.training.trainer as trainer

    real = trainer.load_single_task

    def poisoned(*args, **kwargs):
        data, files = real(*args, **kwargs)
        data["rewards"] = np.full_like(data["rewards"], np.nan)
        return data, files

    monkeypatch.setattr(trainer, "load_single_task", poisoned)
    assert main(train_args(data_dir, tmp_path / "nan")) == 3
    err = capsys.readouterr().err.splitlines()[0]
    assert err.startswith("qflow: error: non-finite") and "loss_q" in err and "at step 50" in err
    assert not (tmp_path / "nan" / "summary.json").exists()


def test_non_finite_parameters_are_never_checkpointed(data_dir, tmp_path, capsys, monkeypatch):
    import jax
    import jax.numpy as jnp

    import qflow.training.trainer as trainer

    real, calls = trainer.make_train_chunk, []

    def poisoning(*args, **kwargs):
        fn = real(*args, **kwargs)

        def chunk(agents, data):
            agents, info = fn(agents, data)
            calls.append(1)
            if len(calls) >= 3:  # from step 150 on: NaN parameters while the logged losses stay finite
                agents = agents.replace(params=jax.tree.map(lambda x: x * jnp.nan, agents.params))
            return agents, info
        return chunk

    monkeypatch.setattr(trainer, "make_train_chunk", poisoning)
    run = tmp_path / "nan"
    assert main(train_args(data_dir, run, "--chunk", "50")) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "non-finite parameters at step 150" in err
    assert f"the last checkpoint written before it is kept in {run}" in err and f"--run-dir {run}-lr1e-4" in err
    state = trainer.checkpoint.load(run, None)  # the step-100 checkpoint, not a NaN one
    assert state[1] == 100 and all(np.isfinite(x).all() for x in jax.tree.leaves(state[0]))
    monkeypatch.undo()
    assert main(train_args(data_dir, tmp_path / "nan-lr1e-4", "--set", "lr=1e-4", "--steps", "50",
                           "--eval-every", "50")) == 0  # the suggested retry is accepted


def test_rebrac_critic_penalty_trains_on_the_datasets_next_actions(data_dir, tmp_path):
    # alpha_critic > 0 makes ReBRAC's loss read batch["next_actions"] (it raises without them), so this
    # run finishing means the trainer asked the loader for them and passed them through the batches
    run = tmp_path / "rebrac"
    assert main(train_args(data_dir, run, "--agent", "rebrac", "--set", "alpha_critic=0.01", "--steps", "100",
                           "--eval-every", "100")) == 0
    assert json.loads((run / "summary.json").read_text())["config"]["alpha_critic"] == 0.01


def test_tensorboard_and_offline_wandb_sinks_get_the_logged_scalars(data_dir, tmp_path):
    run = tmp_path / "run"
    assert main(train_args(data_dir, run, "--steps", "100", "--eval-every", "100", "--tensorboard", "--wandb")) == 0
    assert any(p.stat().st_size > 0 for p in (run / "tb").glob("events.out.tfevents.*"))
    records = list((run / "wandb").glob("offline-run-*/run-*.wandb"))  # offline: a local file, nothing sent
    assert len(records) == 1

    def logged(data):  # W&B's record file stores each logged key as plain text
        return data.count(b"train/loss_q") >= 2 and b"train/diag_policy_improvement" in data and b"eval/success" in data

    # W&B's own service process writes the file and may still be flushing it when finish() returns on a busy
    # machine (seen: only the header written yet); allow it a bounded while before calling the scalars lost
    deadline = time.monotonic() + 60
    while not logged(records[0].read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert logged(records[0].read_bytes()), records[0].read_bytes()[:200]


def test_a_missing_sink_package_is_one_line_naming_the_extra(data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    assert main(train_args(data_dir, tmp_path / "run", "--wandb")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'qflow[wandb]'" in err


def test_resume_to_a_larger_budget_keeps_every_event_on_a_chunk_boundary(data_dir, tmp_path):
    run = tmp_path / "run"
    first = ["--steps", "150", "--eval-every", "300", "--log-every", "50", "--checkpoint-every", "50"]
    assert main(train_args(data_dir, run, *first)) == 0
    # the new schedule alone would chunk by 100 (250, 350, ...: nothing ever due); 150 must stay a boundary
    assert main(train_args(data_dir, run, "--steps", "300", "--eval-every", "300", "--log-every", "100",
                           "--checkpoint-every", "100", "--chunk", "100")) == 0
    assert [int(r["step"]) for r in rows(run / "metrics.csv")] == [50, 100, 150, 200, 300]
    assert json.loads((run / "summary.json").read_text())["eval_steps"] == [150, 300]


def test_a_run_recorded_before_a_config_key_existed_resumes_with_its_old_value(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(data_dir, run, "--steps", "100", "--eval-every", "100")) == 0
    info = json.loads((run / "run.json").read_text())
    del info["config"]["time_features"]  # as written before the keys existed (those runs used 2 pi f tau
    del info["config"]["matmul_precision"]  # and the platform's default matmul arithmetic)
    (run / "run.json").write_text(json.dumps(info))
    assert main(train_args(data_dir, run, "--steps", "200", "--eval-every", "100")) == 2
    err = capsys.readouterr().err  # the message names the flags that resume it
    assert "differs in config" in err and "--set matmul_precision=default --set time_features=2pi_f_tau" in err
    assert main(train_args(data_dir, run, "--steps", "200", "--eval-every", "100",
                           "--set", "time_features=2pi_f_tau", "--set", "matmul_precision=default")) == 0


def test_a_continued_run_drops_its_stale_summary_and_eval_without_checkpoint_says_so(data_dir, tmp_path, capsys,
                                                                                    monkeypatch):
    import qflow.training.trainer as trainer

    run = tmp_path / "run"
    assert main(train_args(data_dir, run, "--steps", "100", "--eval-every", "100")) == 0
    assert json.loads((run / "summary.json").read_text())["steps"] == 100

    def killed(self, step):
        raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(trainer.OfflineJob, "advance", killed)
    with pytest.raises(KeyboardInterrupt):  # continued to 200 steps, killed before its end
        main(train_args(data_dir, run, "--steps", "200", "--eval-every", "100"))
    assert not (run / "summary.json").exists()  # never scored under the 100-step budget it no longer has

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "run.json").write_text((run / "run.json").read_text())
    assert main(["eval", "--run-dir", str(fresh), "--episodes", "1"]) == 2
    assert "has no checkpoint yet" in capsys.readouterr().err
    assert main(["eval", "--run-dir", str(run), "--episodes", "1", "--task", "9"]) == 2
    assert "--task must be 1-5 or 'all', got '9'" in capsys.readouterr().err


def test_one_directory_one_layout_even_when_two_trainers_start_together(data_dir, tmp_path, capsys):
    from qflow.training.trainer import RUN_LOCK
    from qflow.utils import file_lock

    run = tmp_path / "run"
    with file_lock(run / RUN_LOCK, "a single-seed trainer", wait=False):  # it holds the directory
        assert main(train_args(data_dir, run, "--seeds", "0,1")) == 2
    assert "is in use by" in capsys.readouterr().err and not (run / "seed0").exists()


def test_init_from_continues_a_run_exactly_and_under_an_intervention(data_dir, tmp_path, capsys):
    """--init-from A with A's settings is A continued (the same metrics as training A on); with
    --set freeze=critic the critic keeps A's values while the rest trains; the source is only read."""
    import jax

    from qflow.training.checkpoint_eval import load_agent

    base, straight = tmp_path / "base", tmp_path / "straight"
    assert main(train_args(data_dir, base, "--steps", "100", "--eval-every", "100")) == 0
    assert main(train_args(data_dir, straight)) == 0  # the same run, 200 steps without a stop
    source_bytes = (base / "checkpoint.msgpack").read_bytes()

    same = tmp_path / "same"
    assert main(train_args(data_dir, same, "--init-from", str(base))) == 0
    assert "starting from" in capsys.readouterr().out
    drop = lambda rs: [{k: v for k, v in r.items() if k != "wall_time"} for r in rs]  # noqa: E731
    assert drop(rows(same / "metrics.csv")) == drop(rows(straight / "metrics.csv"))[2:]  # steps 150, 200
    assert json.loads((same / "run.json").read_text())["init_from"]["step"] == 100

    frozen = tmp_path / "frozen"
    assert main(train_args(data_dir, frozen, "--init-from", str(base), "--set", "freeze=critic")) == 0
    (before, _, _), (after, step, _) = (load_agent(d) for d in (base, frozen))
    assert step == 200 and (base / "checkpoint.msgpack").read_bytes() == source_bytes
    leaves = lambda agent, name: [np.asarray(x) for x in jax.tree.leaves(agent.params[name])]  # noqa: E731
    assert all(np.array_equal(a, b) for a, b in zip(leaves(before, "critic"), leaves(after, "critic")))
    assert not all(np.array_equal(a, b) for a, b in zip(leaves(before, "actor"), leaves(after, "actor")))

    assert main(train_args(data_dir, tmp_path / "other", "--init-from", str(base), "--agent", "fql")) == 2
    assert "differs in agent" in capsys.readouterr().err
    assert main(train_args(data_dir, tmp_path / "seed1", "--init-from", str(base), "--seed", "1")) == 2
    assert "differs in seed" in capsys.readouterr().err
    # the branch resumes from its own checkpoints, whatever its source has done since
    assert main(train_args(data_dir, base, "--steps", "300")) == 0
    assert main(train_args(data_dir, frozen, "--init-from", str(base), "--set", "freeze=critic")) == 0
    assert "starting from" not in capsys.readouterr().out
    assert main(train_args(data_dir, straight, "--init-from", str(base))) == 2  # a plain run is no branch
    assert "did not start from --init-from" in capsys.readouterr().err
