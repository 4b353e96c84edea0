#!/usr/bin/env bash
# Trains the three byte-level language models of configs/lm (EoE top-2 of 8, the dense FFN
# transformer and the router MoE with the same active FLOPs per token, the same recipe and
# training budget) on the fortunes text, at each seed, and prints the comparison table
# bench/RESULTS.md carries and the mean over the seeds. Long (about 4 minutes a model and seed
# on 2 idle cores): a benchmark, not a test.
#   bench/lm_compare.sh                   every config with its own [train] settings, seed 1
#   SEEDS="1 2 3" bench/lm_compare.sh     each at seeds 1, 2 and 3 (model and data order)
#   CONFIGS="eoe router_moe" ...          a subset of configs/lm
#   CONFIGS="eoe16 router_moe16" ...      the same comparison with 16 experts per layer
#   EPOCHS=2 bench/lm_compare.sh          a quick pass (override the epochs)
#   OUT=dir bench/lm_compare.sh           where checkpoints, metrics, plots and logs go
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-build/lm_compare}"
source bench/train_runs.sh

read -r -a configs <<< "${CONFIGS:-eoe router_moe dense_same_flops}"
read -r -a seeds <<< "${SEEDS:-1}"
extra=()
[ -n "${EPOCHS:-}" ] && extra=(--epochs "$EPOCHS")
ckpts=()
for s in "${seeds[@]}"; do
  for c in "${configs[@]}"; do
    name="$c"
    [ "${#seeds[@]}" -gt 1 ] && name="${c}_s$s"
    # The seed of the weights ([model]) and of the data order ([train]).
    sed -e "s/^seed = .*/seed = $s/" -e "s/^name = \".*\"/name = \"$name\"/" \
      "configs/lm/$c.toml" > "$out/$name.toml"
    train_timed "$out/$name.toml" "$out/$name" "${extra[@]}"
    grep '^epoch' "$out/$name.log" | tail -n 1 >&2
    ckpts+=("$out/$name.ckpt")
  done
done
reference=dense_same_flops
[ "${#seeds[@]}" -gt 1 ] && reference="dense_same_flops_s${seeds[0]}"
build/bin/bench_train_table --reference "$reference" "${ckpts[@]}"
[ "${#seeds[@]}" -gt 1 ] || exit 0

# The mean over the seeds: validation loss (nats/byte, with the sample standard deviation)
# and the perplexity of the mean loss.
echo
echo "| model | seeds | validation loss per seed | mean loss | sd | perplexity of the mean |"
echo "|---|---:|---|---:|---:|---:|"
for c in "${configs[@]}"; do
  losses=()
  for s in "${seeds[@]}"; do
    losses+=("$(tail -n 1 "$out/${c}_s$s.ckpt.metrics.jsonl" | grep -o '"loss":[0-9.]*' | tail -n 1 \
      | cut -d: -f2)")
  done
  printf '%s\n' "${losses[@]}" | awk -v name="$c" '
    { x[NR] = $1; sum += $1; list = list (NR > 1 ? ", " : "") sprintf("%.4f", $1) }
    END {
      mean = sum / NR; ss = 0
      for (i = 1; i <= NR; ++i) ss += (x[i] - mean) ^ 2
      sd = NR > 1 ? sqrt(ss / (NR - 1)) : 0
      printf "| %s | %d | %s | %.4f | %.4f | %.3f |\n", name, NR, list, mean, sd, exp(mean)
    }'
done
