"""`qflow sweep --address` on a head started by `ray start`, as the README's recipe has it: the head asks
for a token (Ray 2.60 turns token authentication on where a token exists), relative paths mean the driver's
directory, and the cell's files come back to the driver. Only the head's own processes are stopped, found by
the sid that `ray start` got here (never `ray stop`, which stops every Ray instance on the machine)."""

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import ENV, free_port
from tests.test_sweep import _sweep_cmd



def _head_processes(sid: int) -> list[psutil.Process]:
    """The live processes whose sid is ``sid``: a head's daemons and the workers its raylet started."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):
            if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def _stop(sid: int) -> None:
    """SIGTERM to the head's processes, then SIGKILL to those still there after 10 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in _head_processes(sid):
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
        deadline = time.time() + 10
        while _head_processes(sid) and time.time() < deadline:
            time.sleep(0.2)


@contextlib.contextmanager
def ray_head(root: Path, env: dict):
    """A one-CPU head started by `ray start` in ``root / "head"``; yields its address."""
    ray = Path(sys.executable).with_name("ray")
    if not ray.exists():
        pytest.skip(f"no `ray` command beside {sys.executable}")
    (root / "head").mkdir()
    port = free_port()
    cmd = [str(ray), "start", "--head", "--port", str(port), "--num-cpus", "1",
           "--include-dashboard", "false", "--dashboard-port", str(free_port()), "--disable-usage-stats",
           "--temp-dir", str(root / "ray")]
    with open(root / "start.log", "w") as log:
        start = subprocess.Popen(cmd, cwd=root / "head", env=env, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)  # setsid: its processes, and only they, share its sid
    try:
        assert start.wait(timeout=180) == 0, (root / "start.log").read_text()[-3000:]
        yield f"127.0.0.1:{port}"
    finally:
        start.wait(timeout=60)
        _stop(start.pid)
        assert not _head_processes(start.pid), "a process of the head outlived its stop"


@pytest.mark.e2e
def test_sweep_through_the_address_of_a_ray_start_head(data_dir, tmp_path):
    root = Path(tempfile.mkdtemp(prefix="qh", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    token = root / "token"
    token.write_text(secrets.token_hex(32))
    # neither head nor driver gets the caller's Ray settings; both find the token, neither is told RAY_AUTH_MODE
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"RAY_AUTH_TOKEN_PATH": str(token)}
    driver = tmp_path / "driver"
    driver.mkdir()
    (driver / "data").symlink_to(data_dir)
    try:
        with ray_head(root, env) as address:
            assert "Token authentication is enabled" in (root / "start.log").read_text()
            cmd = _sweep_cmd("data", "out", "runs", "--agents", "flow_bc", "--seeds", "0", "--steps", "50",
                             "--chunk", "50", "--log-every", "50", "--checkpoint-every", "50", "--eval-every", "50",
                             "--address", address)
            started = time.time()
            done = subprocess.run(cmd, cwd=driver, env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr[-3000:]
        record = json.loads((driver / "out" / "sweep.json").read_text())
        cell = record["cells"][f"{ENV}__flow_bc__seed0"]
        assert cell["status"] == "done" and cell["attempts"] == 1 and cell["started"] >= time.strftime(
            "%Y-%m-%dT%H:%M:%S", time.localtime(started - 1))
        assert record["ray"] == {"address": address, "resources": {"CPU": 1.0}}
        # relative paths are the driver's, not those of the directory `ray start` was typed in
        assert not any((root / "head").iterdir())
        work = next((driver / "runs").glob(f"{ENV}__flow_bc__seed0__*"))
        summary = json.loads((driver / "out" / f"{ENV}__flow_bc" / "seed0" / "summary.json").read_text())
        assert summary["run_dir"] == str((driver / "out" / f"{ENV}__flow_bc" / "seed0").resolve())
        assert summary["trained_in"] == str(work.resolve() / "run") and summary["eval_steps"] == [50]
    finally:
        shutil.rmtree(root, ignore_errors=True)
