"""Before/after table of offline-to-online runs, checked against hand-computed values."""

import json

import pytest

from qflow.reporting.online import before_after, main


def fake_run(root, agent, seed, before, after, episodes=(0, 1, 1)):
    d = root / f"{agent}_{seed}"
    d.mkdir()
    (d / "summary.json").write_text(json.dumps({
        "env": "scene-play-singletask-task1-v0", "agent": agent, "seed": seed, "preset": "tiny", "steps": 10,
        "online_steps": 5, "eval_episodes": 4, "online": {"throughput": {"env_steps_per_s": 20.0, "share_agent": 0.9}},
        "data": {"dataset": "scene-play-v0", "origin": "regenerated", "episodes": 2}, "versions": {"jax": "x"}}))
    (d / "eval.csv").write_text(f"step,success\n5,0.0\n10,{before}\n15,{after}\n")
    (d / "online.csv").write_text("step,success\n" + "".join(f"{11 + i},{s}\n" for i, s in enumerate(episodes)))
    return d


def test_before_after_reads_the_offline_end_and_online_end(tmp_path):
    dirs = [fake_run(tmp_path, "qflow", 0, 0.25, 0.75), fake_run(tmp_path, "qflow", 1, 0.5, 0.5),
            fake_run(tmp_path, "fql", 0, 0.5, 0.0)]
    (tmp_path / "unfinished").mkdir()
    runs, text = before_after(dirs + [tmp_path / "unfinished"])
    by = {(r["agent"], r["seed"]): r for r in runs}
    assert len(runs) == 3
    assert by["qflow", 0]["change"] == pytest.approx(0.5) and by["fql", 0]["change"] == pytest.approx(-0.5)
    assert by["qflow", 0]["online_episode_success_last20"] == pytest.approx(2 / 3)
    # qflow over its two seeds: before (25 + 50) / 2 = 37.5 %, after 62.5 %, change +25 points
    assert "| scene-play-singletask-task1-v0 | qflow | 2 (0, 1) | 37.5 [" in text
    assert "| 62.5 [" in text and "| +25.0 [" in text


def test_missing_evaluation_names_the_fix(tmp_path):
    d = fake_run(tmp_path, "qflow", 0, 0.25, 0.75)
    (d / "eval.csv").write_text("step,success\n5,0.0\n15,0.5\n")
    with pytest.raises(ValueError, match="--eval-every"):
        before_after([d])


def test_cli_writes_csv_and_markdown(tmp_path):
    d = fake_run(tmp_path, "qflow", 0, 0.25, 0.75)
    assert main([str(d), "--out", str(tmp_path / "out")]) == 0
    assert "| qflow | 0 | 25 | 75 | +50 | 67 | 20.0 |" in (tmp_path / "out/before_after.md").read_text()
    assert (tmp_path / "out/before_after.csv").read_text().startswith("env,agent,seed")
