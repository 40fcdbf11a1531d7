"""Re-evaluate kept exports of a stacked group with other evaluation seeds: is a dip in a learning
curve the policy, or the particular episodes it was scored on?

    python scripts/reevaluate_exports.py GROUP_DIR --steps 25000,30000,35000 --episodes 100 \
        --seed-offset 1000 --out FILE.csv

Evaluation as everywhere (qflow.evaluation.evaluate.evaluate_policy) but with seed = training seed +
seed offset, so the episodes differ from the learning curve's.
"""

import argparse
import json
import sys
from pathlib import Path

from qflow.data.registry import family_of
from qflow.evaluation.evaluate import Evaluator, evaluate_policy
from qflow.experiments.stacked import export_path, member_policies
from qflow.training.logs import write_rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("group")
    p.add_argument("--steps", required=True)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed-offset", type=int, default=1000)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    group_dir = Path(a.group)
    group = json.loads((group_dir / "group.json").read_text())
    family = family_of(group["family"])
    rows, evaluators, read = [], {}, None
    for step in [int(s) for s in a.steps.split(",")]:
        for m in group["members"]:
            env_id = family.env_id(m["task"])
            if env_id not in evaluators:  # one evaluator (its environments) per task, made once
                evaluators[env_id] = Evaluator(env_id, 10)
        if read is None:
            env = next(iter(evaluators.values())).envs[0]
            read = member_policies(group, env.observation_space.shape[0], env.action_space.shape[0])
        got, agents = read(export_path(group_dir, step))
        for m, agent in zip(group["members"], agents):
            evaluator = evaluators[family.env_id(m["task"])]
            result = evaluate_policy(evaluator, agent, m["seed"] + a.seed_offset, got, a.episodes)
            rows.append({"agent": group["agent"], "task": m["task"], "seed": m["seed"], "step": got,
                         "eval_seed_offset": a.seed_offset, **result})
            print(rows[-1], flush=True)
    write_rows(Path(a.out), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
