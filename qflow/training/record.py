"""What a run is: its record (run.json, summary.json), read and compared one way everywhere, and the
checks that a directory holds the run about to use it. It imports no JAX itself (the command line's
parser reads it); filling an old record's config with its legacy values loads the agents."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from qflow.errors import QFlowError
from qflow.utils import atomic_write_json

RUN_INFO = "run.json"
# What must agree for a directory to be resumed by the same run: what is trained and how it is scored.
IDENTITY_KEYS = ("env", "agent", "seed", "config", "preset", "eval_every", "eval_episodes", "updates_per_step",
                 "init_from")
# Keys added after the first runs were recorded: a run.json without one is not refused for it.
LATER_KEYS = ("updates_per_step", "init_from")
# The flag that sets each key, for the message that says how to resume.
FLAGS = {"env": "--env", "agent": "--agent", "seed": "--seed", "preset": "--preset", "eval_every": "--eval-every",
         "eval_episodes": "--eval-episodes", "updates_per_step": "--updates-per-step"}  # init_from: a record


class CheckpointError(QFlowError, RuntimeError):
    pass


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["qflow", *sys.argv[1:]]) if sys.argv else "qflow"


class RunRecord:
    """What a run records about itself (run.json, summary.json), read and compared one way everywhere.

    A config key a record lacks because it did not exist when the record was written takes the value that
    run used (its agent's ``legacy_defaults``), never today's default: an old run is never taken for a new one.
    """

    @staticmethod
    def read(path: Path, fix: str = "move it away", error: type[Exception] = CheckpointError) -> dict:
        """The record at ``path`` with its legacy config values filled in. Raises ``error`` (one line naming
        the file, then ``fix``) when it is unreadable: missing, truncated, or not a JSON object."""
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise error(f"{path} is unreadable ({err}); {fix}") from None
        if not isinstance(record, dict):
            raise error(f"{path} is unreadable (a JSON {type(record).__name__}, not an object); {fix}")
        return RunRecord.with_legacy(record)

    @staticmethod
    def legacy(agent) -> dict:
        """The config values runs of ``agent`` used for keys added since; {} for an agent this version lacks."""
        from qflow.agents import AGENTS
        from qflow.agents.base import legacy_values

        return legacy_values(AGENTS[agent][1]) if isinstance(agent, str) and agent in AGENTS else {}

    @staticmethod
    def with_legacy(record: dict) -> dict:
        """``record`` with its agent's legacy values under the config keys it lacks (a copy; no config: as is)."""
        if not isinstance(record.get("config"), dict):
            return record
        return {**record, "config": {**RunRecord.legacy(record.get("agent")), **record["config"]}}

    @staticmethod
    def differences(old: dict, new: dict, keys: tuple[str, ...] = IDENTITY_KEYS) -> list[str]:
        """Which of ``keys`` differ between two records, in the order of ``keys``, both compared as stored
        in JSON after the legacy merge. The config is compared key by key (``config.KEY`` for each key either
        side has); a dotted key (``data.sha256``) names a nested value; a key of LATER_KEYS that ``old``
        lacks is not a difference (it was written before the key existed)."""
        old, new = (json.loads(json.dumps(RunRecord.with_legacy(r))) for r in (old, new))
        diff = []
        for key in keys:
            a, b = _lookup(old, key), _lookup(new, key)
            if key in LATER_KEYS and a is _ABSENT:
                continue
            if key == "config" and isinstance(a, dict) and isinstance(b, dict):
                diff += [f"config.{k}" for k in sorted({*a, *b}) if a.get(k, _ABSENT) != b.get(k, _ABSENT)]
            elif a != b:
                diff.append(key)
        return diff


_ABSENT = object()  # a key a record does not have (unequal to every value, None included)


def _lookup(record: dict, key: str):
    value = record
    for part in key.split("."):
        value = value.get(part, _ABSENT) if isinstance(value, dict) else _ABSENT
    return value


def check_compatible(run_dir: Path, info: dict) -> None:
    """First use of a directory records the run; a later run must be the same run."""
    path = run_dir / RUN_INFO
    if not path.exists():
        atomic_write_json(path, info)
        return
    old = RunRecord.read(path, fix="move the directory away or pass another --run-dir")
    diff = RunRecord.differences(old, info, (*IDENTITY_KEYS, "data.sha256"))
    if not diff:
        return
    differ = list(dict.fromkeys(d.split(".")[0] for d in diff))  # config.alpha -> config, data.sha256 -> data
    flags = [f"{FLAGS[k]} {old[k]}" for k in differ if k in FLAGS and k in old]
    # config keys the run was started with (e.g. a key that did not exist then): the --set that restores each
    config_keys = [d.partition(".")[2] for d in diff if d.startswith("config.")]
    flags += [f"--set {k}={_flag_value(old['config'][k])}" for k in config_keys if k in old["config"]]
    how = f"to resume it pass {' '.join(flags)} (the values it was started with), or " if flags else ""
    raise CheckpointError(
        f"{run_dir} holds a different run (differs in {', '.join(differ)}); {how}pass another --run-dir")


def _flag_value(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def check_layout(run_dir: Path, seeds) -> None:
    """A single-seed run and a several-seed run (seedS/ subdirectories) never share a directory."""
    if len(seeds) > 1 and (run_dir / RUN_INFO).exists():
        raise CheckpointError(f"{run_dir} holds a single-seed run; pass another --run-dir for --seeds")
    nested = sorted(p.parent.name for p in run_dir.glob(f"seed*/{RUN_INFO}"))
    if len(seeds) == 1 and nested and not (run_dir / RUN_INFO).exists():
        raise CheckpointError(f"{run_dir} holds the runs of several seeds ({', '.join(nested)}); resume them with "
                              f"--seeds and this --run-dir, or pass another --run-dir")
