"""Command line: ``qflow train | eval | sweep | data prepare | expert train | bench throughput | bench compute | report |
toy2d``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qflow.utils import NONNEGATIVE, POSITIVE

# `qflow train` with no arguments: the CPU demo (data, training and evaluation in one command).
# puzzle-3x3 has a dense reward (buttons in the goal state), so TD values form within a CPU-sized
# budget; measured numbers, and how clearly Q-Flow beats flow BC there, are in README.md.
DEMO = dict(env="puzzle-3x3-play-singletask-task1-v0", dataset_episodes=100, preset="tiny")  # and TrainArgs' 20k
# steps with an evaluation every 5k


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
        if not seeds:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
        if min(seeds) < 0:
            raise argparse.ArgumentTypeError(f"seeds must be >= 0, got {text!r}")
        return seeds
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    from qflow.training.trainer import TrainArgs

    TRAIN = TrainArgs()  # the one source of the training defaults
    parser = argparse.ArgumentParser(prog="qflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="offline training with periodic evaluation (no arguments: the CPU demo)")
    t.add_argument("--env", default=None,
                   help=f"OGBench single-task id (default: the demo, {DEMO['env']})")
    t.add_argument("--agent", default="qflow")
    t.add_argument("--seed", type=NONNEGATIVE, default=None, help="one seed (default 0)")
    t.add_argument("--seeds", type=_seeds, default=None, help="several seeds trained side by side, e.g. 0,1,2")
    t.add_argument("--steps", type=NONNEGATIVE, default=TRAIN.steps, help=f"gradient steps (default {TRAIN.steps})")
    t.add_argument("--eval-every", type=POSITIVE, default=TRAIN.eval_every, help=f"default {TRAIN.eval_every}")
    t.add_argument("--eval-episodes", type=POSITIVE, default=TRAIN.eval_episodes)
    t.add_argument("--eval-envs", type=POSITIVE, default=TRAIN.eval_envs, help="environments stepped in lockstep when evaluating")
    t.add_argument("--log-every", type=POSITIVE, default=TRAIN.log_every)
    t.add_argument("--checkpoint-every", type=POSITIVE, default=TRAIN.checkpoint_every)
    t.add_argument("--chunk", type=POSITIVE, default=TRAIN.chunk, help="updates per jitted call")
    t.add_argument("--run-dir", default=None, help="default runs/ENV__AGENT__PRESET__seedS (rerun to resume)")
    t.add_argument("--preset", default=None,
                   help="network sizes: paper (4x512), cpu (3x256, default) or tiny (2x256, the demo)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override an agent config key, e.g. --set guidance_lambda=5 --set flow_steps=20")
    t.add_argument("--data-dir", default=None, help="dataset directory (default $QFLOW_DATA_DIR or ~/.ogbench/data)")
    t.add_argument("--dataset-episodes", type=POSITIVE, default=None,
                   help="regenerate/load a dataset of this many episodes (default: official size; demo: "
                        f"{DEMO['dataset_episodes']})")
    t.add_argument("--dataset-seed", type=NONNEGATIVE, default=TRAIN.dataset_seed)
    t.add_argument("--tensorboard", action="store_true", help="also write TensorBoard logs (needs tensorboardX)")
    t.add_argument("--wandb", action="store_true",
                   help="also log to Weights & Biases in offline mode, RUN_DIR/wandb (needs wandb; `wandb sync` later)")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--online-steps", type=NONNEGATIVE, default=0,
                   help="then fine-tune online for this many env steps (one seed; --steps may be 0); the step "
                        "counter, --eval-every/--log-every/--checkpoint-every continue over offline + online steps")
    t.add_argument("--updates-per-step", type=POSITIVE, default=TRAIN.updates_per_step, help="agent updates per online env step")
    t.add_argument("--buffer-size", type=POSITIVE, default=None,
                   help="online replay capacity in transitions, offline dataset included (default: dataset size "
                        "+ --online-steps, so nothing is overwritten; offline rows are never overwritten)")

    e = sub.add_parser("eval", help="evaluate a run's checkpoint on one task or all five")
    e.add_argument("--run-dir", required=True)
    e.add_argument("--episodes", type=POSITIVE, default=50)
    e.add_argument("--task", default=None, help="task number 1-5 or 'all' (default: the run's task)")
    e.add_argument("--seed", type=NONNEGATIVE, default=0)

    d = sub.add_parser("data", help="dataset commands")
    dsub = d.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("prepare", help="official files, else OGBench download, else regeneration by the recipe")
    p.add_argument("dataset", help="e.g. cube-single-play-v0")
    p.add_argument("--episodes", type=POSITIVE, default=None, help="training episodes (default: official size)")
    p.add_argument("--seed", type=NONNEGATIVE, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--workers", type=POSITIVE, default=None, help="generation processes (default: one per core)")
    p.add_argument("--no-download", action="store_true", help="skip OGBench's download attempt")
    p.add_argument("--assume-official", action="store_true",
                   help="files found in the data dir without metadata sidecars are OGBench's official files")

    p.add_argument("--expert", default=None,
                   help="antmaze only: the ant expert (DIR/expert.msgpack from `qflow expert train --run-dir DIR`)")

    q = dsub.add_parser("inspect", help="navigate datasets: per-task goal-reaching fraction and an xy coverage plot")
    q.add_argument("dataset", help="e.g. antmaze-large-navigate-v0")
    q.add_argument("--episodes", type=POSITIVE, default=None, help="training episodes (default: official size)")
    q.add_argument("--data-dir", default=None)
    q.add_argument("--out", required=True, help="writes OUT/DATASET.json and OUT/DATASET_xy.png")

    x = sub.add_parser("expert", help="train the ant expert that antmaze datasets are generated with")
    xsub = x.add_subparsers(dest="expert_command", required=True)
    xt = xsub.add_parser("train", help="SAC on online-ant-xy-v0 (OGBench's recipe: 400k env steps); rerun to resume")
    from qflow.training.expert import ExpertSettings

    xd = ExpertSettings()
    xt.add_argument("--run-dir", required=True, help="checkpoints, logs and DIR/expert.msgpack")
    xt.add_argument("--steps", type=POSITIVE, default=xd.steps, help=f"env steps (default {xd.steps})")
    xt.add_argument("--random-steps", type=NONNEGATIVE, default=xd.random_steps, help="uniform random actions first")
    xt.add_argument("--seed", type=NONNEGATIVE, default=xd.seed)
    xt.add_argument("--preset", default=xd.preset, help=f"network sizes (default {xd.preset}: 2x256)")
    xt.add_argument("--set", dest="overrides", action="append", default=None, metavar="KEY=VALUE",
                    help=f"SAC config override (default {' '.join(xd.overrides)})")
    xt.add_argument("--eval-every", type=POSITIVE, default=xd.eval_every)
    xt.add_argument("--eval-episodes", type=POSITIVE, default=xd.eval_episodes)
    xt.add_argument("--log-every", type=POSITIVE, default=xd.log_every)
    xt.add_argument("--checkpoint-every", type=POSITIVE, default=xd.checkpoint_every)
    xt.add_argument("--no-progress", action="store_true")

    b = sub.add_parser("bench", help="benchmarks that print numbers")
    bsub = b.add_subparsers(dest="bench_command", required=True)
    th = bsub.add_parser("throughput", help="updates/s, FLOPs and GFLOP/s of one agent's update")
    th.add_argument("--agent", default="qflow",
                    help="agent, or several separated by commas (e.g. qflow,fql) measured one after the other")
    th.add_argument("--preset", default="paper")
    th.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    th.add_argument("--obs-dim", type=POSITIVE, default=28)
    th.add_argument("--action-dim", type=POSITIVE, default=5)
    th.add_argument("--updates", type=POSITIVE, default=30, help="timed updates per loop")
    th.add_argument("--members", type=_seeds, default=(),
                    help="also time N agents stacked in one jitted call, for each N listed (e.g. 1,15,40)")
    th.add_argument("--precisions", default=None,
                    help="matmul arithmetic, several separated by commas, measured one after the other "
                         "(float32, tf32, bf16, default; the reference matmul uses the same; default: the "
                         "config's, float32 unless --set matmul_precision=...)")
    th.add_argument("--out", default=None, help="also write the numbers as JSON here")
    co = bsub.add_parser("compute", help="ms per update and memory vs flow steps K for qflow, fql, fbrac",
                         description="Milliseconds per update (best of --repeats calls of --updates fused updates) "
                                     "and memory (XLA scratch of the compiled update, process peak RSS) for every "
                                     "agent and K; writes compute.md/.csv/.png/.json. About 5 minutes on a 2-core "
                                     "CPU with the defaults (K = 50 with BPTT is the slow part).")
    co.add_argument("--agents", default="qflow,fql,fbrac", help="comma-separated agents (default qflow,fql,fbrac)")
    co.add_argument("--ks", default="1,5,10,20,50", help="comma-separated flow-step counts K (default 1,5,10,20,50)")
    co.add_argument("--preset", default="paper", help="network sizes (default paper: 4x512)")
    co.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    co.add_argument("--obs-dim", type=POSITIVE, default=28)
    co.add_argument("--action-dim", type=POSITIVE, default=5)
    co.add_argument("--batch-size", type=POSITIVE, default=256)
    co.add_argument("--updates", type=POSITIVE, default=5, help="fused updates per timed call (default 5)")
    co.add_argument("--repeats", type=POSITIVE, default=3, help="timed calls; the best is kept (default 3)")
    co.add_argument("--no-isolate", action="store_true",
                    help="run every configuration in this process (faster; peak RSS is then the running maximum)")
    co.add_argument("--out", default="results/bench/compute", help="output directory (default results/bench/compute)")
    co.add_argument("--no-progress", action="store_true")

    r = sub.add_parser("report", help="tables with 95%% bootstrap CIs and learning curves from finished runs")
    r.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run directories, or directories searched recursively for summary.json")
    r.add_argument("--out", required=True, help="directory for results.md, per_task.csv, per_env.csv, PNGs")
    r.add_argument("--metric", choices=("success_last3", "success"), default="success_last3",
                   help="score of one run: mean of its last three evaluations (default) or the last one")
    r.add_argument("--reps", type=POSITIVE, default=2000, help="bootstrap resamples")
    r.add_argument("--include-partial", action="store_true",
                   help="also score unfinished runs (no summary.json) from their eval.csv and run.json")

    from qflow.experiments.sweep import add_arguments

    w = sub.add_parser("sweep", help="a grid of runs on Ray (this machine, or a cluster with --address)",
                       description="Every env x agent x setting x seed as a Ray task; finished cells are skipped, "
                                   "dead workers retried, failures isolated. See qflow/experiments/sweep.py.")
    add_arguments(w)
    _toy2d_parser(sub)
    return parser


def _toy2d_parser(sub) -> None:
    from qflow.experiments.toy2d import DATASETS, METHODS, PAPER, ToySettings

    d = ToySettings()
    dims = lambda v: "x".join(map(str, v))  # noqa: E731
    g = sub.add_parser(
        "toy2d", help="the paper's 2-D bandit study: flow BC, FBRAC, FQL, Q-Flow on four 2-D datasets",
        description=(
            "2-D bandit illustration (METHOD.md): every method x behaviour-regularisation strength x seed on swiss "
            "roll, two spirals, moons, eight gaussians; writes per-dataset sample grids and flow-evolution "
            "figures, toy2d.csv/.md and toy2d.json. DEFAULTS ARE REDUCED to finish in under 20 minutes on a "
            f"2-core CPU (about 10.5 minutes measured): nets {dims(d.hidden_dims)}, batch {d.batch_size}, "
            f"K = {d.flow_steps}, {d.pretrain_epochs:g} epochs of shared flow-BC pretraining, then "
            f"{d.bc_epochs:g} BC + {d.rl_epochs:g} RL epochs per method, "
            f"{len(d.seeds)} seeds. --paper restores the paper's settings (nets "
            f"{dims(PAPER['hidden_dims'])}, batch {PAPER['batch_size']}, K = {PAPER['flow_steps']}, "
            f"{PAPER['bc_epochs']:g} BC + {PAPER['rl_epochs']:g} RL epochs; hours on a CPU). Flags below override "
            "either."))
    g.add_argument("--out", default="results/toy2d", help="output directory (default results/toy2d)")
    g.add_argument("--paper", action="store_true", help="the paper's settings instead of the reduced CPU defaults")
    g.add_argument("--datasets", default=None, help=f"comma-separated subset of {','.join(DATASETS)}")
    g.add_argument("--methods", default=None, help=f"comma-separated subset of {','.join(METHODS)}")
    g.add_argument("--strengths", default=None, help="comma-separated strengths (default 0.3,0.5,1,5)")
    g.add_argument("--seeds", type=_seeds, default=None, help=f"default {','.join(map(str, d.seeds))}")
    g.add_argument("--pretrain-epochs", type=float, default=None,
                   help=f"shared flow-BC pretraining of the velocity field (default {d.pretrain_epochs:g}, paper 0)")
    g.add_argument("--bc-epochs", type=float, default=None,
                   help=f"each method's losses, value term off (default {d.bc_epochs:g}, paper {PAPER['bc_epochs']:g})")
    g.add_argument("--curve-points", type=NONNEGATIVE, default=None,
                   help="measure reward and support this many times during the RL phase (default 0: at the end)")
    g.add_argument("--rl-epochs", type=float, default=None,
                   help=f"value term on (default {d.rl_epochs:g}, paper {PAPER['rl_epochs']:g})")
    g.add_argument("--batch-size", type=POSITIVE, default=None,
                   help=f"default {d.batch_size} (paper {PAPER['batch_size']})")
    g.add_argument("--flow-steps", type=POSITIVE, default=None,
                   help=f"Euler steps K (default {d.flow_steps}, paper {PAPER['flow_steps']})")
    g.add_argument("--hidden", default=None, help=f"network widths, e.g. 512,512 (default {dims(d.hidden_dims)})")
    g.add_argument("--n-data", type=POSITIVE, default=None, help=f"points per dataset (default {d.n_data})")
    g.add_argument("--eval-samples", type=POSITIVE, default=None,
                   help=f"samples per agent for metrics (default {d.eval_samples})")
    g.add_argument("--support-radius", type=float, default=None,
                   help=f"in-support threshold on the nearest-data distance, [-4,4] units "
                        f"(default {d.support_radius:g})")
    g.add_argument("--knob-scale", type=float, default=None,
                   help=f"knob = strength x this, in agent units (default {d.knob_scale:g} = 4^2; see toy2d.py)")
    g.add_argument("--no-progress", action="store_true")


def cmd_train(a) -> int:
    from qflow.training.trainer import TrainArgs, train

    demo = a.env is None
    if a.seed is not None and a.seeds is not None:
        raise ValueError("give --seed or --seeds, not both")
    args = TrainArgs(
        env=a.env or DEMO["env"],
        agent=a.agent,
        seeds=a.seeds or (a.seed if a.seed is not None else 0,),
        steps=a.steps,
        eval_every=a.eval_every,
        eval_episodes=a.eval_episodes,
        eval_envs=a.eval_envs,
        log_every=a.log_every,
        checkpoint_every=a.checkpoint_every,
        chunk=a.chunk,
        run_dir=a.run_dir,
        preset=a.preset or (DEMO["preset"] if demo else TrainArgs.preset),
        overrides=tuple(a.overrides),
        data_dir=a.data_dir,
        dataset_episodes=a.dataset_episodes if a.dataset_episodes is not None else (
            DEMO["dataset_episodes"] if demo else None),
        dataset_seed=a.dataset_seed,
        progress=not a.no_progress,
        tensorboard=a.tensorboard,
        wandb=a.wandb,
        online_steps=a.online_steps,
        updates_per_step=a.updates_per_step,
        buffer_size=a.buffer_size,
    )
    for s in train(args):
        print(f"[qflow] {s['agent']} on {s['env']} seed {s['seed']}: success {s['success']:.3f} "
              f"(mean of last 3 evaluations {s['success_last3']:.3f}), mean return {s['return']:.1f}, "
              f"after {s['steps']} steps"
              f"{' + %d online env steps' % s['online']['env_steps'] if 'online' in s else ''} "
              f"[{s['preset']} preset, {s['data']['origin']} data, {s['data']['episodes']} episodes]; "
              f"summary in {s['run_dir']}/summary.json")
    return 0


def cmd_eval(a) -> int:
    from qflow.training.checkpoint_eval import evaluate_run

    evaluate_run(Path(a.run_dir), a.episodes, a.task, a.seed)  # prints each result before writing it
    return 0


def cmd_data(a) -> int:
    from qflow.data.prepare import prepare

    if a.data_command == "inspect":
        from qflow.data.inspect import inspect_dataset

        stats = inspect_dataset(a.dataset, a.out, a.episodes, a.data_dir)
        tasks = ", ".join(f"{k} {v['success_fraction']:.2%}" for k, v in stats["tasks"].items())
        print(f"[qflow] {a.dataset}: {stats['rows']:,} rows; rows at each task's goal: {tasks}; free cells visited "
              f"{stats['free_cells_visited']:.0%}; mean speed {stats['mean_speed_per_s']:.2f}/s -> {a.out}")
        return 0

    files = prepare(a.dataset, episodes=a.episodes, seed=a.seed, data_dir=a.data_dir, workers=a.workers,
                    download=not a.no_download, expert=a.expert, assume_official=a.assume_official)
    print(f"{files.train}\n{files.val}\norigin: {files.origin}, {files.episodes} training episodes")
    return 0


def cmd_expert(a) -> int:
    from qflow.training.expert import ExpertSettings, train_expert

    settings = ExpertSettings(
        steps=a.steps, random_steps=a.random_steps, seed=a.seed, preset=a.preset,
        overrides=tuple(a.overrides) if a.overrides is not None else ExpertSettings().overrides,
        eval_every=a.eval_every, eval_episodes=a.eval_episodes, log_every=a.log_every,
        checkpoint_every=a.checkpoint_every)
    summary = train_expert(a.run_dir, settings, progress=not a.no_progress)
    ev, rnd = summary["final_eval"], summary["random_policy_eval"]
    print(f"[qflow] expert after {summary['env_steps']} env steps: return {ev['return']:.1f} (speed "
          f"{ev['speed']:.2f} m/s along the commanded direction) vs random policy {rnd['return']:.1f}; "
          f"{summary['expert']}")
    return 0


def cmd_bench(a) -> int:
    if a.bench_command == "compute":
        return cmd_bench_compute(a)
    from qflow.bench.throughput import run_throughput

    agents = [name for name in a.agent.split(",") if name]
    precisions = [[f"matmul_precision={p}"] for p in (a.precisions or "").split(",") if p] or [[]]
    results = [run_throughput(name, a.preset, [*a.overrides, *p], a.obs_dim, a.action_dim, a.updates, a.members)
               for name in agents for p in precisions]
    result = results[0] if len(results) == 1 else results
    if a.out:
        from qflow.utils import atomic_write_json

        atomic_write_json(Path(a.out), result)
    print(json.dumps(result, indent=2))
    return 0


def cmd_report(a) -> int:
    from qflow.reporting import make_report

    result = make_report(a.run_dirs, a.out, metric=a.metric, reps=a.reps, include_partial=a.include_partial)
    for note in result["skipped"]:
        print(f"qflow report: warning: {note}", file=sys.stderr)
    for line in dict.fromkeys(line for lines in result["captions"].values() for line in lines):
        if line.startswith("WARNING"):  # e.g. runs with different budgets: said here, not only inside results.md
            print(f"qflow report: {line}", file=sys.stderr)
    print(f"[qflow] report of {result['runs']} runs in {result['out']}: results.md, per_task.csv, per_env.csv, "
          f"report.json, {', '.join(result['figures'])}")
    return 0


def cmd_bench_compute(a) -> int:
    from qflow.bench.compute import run_compute

    ks = tuple(int(k) for k in a.ks.split(",") if k.strip())
    agents = tuple(n for n in a.agents.split(",") if n.strip())
    result = run_compute(agents, ks, a.preset, a.overrides, a.obs_dim, a.action_dim, a.batch_size, a.updates,
                         a.repeats, isolate=not a.no_isolate, out_dir=a.out, progress=not a.no_progress,
                         command=" ".join(["qflow", *sys.argv[1:]]))
    for row in result["rows"]:
        print(f"{row['agent']:>6} K={row['flow_steps']:<3} {row['ms_per_update']:9.1f} ms/update  "
              f"XLA temp {row['xla_temp_mb']:8.1f} MB  peak RSS {row['rss_peak_mb']:7.0f} MB")
    print(f"[qflow] compute benchmark in {a.out}: compute.md, compute.csv, compute.png, compute.json "
          f"({result['wall_time_s']:.0f} s)")
    return 0


def cmd_sweep(a) -> int:
    from qflow.experiments.sweep import main_from_args

    return main_from_args(a)


def cmd_toy2d(a) -> int:
    import dataclasses

    from qflow.experiments.toy2d import PAPER, ToySettings, run_toy2d

    settings = ToySettings(**PAPER) if a.paper else ToySettings()
    listed = lambda text, kind=str: tuple(kind(x) for x in text.split(",") if x.strip())  # noqa: E731
    changes = {
        "datasets": a.datasets and listed(a.datasets), "methods": a.methods and listed(a.methods),
        "strengths": a.strengths and listed(a.strengths, float), "seeds": a.seeds,
        "pretrain_epochs": a.pretrain_epochs, "bc_epochs": a.bc_epochs, "rl_epochs": a.rl_epochs,
        "curve_points": a.curve_points,
        "batch_size": a.batch_size, "flow_steps": a.flow_steps,
        "hidden_dims": a.hidden and listed(a.hidden.replace("x", ","), int), "n_data": a.n_data,
        "eval_samples": a.eval_samples, "support_radius": a.support_radius, "knob_scale": a.knob_scale,
    }
    settings = dataclasses.replace(settings, **{k: v for k, v in changes.items() if v is not None})
    summary = run_toy2d(settings, a.out, progress=not a.no_progress, command=" ".join(["qflow", *sys.argv[1:]]))
    print(f"[qflow] toy2d in {a.out}: {', '.join(summary['figures'])}, toy2d.md, toy2d.csv, toy2d.json "
          f"({summary['wall_time_s']:.0f} s)")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"train": cmd_train, "eval": cmd_eval, "data": cmd_data, "expert": cmd_expert, "bench": cmd_bench,
                "report": cmd_report, "toy2d": cmd_toy2d, "sweep": cmd_sweep}
    from qflow.errors import QFlowError, TrainingDiverged

    try:
        return handlers[args.command](args)
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
