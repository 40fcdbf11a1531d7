"""The tests behind the readings of docs/results.md, section 8 (and the demo's, section 2.1): every p-value
and correlation the text quotes is printed here, from the committed run files.

    python scripts/section8_tests.py [--out results/reports/section8_tests]

Writes ``tests.csv`` (one row per test, read by docs/build_results.py) and ``tests.md`` (the same as tables).

- A difference between two sets of seeds (success averaged over named evaluations, an onset step, a mean
  fall): the exact two-sample permutation test over seeds (``reporting.stats.permutation_test``; its floor
  is 2 / C(2n, n): 0.1 at 3 against 3 seeds, 0.029 at 4 against 4), Welch's t-test on the same per-seed
  values, and, where the two share seeds, data and evaluation seeds, the exact sign-flip test of the
  per-seed differences (floor 2 / 2^n: 0.25 at 3 seeds).
- A correlation between success at each evaluation and a diagnostic over the window before it (the
  pairs of ``qflow diagnostics``: the evaluations after the critic's lowest point): Pearson r with an
  exact permutation p that moves each evaluation step's seeds together
  (``reporting.stats.correlation_permutation_test``; the seeds swing in phase, so a step counts once),
  over the steps all seeds share; and r without the step whose removal changes r most.
- The critic's phase across seeds: its lowest step, its troughs after it, and the correlation between
  seeds of its 1,000-step changes from 19k steps on (after both agents' lowest points).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
from scipy import stats as st

from qflow.reporting import stats
from qflow.reporting.diagnostics import mean_before, metric_series, q_rise_before
from qflow.reporting.policy_drift import distances_by_run, ratios_by_run, read_distances
from qflow.training.logs import read_rows, write_rows

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "results/runs"
T2, T4, KNOBS = "learning_speed_cpu_t2", "learning_speed_cpu_t4", "knobs_x2_cpu_t2"
WINDOW = 3000  # as qflow diagnostics: the diagnostic's mean over the 3,000 steps before an evaluation


def curves(study: str, agent: str) -> dict[int, dict[int, float]]:
    """{seed: {step: success}} from each run's eval.csv."""
    return {int(d.name[4:]): {int(float(r["step"])): float(r["success"]) for r in read_rows(d / "eval.csv")}
            for d in sorted((RUNS / study).glob(f"*__{agent}/seed*"))}


def averaged(study: str, agent: str, steps) -> list[float]:
    """Each seed's success averaged over ``steps`` (seed order)."""
    return [float(np.mean([c[t] for t in steps])) for _, c in sorted(curves(study, agent).items())]


def mean_fall(study: str, agent: str, steps) -> list[float]:
    """Each seed's mean of max(0, success(previous) - success(next)) over consecutive ``steps``."""
    return [float(np.mean(np.maximum(0.0, -np.diff([c[t] for t in steps]))))
            for _, c in sorted(curves(study, agent).items())]


def onsets(study: str, agent: str) -> list[float]:
    """Each seed's step from which the critic's verdict on the policy stays positive (qflow diagnostics)."""
    rows = read_rows(ROOT / f"results/reports/{study}/improvement_onset.csv")
    return [float(r["onset_step"]) for r in sorted(rows, key=lambda r: int(r["seed"])) if r["agent"] == agent]


def _values(values) -> str:
    return " ".join(f"{v:.0f}" if abs(v) >= 100 else f"{v:.4g}" for v in values)


def floor_p(n_a: int, n_b: int) -> float:
    """The smallest p the two-sample permutation test can give with these group sizes."""
    return stats.permutation_test([np.arange(n_a) + 1e6], [np.arange(n_b)])[1]


def difference(test_id: str, claim: str, a_label: str, b_label: str, a, b, unit: str, paired: bool) -> dict:
    """One two-group test: means, the difference, permutation, Welch and (if paired) sign-flip p."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff, p, count = stats.permutation_test([a], [b])
    welch = st.ttest_ind(a, b, equal_var=False).pvalue if a.std() + b.std() > 0 else float("nan")
    row = dict(id=test_id, kind="difference", claim=claim, a=a_label, b=b_label, unit=unit,
               n=f"{len(a)} / {len(b)}", a_values=_values(a), b_values=_values(b), a_mean=float(a.mean()),
               b_mean=float(b.mean()), difference=diff, p_perm=p, relabellings=count,
               p_floor=floor_p(len(a), len(b)), p_welch=float(welch))
    if paired:
        _, p_pair, _ = stats.sign_flip_test(a - b)
        row.update(p_paired=p_pair, p_paired_floor=2 / 2 ** len(a))
    return row


def eval_pairs(study: str, agent: str, column: str) -> dict[int, dict[int, tuple[float, float]]]:
    """{seed: {step: (diagnostic, success)}} at the evaluations after the critic's lowest point, as
    ``qflow diagnostics`` pairs them (column "q_rise": Q's rise over the window before)."""
    out = {}
    for d in sorted((RUNS / study).glob(f"*__{agent}/seed*")):
        series = metric_series(d)
        steps, q = series["q_mean"]
        lowest = int(steps[int(np.argmin(q))])
        out[int(d.name[4:])] = pairs = {}
        for step, success in curves(study, agent)[int(d.name[4:])].items():
            rise = q_rise_before(steps, q, step, WINDOW)
            if step <= lowest or rise is None:
                continue
            x = rise if column == "q_rise" else mean_before(*series[column], step, WINDOW)
            if x is not None:
                pairs[step] = (x, success)
    return out


def correlation(test_id: str, claim: str, study: str, agent: str, column: str) -> dict:
    """Pearson r over the steps every seed has, its step-block permutation p, and r without the step whose
    removal changes it most."""
    pairs = eval_pairs(study, agent, column)
    steps = sorted(set.intersection(*[set(p) for p in pairs.values()]))
    x = np.array([[pairs[s][t][0] for t in steps] for s in sorted(pairs)])
    y = np.array([[pairs[s][t][1] for t in steps] for s in sorted(pairs)])
    r, p, count = stats.correlation_permutation_test(x, y)
    every = np.array([xy for by_step in pairs.values() for xy in by_step.values()])
    without = {t: float(np.corrcoef(np.delete(x, i, 1).ravel(), np.delete(y, i, 1).ravel())[0, 1])
               for i, t in enumerate(steps)} if len(steps) > 2 else {}
    driver = max(without, key=lambda t: abs(without[t] - r)) if without else None
    return dict(id=test_id, kind="correlation", claim=claim, a=agent, b=column, unit=study,
                n=f"{x.shape[0]} seeds x {x.shape[1]} steps", steps=" ".join(map(str, steps)), r=r, p_perm=p,
                relabellings=count, p_floor=1 / count, without_step=driver,
                r_without=without.get(driver, float("nan")), n_all=len(every),
                r_all=float(np.corrcoef(every[:, 0], every[:, 1])[0, 1]))


def critic_phase(test_id: str, study: str, agent: str, start: int = 19000) -> dict:
    """The critic's lowest step and troughs after it per seed, and how closely the seeds' 1,000-step
    changes of mean Q(s, a_data) agree from ``start`` on (mean pairwise Pearson r)."""
    lowest, troughs, changes = [], [], []
    for d in sorted((RUNS / study).glob(f"*__{agent}/seed*")):
        steps, q = metric_series(d)["q_mean"]
        k = int(np.argmin(q))
        lowest.append(int(steps[k]))
        dq = np.diff(q[k:])
        moving = np.nonzero(dq)[0]
        troughs.append(sum(dq[i] < 0 < dq[j] for i, j in zip(moving[:-1], moving[1:])))
        keep = (steps >= start) & (steps % 1000 == 0)
        changes.append(np.diff(q[keep]))
    rs = [np.corrcoef(a, b)[0, 1] for a, b in itertools.combinations(changes, 2)]
    return dict(id=test_id, kind="phase", claim="the critic's phase across seeds", a=agent, unit=study,
                n=f"{len(lowest)} seeds", lowest_steps=" ".join(map(str, lowest)),
                troughs=" ".join(map(str, troughs)), r=float(np.mean(rs)), r_min=float(min(rs)),
                r_max=float(max(rs)), steps=f"{start}-")


def drift_rows() -> list[dict]:
    """Return ratios at 25k and 30k (task 2), Q-Flow's seeds against FQL's; task 4's last step: is each
    Q-Flow seed's 36.5k policy nearer its 30k than its 35k policy (sign-flip over seeds)?"""
    ratios = ratios_by_run(read_distances(RUNS / T2 / "policy_drift/distances.csv"), 5000)
    rows = []
    for step in (25000, 30000):
        q, f = ([v[step] for (agent, _, _), v in sorted(ratios.items()) if agent == a] for a in ("qflow", "fql"))
        rows.append(difference(f"t2_ratio_{step // 1000}k", f"return ratio at {step // 1000}k, task 2", "qflow",
                               "fql", q, f, "return ratio of each seed's policy", paired=False))
    dist = distances_by_run(read_distances(RUNS / T4 / "policy_drift/distances.csv"))
    for agent in ("qflow", "fql"):
        gap = [d[(35000, 36500)] - d[(30000, 36500)] for (a, _, _), d in sorted(dist.items()) if a == agent]
        mean, p, count = stats.sign_flip_test(gap)
        rows.append(dict(id=f"t4_nearer_30k_{agent}", kind="sign", claim="d(35k, 36.5k) - d(30k, 36.5k), task 4",
                         a=agent, unit="distance between exports", n=f"{len(gap)} seeds",
                         a_values=_values(gap), difference=mean, p_perm=p, relabellings=count,
                         p_floor=2 / count))
    return rows


def demo_rows() -> list[dict]:
    """Section 2.1: per-seed scores of the demo report (results/reports/demo_4seeds_v2/report.json)."""
    report = json.loads((ROOT / "results/reports/demo_4seeds_v2/report.json").read_text())
    scores = {r["agent"]: [float(v) for v in r["scores"].split()] for r in report["per_task"]}
    new = next(k for k in scores if "time_features=f_tau" in k)
    old = next(k for k in scores if "time_features=2pi_f_tau" in k)
    return [difference("demo_ftau_vs_fql", "Q-Flow (sin/cos(f tau)) against FQL, puzzle-3x3 task 1", "qflow f_tau",
                       "fql", scores[new], scores["fql"], "success_last3 per seed", paired=True),
            difference("demo_ftau_vs_2pi", "Q-Flow's corrected against its old time features", "qflow f_tau",
                       "qflow 2pi_f_tau", scores[new], scores[old], "success_last3 per seed", paired=True)]


def difference_rows() -> list[dict]:
    """Every difference between two sets of seeds that section 8 quotes."""
    late2, late4, knob = (20000, 25000, 30000, 35000), (20000, 25000, 30000, 35000), (20000, 25000, 30000)
    succ = "success per seed"
    d = difference
    rows = [
        d("t2_onset", "onset of the critic's verdict, task 2", "qflow", "fql", onsets(T2, "qflow"), onsets(T2, "fql"),
          "onset step per seed", paired=True),
        d("t2_15k", "success at 15k, task 2", "qflow", "fql", averaged(T2, "qflow", [15000]),
          averaged(T2, "fql", [15000]), succ, paired=True),
        d("t2_20_36k", "success over 20k-36k, task 2", "qflow", "fql", averaged(T2, "qflow", late2 + (36000,)),
          averaged(T2, "fql", late2 + (36000,)), succ, paired=True),
        d("t2_20_35k", "success over 20k-35k, task 2", "qflow", "fql", averaged(T2, "qflow", late2),
          averaged(T2, "fql", late2), succ, paired=True),
        d("t2_fall", "mean fall between consecutive evaluations 20k-35k, task 2", "qflow", "fql",
          mean_fall(T2, "qflow", late2), mean_fall(T2, "fql", late2), "per-seed mean of the falls", paired=True),
        d("t2_turns", "turns of the critic after its lowest point, task 2", "qflow", "fql",
          *([float(r["turns"]) for r in read_rows(ROOT / f"results/reports/{T2}/critic_swings.csv") if r["agent"] == a]
            for a in ("qflow", "fql")), "turns per seed", paired=True),
        d("t4_onset", "onset of the critic's verdict, task 4", "qflow", "fql", onsets(T4, "qflow"), onsets(T4, "fql"),
          "onset step per seed", paired=True),
        *(d(f"t4_{t // 1000}k", f"success at {t // 1000}k, task 4", "qflow", "fql", averaged(T4, "qflow", [t]),
            averaged(T4, "fql", [t]), succ, paired=True) for t in (10000, 20000, 25000)),
        d("t4_20_35k", "success over 20k-35k, task 4", "qflow", "fql", averaged(T4, "qflow", late4),
          averaged(T4, "fql", late4), succ, paired=True),
        d("t4_fall", "mean fall between consecutive evaluations 20k-35k, task 4", "qflow", "fql",
          mean_fall(T4, "qflow", late4), mean_fall(T4, "fql", late4), "per-seed mean of the falls", paired=True),
        d("knobs_paper", "success over 20k-30k at lambda 5 / alpha 300", "qflow", "fql", averaged(T2, "qflow", knob),
          averaged(T2, "fql", knob), succ, paired=True),
        d("knobs_x2", "success over 20k-30k at lambda 10 / alpha 600", "qflow", "fql", averaged(KNOBS, "qflow", knob),
          averaged(KNOBS, "fql", knob), succ, paired=True),
        d("knobs_lambda", "Q-Flow, success over 20k-30k", "lambda 10", "lambda 5", averaged(KNOBS, "qflow", knob),
          averaged(T2, "qflow", knob), succ, paired=True),
        d("knobs_alpha", "FQL, success over 20k-30k", "alpha 600", "alpha 300", averaged(KNOBS, "fql", knob),
          averaged(T2, "fql", knob), succ, paired=True),
        *(d(f"knobs_lambda_{t // 1000}k", f"Q-Flow, success at {t // 1000}k", "lambda 10", "lambda 5",
            averaged(KNOBS, "qflow", [t]), averaged(T2, "qflow", [t]), succ, paired=True) for t in (20000, 25000)),
        d("knobs_x2_31k", "success at 31k at lambda 10 / alpha 600", "qflow", "fql", averaged(KNOBS, "qflow", [31000]),
          averaged(KNOBS, "fql", [31000]), succ, paired=True),
    ]
    return rows


def section8_rows() -> list[dict]:
    """Every difference, correlation and phase measure that section 8 quotes."""
    rows = difference_rows()
    columns = (("diag_policy_improvement", "improvement"), ("diag_guidance_norm", "guidance"),
               ("q_rise", "q_rise"), ("diag_action_distance", "distance"))
    for study, task, agents in ((T2, "t2", ("qflow", "fql")), (T4, "t4", ("qflow", "fql")),
                                (KNOBS, "knobs", ("qflow",))):
        for agent in agents:
            for column, name in columns:
                if agent == "qflow" or column != "diag_guidance_norm":  # FQL has no guidance
                    rows.append(correlation(f"{task}_r_{name}_{agent}", f"r(success, {column})", study, agent,
                                            column))
    rows += [critic_phase(f"{task}_phase_{agent}", study, agent) for study, task in ((T2, "t2"), (T4, "t4"))
             for agent in ("qflow", "fql")]
    return rows + drift_rows() + demo_rows()


def _f(value, digits=3) -> str:
    if value is None or value == "" or (isinstance(value, float) and np.isnan(value)):
        return ""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.{digits}g}"


def markdown(rows: list[dict]) -> str:
    """tests.md: the differences, the correlations and the critic's phase as three tables."""
    md = ["# The tests behind section 8's readings", "", "Made by `python scripts/section8_tests.py` from the run files "
          "under results/runs/ and the demo report's per-seed scores; the module's docstring describes each test. "
          "Success rates and falls are fractions (0.16 = 16 %); floor: the smallest p the test can give here.", "",
          "## Differences between two sets of seeds", "",
          "| id | what | A | B | unit | seeds A / B | values A | values B | A - B | permutation p (relabellings; floor) "
          "| Welch p | paired sign-flip p (floor) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in (r for r in rows if r["kind"] in ("difference", "sign")):
        md.append(f"| {r['id']} | {r['claim']} | {r['a']} | {r.get('b', '')} | {r['unit']} | {r['n']} | {r['a_values']} | "
                  f"{r.get('b_values', '')} | {_f(r['difference'])} | {_f(r['p_perm'])} ({r['relabellings']:,}; "
                  f"{_f(r['p_floor'])}) | {_f(r.get('p_welch'))} | {_f(r.get('p_paired'))}"
                  + (f" ({_f(r['p_paired_floor'])})" if r.get("p_paired") is not None else "") + " |")
    md += ["", "## Correlations of success with a diagnostic over the 3,000 steps before each evaluation", "",
           "| id | agent | diagnostic | study | evaluations | steps | r | permutation p (orderings; floor) | "
           "step whose removal moves r most | r without it | r over all evaluations (number) |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['id']} | {r['a']} | {r['b']} | {r['unit']} | {r['n']} | {r['steps']} | {r['r']:.2f} | {_f(r['p_perm'])} "
           f"({r['relabellings']:,}; {_f(r['p_floor'])}) | {r['without_step'] or ''} | {_f(r['r_without'], 2)} | "
           f"{r['r_all']:.2f} ({r['n_all']}) |" for r in rows if r["kind"] == "correlation"]
    md += ["", "Evaluations: those after the critic's lowest point that every seed has (r over all of them, as "
           "`qflow diagnostics` gives it, in the last column). The permutation moves each step's seeds together."]
    md += ["", "## The critic's phase across seeds", "",
           "| id | agent | study | lowest mean Q at step, per seed | troughs after it, per seed | "
           "r between seeds of 1k-step changes from 19k (mean; min, max) |", "|---|---|---|---|---|---|"]
    md += [f"| {r['id']} | {r['a']} | {r['unit']} | {r['lowest_steps']} | {r['troughs']} | {r['r']:.2f}; "
           f"{r['r_min']:.2f}, {r['r_max']:.2f} |" for r in rows if r["kind"] == "phase"]
    md += ["", "Task 4 logs every 500 steps (task 2 every 1,000), so its troughs count the critic's small wiggles too."]
    return "\n".join(md) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "results/reports/section8_tests"))
    out = Path(p.parse_args(argv).out)
    rows = section8_rows()
    write_rows(out / "tests.csv", rows)
    (out / "tests.md").write_text(markdown(rows))
    print(f"wrote {out / 'tests.csv'} and {out / 'tests.md'} ({len(rows)} tests)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
