#!/usr/bin/env bash
# One short-budget pilot of issue 11 (bench/RESULTS.md, language-model section): trains a
# config for EPOCHS (2) epochs of LIMIT (2048) windows and prints its last epoch line.
#   bench/lm_pilots/run.sh configs/lm/router_moe.toml
#   bench/lm_pilots/run.sh bench/lm_pilots/sr8_e8r64h240.toml
#   BUILD=build-ppl EPOCHS=6 LIMIT=6144 bench/lm_pilots/run.sh bench/lm_pilots/e16r16k4.toml
# The variant switches (EOE_GATE_BETA=b: gate logits b (s + gate bias); EOE_GATE_FULL=1: gates
# the full softmax over all experts, the active ones kept unrenormalised; EOE_UNORM=1: the
# expert reads u scaled to norm sqrt(r)) exist only in a build with gate_score_variants.patch
# applied: a prototype, not code. Its EOE_SCORE_RANK=n is the config's score_columns = n now.
set -euo pipefail
cd "$(dirname "$0")/../.."
build="${BUILD:-build}"
cfg="$1"
out="${OUT:-$build/lm_pilots}"
mkdir -p "$out"
name="$(basename "$cfg" .toml)"
"$build/bin/eoe" train --config "$cfg" --out "$out/$name.ckpt" --epochs "${EPOCHS:-2}" \
  --train-limit "${LIMIT:-2048}" > "$out/$name.log" 2>&1
grep '^epoch' "$out/$name.log" | tail -n 1
