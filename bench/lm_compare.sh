#!/usr/bin/env bash
# Trains the three byte-level language models of configs/lm (EoE top-2 of 8, the dense FFN
# transformer and the router MoE with the same active FLOPs per token, the same recipe and
# training budget) on the fortunes text and prints the comparison table bench/RESULTS.md
# carries. Long (about 30 minutes on 2 cores): a benchmark, not a test.
#   bench/lm_compare.sh                 every config with its own [train] settings
#   EPOCHS=2 bench/lm_compare.sh        a quick pass (override the epochs)
#   OUT=dir bench/lm_compare.sh         where checkpoints, metrics, plots and logs go
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-build/lm_compare}"
mkdir -p "$out"
cmake --build build --target eoe bench_train_table -j "$(nproc)" >/dev/null

configs=(eoe router_moe dense_same_flops)
extra=()
[ -n "${EPOCHS:-}" ] && extra=(--epochs "$EPOCHS")
for c in "${configs[@]}"; do
  echo "training $c ..." >&2
  start=$(date +%s.%N)
  build/bin/eoe train --config "configs/lm/$c.toml" --out "$out/$c.ckpt" "${extra[@]}" \
    > "$out/$c.log" 2>&1
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f\n", b - a }' > "$out/$c.ckpt.wall"
  grep '^epoch' "$out/$c.log" | tail -n 1 >&2
done
build/bin/bench_train_table --reference dense_same_flops \
  $(for c in "${configs[@]}"; do echo "$out/$c.ckpt"; done)
