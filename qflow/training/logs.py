"""Where a run's numbers go: append-only CSV files (always; they survive crashes and resumption)
and optional scalar sinks behind one interface (TensorBoard, Weights & Biases in offline mode)."""

from __future__ import annotations

import csv
from pathlib import Path

from qflow.errors import QFlowError
from qflow.utils import atomic_writer, naming


def read_rows(path: Path) -> list[dict]:
    """Every row of a CSV file (none if it does not exist), without touching it."""
    if not Path(path).exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[dict]) -> None:
    """Replace a CSV file's rows atomically (columns: the union over rows, in first-seen order)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(Path(path), "w") as f:
        if rows:  # no rows: an empty file
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)), restval="")
            writer.writeheader()
            writer.writerows(rows)


class CSVLog:
    """Rows with a ``step`` column. Opening with ``after_step`` drops rows a crashed run wrote past
    its last checkpoint, so a resumed run does not log a step twice."""

    def __init__(self, path: Path, after_step: int = 0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            rows = [r for r in self.read() if int(float(r["step"])) <= after_step]
        except (ValueError, KeyError, TypeError, csv.Error) as err:
            raise QFlowError(f"{self.path} is corrupted ({type(err).__name__}: {err}); move it away (the run's "
                             f"checkpoint is kept) or pass another --run-dir") from None
        if self.path.exists():
            write_rows(self.path, rows)

    def read(self) -> list[dict]:
        return read_rows(self.path)

    def write(self, row: dict) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        if not new:
            with open(self.path, newline="") as f:
                header = next(csv.reader(f), [])
            if header != list(row):  # a new column: rewrite with the union of columns
                write_rows(self.path, self.read() + [row])
                return
        try:
            with open(self.path, "a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(row))
                if new:
                    writer.writeheader()
                writer.writerow(row)
                f.flush()
        except OSError as err:  # a full disk: the error names no file unless told
            if err.filename is not None:
                raise
            raise naming(err, self.path) from err


def resumed_clock(logs: list[CSVLog]) -> float:
    """The start time that makes wall_time count on from a resumed run's last row (now for a new run)."""
    import time

    return time.time() - max([float(r.get("wall_time") or 0) for log in logs for r in log.read()[-1:]], default=0.0)


class ScalarSinks:
    """One seed's optional scalar sinks behind TensorBoard's ``add_scalar(tag, value, step)``.

    The CSV files stay the record; these are views of it for the tools researchers plot with.
    Weights & Biases runs in offline mode (no network, nothing hard-wired): `wandb sync DIR/wandb`
    uploads a run later if its owner wants to.
    """

    def __init__(self, run_dir: Path, tensorboard: bool = False, wandb: bool = False, name: str = "",
                 config: dict | None = None):
        self.writers = []
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                raise QFlowError("--tensorboard needs tensorboardX: pip install 'qflow[tensorboard]'") from None
            self.writers.append(SummaryWriter(str(Path(run_dir) / "tb")))
        if wandb:
            self.writers.append(_WandbWriter(Path(run_dir), name, config or {}))

    def add_scalar(self, tag: str, value, step: int) -> None:
        for writer in self.writers:
            writer.add_scalar(tag, float(value), step)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


class _WandbWriter:
    def __init__(self, run_dir: Path, name: str, config: dict):
        try:
            import wandb
        except ImportError:
            raise QFlowError("--wandb needs wandb: pip install 'qflow[wandb]'") from None
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(mode="offline", dir=str(run_dir), name=name, config=config, reinit="create_new")

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.run.log({tag: value}, step=step)

    def close(self) -> None:
        self.run.finish()


def drop_stale_summaries(dirs) -> None:
    """A run going on past its summary: the summary described a shorter budget, and `qflow report` must not
    score it under that budget if this continuation is killed (it is written anew at the end)."""
    for d in dirs:
        (d / "summary.json").unlink(missing_ok=True)


def write_summary(run_dir: Path, run_info: dict, eval_rows: list[dict], wall_time_s, command: str,
                  **extra) -> dict:
    """summary.json, the one record `qflow report` reads, from a run's identity and its evaluations:
    ``success`` = the last evaluation, ``success_last3`` = the mean of the last three, ``return`` =
    mean episode return at the last evaluation. Written atomically; returned as written.

    ``steps`` is always the offline steps the scored policy was trained for: a finished `qflow train`
    run's budget, a stacked group's last evaluated export (its budget is then ``budget``)."""
    from qflow.utils import atomic_write_json

    successes = [float(r["success"]) for r in eval_rows]
    summary = {
        **run_info, "run_dir": str(run_dir),
        "success": successes[-1] if successes else None,
        "success_last3": sum(successes[-3:]) / len(successes[-3:]) if successes else None,
        "return": float(eval_rows[-1]["return"]) if eval_rows else None,
        "eval_steps": [int(float(r["step"])) for r in eval_rows],
        "wall_time_s": wall_time_s, "command": command, **extra,
    }
    atomic_write_json(Path(run_dir) / "summary.json", summary)
    return summary
