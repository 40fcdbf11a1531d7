"""toy2d.csv (one row per dataset, method, strength and seed) and toy2d.md (means and spreads over seeds)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

FIELDS = ["dataset", "method", "strength", "knob", "seed", "reward_mean", "support_fraction", "finite_fraction"]


def write_tables(out: Path, rows: list[dict], caption: str) -> None:
    from qflow.utils import atomic_writer

    with atomic_writer(out / "toy2d.csv", "w") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in FIELDS})
    with atomic_writer(out / "toy2d.md", "w") as f:
        f.write("\n".join(_markdown(rows, caption)) + "\n")


def _markdown(rows: list[dict], caption: str) -> list[str]:
    """The Markdown table's lines: one line per (dataset, method, strength), in the order the rows came."""
    groups: dict = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["method"], row["strength"], row["knob"]), []).append(row)
    lines = ["# Toy 2-D bandit: mean reward and share of samples inside the data support", "", caption, "",
             "| dataset | method | strength | knob | mean reward (sd over seeds) | in support % (sd) | seeds |",
             "|---|---|---|---|---|---|---|"]
    for (dataset, method, strength, knob), group in groups.items():
        r = np.array([g["reward_mean"] for g in group], float)
        s = 100 * np.array([g["support_fraction"] for g in group], float)
        sd = lambda x: f" ({np.std(x):.3f})" if len(x) > 1 else ""  # noqa: E731
        sd1 = lambda x: f" ({np.std(x):.1f})" if len(x) > 1 else ""  # noqa: E731
        lines.append(f"| {dataset} | {method} | {strength} | {knob} | {np.nanmean(r):.3f}{sd(r)} | "
                     f"{np.mean(s):.1f}{sd1(s)} | {len(group)} |")
    return lines
