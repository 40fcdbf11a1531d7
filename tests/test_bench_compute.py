"""`qflow bench compute` on tiny networks: finishes, positive numbers, the right keys and files."""

import json

import pytest

from qflow.bench.compute import FIELDS, run_compute


@pytest.mark.slow
def test_tiny_compute_benchmark(tmp_path):
    result = run_compute(agents=("fbrac", "qflow"), ks=(1, 2), overrides=["actor_dims=8", "critic_dims=8"],
                         obs_dim=3, action_dim=2, batch_size=16, updates=2, repeats=1, isolate=False,
                         out_dir=tmp_path, progress=False)
    rows = result["rows"]
    assert [(r["agent"], r["flow_steps"]) for r in rows] == [("fbrac", 1), ("fbrac", 2), ("qflow", 1), ("qflow", 2)]
    for row in rows:
        assert set(FIELDS) <= set(row)
        for key in ("ms_per_update", "xla_argument_mb", "rss_peak_mb", "compile_s"):
            assert row[key] > 0, (key, row)
        assert row["xla_temp_mb"] >= 0 and row["config"]["flow_steps"] == row["flow_steps"]
    for name in ("compute.md", "compute.csv", "compute.png", "compute.json"):
        assert (tmp_path / name).exists(), name
    saved = json.loads((tmp_path / "compute.json").read_text())
    assert {"device", "versions", "settings", "rows", "command", "wall_time_s"} <= set(saved)
