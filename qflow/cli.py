"""The command line: one subcommand per job, its flags generated from the job's settings dataclass.

    qflow train | eval | data prepare | data inspect | expert train | stacked train | stacked evaluate |
          sweep | plan | report | diagnostics | policy-drift | online-report | bandit | toy2d |
          bench throughput | bench compute

The flags come from the settings dataclasses; what runs a job is imported by its handler.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from qflow.settings import add_flags, from_flags
from qflow.utils import NONNEGATIVE, POSITIVE

# `qflow train` with no --env: the CPU demo (data, training and evaluation in one command).
# puzzle-3x3 has a dense reward (buttons in the goal state), so TD values form within a CPU-sized
# budget; its measured numbers are in README.md. Steps and evaluation interval: TrainArgs' defaults.
DEMO = dict(env="puzzle-3x3-play-singletask-task1-v0", dataset_episodes=100, preset="tiny")

# Subcommands whose module parses its own arguments: (module, one-line help).
PASSTHROUGH = {
    "diagnostics": ("qflow.reporting.diagnostics", "learning curves beside the guidance diagnostics"),
    "policy-drift": ("qflow.reporting.policy_drift", "how far a stacked group's policy moves between exports"),
    "online-report": ("qflow.reporting.online", "success before and after online fine-tuning"),
    "bandit": ("qflow.experiments.bandit", "a one-step two-mode bandit: Q-Flow against training length"),
}


def _settings(module: str, name: str):
    return getattr(importlib.import_module(module), name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qflow", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="offline training with periodic evaluation (no arguments: the CPU demo)")
    add_flags(t, _settings("qflow.training.settings", "TrainArgs"))
    e = sub.add_parser("eval", help="evaluate a run's checkpoint on one task or all five")
    e.add_argument("--run-dir", required=True)
    e.add_argument("--episodes", type=POSITIVE, default=50)
    e.add_argument("--task", default=None, help="task number 1-5 or 'all' (default: the run's task)")
    e.add_argument("--seed", type=NONNEGATIVE, default=0)
    e.add_argument("--no-progress", action="store_true", help="no bar of finished episodes")
    _data_parsers(sub)
    x = sub.add_parser("expert", help="the ant expert that antmaze datasets are generated with")
    xt = x.add_subparsers(dest="expert_command", required=True).add_parser(
        "train", help="SAC on online-ant-xy-v0 (OGBench's recipe: 400k env steps); rerun to resume")
    add_flags(xt, _settings("qflow.training.settings", "ExpertSettings"))
    xt.add_argument("--run-dir", required=True, help="checkpoints, logs and DIR/expert.msgpack")
    xt.add_argument("--no-progress", action="store_true")
    _settings_group(sub, "stacked", "every task x seed of one dataset in one jitted call per agent (accelerators)", [
        ("train", "train a group per agent, in lockstep; rerun to resume", "qflow.experiments.settings", "GroupSettings"),
        ("evaluate", "evaluate exported policies into run directories", "qflow.experiments.settings", "EvalSettings")])
    _sweep_parser(sub)
    _plan_parser(sub)
    _report_parser(sub)
    _toy2d_parser(sub)
    _settings_group(sub, "bench", "benchmarks that print numbers", [
        ("throughput", "updates/s, FLOPs and GFLOP/s of agents' updates", "qflow.bench.settings", "ThroughputSettings"),
        ("compute", "ms per update and memory vs flow steps K", "qflow.bench.settings", "ComputeSettings")])
    for name, (_, text) in PASSTHROUGH.items():
        sub.add_parser(name, help=f"{text} (qflow {name} --help)", add_help=False)
    return parser


def _settings_group(sub, name: str, text: str, commands) -> None:
    """``qflow NAME COMMAND`` for each (command, help, module, settings class): flags from the class."""
    group = sub.add_parser(name, help=text).add_subparsers(dest=f"{name}_command", required=True)
    for command, help_text, module, cls in commands:
        add_flags(group.add_parser(command, help=help_text), _settings(module, cls))


def _data_parsers(sub) -> None:
    d = sub.add_parser("data", help="dataset commands")
    dsub = d.add_subparsers(dest="data_command", required=True)
    add_flags(dsub.add_parser("prepare", help="official files, else OGBench download, else regeneration by the recipe"),
              _settings("qflow.data.prepare", "PrepareSettings"))
    q = dsub.add_parser("inspect", help="a dataset's fingerprint (per-key statistics, sha256); navigate datasets also "
                        "per-task goal-reaching fractions and an xy coverage plot")
    q.add_argument("dataset", help="e.g. antmaze-large-navigate-v0")
    q.add_argument("--episodes", type=POSITIVE, default=None, help="training episodes (default: official size)")
    q.add_argument("--seed", type=NONNEGATIVE, default=0, help="generation seed of a regenerated dataset (default 0)")
    q.add_argument("--data-dir", default=None)
    q.add_argument("--out", required=True, help="writes OUT/DATASET.json (and OUT/DATASET_xy.png for navigate)")


def _sweep_parser(sub) -> None:
    w = sub.add_parser("sweep", help="a grid of runs on Ray (this machine, or a cluster with --address)",
                       description="Every env x agent x setting x seed as a Ray task; finished cells are skipped, "
                                   "dead workers retried, failures isolated. See qflow/experiments/sweep.py.")
    w.add_argument("spec", nargs="?", default=None, help="a TOML sweep spec (its keys: the flags below)")
    add_flags(w, _settings("qflow.experiments.settings", "Spec"), required=False)
    w.add_argument("--address", default=None, help="a running Ray cluster (default: $RAY_ADDRESS, else a local one)")
    w.add_argument("--dry-run", action="store_true", help="list the cells and whether each is done; run nothing")


def _plan_parser(sub) -> None:
    p = sub.add_parser("plan", help="the evidence plan: experiments run in order on a machine with a time limit")
    psub = p.add_subparsers(dest="plan_command", required=True)
    for name in ("status", "run"):
        add_flags(psub.add_parser(name), _settings("qflow.experiments.settings", "PlanSettings"),
                  skip=() if name == "run" else ("minutes", "out", "work", "only"))


def _report_parser(sub) -> None:
    r = sub.add_parser("report", help="tables with 95%% intervals over seeds and learning curves from finished runs")
    r.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run directories, or directories searched recursively for summary.json")
    r.add_argument("--out", required=True, help="directory for results.md, per_task.csv, per_env.csv, PNGs")
    r.add_argument("--metric", choices=("success_last3", "success"), default="success_last3",
                   help="score of one run: mean of its last three evaluations (default) or the last one")
    r.add_argument("--reps", type=POSITIVE, default=2000, help="bootstrap resamples (the IQM interval and the "
                   "probability of improvement's)")
    r.add_argument("--include-partial", action="store_true",
                   help="also score unfinished runs (no summary.json) from their eval.csv and run.json")
    r.add_argument("--compare", default=None, metavar="A,B",
                   help="two agents (or labels): a permutation test and the probability of improvement of A over B")


def _toy2d_parser(sub) -> None:
    g = sub.add_parser(
        "toy2d", help="the paper's 2-D bandit study: flow BC, FBRAC, FQL, Q-Flow on four 2-D datasets",
        description="2-D bandit illustration: every method x behaviour-regularisation strength x seed on swiss "
                    "roll, two spirals, moons, eight gaussians; writes sample grids, flow-evolution figures, "
                    "toy2d.csv/.md and toy2d.json. The defaults are REDUCED to finish in minutes on a 2-core CPU; "
                    "--paper restores the paper's settings (hours on a CPU); the flags below override either.")
    add_flags(g, _settings("qflow.experiments.toy2d", "ToySettings"), skip=("paper",))
    g.add_argument("--paper", action="store_true", help="the paper's settings instead of the reduced CPU defaults")
    g.add_argument("--out", default="results/toy2d", help="output directory (default results/toy2d)")
    g.add_argument("--no-progress", action="store_true")


def cmd_train(a) -> int:
    from qflow.training.settings import TrainArgs
    from qflow.training.trainer import train

    demo = {} if a.env is not None else {k: v for k, v in DEMO.items() if getattr(a, k) is None}
    for s in train(from_flags(TrainArgs, a, **demo)):
        print(f"[qflow] {s['agent']} on {s['env']} seed {s['seed']}: success {s['success']:.3f} "
              f"(mean of last 3 evaluations {s['success_last3']:.3f}), mean return {s['return']:.1f}, "
              f"after {s['steps']} steps"
              f"{' + %d online env steps' % s['online']['env_steps'] if 'online' in s else ''} "
              f"[{s['preset']} preset, {s['data']['origin']} data, {s['data']['episodes']} episodes]; "
              f"summary in {s['run_dir']}/summary.json")
    return 0


def cmd_eval(a) -> int:
    from qflow.training.checkpoint_eval import evaluate_run

    evaluate_run(Path(a.run_dir), a.episodes, a.task, a.seed, progress=not a.no_progress)  # prints each result first
    return 0


def cmd_data(a) -> int:
    if a.data_command == "inspect":
        from qflow.data.inspect import inspect_dataset

        stats = inspect_dataset(a.dataset, a.out, a.episodes, a.data_dir, a.seed, command=_command())
        train = stats["fingerprint"]["train"]
        print(f"[qflow] {a.dataset}: {train['rows']:,} training rows, {train['episodes']:,} episodes, sha256 "
              f"{str(train['sha256'])[:12]}... ({stats['origin']}) -> {a.out}/{a.dataset}.json")
        if "tasks" in stats:
            tasks = ", ".join(f"{k} {v['success_fraction']:.2%}" for k, v in stats["tasks"].items())
            print(f"[qflow] rows at each task's goal: {tasks}; free cells visited {stats['free_cells_visited']:.0%}; "
                  f"mean speed {stats['mean_speed_per_s']:.2f}/s")
        return 0
    from qflow.data.prepare import PrepareSettings, prepare

    s = from_flags(PrepareSettings, a)
    files = prepare(s.dataset, episodes=s.episodes, seed=s.seed, data_dir=s.data_dir, workers=s.workers,
                    download=s.download, expert=s.expert, assume_official=s.assume_official)
    print(f"{files.train}\n{files.val}\norigin: {files.origin}, {files.episodes} training episodes")
    return 0


def cmd_expert(a) -> int:
    from qflow.training.expert import train_expert
    from qflow.training.settings import ExpertSettings

    summary = train_expert(a.run_dir, from_flags(ExpertSettings, a), progress=not a.no_progress)
    ev, rnd = summary["final_eval"], summary["random_policy_eval"]
    print(f"[qflow] expert after {summary['env_steps']} env steps: return {ev['return']:.1f} (speed "
          f"{ev['speed']:.2f} m/s along the commanded direction) vs random policy {rnd['return']:.1f}; "
          f"{summary['expert']}")
    return 0


def cmd_stacked(a) -> int:
    from qflow.experiments import stacked
    from qflow.experiments.settings import EvalSettings, GroupSettings

    if a.stacked_command == "train":
        stacked.train(from_flags(GroupSettings, a, command=_command()))
    else:
        stacked.evaluate(from_flags(EvalSettings, a, command=_command()))
    return 0


def cmd_bench(a) -> int:
    from qflow.bench import settings as bench

    if a.bench_command == "compute":
        from qflow.bench.compute import run_compute

        s = from_flags(bench.ComputeSettings, a)
        result = run_compute(s.agents, s.ks, s.preset, s.overrides, s.obs_dim, s.action_dim, s.batch_size, s.updates,
                             s.repeats, isolate=s.isolate, out_dir=s.out, progress=s.progress, command=_command())
        for row in result["rows"]:
            print(f"{row['agent']:>6} K={row['flow_steps']:<3} {row['ms_per_update']:9.1f} ms/update  "
                  f"XLA temp {row['xla_temp_mb']:8.1f} MB  peak RSS {row['rss_peak_mb']:7.0f} MB")
        print(f"[qflow] compute benchmark in {s.out}: compute.md, compute.csv, compute.png, compute.json "
              f"({result['wall_time_s']:.0f} s)")
        return 0
    from qflow.bench.throughput import run_throughput

    s = from_flags(bench.ThroughputSettings, a)
    precisions = [[f"matmul_precision={p}"] for p in s.precisions] or [[]]
    grid = s.grid_values()  # checked before anything is timed, with every agent's config
    if grid:
        from qflow.agents import get_agent
        from qflow.agents.base import build_config
        from qflow.agents.knobs import check_traceable

        for name in s.agent:
            config_cls = get_agent(name)[1]
            for value in grid[1]:  # each value as the grid will build it: a bad value fails here
                build_config(config_cls, s.preset, overrides=[*s.overrides, f"{grid[0]}={value}"])
            try:
                check_traceable(config_cls, [grid[0]])
            except ValueError as err:
                raise ValueError(f"--grid {grid[0]} cannot vary within one call of {name}: {err}") from None
    results = [run_throughput(name, s.preset, [*s.overrides, *p], s.obs_dim, s.action_dim, s.updates, s.members)
               for name in s.agent for p in precisions]
    if grid:
        from qflow.bench.throughput import grid_comparison

        results += [grid_comparison(name, s.preset, s.overrides, *grid, s.grid_seeds, s.obs_dim, s.action_dim,
                                    s.updates) for name in s.agent]
    result = results[0] if len(results) == 1 else results
    if s.out:
        from qflow.utils import atomic_write_json

        atomic_write_json(Path(s.out), result)
    print(json.dumps(result, indent=2))
    return 0


def cmd_report(a) -> int:
    from qflow.reporting import make_report

    pair = tuple(x.strip() for x in _split_outside_parentheses(a.compare)) if a.compare else None
    if pair is not None and (len(pair) != 2 or not all(pair)):
        raise ValueError(f"--compare takes two agents, e.g. --compare qflow,fql; got {a.compare!r}")
    result = make_report(a.run_dirs, a.out, metric=a.metric, reps=a.reps, include_partial=a.include_partial,
                         compare_agents=pair)
    for note in result["skipped"]:
        print(f"qflow report: warning: {note}", file=sys.stderr)
    for line in dict.fromkeys(line for lines in result["captions"].values() for line in lines):
        if line.startswith(("WARNING", "Note:")):  # e.g. mixed budgets, few seeds: said here, not only in results.md
            print(f"qflow report: {line}", file=sys.stderr)
    for r in result["comparison"]:
        print(f"[qflow] {r['a']} - {r['b']} on {r['family']} task(s) {r['tasks']}: {100 * r['mean_difference']:+.1f} "
              f"points, permutation p = {r['p_value']:.3g}; P({r['a']} > {r['b']}) = {r['prob_improvement']:.2f} "
              f"[{r['prob_improvement_low']:.2f}, {r['prob_improvement_high']:.2f}]")
    print(f"[qflow] report of {result['runs']} runs in {result['out']}: results.md, per_task.csv, per_env.csv, "
          f"report.json, {', '.join(result['figures'])}")
    return 0


def _split_outside_parentheses(text: str) -> list[str]:
    """"A,B" -> [A, B], where a label's own commas sit inside parentheses: "qflow (x=1, y=2),fql"."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts, current = [*parts, current], ""
        else:
            current += char
    return [*parts, current]


def cmd_sweep(a) -> int:
    from qflow.experiments.sweep import main_from_args

    return main_from_args(a, _command())


def cmd_plan(a) -> int:
    from qflow.experiments.plan import run_command
    from qflow.experiments.settings import PlanSettings

    return run_command(a.plan_command, from_flags(PlanSettings, a))


def cmd_toy2d(a) -> int:
    from qflow.experiments.toy2d import PAPER, ToySettings, run_toy2d

    base = ToySettings(**PAPER) if a.paper else ToySettings()
    summary = run_toy2d(from_flags(ToySettings, a, base), a.out, progress=not a.no_progress, command=_command())
    print(f"[qflow] toy2d in {a.out}: {', '.join(summary['figures'])}, toy2d.md, toy2d.csv, toy2d.json "
          f"({summary['wall_time_s']:.0f} s)")
    return 0


def _command() -> str:
    return " ".join(["qflow", *sys.argv[1:]])


HANDLERS = {"train": cmd_train, "eval": cmd_eval, "data": cmd_data, "expert": cmd_expert, "bench": cmd_bench,
            "report": cmd_report, "toy2d": cmd_toy2d, "sweep": cmd_sweep, "stacked": cmd_stacked, "plan": cmd_plan}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASSTHROUGH:  # these modules parse their own flags
        sys.argv[0] = f"qflow {argv[0]}"  # their usage lines name the subcommand
        return importlib.import_module(PASSTHROUGH[argv[0]][0]).main(argv[1:])
    args = build_parser().parse_args(argv)
    from qflow.errors import QFlowError, TrainingDiverged

    try:
        return HANDLERS[args.command](args)
    except TrainingDiverged as err:
        print(f"qflow: error: {err}", file=sys.stderr)
        return 3
    except (QFlowError, ValueError) as err:
        print(f"qflow: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a path that is a file, a read-only directory, a full disk: the message names the path
        print(f"qflow: error: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
