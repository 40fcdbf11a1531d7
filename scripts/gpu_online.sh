#!/usr/bin/env bash
# Offline-to-online runs side by side on one machine (one process per agent x seed), within a time
# limit, resumable: rerun the same command with the same WORK to continue killed runs from their
# checkpoints (the replay buffer's online rows included). At the end the small files of every run
# (run.json, metrics.csv, eval.csv, online.csv, summary.json) are packed into OUT/online_runs.tar.
#
# usage: scripts/gpu_online.sh OUT SECONDS ENV OFFLINE_STEPS ONLINE_STEPS
#   e.g. scripts/gpu_online.sh /tmp/online 540 scene-play-singletask-task2-v0 30000 20000
# Evaluation happens at the end of the offline phase (success before) and at the end (after).
# AGENTS (default "qflow fql"), SEEDS ("0 1 2"), PRESET (cpu), EVAL_EPISODES (50), EPISODES (dataset
# size, default official), WORK (/tmp/gpu_online_work) and PYTHON (python3) may be set.
set -u -o pipefail
OUT=$1; BUDGET=$2; ENV_ID=$3; OFFLINE=$4; ONLINE=$5
PY=${PYTHON:-python3}; AGENTS=${AGENTS:-qflow fql}; SEEDS=${SEEDS:-0 1 2}
START=$(date +%s); DEADLINE=$((START + BUDGET))
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # the runs share the GPU
WORK=${WORK:-/tmp/gpu_online_work}
export QFLOW_DATA_DIR=${QFLOW_DATA_DIR:-$WORK/data}
mkdir -p "$OUT" "$WORK/runs"
log() { echo "[gpu_online +$(( $(date +%s) - START ))s] $*"; }
size=(); [ -n "${EPISODES:-}" ] && size=(--dataset-episodes "$EPISODES")
dataset=$($PY -c "from qflow.data.registry import parse_env_id; print(parse_env_id('$ENV_ID')[0])") || exit 1

log "$(nproc) cores; preparing $dataset"
$PY -m qflow.cli data prepare "$dataset" ${EPISODES:+--episodes "$EPISODES"} --no-download 2>&1 | tr '\r' '\n' \
    | grep -v "it/s\]$" | tail -2 || { log "data preparation failed"; exit 1; }
pids=()
for agent in $AGENTS; do
  for seed in $SEEDS; do
    run="$WORK/runs/${ENV_ID}__${agent}__seed${seed}"
    left=$((DEADLINE - $(date +%s)))
    if [ "$left" -lt 30 ]; then log "no time left for $agent seed $seed"; continue; fi
    timeout --signal=KILL "$left" $PY -m qflow.cli train --env "$ENV_ID" --agent "$agent" \
        --seed "$seed" --preset "${PRESET:-cpu}" --steps "$OFFLINE" --online-steps "$ONLINE" --eval-every "$OFFLINE" \
        --eval-episodes "${EVAL_EPISODES:-50}" --run-dir "$run" --no-progress "${size[@]}" >> "$run.log" 2>&1 &
    pids+=($!)
  done
done
log "started ${#pids[@]} runs"
for p in "${pids[@]}"; do wait "$p" || log "a run ended with status $? (killed at the deadline: rerun to resume)"; done
for f in "$WORK"/runs/*.log; do log "--- $(basename "$f")"; grep -v "Warning\|warn(" "$f" | tail -4; done
(cd "$WORK/runs" && for r in */; do cp "${r%/}.log" "$r/train.log" 2>/dev/null; done
 find . -maxdepth 2 \( -name run.json -o -name metrics.csv -o -name eval.csv -o -name online.csv \
      -o -name summary.json -o -name train.log \) -print0 | tar cf "$OUT/.online_runs.tar.tmp" --null -T - \
 && mv "$OUT/.online_runs.tar.tmp" "$OUT/online_runs.tar")
log "packed $(tar tf "$OUT/online_runs.tar" | wc -l) files into $OUT/online_runs.tar"
