#!/usr/bin/env bash
# The learning-speed study on a CPU: Q-Flow vs FQL on cube-single tasks 2 and 4, seeds 0-2,
# `cpu` preset, every member stacked in one process (agents in lockstep, stopped together by the
# deadline), diagnostics logged every 500 steps, a policy export every 5k steps. A second loop
# evaluates every export (50 episodes) as it arrives, so a session that ends early keeps its curves.
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
qflow stacked train --family cube-single-play --agents "$AGENTS" --tasks "$TASKS" \
    --seeds "$SEEDS" --steps 1000000 --preset cpu --chunk 500 --log-every 500 --export-every "$EXPORT_EVERY" --keep-exports \
    ${set_flags[@]+"${set_flags[@]}"} \
    --deadline "$deadline" --out "$OUT/train" > "$OUT/train.log" 2>&1 &
train=$!
evaluate_all() {
    for group in "$OUT"/train/*__*; do
        if [ -f "$group/policies.msgpack" ]; then
            qflow stacked evaluate "$group" --all-exports --episodes 50 --out "$OUT/runs" \
                >> "$OUT/eval.log" 2>&1 || echo "evaluation of $group failed (see eval.log)" >&2
        fi
    done
}
while kill -0 "$train" 2>/dev/null; do
    evaluate_all
    sleep 30
done
wait "$train"
evaluate_all
echo "done: $OUT"
