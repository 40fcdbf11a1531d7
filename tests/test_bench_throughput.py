"""`qflow bench throughput` on tiny networks, the stacked mode included: numbers that are consistent."""

import json

import pytest

from qflow.cli import main


@pytest.mark.slow
def test_throughput_reports_stacked_members_a_grid_and_the_diagnostics_cost(tmp_path, capsys):
    out = tmp_path / "t.json"
    assert main(["bench", "throughput", "--agent", "qflow", "--preset", "tiny", "--set", "actor_dims=16",
                 "--set", "critic_dims=16", "--updates", "5", "--members", "1,3", "--grid", "guidance_lambda=[2,4,8]",
                 "--grid-seeds", "2", "--out", str(out)]) == 0
    r, grid = json.loads(out.read_text())
    # a grid as one call (the values traced) against one call per value
    assert grid["grid"] == {"guidance_lambda": ["2", "4", "8"]} and grid["seeds_per_value"] == 2
    assert grid["one_call"]["calls"] == 1 and grid["one_call_per_value"]["calls"] == 3
    for way in ("one_call", "one_call_per_value"):
        assert grid[way]["compile_s"] > 0 and grid[way]["agent_updates_per_s"] > 0
    assert set(r["stacked_agent_updates_per_s"]) == {"1", "3"} and min(r["stacked_agent_updates_per_s"].values()) > 0
    assert set(r["stacked_compile_s"]) == {"1", "3"} and min(r["stacked_compile_s"].values()) > 0
    for n, rate in r["stacked_agent_updates_per_s"].items():  # TFLOP/s = agent-updates/s x FLOP per update
        assert r["stacked_tflop_s"][n] == pytest.approx(rate * r["gflop_per_update"] / 1e3, rel=0.02, abs=1e-3)
    # the diagnostics cost one call per 1,000-update chunk: a small fraction by FLOPs
    assert 0 < r["diagnostics_flop_fraction_per_1000_updates"] < 0.01


@pytest.mark.slow
def test_throughput_gives_one_labelled_result_per_precision(tmp_path):
    out = tmp_path / "p.json"
    assert main(["bench", "throughput", "--agent", "flow_bc", "--preset", "tiny", "--set", "actor_dims=16",
                 "--updates", "1", "--precisions", "float32,bf16", "--out", str(out)]) == 0
    both = json.loads(out.read_text())
    assert [x["matmul_precision"] for x in both] == ["float32", "bf16"]
    assert [x["config"]["matmul_precision"] for x in both] == ["float32", "bf16"]


def test_a_bad_grid_is_refused_before_any_timing(monkeypatch, capsys):
    from qflow.bench import throughput

    def timed(*args, **kwargs):
        raise AssertionError("a benchmark ran before the grid was checked")

    monkeypatch.setattr(throughput, "run_throughput", timed)
    for bad, says in (("guidance_lambda=2", "two or more values"), ("guidance_lambda=[2]", "two or more values"),
                      ("flow_steps=[5,10]", "differ in flow_steps, which shape the program"),
                      ("flow_steps=5,10", "differ in flow_steps"),  # the recorded commands' form, without brackets
                      ("guidance_lambda=-1,5", "guidance_lambda must be > 0")):
        assert main(["bench", "throughput", "--grid", bad, "--updates", "1"]) == 2
        assert says in capsys.readouterr().err
