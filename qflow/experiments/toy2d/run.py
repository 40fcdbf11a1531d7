"""The driver: every dataset, method, strength and seed in turn; then the tables, figures and toy2d.json."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from qflow.experiments.toy2d.data import bandit_batch, generate, reward, sample_scores, support_fraction
from qflow.experiments.toy2d.settings import KNOBS, ToySettings, caption_for
from qflow.experiments.toy2d.tables import write_tables
from qflow.experiments.toy2d.train import ChunkRunner, flow_states, pretrain_flow, sample_actions, train_method

EVAL_SEED = 12345  # the same sampling noise for every agent and every measurement


@dataclasses.dataclass
class _Collected:
    """What the study gathers over the datasets."""

    rows: list = dataclasses.field(default_factory=list)  # toy2d.csv: a data row per dataset, then one per agent
    results: dict = dataclasses.field(default_factory=dict)  # {dataset: {method: {strength: means}}}
    timings: dict = dataclasses.field(default_factory=dict)  # seconds per "dataset/phase or method"
    figures: list = dataclasses.field(default_factory=list)  # file names of the figures written
    curve: list = dataclasses.field(default_factory=list)  # toy2d_curve.csv (empty unless curve_points)


def run_toy2d(settings: ToySettings, out_dir: str | Path | None = "results/toy2d", progress: bool = True,
              command: str | None = None, plots: bool = True) -> dict:
    """Train every (dataset, method, strength, seed), write figures / tables / JSON; return the summary."""
    settings.validate()
    started = time.time()
    runner = ChunkRunner(settings.phase_steps()[0], _progress_bar(settings) if progress else None)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    caption = caption_for(settings)
    found = _Collected()
    for d_index, name in enumerate(settings.datasets):
        _run_dataset(name, d_index, settings, runner, found, out if plots else None, caption)
    if runner.bar is not None:
        runner.bar.close()
    summary = _summary(settings, runner, found, started, command, caption, out is not None and plots)
    if out is not None:
        _write_outputs(out, summary, found, caption, plots)
    return summary


def _progress_bar(settings: ToySettings):
    from tqdm import tqdm

    _, pre_steps, bc_steps, rl_steps = settings.phase_steps()
    per_dataset = pre_steps + (bc_steps + rl_steps) * len(settings.methods)  # stacked updates
    return tqdm(total=per_dataset * len(settings.datasets), unit="upd", dynamic_ncols=True,
                desc="toy2d", postfix={"seeds/call": len(settings.seeds)})


def _stage(runner: ChunkRunner, text: str) -> None:
    if runner.bar is not None:
        runner.bar.set_postfix_str(text)


def _run_dataset(name: str, d_index: int, settings: ToySettings, runner: ChunkRunner, found: _Collected,
                 figures_dir: Path | None, caption: str) -> None:
    """Pretraining, then every method on dataset ``name``; its rows, means, timings and figures go to ``found``."""
    points = generate(name, settings.n_data, settings.data_seed + d_index)
    data = bandit_batch(name, points)
    found.rows.append(_data_row(name, d_index, points, settings))
    _stage(runner, f"{name} / pretraining")
    t0 = time.time()
    pretrained = pretrain_flow(data, settings, runner, name)
    found.timings[f"{name}/pretraining"] = round(time.time() - t0, 1)
    trained, results = {}, {}
    for method in settings.methods:
        _stage(runner, f"{name} / {method}")
        t0 = time.time()
        measure = _curve_measure(name, method, points, settings, found.curve) if settings.curve_points else None
        trained[method] = train_method(method, data, settings, runner, f"{name}/{method}", pretrained, measure)
        results[method] = _evaluate(name, method, trained[method], points, settings, found.rows)
        found.timings[f"{name}/{method}"] = round(time.time() - t0, 1)
    found.results[name] = {m: {str(k): {kk: vv for kk, vv in v.items() if kk != "samples"}
                               for k, v in res.items()} for m, res in results.items()}
    if figures_dir is not None:
        found.figures += _dataset_figures(figures_dir, name, points, results, trained, settings, caption)


def _data_row(name: str, d_index: int, points: np.ndarray, settings: ToySettings) -> dict:
    """The ceiling: the data's own mean reward, and the in-support share of fresh draws of the generator."""
    fresh = generate(name, settings.eval_samples, settings.data_seed + 1000 + d_index)
    return {"dataset": name, "method": "data", "strength": "", "knob": "", "seed": "",
            "reward_mean": float(reward(name, points).mean()),
            "support_fraction": support_fraction(fresh, points, settings.support_radius),
            "finite_fraction": 1.0}


def _curve_measure(name: str, method: str, points: np.ndarray, settings: ToySettings, curve: list):
    """``measure`` for train_method: appends every seed's reward and support at ``rl_updates`` to ``curve``."""

    def measure(by_strength: dict, rl_updates: int) -> None:
        for strength, agents in by_strength.items():
            samples = sample_actions(agents, settings.eval_samples, seed=EVAL_SEED)
            for i, seed in enumerate(settings.seeds):
                r, support, _ = sample_scores(name, samples[i], points, settings.support_radius)
                curve.append({"dataset": name, "method": method, "strength": "" if strength is None else strength,
                              "seed": seed, "rl_updates": rl_updates, "reward_mean": r, "support_fraction": support})

    return measure


def _evaluate(name: str, method: str, trained: dict, points: np.ndarray, settings: ToySettings,
              rows: list) -> dict:
    """Scores the final samples: a row per seed into ``rows``; returns {strength: samples, seed means}."""
    results = {}
    for strength, agents in trained.items():
        samples = sample_actions(agents, settings.eval_samples, seed=EVAL_SEED)
        per_seed = []
        for i, seed in enumerate(settings.seeds):
            r, support, finite = sample_scores(name, samples[i], points, settings.support_radius)
            per_seed.append({
                "dataset": name, "method": method, "strength": "" if strength is None else strength,
                "knob": "" if strength is None else f"{KNOBS[method]}={strength * settings.knob_scale:g}",
                "seed": seed, "reward_mean": r, "support_fraction": support, "finite_fraction": finite})
        rows += per_seed
        results[strength] = {
            "samples": samples,
            "reward_mean": float(np.nanmean([row["reward_mean"] for row in per_seed])),
            "support_mean": float(np.mean([row["support_fraction"] for row in per_seed])),
        }
    return results


def _dataset_figures(out: Path, name: str, points: np.ndarray, results: dict, trained: dict,
                     settings: ToySettings, caption: str) -> list[str]:
    """The sample grid and, when flow BC and Q-Flow both ran, their flow evolution; returns the file names."""
    import jax

    from qflow.reporting.toy2d_plots import plot_evolution, plot_grid

    plot_grid(out / f"{name}_grid.png", name, points, results, settings, caption)
    if "flow_bc" not in trained or "qflow" not in trained:
        return [f"{name}_grid.png"]
    strength = min(settings.strengths, key=lambda s: abs(s - settings.evolution_strength))
    first = lambda agents: jax.tree.map(lambda x: x[0], agents)  # noqa: E731  (the first seed)
    evo = [("flow BC", flow_states(first(trained["flow_bc"][None]), 1000, 7, settings.flow_steps)),
           (f"Q-Flow, strength {strength:g}",
            flow_states(first(trained["qflow"][strength]), 1000, 7, settings.flow_steps))]
    plot_evolution(out / f"{name}_evolution.png", name, points, evo, settings.flow_steps,
                   caption + " Axes span +-6: x0 ~ N(0, I) in agent units is N(0, 16 I) here.")
    return [f"{name}_grid.png", f"{name}_evolution.png"]


def _summary(settings: ToySettings, runner: ChunkRunner, found: _Collected, started: float,
             command: str | None, caption: str, curve_figures: bool) -> dict:
    """toy2d.json: the settings with the steps they give, the means, timings, versions and every row."""
    import jax

    from qflow.utils import package_versions

    length, pre_steps, bc_steps, rl_steps = settings.phase_steps()
    summary = {
        "settings": {**dataclasses.asdict(settings), "steps_per_epoch": settings.steps_per_epoch,
                     "chunk_length": length, "pretrain_steps": pre_steps, "bc_steps": bc_steps,
                     "rl_steps": rl_steps},
        "results": found.results,
        "nonfinite_losses": runner.nonfinite,
        "timings_s": found.timings,
        "wall_time_s": round(time.time() - started, 1),
        "versions": package_versions(),
        "device": jax.devices()[0].device_kind,
        "command": command if command is not None else " ".join(sys.argv),
        "caption": caption,
        "figures": list(found.figures),
        "rows": found.rows,
    }
    if found.curve:
        summary["curve"] = found.curve
        if curve_figures:
            summary["figures"] += [f"{name}_curve.png" for name in dict.fromkeys(r["dataset"] for r in found.curve)]
    return summary


def _write_outputs(out: Path, summary: dict, found: _Collected, caption: str, plots: bool) -> None:
    from qflow.training.logs import write_rows
    from qflow.utils import atomic_write_json

    write_tables(out, found.rows, caption)
    if found.curve:
        write_rows(out / "toy2d_curve.csv", found.curve)  # reward and support per seed at each measured update
        if plots:
            from qflow.reporting.toy2d_plots import plot_curves

            plot_curves(out, found.curve, caption)
    atomic_write_json(out / "toy2d.json", summary)
