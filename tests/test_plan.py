"""The evidence plan: status from committed files, a CPU run of a tiny entry end to end, resumption."""

import json
import tarfile

import pytest

from qflow.errors import QFlowError
from qflow.experiments import plan
from qflow.experiments.settings import PLAN as PLAN_FILE

pytestmark = pytest.mark.e2e

PLAN = '''
[[entry]]
id = "tiny-stacked"
kind = "stacked"
why = "smoke"
family = "pointmaze-medium-navigate"
agents = ["qflow", "flow_bc"]
tasks = "1-2"
seeds = "0"
steps = 100
export_every = 50
eval_episodes = 2
dataset_episodes = 3
sets = [["actor_dims=32,32", "critic_dims=32,32", "batch_size=32", "qflow.guidance_lambda=2"]]
drift = 50
minutes = 1

[[entry]]
id = "tiny-command"
kind = "command"
command = "python -c \\"open('OUT/hello.json', 'w').write('{}')\\""
minutes = 1

[[entry]]
id = "too-big"
kind = "command"
command = "echo OUT"
minutes = 500
'''


def test_plan_runs_unfinished_entries_and_the_next_run_continues(tmp_path, monkeypatch):
    monkeypatch.setenv("QFLOW_DATA_DIR", str(tmp_path / "data"))
    path = tmp_path / "plan.toml"
    path.write_text(PLAN)
    entries = plan.load_plan(path)
    results = tmp_path / "results"
    assert [plan.entry_state(e, results)[0] for e in entries] == ["todo", "todo", "todo"]

    packed = plan.run_plan(entries, tmp_path / "out", tmp_path / "work", minutes=10, results=results,
                           log=lambda msg: None)
    assert [p.split("/")[-1] for p in packed] == ["tiny-stacked.tar", "tiny-command.tar"]  # too-big does not fit
    for tar in packed:
        with tarfile.open(tar) as t:
            assert not [n for n in t.getnames() if n.endswith(".msgpack")]  # policies stay on the machine
            t.extractall(results)
    assert [plan.entry_state(e, results)[0] for e in entries] == ["done", "done", "todo"]
    group = json.loads((results / "tiny-stacked/train/pointmaze-medium-navigate__qflow/group.json").read_text())
    assert group["config"]["guidance_lambda"] == 2 and group["step"] == 100
    run = results / "tiny-stacked/runs/train/pointmaze-medium-navigate-singletask-task2-v0__qflow/seed0"
    assert json.loads((run / "summary.json").read_text())["eval_steps"] == [50, 100]  # evaluated as it trained
    drift = (results / "tiny-stacked/drift/train/distances.csv").read_text().splitlines()
    assert len(drift) == 1 + 2 * 2 * 3  # header; 2 agents x 2 tasks x pairs (50,50), (50,100), (100,100)

    # the next run: nothing left that fits
    assert plan.run_plan(entries, tmp_path / "out2", tmp_path / "work2", minutes=10, results=results,
                         log=lambda msg: None) == []


def test_bad_plans_are_refused_with_the_reason(tmp_path):
    path = tmp_path / "plan.toml"
    path.write_text('[[entry]]\nid = "x"\nkind = "stacked"\nfamily = "cube-single-play"\nagents = ["qflow"]\n')
    with pytest.raises(QFlowError, match="needs family, agents and steps > 0"):
        plan.load_plan(path)
    path.write_text('[[entry]]\nid = "x"\nkind = "stacked"\nfamly = "typo"\n')
    with pytest.raises(QFlowError, match="unknown keys \\['famly'\\]"):
        plan.load_plan(path)
    with pytest.raises(QFlowError, match="no plan at"):
        plan.load_plan(tmp_path / "missing.toml")
    # a plan that would run nothing is refused, not passed with exit 0
    for text, reason in (("", "none found"), ('[[entries]]\nid = "x"\n', "unknown top-level keys \\['entries'\\]")):
        path.write_text(text)
        with pytest.raises(QFlowError, match=f"a list of \\[\\[entry\\]\\] tables; {reason}"):
            plan.load_plan(path)
    path.write_text('[[entry]]\nid = "x"\nkind = "stacked"\nfamily = "f"\nagents = ["qflow"]\nsteps = "many"\n')
    with pytest.raises(QFlowError, match="entry 1 \\(x\\): steps must be int, got 'many'"):
        plan.load_plan(path)
    path.write_text('[[entry]]\nid = "x"\nkind = "stacked"\nfamily = "f"\nagents = "qflow"\nsteps = 5000\n')
    assert plan.load_plan(path)[0].group.agents == ("qflow",)  # a string is parsed as on the command line
    path.write_text('[[entry]]\nid = "x"\nkind = "stacked"\nfamily = "f"\nagents = ["qflow"]\nsteps = 5000\nseeds = "0,0"\n')
    with pytest.raises(QFlowError, match="entry 1 \\(x\\): --seeds and --tasks must not repeat"):  # as qflow stacked train
        plan.load_plan(path)


def test_the_repository_plan_loads():
    entries = plan.load_plan(PLAN_FILE)
    # the first entry asks the question the plan exists for: Q-Flow against FQL on cube-single
    assert entries[0].group.family == "cube-single-play" and {"qflow", "fql"} <= set(entries[0].group.agents)
    assert all(e.minutes <= 15 for e in entries)


def stopped(pid: int, wait: float = 5.0) -> bool:
    """Whether process ``pid`` has ended within ``wait`` seconds (a zombie, killed but not yet reaped by
    whoever inherited it, counts as ended)."""
    import time
    from pathlib import Path

    for _ in range(int(wait * 10)):
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


def test_a_timed_out_command_is_stopped_with_its_children(tmp_path):
    """The deadline stops the whole process group: a shell's background child too, not only the shell."""
    import time

    pid_file = tmp_path / "child.pid"
    started = time.time()
    rc, _ = plan.run_until(f"sleep 300 & echo $! > {pid_file}; wait", time.time() + 2, shell=True)
    assert rc == "timeout" and time.time() - started < 30
    assert stopped(int(pid_file.read_text())), "the background child outlived the deadline"
    assert plan.run_until(["true"], time.time() + 10) == (0, "")


def test_ctrl_c_stops_the_command_group_too(tmp_path, monkeypatch):
    """The command runs detached from the terminal, which Ctrl-C then does not reach: run_until stops it."""
    import subprocess
    import time

    real = subprocess.Popen.communicate

    def interrupted(self, *args, **kwargs):  # Ctrl-C arrives while waiting
        try:
            real(self, timeout=1)
        except subprocess.TimeoutExpired:
            raise KeyboardInterrupt from None

    monkeypatch.setattr(subprocess.Popen, "communicate", interrupted)
    pid_file = tmp_path / "child.pid"
    with pytest.raises(KeyboardInterrupt):
        plan.run_until(f"sleep 300 & echo $! > {pid_file}; wait", time.time() + 600, shell=True)
    assert stopped(int(pid_file.read_text())), "the background child outlived Ctrl-C"
