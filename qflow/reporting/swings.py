"""The planned statistics of the swing study (docs/analysis_plan_swings.md), from its run directories.

    python -m qflow.reporting.swings OUT --out DIR

OUT is what ``scripts/intervention_study.sh OUT`` wrote: one directory per arm, one ``seedS/eval.csv`` per seed.
Writes DIR/per_run.csv (S, F, E, M and the largest fall of every arm and seed), DIR/hypotheses.json,
DIR/hypotheses.md (each arm's means over seeds, then every planned test with n, mean, 95 % t-interval, p and the
plan's decision) and DIR/curves.png (every arm's success at each evaluation, per seed). Nothing is chosen after
seeing the data: the arms, scored steps, statistics and rule are the plan's, fixed below.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import numpy as np

from qflow.reporting import stats
from qflow.training.logs import read_rows, write_rows
from qflow.training.record import RUN_INFO, RunRecord
from qflow.utils import atomic_write_json, atomic_writer

EPISODES = 50  # episodes per evaluation in the plan: the binomial noise floor depends on it
ARMS = {  # arm directory -> (label, scored evaluation steps)
    "a_no_change": ("(a) no change", range(26_000, 35_001, 1_000)),
    "b_critic_frozen": ("(b) critic frozen", range(26_000, 35_001, 1_000)),
    "c_actor_frozen": ("(c) actor frozen", range(26_000, 35_001, 1_000)),
    "d_slow_target": ("(d) 5x slower target", range(26_000, 35_001, 1_000)),
    "e_reference_sampling": ("(e) the authors' sampling", range(26_000, 36_001, 1_000)),
    "f_dataset_seed1": ("(f) dataset seed 1", range(26_000, 36_001, 1_000)),
}
PAIRED = {"H1": "b_critic_frozen", "H2": "c_actor_frozen", "H3": "d_slow_target"}  # E(arm) < E(a) predicted
ABOVE_ZERO = {"H4": "a_no_change", "H5": "e_reference_sampling", "H6": "f_dataset_seed1"}  # E > 0 predicted
ALPHA = 0.05


def swing(s) -> float:
    """S: the mean absolute change between consecutive evaluations."""
    return float(np.mean(np.abs(np.diff(np.asarray(s, np.float64)))))


def noise_floor(p: float, episodes: int = EPISODES) -> float:
    """F: the S that binomial sampling alone gives at success rate p: E|X - Y| for two independent
    evaluations of ``episodes`` episodes, by the normal approximation sqrt(2 p (1 - p) / n) * sqrt(2 / pi)."""
    return math.sqrt(2 * p * (1 - p) / episodes) * math.sqrt(2 / math.pi)


def largest_fall(s) -> float:
    """max over i < j of s_i - s_j, as the plan defines it (negative for a run whose success only rises)."""
    s = np.asarray(s, np.float64)
    return float(max(s[i] - s[j] for i in range(len(s)) for j in range(i + 1, len(s))))


def run_statistics(successes) -> dict:
    m = float(np.mean(successes))
    s = swing(successes)
    floor = noise_floor(m)
    return {"S": s, "F": floor, "E": s - floor, "M": m, "largest_fall": largest_fall(successes)}


def read_arm(out: Path, arm: str) -> tuple[dict[int, dict], list[str]]:
    """({seed: statistics} of the seeds with every scored evaluation, [notes on the others])."""
    steps = list(ARMS[arm][1])
    runs, notes = {}, []
    for d in seed_dirs(out / arm):
        if not (d / "eval.csv").exists():
            notes.append(f"{arm}/{d.name}: no evaluations yet")
            continue
        rows = {int(float(r["step"])): r for r in read_rows(d / "eval.csv")}
        missing = [t for t in steps if t not in rows]
        if missing:
            more = "..." if len(missing) > 3 else ""
            notes.append(f"{arm}/{d.name}: lacks the scored evaluations at {missing[:3]}{more}")
            continue
        other = sorted({int(float(rows[t]["episodes"])) for t in steps} - {EPISODES})
        if other:  # the noise floor F assumes the plan's episodes per evaluation
            notes.append(f"{arm}/{d.name}: evaluated with {other} episodes, not the plan's {EPISODES}; left out")
            continue
        runs[int(d.name[4:])] = run_statistics([float(rows[t]["success"]) for t in steps])
    return runs, notes


def seed_dirs(directory: Path) -> list[Path]:
    """The seedS/ run directories of one arm (or of the base runs), in name order."""
    return sorted(d for d in directory.glob("seed*") if re.fullmatch(r"seed\d+", d.name))


def can_decide(n: int) -> bool:
    """Whether n seeds can meet the plan's rule at all: the smallest exact two-sided sign-flip p is 2 / 2^n."""
    return 2 / 2 ** n < ALPHA


def format_p(p: float) -> str:
    """Three decimals, four below 0.01 (the 8-seed floor 0.0078 is not 0.008)."""
    return f"{p:.4f}" if p < 0.01 else f"{p:.3f}"


def decide(p: float, mean: float, predicted: int | None) -> str:
    """The plan's rule: supported when p < 0.05 with the predicted sign, contradicted with the opposite sign."""
    if not np.isfinite(p) or p >= ALPHA:
        return "no evidence either way"
    if predicted is None:
        higher = "higher" if mean > 0 else "lower"
        return f"a difference: the arm's mean success is {higher} (no direction was predicted)"
    return "supported" if np.sign(mean) == predicted else "contradicted"


def _test(values, predicted: int | None, **extra) -> dict:
    values = np.asarray(values, np.float64)
    if len(values) < 2:
        return {**extra, "n": int(len(values)), "decision": "not enough seeds"}
    mean, low, high = stats.t_interval(values)
    _, p, _ = stats.sign_flip_test(values)
    lead = "" if can_decide(len(values)) else f" ({len(values)} seeds cannot reach p < {ALPHA}: a lead)"
    return {**extra, "n": int(len(values)), "mean": mean, "low": low, "high": high, "p": p,
            "decision": decide(p, mean, predicted) + lead}


def hypotheses(arms: dict[str, dict[int, dict]]) -> list[dict]:
    """Every planned test: H1-H3 paired by seed against (a), H4-H6 one-sample on E, H5's unpaired comparison
    of (e) with (a), and the secondary differences of mean success M for the arms of H1-H3."""
    base = arms.get("a_no_change", {})
    rows = []
    for name, arm in PAIRED.items():
        seeds = sorted(set(base) & set(arms.get(arm, {})))
        d = [arms[arm][s]["E"] - base[s]["E"] for s in seeds]
        rows.append(_test(d, -1, hypothesis=name, statistic=f"E{arm[:1]} - Ea, paired by seed", seeds=seeds))
    for name, arm in ABOVE_ZERO.items():
        seeds = sorted(arms.get(arm, {}))
        rows.append(_test([arms[arm][s]["E"] for s in seeds], 1, hypothesis=name,
                          statistic=f"E{arm[:1]} over seeds (one-sample sign flip)", seeds=seeds))
    e, a = arms.get("e_reference_sampling", {}), base
    unpaired = {"hypothesis": "H5 (e vs a)", "statistic": "Ee - Ea, unpaired two-sample permutation",
                "n": f"{len(e)} vs {len(a)}", "decision": "not enough seeds"}
    if len(e) >= 2 and len(a) >= 2:
        diff, p, _ = stats.permutation_test([np.array([r["E"] for r in e.values()])],
                                            [np.array([r["E"] for r in a.values()])])
        unpaired.update(mean=diff, p=p, decision="reported, not decided on")
    rows.append(unpaired)
    for name, arm in PAIRED.items():
        seeds = sorted(set(base) & set(arms.get(arm, {})))
        d = [arms[arm][s]["M"] - base[s]["M"] for s in seeds]
        rows.append(_test(d, None, hypothesis=f"{name} secondary", statistic=f"M{arm[:1]} - Ma, paired by seed",
                          seeds=seeds))
    return rows


def arm_lines(arms: dict[str, dict[int, dict]]) -> list[str]:
    """Each arm's scored seeds and its means over them (descriptive; the tests below decide)."""
    lines = ["| arm | seeds scored | S | F | E = S - F | M | largest fall |", "|---|---|---|---|---|---|---|"]
    for arm, runs in arms.items():
        if not runs:
            lines.append(f"| {ARMS[arm][0]} | none complete | - | - | - | - | - |")
            continue
        mean = {k: float(np.mean([r[k] for r in runs.values()])) for k in ("S", "F", "E", "M", "largest_fall")}
        lines.append(f"| {ARMS[arm][0]} | {', '.join(map(str, sorted(runs)))} | {mean['S']:.3f} | {mean['F']:.3f} "
                     f"| {mean['E']:+.3f} | {mean['M']:.3f} | {mean['largest_fall']:.2f} |")
    lines += ["", "Means over the scored seeds of each run's statistics (success as a fraction): S the mean "
              "absolute change between consecutive scored evaluations, F its binomial noise floor at the run's "
              f"mean success with {EPISODES} episodes, M the mean success.", ""]
    scored = [arm for arm, runs in arms.items() if runs]
    seeds = sorted({seed for arm in scored for seed in arms[arm]})
    if not seeds:
        return lines
    lines += ["| seed | " + " | ".join(ARMS[arm][0] for arm in scored) + " |", "|---|" + "---|" * len(scored)]
    for seed in seeds:
        cells = [f"{arms[arm][seed]['E']:+.3f} / {arms[arm][seed]['M']:.3f}" if seed in arms[arm] else "-"
                 for arm in scored]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    return lines + ["", "Each run's E / M. Where success stays near 0 (or 1) a policy has little room to swing, "
                    "whatever drives it, and F allows for that only in the binomial noise: read E beside M.", ""]


def markdown(rows: list[dict], notes: list[str], arms: dict[str, dict[int, dict]]) -> str:
    def fmt(x) -> str:
        return f"{x:+.3f}" if isinstance(x, float) and np.isfinite(x) else ("-" if x is None else str(x))

    lines = ["# The swing study's planned statistics", ""] + arm_lines(arms)
    lines += ["| test | statistic | n | mean | 95 % t-interval | p | decision |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        interval = f"[{fmt(r['low'])}, {fmt(r['high'])}]" if "low" in r else "-"
        p = format_p(r["p"]) if "p" in r else "-"
        lines.append(f"| {r['hypothesis']} | {r['statistic']} | {r['n']} | {fmt(r.get('mean'))} | {interval} | {p} "
                     f"| {r['decision']} |")
    lines += ["", "No correction across H1-H3 (as planned): with three tests at 0.05, one false positive has a "
              "chance of about 14 %. Exact sign-flip p-values cannot fall below 2 / 2^n (0.25 at 3 seeds, "
              "0.125 at 4, 0.0625 at 5, 0.0078 at 8)."]
    if notes:
        lines += ["", "Left out of every test (the plan scores a run only on all its evaluations, of 50 episodes "
                      "each):"]
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def curves(out: Path) -> dict[str, dict[int, tuple[list[int], list[float]]]]:
    """{arm: {seed: (steps, successes)}} of every evaluation found. A run whose record says it started from another
    (``--init-from``, the arms that continue the base runs) gets that run's evaluations up to the step it started
    from, so its curve shows where it came from. The record holds the absolute path of the machine the runs were
    made on; a copy of the study (results/) keeps the directory's name under OUT, which is what is looked up."""
    found = {}
    for arm in ARMS:
        found[arm] = {}
        for d in seed_dirs(out / arm):
            rows = read_rows(d / "eval.csv") if (d / "eval.csv").exists() else []
            start = None
            if (d / RUN_INFO).exists():
                start = RunRecord.read(d / RUN_INFO, fix="rerun its arm").get("init_from")
            earlier = out / Path(start["run_dir"]).name / d.name / "eval.csv" if start else None
            if earlier is not None and earlier.exists():
                rows = [r for r in read_rows(earlier) if int(float(r["step"])) <= start["step"]] + rows
            if rows:
                found[arm][int(d.name[4:])] = ([int(float(r["step"])) for r in rows],
                                               [float(r["success"]) for r in rows])
    return found


def plot_curves(found: dict, path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend needed

    fig = Figure(figsize=(13, 6.4), layout="constrained")
    axes = fig.subplots(2, 3, sharey=True).ravel()
    for ax, (arm, (label, scored)) in zip(axes, ARMS.items()):
        ax.axvspan(scored[0], scored[-1], color="0.9", linewidth=0)
        for seed, (steps, success) in sorted(found.get(arm, {}).items()):
            ax.plot(steps, 100 * np.asarray(success), marker=".", markersize=3, linewidth=1,
                    color=f"C{seed % 10}", label=f"seed {seed}")
        ax.set_title(label, fontsize="medium")
        ax.set_xlim(0, scored[-1] + 500)
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
        ax.set_xlabel("gradient steps")
        if found.get(arm):
            ax.legend(fontsize="x-small")
    axes[0].set_ylabel("success (%)")
    axes[3].set_ylabel("success (%)")
    fig.suptitle("The swing study: success at each evaluation (50 episodes); shaded: the scored evaluations",
                 fontsize="medium")
    with atomic_writer(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)


def analyse(out: Path, report: Path) -> list[dict]:
    arms, notes = {}, []
    for arm in ARMS:
        arms[arm], arm_notes = read_arm(out, arm)
        notes += arm_notes
    rows = hypotheses(arms)
    report.mkdir(parents=True, exist_ok=True)
    write_rows(report / "per_run.csv", [{"arm": arm, "seed": seed, **values} for arm, runs in arms.items()
                                        for seed, values in sorted(runs.items())])
    atomic_write_json(report / "hypotheses.json", {"study": str(out), "tests": rows, "notes": notes})
    with atomic_writer(report / "hypotheses.md", "w") as f:
        f.write(markdown(rows, notes, arms))
    plot_curves(curves(out), report / "curves.png")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", type=Path, help="the OUT directory of scripts/intervention_study.sh")
    p.add_argument("--out", type=Path, required=True, help="where per_run.csv, hypotheses.{json,md} and curves.png go")
    a = p.parse_args(argv)
    analyse(a.study, a.out)
    print((a.out / "hypotheses.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
