#!/usr/bin/env bash
# Head-to-head grid on one GPU within a fixed time: for each dataset family in turn, regenerate the
# full-size dataset with the machine's cores, then train that family's agents (every task x seed
# stacked, agents in lockstep) in the background while the next family's data is generated.
# Every trainer stops by the same deadline; each FAMILY__AGENT result folder is then packed into
# one tar in OUT (group.json, metrics.csv, policies.msgpack, the trainer's log); nothing else is
# written to OUT, so it holds only those tars. Evaluate the policies anywhere with
#   qflow stacked evaluate FAMILY__AGENT --out results/runs/...
#
# usage: scripts/gpu_grid.sh OUT SECONDS STEPS FAMILY [FAMILY...]
#   e.g. scripts/gpu_grid.sh /tmp/grid 520 50000 puzzle-3x3-play cube-single-play
# Extra trainer flags (e.g. --agents qflow,fql) go in STACKED_ARGS; EPISODES=N uses N-episode datasets
# (a smoke test) instead of the official size; WORK (default /tmp/gpu_grid_work) holds data and runs.
set -u -o pipefail
OUT=$1; BUDGET=$2; STEPS=$3; shift 3
PY=${PYTHON:-python3}
START=$(date +%s); DEADLINE=$((START + BUDGET))
CORES=$(nproc)
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # several trainers share the GPU
WORK=${WORK:-/tmp/gpu_grid_work}
export QFLOW_DATA_DIR=${QFLOW_DATA_DIR:-$WORK/data}
mkdir -p "$OUT" "$WORK/train"
size_args=(); train_size=(); [ -n "${EPISODES:-}" ] && size_args=(--episodes "$EPISODES") && train_size=(--dataset-episodes "$EPISODES")
log() { echo "[gpu_grid +$(( $(date +%s) - START ))s] $*"; }

log "$CORES cores; $($PY -c 'import jax; print(jax.devices())' 2>&1 | tail -1)"
pids=()
for fam in "$@"; do
  left=$((DEADLINE - $(date +%s)))
  if [ "$left" -lt 120 ]; then log "skip $fam: ${left}s left"; continue; fi
  # leave two cores to the trainers already running
  workers=$(( ${#pids[@]} > 0 && CORES > 3 ? CORES - 2 : CORES ))
  log "regenerating $fam-v0 with $workers workers"
  if ! timeout $((left - 60)) $PY -m qflow.cli data prepare "$fam-v0" "${size_args[@]}" --no-download \
      --workers "$workers" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -3; then
    log "skip $fam: data preparation failed or ran out of time (rerun resumes from its shards)"; continue
  fi
  left=$((DEADLINE - $(date +%s)))
  if [ "$left" -lt 60 ]; then log "skip $fam: ${left}s left after its data"; continue; fi
  log "training $fam"
  timeout $((left + 60)) $PY -m qflow.cli stacked train --family "$fam" --steps "$STEPS" \
      --deadline "$DEADLINE" --out "$WORK/train" "${train_size[@]}" ${STACKED_ARGS:-} > "$WORK/train/$fam.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || log "a trainer exited with status $?"; done
for fam in "$@"; do
  [ -f "$WORK/train/$fam.log" ] && { log "--- $fam log"; grep -v "Warning\|warn(" "$WORK/train/$fam.log" | tail -30; }
done
for fam in "$@"; do
  for d in "$WORK/train/$fam"__*/; do
    [ -d "$d" ] || continue
    name=$(basename "$d"); cp "$WORK/train/$fam.log" "$d/train.log" 2>/dev/null
    tar cf "$OUT/.$name.tar.tmp" -C "$WORK/train" "$name" && mv "$OUT/.$name.tar.tmp" "$OUT/$name.tar"
  done
done
log "packed: $(cd "$OUT" && ls *.tar 2>/dev/null | tr '\n' ' ')"
