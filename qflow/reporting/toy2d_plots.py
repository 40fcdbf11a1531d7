"""The figures of the 2-D bandit study (``qflow toy2d``): final samples, flow evolution, RL-phase curves.

Every figure carries the study's caption (its settings) at the bottom, so a figure read alone still
says what was run. Points and axes are in the plot units [-4, 4] (``SCALE`` x agent units).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qflow.experiments.toy2d.data import reward
from qflow.experiments.toy2d.settings import LABELS, SCALE, ToySettings


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on the machines that run the study
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path, caption: str, bottom: float, top: float) -> None:
    """Caption along the bottom edge, layout inside (bottom, top) of the height, written at 110 dpi."""
    fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=6.5, wrap=True)
    fig.tight_layout(rect=(0, bottom, 1, top))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bare(ax, lim: float) -> None:
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_xticks([])
    ax.set_yticks([])


def _heat(ax, name: str) -> None:
    grid = np.linspace(-SCALE, SCALE, 161)
    xx, yy = np.meshgrid(grid, grid)
    r = reward(name, np.stack([xx, yy], -1))
    ax.imshow(r, origin="lower", extent=(-SCALE, SCALE, -SCALE, SCALE), cmap="YlGn", alpha=0.7, aspect="equal")


def plot_grid(path: Path, name: str, data: np.ndarray, results: dict, settings: ToySettings, caption: str) -> None:
    """Methods x strengths: the first seed's final samples over the reward and the data."""
    plt = _pyplot()
    methods, cols = list(settings.methods), list(settings.strengths)
    fig, axes = plt.subplots(len(methods), len(cols), figsize=(2.6 * len(cols), 2.6 * len(methods) + 0.8),
                             squeeze=False)
    shown = data[:: max(1, len(data) // 3000)]  # thinned so the samples stay visible on top
    for i, method in enumerate(methods):
        for j, strength in enumerate(cols):
            ax = axes[i][j]
            res = results[method][None if method == "flow_bc" else strength]  # flow BC has no strength
            _heat(ax, name)
            ax.scatter(shown[:, 0], shown[:, 1], s=1, c="0.6", alpha=0.35, linewidths=0)
            pts = res["samples"][0][:1000]
            pts = pts[np.all(np.isfinite(pts), -1)]
            ax.scatter(pts[:, 0], pts[:, 1], s=1.5, c="tab:red", alpha=0.7, linewidths=0)
            _bare(ax, SCALE)
            ax.set_title(f"r {res['reward_mean']:.3f}  in {100 * res['support_mean']:.0f}%", fontsize=8)
            if i == 0:
                ax.annotate(f"strength {strength:g}", (0.5, 1.18), xycoords="axes fraction", ha="center", fontsize=9)
            if j == 0:
                ax.set_ylabel(LABELS[method], fontsize=9)
    fig.suptitle(f"{name}: final samples (red, seed {settings.seeds[0]}) over r(a) (colour), data grey", fontsize=10)
    _save(plt, fig, path, caption, 0.04, 0.97)


def plot_evolution(path: Path, name: str, data: np.ndarray, rows: list[tuple[str, np.ndarray]], steps: int,
                   caption: str) -> None:
    """One row per (label, Euler states): the flow's points at five times from x0 to the action."""
    plt = _pyplot()
    taus = (0.0, 0.25, 0.5, 0.75, 1.0)
    fig, axes = plt.subplots(len(rows), len(taus), figsize=(2.6 * len(taus), 2.7 * len(rows) + 0.6), squeeze=False)
    shown = data[:: max(1, len(data) // 3000)]
    for i, (label, states) in enumerate(rows):
        for j, tau in enumerate(taus):
            step = int(round(tau * steps))
            ax = axes[i][j]
            ax.scatter(shown[:, 0], shown[:, 1], s=1, c="0.8", alpha=0.5, linewidths=0)
            ax.scatter(states[step][:, 0], states[step][:, 1], s=1.5, c="tab:blue", alpha=0.6, linewidths=0)
            _bare(ax, 1.5 * SCALE)  # wider than the data: x0 starts wider than the actions end
            ax.set_aspect("equal")
            if i == 0:
                ax.set_title(f"tau = {step / steps:.2f}", fontsize=9)
            if j == 0:
                ax.set_ylabel(label, fontsize=9)
    fig.suptitle(f"{name}: flow evolution x_tau (blue) over the data (grey)", fontsize=10)
    _save(plt, fig, path, caption, 0.05, 0.96)


def plot_curves(out: Path, curve: list[dict], caption: str) -> None:
    """``{dataset}_curve.png`` per dataset: reward and support against RL updates, one panel per strength."""
    plt = _pyplot()
    for name in dict.fromkeys(r["dataset"] for r in curve):
        rows = [r for r in curve if r["dataset"] == name]
        strengths = sorted({r["strength"] for r in rows if r["strength"] != ""})
        fig, axes = plt.subplots(2, len(strengths), figsize=(3.2 * len(strengths), 5.6), squeeze=False)
        for j, strength in enumerate(strengths):
            for method in dict.fromkeys(r["method"] for r in rows):
                # flow BC's rows have no strength: its curve is drawn in every panel
                pick = [r for r in rows if r["method"] == method and r["strength"] in (strength, "")]
                steps = sorted({r["rl_updates"] for r in pick})
                for k, key in enumerate(("reward_mean", "support_fraction")):
                    mean = [np.mean([r[key] for r in pick if r["rl_updates"] == u]) for u in steps]
                    axes[k][j].plot(steps, mean, marker=".", label=LABELS[method])
            axes[0][j].set_title(f"strength {strength:g}", fontsize=9)
            axes[1][j].set_xlabel("RL updates")
        axes[0][0].set_ylabel("mean reward")
        axes[1][0].set_ylabel("in support (fraction)")
        axes[0][-1].legend(fontsize=7)
        fig.suptitle(f"{name}: reward and support against RL updates (mean over seeds)", fontsize=10)
        _save(plt, fig, out / f"{name}_curve.png", caption, 0.05, 0.96)
