"""RunRecord (qflow.training.checkpoint): reading a run's record and telling whether two records are one run."""

import json

import pytest

from qflow.envs import agent_config
from qflow.reporting.report import ReportError
from qflow.training.record import CheckpointError, RunRecord, check_compatible
from tests.helpers import ENV



def record(agent="qflow", **changes):
    info = {"env": ENV, "agent": agent, "seed": 0, "preset": "tiny", "eval_every": 100, "eval_episodes": 2,
            "updates_per_step": 1, "config": agent_config(agent, ENV, "tiny").as_dict(),
            "data": {"sha256": "abc", "episodes": 3}}
    return json.loads(json.dumps({**info, **changes}))


def as_before_the_keys_existed(info):
    """The record as written before time_features and matmul_precision were config keys."""
    return {**info, "config": {k: v for k, v in info["config"].items() if k not in ("time_features",
                                                                                     "matmul_precision")}}


def test_read_fills_the_values_old_runs_used_for_keys_added_since(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(as_before_the_keys_existed(record())))
    config = RunRecord.read(path)["config"]
    assert config["time_features"] == "2pi_f_tau" and config["matmul_precision"] == "default"
    assert config["guidance_lambda"] == record()["config"]["guidance_lambda"]  # what it has is kept
    path.write_text(json.dumps(record()))
    assert RunRecord.read(path) == record()  # a current record is read as written
    path.write_text(json.dumps({"agent": "gone", "config": {"alpha": 1}}))
    assert RunRecord.read(path)["config"] == {"alpha": 1}  # an agent this version lacks: nothing to fill


@pytest.mark.parametrize("text, why", [('{"env": "x", "conf', "Unterminated string"),
                                       ("[1, 2]", "a JSON list, not an object"),
                                       (None, "No such file")])
def test_an_unreadable_record_is_one_line_naming_the_file(tmp_path, text, why):
    path = tmp_path / "summary.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(CheckpointError) as err:
        RunRecord.read(path)
    message = str(err.value)
    assert message.startswith(f"{path} is unreadable (") and why in message and message.endswith("; move it away")
    assert "\n" not in message
    with pytest.raises(ReportError, match="leave it out"):  # each caller names its own error and fix
        RunRecord.read(path, fix="leave it out", error=ReportError)


def test_differences_name_the_keys_compared_after_the_legacy_merge():
    new = record()
    assert RunRecord.differences(record(), new) == []
    old = as_before_the_keys_existed(record())
    assert RunRecord.differences(old, new) == ["config.matmul_precision", "config.time_features"]
    same_as_then = record(config={**new["config"], "time_features": "2pi_f_tau", "matmul_precision": "default"})
    assert RunRecord.differences(old, same_as_then) == []
    changed = record(seed=3, eval_episodes=5, config={**new["config"], "guidance_lambda": 7.0})
    assert RunRecord.differences(record(), changed) == ["seed", "config.guidance_lambda", "eval_episodes"]
    assert RunRecord.differences(record(), changed, ("seed",)) == ["seed"]
    tuples = {**new, "config": {**new["config"], "actor_dims": tuple(new["config"]["actor_dims"])}}
    assert RunRecord.differences(new, tuples) == []  # compared as stored in JSON: a tuple is its list
    extra = {**new, "config": {**new["config"], "retired_key": 1}}
    assert RunRecord.differences(extra, new) == ["config.retired_key"]  # a key either side has counts


def test_differences_of_nested_and_later_keys():
    assert RunRecord.differences(record(), record(data={"sha256": "def"}), ("data.sha256",)) == ["data.sha256"]
    assert RunRecord.differences(record(data={}), record(data={}), ("data.sha256",)) == []
    assert RunRecord.differences(record(), record(data={"sha256": "abc", "episodes": 9}), ("data.sha256",)) == []
    older = {k: v for k, v in record().items() if k != "updates_per_step"}  # written before the key existed
    assert RunRecord.differences(older, record(updates_per_step=4)) == []
    assert RunRecord.differences(record(), record(updates_per_step=4)) == ["updates_per_step"]


def test_check_compatible_records_then_refuses_another_run_naming_the_flags(tmp_path):
    check_compatible(tmp_path, record())
    assert json.loads((tmp_path / "run.json").read_text()) == record()
    check_compatible(tmp_path, record())  # the same run: resumes
    (tmp_path / "run.json").write_text(json.dumps(as_before_the_keys_existed(record())))
    other = record(eval_every=50, data={"sha256": "def"})
    with pytest.raises(CheckpointError) as err:
        check_compatible(tmp_path, other)
    assert str(err.value) == (
        f"{tmp_path} holds a different run (differs in config, eval_every, data); to resume it pass "
        "--eval-every 100 --set matmul_precision=default --set time_features=2pi_f_tau (the values it was "
        "started with), or pass another --run-dir")
    (tmp_path / "run.json").write_text("{")
    with pytest.raises(CheckpointError, match="run.json is unreadable .*; move the directory away or pass another"):
        check_compatible(tmp_path, record())
