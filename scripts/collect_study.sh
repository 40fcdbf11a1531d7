#!/usr/bin/env bash
# Copy what a learning-speed study (scripts/learning_speed_cpu.sh OUT ...) wrote into the repository's
# results, leaving the exported policies behind, then make its diagnostics report and policy-drift analysis.
#   usage: scripts/collect_study.sh OUT NAME [SPACING]
#   writes results/runs/NAME/{training/FAMILY__AGENT/{group.json,metrics.csv}, training/*.log,
#   ENV__AGENT/seedS/{run.json,metrics.csv,eval.csv,summary.json}, policy_drift/}, results/reports/NAME/
set -euo pipefail
shopt -s nullglob
OUT=$(realpath "$1")
cd "$(dirname "$0")/.."  # results/ of this repository, wherever it is called from
NAME=$2
SPACING=${3:-5000}
DEST=results/runs/$NAME
[ -d "$OUT/train" ] && [ -d "$OUT/runs" ] || { echo "$OUT: no train/ and runs/ folders (is it a study's OUT?)" >&2; exit 2; }
for group in "$OUT"/train/*__*; do
    mkdir -p "$DEST/training/$(basename "$group")"
    cp "$group/group.json" "$group/metrics.csv" "$DEST/training/$(basename "$group")/"
done
for log in "$OUT/train.log" "$OUT/eval.log" "$OUT"/train/*.train.log "$OUT"/runs/eval_*.log; do
    if [ -f "$log" ]; then cp "$log" "$DEST/training/"; fi  # eval.log: studies from before --evaluate-into
done
for run in "$OUT"/runs/*__*/seed*; do
    rel=${run#"$OUT"/runs/}
    mkdir -p "$DEST/$rel"
    for f in run.json metrics.csv eval.csv summary.json; do
        [ -f "$run/$f" ] && cp "$run/$f" "$DEST/$rel/"
    done
done
qflow diagnostics "$DEST" --out "results/reports/$NAME"
qflow policy-drift "$OUT"/train/*__* --spacing "$SPACING" --out "$DEST/policy_drift"
