"""`qflow --help` and every subcommand's `--help` answer without loading JAX or the agents.

The parser is built from the settings dataclasses, which live in modules that import only the
standard library (``training/settings.py``, ``experiments/settings.py``, ...); a settings class moved
back beside the code that runs it would pull JAX into every `--help`, and this test would fail.
"""

import subprocess
import sys

import pytest

from qflow.cli import PASSTHROUGH, build_parser

# Run in a fresh interpreter: this test process has long imported JAX.
PROBE = """
import contextlib, io, sys
from qflow.cli import main
for words in {commands!r}:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main([*words, "--help"])
        except SystemExit as stop:
            assert stop.code == 0, (words, stop.code)
    assert "usage:" in out.getvalue(), words
    heavy = sorted(m for m in ("jax", "flax", "optax", "qflow.agents", "mujoco") if m in sys.modules)
    assert not heavy, f"qflow {{' '.join(words)}} --help imported {{heavy}}"
print("ok", len({commands!r}))
"""


def all_commands() -> list[list[str]]:
    """Every command path of the parser: qflow, qflow train, qflow data prepare, ..., and the passthroughs."""
    import argparse

    def walk(parser, words):
        yield words
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    if name not in PASSTHROUGH:
                        yield from walk(child, [*words, name])

    return [*walk(build_parser(), []), *([name] for name in PASSTHROUGH)]


def test_every_help_answers_without_jax():
    commands = all_commands()
    assert ["train"] in commands and ["stacked", "train"] in commands and ["bandit"] in commands
    assert len(commands) >= 20
    done = subprocess.run([sys.executable, "-c", PROBE.format(commands=commands)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"ok {len(commands)}"


@pytest.mark.parametrize("module", ["qflow.training.settings", "qflow.experiments.settings", "qflow.bench.settings",
                                    "qflow.data.prepare", "qflow.training.record"])
def test_settings_modules_import_without_jax(module):
    done = subprocess.run([sys.executable, "-c", f"import sys, {module}; assert 'jax' not in sys.modules"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-1000:]
