#!/usr/bin/env bash
# The learning-speed study on a CPU: Q-Flow vs FQL on cube-single tasks 2 and 4, seeds 0-2,
# `cpu` preset, every member stacked in one process (agents in lockstep, stopped together by the
# deadline), diagnostics logged every 500 steps, a policy export every 5k steps, each evaluated (50
# episodes) as it arrives, so a study stopped early keeps its curves.
#   usage: scripts/learning_speed_cpu.sh OUT MINUTES [TASKS] [SEEDS]
#   environment: AGENTS (default qflow,fql), SETS (e.g. "qflow.q_agg=min", space-separated), EXPORT_EVERY (5000)
set -euo pipefail
OUT=$1
MINUTES=$2
TASKS=${3:-2,4}
SEEDS=${4:-0,1,2}
AGENTS=${AGENTS:-qflow,fql}
EXPORT_EVERY=${EXPORT_EVERY:-5000}
set_flags=()
for item in ${SETS:-}; do set_flags+=(--set "$item"); done
mkdir -p "$OUT"
deadline=$(( $(date +%s) + MINUTES * 60 ))
# one process trains; processes beside it evaluate every export as it arrives (OUT/runs/eval_*.log)
qflow stacked train --family cube-single-play --agents "$AGENTS" --tasks "$TASKS" \
    --seeds "$SEEDS" --steps 1000000 --preset cpu --chunk 500 --log-every 500 --export-every "$EXPORT_EVERY" --keep-exports \
    ${set_flags[@]+"${set_flags[@]}"} --evaluate-into "$OUT/runs" --eval-episodes 50 \
    --deadline "$deadline" --out "$OUT/train" > "$OUT/train.log" 2>&1
echo "done: $OUT"
