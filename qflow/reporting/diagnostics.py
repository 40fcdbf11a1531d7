"""Learning curves beside the guidance diagnostics: where does each agent's policy start to gain?

    python -m qflow.reporting.diagnostics RUN_DIR... --out DIR

Reads finished or unfinished runs (summary.json or run.json, eval.csv, metrics.csv with the
``diag_*`` columns the trainer logs) and writes:
- ``diagnostics.png``: per task, success at each evaluation and every logged diagnostic against
  gradient steps (mean over seeds, band = min-max);
- ``success_by_step.csv`` / the Markdown table: success at each evaluated step, mean with a 95 %
  t-interval over seeds cut to [0, 1] (the interval ``qflow report`` gives; ``reporting.stats``);
- ``improvement_onset.csv``: per run, the first logged step from which the policy improvement
  (Qbar(s, pi(s)) - Qbar(s, a_data)) stays positive for every later log row, and its last value;
- ``critic_swings.csv``: per run, where its mean Q(s, a_data) turns after its lowest point (a critic
  that climbs steadily has none), and per agent the correlation between the success at each
  evaluation after that point and how much Q rose over the ``--window`` steps before it;
- ``success_correlations.csv``: per agent, that correlation and, over the same evaluations, the
  correlation between success and each diagnostic's mean over the window before (does the critic's
  own verdict on the policy, or the guidance's size, rise when success falls?);
- ``diagnostics.md`` with the tables and a caption built from the runs.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from qflow.reporting import stats
from qflow.reporting.report import caption_lines, find_runs
from qflow.training.logs import read_rows, write_rows
from qflow.utils import atomic_writer

PANELS = [  # (column in metrics.csv, y label); success comes from eval.csv
    ("diag_policy_improvement", "policy improvement\nQbar(s,pi) - Qbar(s,a)"),
    ("diag_action_distance", "||pi(s) - a_data||"),
    ("diag_guidance_ratio", "Q-Flow: ||grad V|| / lambda\nover ||a - x0||"),
    ("diag_v_explained_var", "Q-Flow: V explained var."),
    ("q_mean", "mean Q(s, a_data)"),
]


# Diagnostics whose level before an evaluation is correlated with its success (critic_swings).
CORRELATED = ("diag_policy_improvement", "diag_guidance_norm", "diag_guidance_ratio", "diag_action_distance",
              "diag_v_explained_var")


def metric_series(run_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{column: (steps, values)} from a run's metrics.csv, plus the guidance ratio where it can be formed."""
    rows = read_rows(run_dir / "metrics.csv")
    series = {}
    for key in {k for r in rows for k in r} - {"step", "task", "seed", "wall_time"}:
        pts = [(int(float(r["step"])), float(r[key])) for r in rows if r.get(key) not in (None, "")]
        if pts:
            series[key] = tuple(np.array(x) for x in zip(*sorted(pts)))
    if "diag_guidance_norm" in series and "diag_bc_velocity_norm" in series:
        steps, guide = series["diag_guidance_norm"]
        series["diag_guidance_ratio"] = (steps, guide / series["diag_bc_velocity_norm"][1])
    return series


def improvement_onset(steps: np.ndarray, values: np.ndarray) -> int | None:
    """First step from which every later value is positive (None if the last one is not)."""
    if len(values) == 0 or values[-1] <= 0:
        return None
    negative = np.nonzero(values <= 0)[0]
    return int(steps[negative[-1] + 1]) if len(negative) else int(steps[0])


def critic_turns(steps: np.ndarray, q: np.ndarray) -> list[int]:
    """Logged steps after the lowest Q at which Q's direction of change flips (local extrema)."""
    lo = int(np.argmin(q))
    steps, q = steps[lo:], q[lo:]
    dq = np.diff(q)
    moving = np.nonzero(dq)[0]  # a flat stretch neither hides nor makes a turn
    flips = [j for i, j in zip(moving[:-1], moving[1:]) if np.sign(dq[i]) != np.sign(dq[j])]
    return [int(steps[j]) for j in flips]


def q_rise_before(steps: np.ndarray, q: np.ndarray, step: int, window: int) -> float | None:
    """Q(step) - Q(step - window) from the logged rows (None when either row is missing)."""
    at = dict(zip(steps.tolist(), q.tolist()))
    return at[step] - at[step - window] if step in at and step - window in at else None


def return_ratios(distance: dict[tuple[int, int], float], spacing: int) -> dict[int, float]:
    """Does a policy come back? For each export step t with exports at t - spacing and t + spacing:
    d(t - spacing, t + spacing) / mean(d(t - spacing, t), d(t, t + spacing)), from the distances between
    exports' actions (keys (s, u) with s < u). Steady motion in one direction gives 2, a random walk
    about 1.4 (sqrt 2), independent jitter around a fixed policy 1, and below 1 the policy comes back:
    t's neighbours are nearer each other than t is to either (0 when it returns exactly)."""
    ratios = {}
    for s, u in distance:
        if u - s == 2 * spacing and (s, s + spacing) in distance and (s + spacing, u) in distance:
            around = (distance[(s, s + spacing)] + distance[(s + spacing, u)]) / 2
            if around > 0:
                ratios[s + spacing] = distance[(s, u)] / around
    return dict(sorted(ratios.items()))


def mean_before(steps: np.ndarray, values: np.ndarray, step: int, window: int) -> float | None:
    """Mean of the logged values at steps in (step - window, step] (None when no row falls there)."""
    inside = (steps > step - window) & (steps <= step)
    return float(values[inside].mean()) if inside.any() else None


def _pearson(xy) -> float | None:
    x, y = np.array(xy, dtype=float).T
    return float(np.corrcoef(x, y)[0, 1]) if len(xy) > 2 and x.std() > 0 and y.std() > 0 else None


def critic_swings(runs, window: int) -> tuple[list[dict], list[dict]]:
    """Per run: Q's turns after its minimum. Per agent, over the evaluations after Q's lowest point:
    corr(success, Q's rise over the window before) and corr(success, each diagnostic's mean over it)."""
    per_run, pairs = [], defaultdict(list)
    for r in sorted(runs, key=lambda r: (r.env, r.agent, r.seed)):
        series = metric_series(r.path.parent)
        if "q_mean" not in series:
            continue
        steps, q = series["q_mean"]
        lowest = int(steps[int(np.argmin(q))])
        turns = critic_turns(steps, q)
        per_run.append(dict(env=r.env, agent=r.agent, seed=r.seed, q_lowest_step=lowest, turns=len(turns),
                            turn_steps=" ".join(map(str, turns))))
        for step, success in zip(r.curve[0].tolist(), r.curve[1]):
            rise = q_rise_before(steps, q, int(step), window)
            if step > lowest and rise is not None:
                pairs[(r.env, r.agent, "q_rise")].append((rise, float(success)))
                for column in CORRELATED:
                    if column in series:
                        level = mean_before(*series[column], int(step), window)
                        if level is not None:
                            pairs[(r.env, r.agent, column)].append((level, float(success)))
    per_agent = {}
    for (env, agent, column), xy in sorted(pairs.items()):
        row = per_agent.setdefault((env, agent), dict(env=env, agent=agent, window=window))
        if column == "q_rise":
            row.update(evaluations=len(xy), correlation=_pearson(xy))
        else:
            row[f"r_{column}"] = _pearson(xy)
    return per_run, list(per_agent.values())


def make_diagnostics_report(paths, out, reps: int = 2000, window: int = 3000) -> dict:
    """The files of the module docstring under ``out``, from the runs under ``paths``; returns their rows."""
    runs, notes = find_runs(paths, metric="success", include_partial=True)
    if not runs:
        raise SystemExit(f"qflow diagnostics: no runs with evaluations under {', '.join(map(str, paths))}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    by_group = defaultdict(list)
    for r in runs:
        by_group[(r.env, r.agent)].append(r)
    success_rows, onset_rows = _success_rows(by_group), _onset_rows(by_group)
    write_rows(out / "success_by_step.csv", success_rows)
    write_rows(out / "improvement_onset.csv", onset_rows)
    swing_rows, swing_corr = critic_swings(runs, window)
    write_rows(out / "critic_swings.csv", swing_rows)
    write_rows(out / "success_correlations.csv", swing_corr)
    figure = _plot(runs, out / "diagnostics.png")
    lines = caption_lines(runs, "success", reps)
    lines[0] = ("Score: success rate of the evaluation at that step, in %; mean over seeds with a 95 % t-interval "
                "over seeds, cut to [0, 100].")
    md = ["# Learning curves and guidance diagnostics", "", f"Made from: {', '.join(map(str, paths))}.", ""]
    md += _success_markdown(success_rows, " ".join(lines)) + _onset_markdown(onset_rows)
    md += _swings_markdown(swing_rows, swing_corr, window)
    md += ["", f"![diagnostics]({figure.name})", ""]
    if notes:
        md += ["Skipped: " + "; ".join(notes), ""]
    with atomic_writer(out / "diagnostics.md", "w") as f:
        f.write("\n".join(md))
    return {"runs": len(runs), "out": str(out), "success": success_rows, "onset": onset_rows,
            "critic_swings": swing_rows, "critic_correlation": swing_corr}


def rate_interval(scores) -> tuple[float, float, float]:
    """(mean, low, high) of per-seed success rates: the 95 % t-interval cut to [0, 1] (no rate lies outside)."""
    mean, low, high = stats.t_interval(scores)
    return mean, *stats.rate_bounds(low, high)


def _success_rows(by_group: dict) -> list[dict]:
    """Per (task, agent) and evaluated step that all its seeds reached: the mean success and its 95 % interval."""
    rows = []
    for (env, agent), rs in sorted(by_group.items()):
        steps = sorted(set.intersection(*[set(r.curve[0].tolist()) for r in rs]))
        for step in steps:
            mean, low, high = rate_interval([dict(zip(r.curve[0].tolist(), r.curve[1]))[step] for r in rs])
            rows.append(dict(env=env, agent=agent, step=int(step), seeds=len(rs), mean=mean, ci_low=low, ci_high=high))
    return rows


def _onset_rows(by_group: dict) -> list[dict]:
    """Per run that logs the policy improvement: its onset and its last logged values."""
    rows = []
    for (env, agent), rs in sorted(by_group.items()):
        for r in sorted(rs, key=lambda r: r.seed):
            series = metric_series(r.path.parent)
            if "diag_policy_improvement" in series:
                s, v = series["diag_policy_improvement"]
                rows.append(dict(env=env, agent=agent, seed=r.seed, onset_step=improvement_onset(s, v),
                                 last_step=int(s[-1]), last_improvement=float(v[-1]),
                                 last_action_distance=float(series["diag_action_distance"][1][-1])))
    return rows


def _success_markdown(success_rows: list[dict], caption: str) -> list[str]:
    md = ["## Success at each evaluation (%)", "", "| task | agent | step | seeds | mean [95 % CI] |",
          "|---|---|---|---|---|"]
    md += [f"| {r['env']} | {r['agent']} | {r['step']:,} | {r['seeds']} | {100 * r['mean']:.1f}"
           f"{_ci(r['ci_low'], r['ci_high'])} |" for r in success_rows]
    return md + ["", f"*{caption}*", ""]


def _onset_markdown(onset_rows: list[dict]) -> list[str]:
    md = ["## When the policy starts to gain over the data", "",
          "Onset: the first logged step from which Qbar(s, pi(s)) - Qbar(s, a_data) (target critic, mean over "
          "heads, a fresh batch every 1,000 steps) stays positive at every later log row; none: it is not "
          "positive at the last row.", "",
          "| task | agent | seed | onset step | last logged step | improvement there | distance from data there |",
          "|---|---|---|---|---|---|---|"]
    return md + [f"| {r['env']} | {r['agent']} | {r['seed']} | {_steps(r['onset_step'])} | {r['last_step']:,} "
                 f"| {r['last_improvement']:.3f} | {r['last_action_distance']:.3f} |" for r in onset_rows]


def _swings_markdown(swing_rows: list[dict], swing_corr: list[dict], window: int) -> list[str]:
    md = ["", "## Does the critic swing, and does success move with it?", "",
          "Turns: logged steps after the lowest mean Q(s, a_data) at which Q changes direction (a critic that "
          "climbs steadily has none). Correlation: Pearson r, over the runs of an agent, between the success at "
          f"each evaluation after Q's lowest point and Q's rise over the {window:,} steps before that evaluation.", "",
          "| task | agent | seed | lowest Q at step | turns after it | at steps |", "|---|---|---|---|---|---|"]
    md += [f"| {r['env']} | {r['agent']} | {r['seed']} | {r['q_lowest_step']:,} | {r['turns']} | {r['turn_steps']} |"
           for r in swing_rows]
    md += ["", "| task | agent | evaluations | r(success, Q rise before) | "
           + " | ".join(f"r(success, {CORRELATED_LABELS[c]})" for c in CORRELATED) + " |",
           "|---|---|---|---|" + "---|" * len(CORRELATED)]
    md += [f"| {r['env']} | {r['agent']} | {r['evaluations']} | {_r(r['correlation'])} | "
           + " | ".join(_r(r.get(f"r_{c}")) for c in CORRELATED) + " |" for r in swing_corr]
    return md + ["", f"The other columns: Pearson r over the same evaluations between success and the diagnostic's "
                 f"mean over the log rows of the {window:,} steps before the evaluation (empty: the agent does not "
                 f"log it)."]


def setting_comparison_table(settings, steps, reps: int = 2000) -> str:
    """Agents under different settings, per environment: success averaged over the evaluations at ``steps``
    (95 % t-interval over seeds of each seed's average, cut to [0, 1]; seeds missing one of them are left
    out; ``reps`` is unused, kept for callers of the bootstrap version)
    and how far the curve falls back: the mean over seeds and consecutive evaluations of
    max(0, success(previous) - success(next)), 0 for a curve that never drops. ``settings``: a list of
    ({agent: label}, folder holding ENV__AGENT/seedS runs); only the agents a label names are shown."""
    steps = sorted(steps)
    out = ["| environment | agent | setting | seeds | mean success over " + ", ".join(f"{t // 1000}k" for t in steps)
           + " [95 % CI] | drop between consecutive evaluations, mean over seeds and pairs | "
           "success at each, mean over seeds |",
           "|---|---|---|---|---|---|---|"]
    table = []
    for order, (labels, folder) in enumerate(settings):
        for agent, label in labels.items():
            per_env = defaultdict(list)
            for run in sorted(Path(folder).glob(f"*__{agent}/seed*")):
                at = {int(r["step"]): float(r["success"]) for r in read_rows(run / "eval.csv")}
                if all(t in at for t in steps):
                    per_env[run.parent.name.rsplit("__", 1)[0]].append([at[t] for t in steps])
            for env, per_seed in per_env.items():
                curve = np.array(per_seed)
                mean, low, high = rate_interval(curve.mean(axis=1))
                drop = np.maximum(0.0, -np.diff(curve, axis=1)).mean() if len(steps) > 1 else 0.0
                table.append(((env, agent != "qflow", agent, order),
                              f"| {env} | {agent} | {label} | {len(per_seed)} | {100 * mean:.1f}"
                              f"{_ci(low, high)} | {100 * drop:.1f} | "
                              + ", ".join(f"{100 * v:.1f}" for v in curve.mean(axis=0)) + " |"))
    return "\n".join(out + [line for _, line in sorted(table)])


CORRELATED_LABELS = {"diag_policy_improvement": "critic's improvement", "diag_guidance_norm": "norm of grad V / lambda",
                     "diag_guidance_ratio": "guidance / BC velocity", "diag_action_distance": "distance from data",
                     "diag_v_explained_var": "V explained var."}


def _ci(low: float, high: float) -> str:
    """" [low, high]" in %, or nothing where one seed gives no interval."""
    return "" if np.isnan(low) else f" [{100 * low:.1f}, {100 * high:.1f}]"


def _r(value) -> str:
    return "" if value is None else f"{value:.2f}"


def _steps(step) -> str:
    return "none" if step is None else f"{step:,}"


def _plot(runs, path: Path) -> Path:
    from matplotlib.figure import Figure

    tasks = sorted({r.env for r in runs})
    agents = sorted({r.agent for r in runs})
    fig = Figure(figsize=(4.2 * len(tasks) + 0.6, 2.3 * (len(PANELS) + 1)), layout="constrained")
    axes = fig.subplots(len(PANELS) + 1, len(tasks), squeeze=False, sharex="col")
    for j, env in enumerate(tasks):
        for a, agent in enumerate(agents):
            rs = [r for r in runs if r.env == env and r.agent == agent]
            if not rs:
                continue
            color = f"C{a % 10}"
            steps = sorted(set.intersection(*[set(r.curve[0].tolist()) for r in rs]))
            ys = 100 * np.array([[dict(zip(r.curve[0].tolist(), r.curve[1]))[s] for s in steps] for r in rs])
            if steps:
                axes[0][j].plot(steps, ys.mean(0), color=color, marker=".", label=f"{agent} (n={len(rs)})")
                axes[0][j].fill_between(steps, ys.min(0), ys.max(0), color=color, alpha=0.2, linewidth=0)
            series = [metric_series(r.path.parent) for r in rs]
            for i, (key, _) in enumerate(PANELS, start=1):
                have = [s[key] for s in series if key in s]
                if not have:
                    continue
                common = sorted(set.intersection(*[set(x.tolist()) for x, _ in have]))
                vals = np.array([[dict(zip(x.tolist(), y))[s] for s in common] for x, y in have])
                axes[i][j].plot(common, vals.mean(0), color=color, linewidth=1)
                axes[i][j].fill_between(common, vals.min(0), vals.max(0), color=color, alpha=0.2, linewidth=0)
        axes[0][j].set_title(env.replace("-singletask", "").replace("-v0", ""), fontsize=9)
        axes[1][j].axhline(0, color="0.5", linewidth=0.6)
        axes[-1][j].set_xlabel("gradient steps")
    axes[0][0].set_ylabel("success (%)")
    for i, (_, label) in enumerate(PANELS, start=1):
        axes[i][0].set_ylabel(label, fontsize=8)
    axes[0][-1].legend(fontsize=7)
    fig.savefig(path, dpi=110)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--reps", type=int, default=2000, help="unused (the success intervals are t-intervals); kept "
                   "so that older command lines still run")
    p.add_argument("--window", type=int, default=3000, help="steps before an evaluation over which Q's rise and each diagnostic's mean are taken")
    a = p.parse_args(argv)
    result = make_diagnostics_report(a.run_dirs, a.out, a.reps, a.window)
    print(f"[qflow] diagnostics of {result['runs']} runs in {result['out']}: diagnostics.md, diagnostics.png, "
          f"success_by_step.csv, improvement_onset.csv, critic_swings.csv, success_correlations.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
