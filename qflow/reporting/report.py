"""``qflow report``: per-task and per-environment tables (means with 95 % t-intervals over seeds, IQMs with
rliable's stratified bootstrap), learning curves, captions built from the runs' own summaries, and with
``--compare A,B`` a permutation test and the probability of improvement (``reporting.stats``).

Unequal seed counts: the per-environment score matrix must be rectangular (runs x tasks) for rliable's
stratified bootstrap and for the IQM to weigh every task equally, so for each agent every task keeps
its lowest ``k`` seeds, ``k`` being the smallest run count among that agent's tasks; the caption says so.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import warnings
from collections import defaultdict
from functools import reduce
from pathlib import Path

import numpy as np

from qflow.data.registry import env_family, parse_env_id
from qflow.errors import QFlowError
from qflow.reporting import stats
from qflow.training.record import RunRecord
from qflow.utils import atomic_write_json, atomic_writer

METRICS = {"success_last3": "mean success rate of each run's last three evaluations",
           "success": "success rate at each run's final evaluation"}


SEEDS_FOR_FINDINGS = 5  # fewer seeds per (task, agent): the caption calls a difference a lead


class ReportError(QFlowError, ValueError):
    """A problem with the inputs; the message names the directory or file at fault."""


@dataclasses.dataclass
class Run:
    path: Path  # the file the run was read from
    env: str
    family: str
    task: str  # "1".."5", or "default" for an id without -taskN
    agent: str
    config: dict
    seed: int
    steps: int  # offline gradient steps
    online_steps: int  # env steps of online fine-tuning after them (qflow train --online-steps)
    preset: str
    eval_episodes: int
    origin: str
    dataset_episodes: int
    data: str  # dataset, origin and size in words
    versions: str
    score: float
    curve: tuple  # (steps, success) arrays from eval.csv
    partial: bool
    label: str = ""

    @property
    def budget(self) -> str:
        online = f" + {self.online_steps:,} online env steps" if self.online_steps else ""
        return f"{self.steps:,} {'offline ' if online else ''}gradient steps{online}"


def _rliable():
    try:
        from rliable import library as rly, metrics
    except Exception as err:  # ImportError, or a broken arch/pandas pair failing at import time
        raise ReportError(f"qflow report needs rliable ({type(err).__name__}: {err}); "
                          "install it with: pip install 'qflow[report]'") from None
    return rly, metrics


def _get(info: dict, path: Path, *keys, kind=None):
    value = info
    try:
        for k in keys:
            value = value[k]
        return kind(value) if kind else value
    except (KeyError, TypeError, ValueError):
        raise ReportError(f"{path}: missing or malformed field '{'.'.join(keys)}'") from None


def _read_curve(path: Path):
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        return (np.array([int(float(r["step"])) for r in rows], dtype=np.int64),
                np.array([float(r["success"]) for r in rows], dtype=np.float64))
    except FileNotFoundError:
        raise ReportError(f"{path}: missing (each run directory holds an eval.csv)") from None
    except (KeyError, TypeError, ValueError, csv.Error, UnicodeDecodeError) as err:
        raise ReportError(f"{path}: malformed eval.csv, expected columns step,success,... ({err!r})") from None


TIME_FEATURES = {"f_tau": "sin/cos(f tau), as the paper and the authors' code",
                 "2pi_f_tau": "sin/cos(2 pi f tau), the features this project used before 2026-11-30"}


def _load(run_dir: Path, metric: str, partial: bool) -> Run | None:
    """One run from summary.json, or (partial) from run.json plus the evaluations in eval.csv."""
    path = run_dir / ("run.json" if partial else "summary.json")
    # legacy config values filled in (e.g. Q-Flow's time features before the key existed)
    info = RunRecord.read(path, fix="repair it or leave its run out of the report", error=ReportError)
    env = _get(info, path, "env", kind=str)
    try:
        dataset, task = parse_env_id(env)
    except ValueError as err:
        raise ReportError(f"{path}: {err}") from None
    curve = _read_curve(run_dir / "eval.csv")
    if partial:  # no summary: score the evaluations that exist, as the trainer would have
        score = (float(np.mean(curve[1][-3:])) if metric == "success_last3" else float(curve[1][-1])) \
            if len(curve[1]) else None
    else:
        score = info.get(metric, "missing")
        if score == "missing" or (score is not None and not isinstance(score, (int, float))):
            raise ReportError(f"{path}: missing or malformed field '{metric}'")
    if score is None:
        return None
    episodes = _get(info, path, "data", "episodes", kind=int)
    origin = _get(info, path, "data", "origin", kind=str)
    versions = info.get("versions") if isinstance(info.get("versions"), dict) else {}
    config = _get(info, path, "config", kind=dict)
    return Run(path=path, env=env, family=env_family(env), task=str(task) if task else "default",
               agent=_get(info, path, "agent", kind=str), config=config,
               seed=_get(info, path, "seed", kind=int), steps=_get(info, path, "steps", kind=int),
               online_steps=_get(info, path, "online_steps", kind=int) if info.get("online_steps") else 0,
               preset=_get(info, path, "preset", kind=str), eval_episodes=_get(info, path, "eval_episodes", kind=int),
               origin=origin, dataset_episodes=episodes,
               data=f"{info['data'].get('dataset', dataset)} ({origin}, {episodes:,} training episodes)",
               versions=", ".join(f"{p} {versions.get(p, 'unknown')}" for p in ("ogbench", "jax")),
               score=float(score), curve=curve, partial=partial)


def find_runs(paths, metric: str = "success_last3", include_partial: bool = False):
    """Runs under ``paths`` (run directories or parents searched recursively) and warnings for skipped ones."""
    summaries, partial, notes = {}, {}, []
    for p in map(Path, paths):
        if not p.is_dir():
            raise ReportError(f"{p}: {'not a directory' if p.exists() else 'no such directory'}")
        hidden = lambda f: any(part.startswith(".") for part in f.relative_to(p).parts)  # noqa: E731 (staging, temp)
        for s in p.rglob("summary.json"):
            if not hidden(s):
                summaries[s.parent.resolve()] = s.parent
        for e in p.rglob("eval.csv"):
            if not hidden(e) and not (e.parent / "summary.json").exists():
                partial[e.parent.resolve()] = e.parent
    runs = []
    for d in sorted(summaries.values()):
        run = _load(d, metric, partial=False)
        if run is None:
            notes.append(f"{d}: skipped, no evaluations in summary.json")
        else:
            runs.append(run)
    for d in sorted(partial.values()):
        if not include_partial:
            notes.append(f"{d}: skipped, no summary.json (unfinished run; --include-partial scores it from eval.csv)")
        elif not (d / "run.json").exists():
            notes.append(f"{d}: skipped, neither summary.json nor run.json")
        else:
            run = _load(d, metric, partial=True)
            if run is None:
                notes.append(f"{d}: skipped, eval.csv has no evaluations")
            else:
                runs.append(run)
    if not runs:
        hint = "" if include_partial or not partial else \
            f" ({len(partial)} unfinished runs there: add --include-partial)"
        raise ReportError(f"no summary.json with evaluations found under: {', '.join(map(str, paths))}{hint}")
    runs, dup_notes = _label(runs)
    return runs, notes + dup_notes


def _fmt(value) -> str:
    return "x".join(map(str, value)) if isinstance(value, list) else str(value)


def _label(runs) -> list:
    """Name each variant: the agent, plus the config keys on which its runs on one task differ (e.g.
    guidance_lambda); keys that only differ between tasks (a per-task setting) do not split an agent.
    Returns the runs less unfinished duplicates of finished ones, with a note for each."""
    by_agent = defaultdict(lambda: defaultdict(list))
    for r in runs:
        by_agent[r.agent][r.env].append(r)
    for agent, by_env in by_agent.items():
        differ = set()
        for rs in by_env.values():
            keys = {k for r in rs for k in r.config}
            differ |= {k for k in keys if len({json.dumps(r.config.get(k), sort_keys=True) for r in rs}) > 1}
        if "preset" in differ:  # the preset names the layer sizes; listing them too only clutters the label
            differ = {k for k in differ if not k.endswith("_dims")}
        for rs in by_env.values():
            for r in rs:
                r.label = agent + (f" ({', '.join(f'{k}={_fmt(r.config.get(k))}' for k in sorted(differ))})"
                                   if differ else "")
    kept, notes = {}, []
    for r in sorted(runs, key=lambda r: r.partial):  # finished runs first: they win over unfinished reruns
        other = kept.setdefault((r.env, r.label, r.seed), r)
        if other is r:
            continue
        if not r.partial:
            raise ReportError(f"two runs of {r.label} on {r.env} with seed {r.seed}: {other.path} and {r.path}")
        notes.append(f"{r.path.parent}: skipped, unfinished duplicate of {other.path.parent}")
    return list(kept.values()), notes


def _task_key(task: str):
    return (0, int(task)) if task.isdigit() else (1, 0)


def bootstrap_interval(matrix: np.ndarray, reps: int):
    """(mean, iqm) point estimates and their 95 % CIs as a (2, 2) array [[lo_mean, lo_iqm], [hi_mean, hi_iqm]]."""
    rly, metrics = _rliable()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # arch's notice about rliable's random_state argument
        points, cis = rly.get_interval_estimates(
            {"x": matrix}, lambda x: np.array([metrics.aggregate_mean(x), metrics.aggregate_iqm(x)]),
            reps=reps, random_state=np.random.RandomState(0))  # fixed: the same runs give the same report
    return points["x"], cis["x"]


def caption_lines(runs, metric: str, reps: int) -> list[str]:
    def values(attr):
        return sorted({getattr(r, attr) for r in runs})

    per_group = defaultdict(set)
    for r in runs:
        per_group[(r.env, r.label)].add(r.seed)
    counts = sorted({len(s) for s in per_group.values()})
    budgets = dict.fromkeys(r.budget for r in sorted(runs, key=lambda r: (r.steps, r.online_steps)))
    lines = [
        f"Score: {metric} = {METRICS[metric]}, in %. Mean: 95 % t-interval over seeds, cut to [0, 100] (per environment: tasks "
        f"as strata, Welch-Satterthwaite degrees of freedom). IQM = interquartile mean, with a 95 % stratified-"
        f"bootstrap interval (rliable, {reps:,} resamples, percentile), which is too narrow below about 10 runs.",
        f"Budget: {'; '.join(budgets)}.",
        f"Runs per (task, agent): {counts[0] if len(counts) == 1 else f'{counts[0]}-{counts[-1]}'} "
        f"(seeds {', '.join(map(str, values('seed')))}).",
        f"Evaluation: {', '.join(map(str, values('eval_episodes')))} episodes per evaluation.",
        f"Network preset: {', '.join(values('preset'))}.",
        f"Data: {'; '.join(values('data'))}.",
        f"Versions: {'; '.join(values('versions'))}.",
    ]
    features = sorted({r.config["time_features"] for r in runs if "time_features" in r.config})
    if features:
        lines.append(f"Q-Flow's V time features: {'; '.join(TIME_FEATURES.get(f, f) for f in features)}.")
    changed = sorted({f"{r.agent} {item}" for r in runs for item in _changed_settings(r)})
    if changed:
        lines.append(f"Settings other than each agent's defaults for its environment and preset: {'; '.join(changed)}.")
    if counts[0] < SEEDS_FOR_FINDINGS:
        lines.append(f"Note: {counts[0]} seed(s) for some (task, agent), fewer than {SEEDS_FOR_FINDINGS}: a "
                     f"difference between agents is a lead to test with more seeds, not a finding.")
    partial = [r for r in runs if r.partial]
    if partial:
        lines.append(f"{len(partial)} unfinished run(s) without summary.json, scored from eval.csv up to step(s) "
                     f"{', '.join(f'{s:,}' for s in sorted({int(r.curve[0][-1]) for r in partial}))}.")
    mixed = [name for name, attr in (("budgets", "budget"), ("network presets", "preset"), ("data origins", "origin"),
                                     ("dataset sizes", "dataset_episodes"), ("evaluation episodes", "eval_episodes"),
                                     ("package versions", "versions")) if len(values(attr)) > 1]
    if partial:
        mixed.append("finished and unfinished runs")
    if mixed:
        lines.append(f"WARNING: the runs in this table mix {', '.join(mixed)}; their numbers are not comparable.")
    return lines


def _changed_settings(run) -> list[str]:
    """``key=value`` for each recorded config key that differs from what ``qflow train`` gives this agent on
    this environment with this preset today (``envs.agent_config``); time features have a line of their own."""
    from qflow.envs import agent_config

    try:
        default = json.loads(json.dumps(agent_config(run.agent, run.env, run.preset).as_dict()))
    except ValueError:  # an agent or preset this version does not know: nothing to compare with
        return []
    return [f"{k}={_fmt(v)}" for k, v in sorted(run.config.items())
            if k in default and k not in ("preset", "time_features") and v != default[k]]


def _per_task(runs, reps):
    groups = defaultdict(list)
    for r in runs:
        groups[(r.family, _task_key(r.task), r.env, r.label)].append(r)
    rows = []
    for (family, _, env, label), rs in sorted(groups.items()):
        rs.sort(key=lambda r: r.seed)
        scores = np.array([r.score for r in rs])
        point, ci = bootstrap_interval(scores[:, None], reps)
        low, high = stats.rate_bounds(*stats.t_interval(scores)[1:])
        rows.append(dict(env=env, family=family, task=rs[0].task, agent=label, n_seeds=len(rs),
                         seeds=" ".join(str(r.seed) for r in rs), mean=float(np.mean(scores)),
                         mean_ci_low=low, mean_ci_high=high, iqm=float(point[1]),
                         iqm_ci_low=float(ci[0, 1]), iqm_ci_high=float(ci[1, 1]),
                         scores=" ".join(repr(float(s)) for s in scores)))
    return rows


def _per_env(runs, reps):
    groups = defaultdict(lambda: defaultdict(list))
    for r in runs:
        groups[(r.family, r.label)][r.task].append(r)
    rows, used, notes = [], [], []
    for (family, label), by_task in sorted(groups.items()):
        tasks = sorted(by_task, key=_task_key)
        k = min(len(by_task[t]) for t in tasks)
        if any(len(by_task[t]) > k for t in tasks):
            notes.append(f"{family}, {label}: tasks have {k}-{max(len(v) for v in by_task.values())} runs; "
                         f"the {k} lowest seeds of each task are used.")
        kept = [sorted(by_task[t], key=lambda r: r.seed)[:k] for t in tasks]
        used += [r for rs in kept for r in rs]
        matrix = np.array([[rs[i].score for rs in kept] for i in range(k)])  # (runs, tasks)
        point, ci = bootstrap_interval(matrix, reps)
        low, high = stats.rate_bounds(*stats.stratified_t_interval(matrix.T)[1:])
        rows.append(dict(family=family, agent=label, tasks=" ".join(tasks), runs_per_task=k,
                         mean=float(point[0]), mean_ci_low=low, mean_ci_high=high,
                         iqm=float(point[1]), iqm_ci_low=float(ci[0, 1]), iqm_ci_high=float(ci[1, 1])))
    task_sets = defaultdict(set)
    for row in rows:
        task_sets[row["family"]].add(row["tasks"])
    notes += [f"{f}: agents cover different tasks ({' | '.join(sorted(s))}); their means are not comparable."
              for f, s in sorted(task_sets.items()) if len(s) > 1]
    return rows, used, notes


def compare(runs, a: str, b: str, reps: int = 2000) -> list[dict]:
    """Agent (label) ``a`` against ``b`` on every family where both ran the same tasks: the difference of
    mean scores with a permutation test (labels permuted within each task), and the probability that a run
    of ``a`` beats a run of ``b`` on the same task, with a stratified-bootstrap interval. One row per
    family (its shared tasks as strata) and one per task."""
    by = defaultdict(list)
    for r in runs:
        by[(r.family, r.task, r.label)].append(r.score)
    rows = []
    for family in sorted({r.family for r in runs}):
        tasks = sorted({t for f, t, _ in by if f == family and (f, t, a) in by and (f, t, b) in by}, key=_task_key)
        for scope in ([tasks] if len(tasks) > 1 else []) + [[t] for t in tasks]:
            a_groups, b_groups = [by[(family, t, a)] for t in scope], [by[(family, t, b)] for t in scope]
            diff, p, count = stats.permutation_test(a_groups, b_groups)
            prob, low, high = stats.probability_of_improvement_interval(a_groups, b_groups, reps)
            rows.append(dict(family=family, tasks=" ".join(scope), a=a, b=b,
                             n_a=" ".join(str(len(g)) for g in a_groups), n_b=" ".join(str(len(g)) for g in b_groups),
                             mean_difference=diff, p_value=p, permutations=count,
                             prob_improvement=prob, prob_improvement_low=low, prob_improvement_high=high))
    if not rows:
        raise ReportError(f"--compare {a},{b}: no task has runs of both; labels in these runs: "
                          f"{', '.join(sorted({r.label for r in runs}))}")
    return rows


def _comparison_md(rows) -> list[str]:
    a, b = rows[0]["a"], rows[0]["b"]
    table = _markdown_table(
        ["Environment", "Tasks", f"Seeds {a} / {b}", f"Mean {a} - {b}", "Permutation p", f"P({a} > {b}) [95 % CI]"],
        [[r["family"], r["tasks"], f"{r['n_a']} / {r['n_b']}", f"{100 * r['mean_difference']:+.1f}",
          f"{r['p_value']:.3g} ({r['permutations']:,} relabellings)",
          f"{r['prob_improvement']:.2f} [{r['prob_improvement_low']:.2f}, {r['prob_improvement_high']:.2f}]"]
         for r in rows])
    return [f"## {a} against {b}", ""] + table + ["", "*Table 3: difference of mean success (points), two-sided "
            "permutation test with agent labels permuted within each task (exact when there are few relabellings), "
            "and the probability of improvement (a run of one beats a run of the other on the same task; "
            "stratified-bootstrap percentile interval, narrow at few seeds). With n seeds each on one task the "
            "smallest p a two-sided permutation test can give is 2 / C(2n, n): 0.1 at 3 against 3 seeds.*", ""]


def _plot(family, runs, labels, path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend needed

    tasks = sorted({r.task for r in runs}, key=_task_key)
    fig = Figure(figsize=(max(5.5, 3.4 * len(tasks) + 1.0), 3.6), layout="constrained")
    axes = fig.subplots(1, len(tasks), squeeze=False, sharey=True)[0]
    for ax, task in zip(axes, tasks):
        for label in labels:
            rs = [r for r in runs if r.task == task and r.label == label]
            steps = reduce(np.intersect1d, [r.curve[0] for r in rs]) if rs else []
            if len(steps) == 0:
                continue
            ys = 100 * np.array([[dict(zip(r.curve[0].tolist(), r.curve[1]))[s] for s in steps.tolist()] for r in rs])
            color = f"C{labels.index(label) % 10}"
            ax.plot(steps, ys.mean(0), color=color, label=f"{label} (n={len(rs)})")
            ax.fill_between(steps, ys.min(0), ys.max(0), color=color, alpha=0.2, linewidth=0)
        ax.set_title(f"task {task}")
        ax.set_xlabel("gradient steps")
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")  # on every task: the seed counts n may differ between tasks
    axes[0].set_ylabel("success (%)")
    fig.suptitle(f"{family}\nline: mean over seeds; band: min-max across seeds", fontsize="medium")
    with atomic_writer(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)


def _pct(row, key):
    low, high = row[key + "_ci_low"], row[key + "_ci_high"]
    if np.isnan(low):
        return f"{100 * row[key]:.1f} [one run: no interval]"
    return f"{100 * row[key]:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def _markdown_table(header, rows) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(map(str, r)) + " |"
                                                                             for r in rows]


def _write_csv(path: Path, rows) -> None:
    with atomic_writer(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def make_report(paths, out, metric: str = "success_last3", reps: int = 2000, include_partial: bool = False,
                compare_agents: tuple[str, str] | None = None) -> dict:
    """Write results.md, per_task.csv, per_env.csv, report.json and curves_<family>.png into ``out`` (and
    comparison.csv with ``compare_agents``)."""
    if metric not in METRICS:
        raise ReportError(f"unknown metric '{metric}'; choose from {', '.join(METRICS)}")
    if reps < 1:
        raise ReportError(f"--reps must be >= 1, got {reps}")
    _rliable()  # fail before reading anything if the optional dependency is missing
    out = Path(out)
    runs, notes, missing = _runs_and_sweep_cells(paths, metric, include_partial)
    per_task = _per_task(runs, reps)
    per_env, used, env_notes = _per_env(runs, reps)
    captions = {"per_task": caption_lines(runs, metric, reps), "per_env": caption_lines(used, metric, reps) + env_notes}
    comparison = compare(runs, *compare_agents, reps=reps) if compare_agents else []
    labels = sorted({r.label for r in runs})
    figures = {}
    for family in sorted({r.family for r in runs}):
        figures[family] = f"curves_{family}.png"
        _plot(family, [r for r in runs if r.family == family], labels, out / figures[family])

    md = [f"# Results ({len(runs)} runs)", "",
          f"Made by `qflow report` from: {', '.join(map(str, paths))}. Success rates in %; "
          "per_task.csv and per_env.csv hold the same numbers as fractions.", "", "## Per task", ""]
    md += _markdown_table(["Task", "Agent", "Seeds", "Mean [95 % CI]", "IQM [95 % CI]"],
                          [[r["env"], r["agent"], r["n_seeds"], _pct(r, "mean"), _pct(r, "iqm")] for r in per_task])
    md += [""] + _caption(captions["per_task"], "Table 1: success per task.") + ["", "## Per environment", ""]
    md += _markdown_table(["Environment", "Agent", "Task numbers", "Runs per task", "Mean [95 % CI]", "IQM [95 % CI]"],
                          [[r["family"], r["agent"], r["tasks"], r["runs_per_task"], _pct(r, "mean"), _pct(r, "iqm")]
                           for r in per_env])
    md += [""] + _caption(captions["per_env"], "Table 2: success per environment (a runs x tasks score matrix per "
                                               "agent; the bootstrap resamples runs within each task).")
    md += ["", "## Sweep cells without results", "", *[f"- {m}" for m in missing]] if missing else []
    md += [""] + (_comparison_md(comparison) if comparison else []) + ["## Learning curves", ""]
    for family, name in figures.items():
        md += [f"![{family}]({name})", "", f"*{family}*: success at each evaluation, mean over seeds (line) and "
                                           "min-max across seeds (band), at the steps all seeds evaluated.", ""]
    if notes:
        md += ["## Skipped", ""] + [f"- {n}" for n in notes] + [""]
    with atomic_writer(out / "results.md", "w") as f:
        f.write("\n".join(md) + "\n")
    for rows, key in ((per_task, "per_task"), (per_env, "per_env")):  # a warning travels with the numbers
        warning = " ".join(line for line in captions[key] if line.startswith("WARNING"))
        for row in rows:
            row["warning"] = warning
    _write_csv(out / "per_task.csv", per_task)
    _write_csv(out / "per_env.csv", per_env)
    if comparison:
        _write_csv(out / "comparison.csv", comparison)
    atomic_write_json(out / "report.json", dict(metric=metric, reps=reps, inputs=[str(p) for p in paths],
                                                runs=[str(r.path) for r in runs], skipped=notes, captions=captions,
                                                per_task=per_task, per_env=per_env, comparison=comparison,
                                                figures=figures))
    return dict(out=str(out), runs=len(runs), skipped=notes, figures=list(figures.values()),
                per_task=per_task, per_env=per_env, captions=captions, comparison=comparison, sweep_cells=missing)


def _runs_and_sweep_cells(paths, metric, include_partial):
    """find_runs, plus the cells of a sweep in ``paths`` that left no run (noted, and named in an error)."""
    missing, note = sweep_cells_without_results(paths)
    try:
        runs, notes = find_runs(paths, metric, include_partial)
    except ReportError as err:
        raise ReportError(f"{err}{'; ' + note if note else ''}") from None
    return runs, notes + ([f"{note}; listed under the tables in results.md"] if note else []), missing


def _caption(lines, title):
    body = " ".join(line for line in lines if not line.startswith("WARNING"))
    return [f"*{title}* {body}"] + [f"\n**{line}**" for line in lines if line.startswith("WARNING")]


def sweep_cells_without_results(paths) -> tuple[list[str], str]:
    """The cells a sweep.json directly in one of ``paths`` lists as failed, cancelled or never finished (they
    have no row in the tables), one line each, and a note saying how many; ([], "") without any."""
    from qflow.experiments.sweep import read_cells

    missing = []
    for p in map(Path, paths):
        for name, cell in sorted(read_cells(p).items()):  # {} where p is not a sweep's output
            if not str(cell.get("status", "")).startswith("done"):
                error = f": {cell['error']}" if cell.get("error") else ""
                missing.append(f"{p}: {name}: {cell.get('status', 'unknown')}{error}")
    note = f"{len(missing)} cell(s) of the sweep failed or did not finish: no results (errors in sweep.json)"
    return missing, note if missing else ""
