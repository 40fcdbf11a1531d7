"""The same seeds give the same numbers as before the agent refactor (runs recorded at commit dbbda33)."""

import json
from pathlib import Path

import pytest

from qflow.cli import main
from tests.helpers import ENV, rows

pytestmark = pytest.mark.e2e

BEFORE = Path(__file__).parent / "data" / "before_refactor"
DATA_SHA256 = "6b082e9a6275daaceb384635df61da9c1726153d4e0e0b5aac992f565cd9301c"  # what they were trained on


# The recorded runs predate two keys: their target critic moved toward the updated critic, and Q-Flow's V
# used sin/cos(2 pi f tau); both are set back so the same arithmetic runs.
@pytest.mark.parametrize("agent, extra", [("fql", ["--set", "target_update=post"]),
                                          ("qflow", ["--set", "time_features=2pi_f_tau", "--set", "target_update=post"])])
def test_short_run_matches_the_recorded_one(data_dir, tmp_path, agent, extra):
    run = tmp_path / agent
    assert main(["train", "--env", ENV, "--agent", agent, "--dataset-episodes", "3", "--data-dir", str(data_dir),
                 "--run-dir", str(run), "--steps", "200", "--eval-every", "100", "--eval-episodes", "2",
                 "--eval-envs", "2", "--log-every", "50", "--checkpoint-every", "100", "--chunk", "50",
                 "--set", "actor_dims=32,32", "--set", "critic_dims=32,32", "--set", "batch_size=32",
                 "--no-progress", *extra]) == 0
    assert json.loads((run / "run.json").read_text())["data"]["sha256"] == DATA_SHA256, "not the recorded data"
    before, after = rows(BEFORE / f"{agent}_metrics.csv"), rows(run / "metrics.csv")
    assert [r["step"] for r in after] == [r["step"] for r in before]
    for old, new in zip(before, after):
        for key in set(old) - {"wall_time"}:  # every column the old code logged (new ones: diag_*)
            assert float(new[key]) == pytest.approx(float(old[key]), rel=1e-5, abs=1e-6), (old["step"], key)
    old_eval, new_eval = rows(BEFORE / f"{agent}_eval.csv"), rows(run / "eval.csv")
    for old, new in zip(old_eval, new_eval):
        assert (old["step"], old["success"], old["return"]) == (new["step"], new["success"], new["return"])
