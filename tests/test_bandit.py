"""The one-step bandit study's training job: a row per seed after every chunk."""

from qflow.experiments.bandit import run


def test_rows_per_seed_after_every_whole_chunk():
    rows = run("qflow", {"guidance_lambda": 0.3}, [0, 1], 25, 10, hidden=(8,), batch_size=8)
    assert [(r["update"], r["seed"]) for r in rows] == [(10, 0), (10, 1), (20, 0), (20, 1)]  # 5 left over: not run
    assert all(r["agent"] == "qflow" and r["guidance_lambda"] == 0.3 and -1.6 <= r["reward"] <= 0 for r in rows)
    assert all(any(k.startswith("diag_") for k in r) for r in rows)
    assert run("flow_bc", {}, [0], 5, 10) == []  # fewer updates than one chunk: nothing trained
