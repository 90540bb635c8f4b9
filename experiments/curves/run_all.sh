#!/usr/bin/env bash
# Every run of experiments/README.md "S4 vs S4D learning curves", one after another on one CPU
# core (taskset -c $CORE, default 1; torch uses one thread). A run whose JSON already exists is
# skipped. Logs go to $LOGS (default /tmp/ssm-curves-logs). From the repository root:
#   bash experiments/curves/run_all.sh                 # seeds 0 1 2
#   SEEDS="0" bash experiments/curves/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=experiments/results/curves
LOGS=${LOGS:-/tmp/ssm-curves-logs}
SEEDS=${SEEDS:-"0 1 2"}
CORE=${CORE:-1}
mkdir -p "$OUT" "$LOGS"
run() {  # task arm seed steps eval_every
  local file="$OUT/$1_$2_seed$3.json"
  [ -e "$file" ] && { echo "skip $file"; return; }
  echo "run $file"
  PYTHONPATH=$PWD taskset -c "$CORE" python experiments/curves/run_curves.py --task "$1" --arm "$2" --seed "$3" \
    --steps "$4" --eval-every "$5" --train-eval 500 --val-eval 500 --threads 1 --out "$file" > "$LOGS/$1_$2_seed$3.log" 2>&1
}
for seed in $SEEDS; do
  for arm in s4 s4d s4-oldC s4d-oldC s4d-lin s4d-bilinear; do run marker "$arm" "$seed" 400 25; done
  for arm in s4 s4d s4-oldC s4d-oldC; do run listops "$arm" "$seed" 500 50; done
done
python experiments/curves/summarize.py "$OUT"/*.json --json experiments/results/curves_summary.json
