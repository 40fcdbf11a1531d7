"""The experiment suite runs each missing cell once and skips cells whose summaries are committed."""

import json

from qflow.experiments import suite


def test_parse_tasks():
    assert suite.parse_tasks("1-5") == [1, 2, 3, 4, 5]
    assert suite.parse_tasks("2,4-5") == [2, 4, 5]


def test_finished_cells_are_skipped(tmp_path, monkeypatch):
    out = tmp_path / "out"
    for d in suite.cell_dirs(out, "puzzle-3x3-play-singletask-task1-v0", "fql", [0, 1]):
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps({"success": 0.5}))
    calls = []
    monkeypatch.setattr(suite, "run_cell", lambda env_id, agent, seeds, args: calls.append((env_id, agent)))
    suite.main(["--envs", "puzzle-3x3-play", "--tasks", "1-2", "--agents", "qflow,fql", "--seeds", "0,1",
                "--steps", "100", "--out", str(out)])
    assert calls == [("puzzle-3x3-play-singletask-task1-v0", "qflow"),
                     ("puzzle-3x3-play-singletask-task2-v0", "qflow"),
                     ("puzzle-3x3-play-singletask-task2-v0", "fql")]
