#!/usr/bin/env bash
# The swing study of docs/analysis_plan_swings.md: base runs to 25k, four arms from each seed's 25k state
# to 35k, the authors' sampling (e) and a second dataset draw (f) from 0 to 36k; every run resumable
# (rerun the script after a stop). Usage: scripts/intervention_study.sh OUT [SEEDS (default 0-7)]
set -euo pipefail
OUT=${1:?usage: scripts/intervention_study.sh OUT [SEEDS]}
SEEDS=${2:-0-7}
ENV=cube-single-play-singletask-task2-v0
COMMON=(--env "$ENV" --preset cpu --no-progress --eval-episodes 50)

qflow train "${COMMON[@]}" --seeds "$SEEDS" --steps 25000 --eval-every 5000 --run-dir "$OUT/base"
arm() {  # NAME [--set KEY=VALUE ...]
    local name=$1; shift
    qflow train "${COMMON[@]}" --seeds "$SEEDS" --steps 35000 --eval-every 1000 --init-from "$OUT/base" \
        --run-dir "$OUT/$name" "$@"
}
arm a_no_change
arm b_critic_frozen --set freeze=critic
arm c_actor_frozen --set freeze=actor
arm d_slow_target --set target_update_rate=0.001
qflow train "${COMMON[@]}" --seeds 0-2 --steps 36000 --eval-every 1000 --run-dir "$OUT/e_reference_sampling" \
    --set stratify_tau=false --set shared_draw=false --set target_update=pre
qflow train "${COMMON[@]}" --seeds 0-2 --steps 36000 --eval-every 1000 --run-dir "$OUT/f_dataset_seed1" \
    --dataset-seed 1
# the planned statistics of the plan (qflow/reporting/swings.py), in OUT/analysis
python -m qflow.reporting.swings "$OUT" --out "$OUT/analysis"
