#!/usr/bin/env bash
# Trains every shipped Fashion-MNIST config and prints the comparison table that
# bench/RESULTS.md carries. Long: run it as a benchmark, not in the test suite.
#   bench/train_compare.sh                  every config with its own [train] settings
#   EPOCHS=2 bench/train_compare.sh         a quick pass (override the epochs)
#   OUT=dir bench/train_compare.sh          where checkpoints, metrics, plots and logs go
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-build/train_compare}"
source bench/train_runs.sh

configs=(eoe_topk dense_same_flops dense_same_params router_moe hash_moe
         eoe_topk_unbalanced eoe_threshold eoe_affinity eoe_recurrent)
extra=()
[ -n "${EPOCHS:-}" ] && extra=(--epochs "$EPOCHS")
for c in "${configs[@]}"; do
  train_timed "configs/fmnist/$c.toml" "$out/$c" "${extra[@]}"
  tail -n 1 "$out/$c.log" >&2
done
build/bin/bench_train_table --reference dense_same_params \
  $(for c in "${configs[@]}"; do echo "$out/$c.ckpt"; done)
