# What bench/train_compare.sh and bench/lm_compare.sh share, sourced from the repository root
# with $out set: $out made, eoe and bench_train_table built, and train_timed.
mkdir -p "$out"
cmake --build build --target eoe bench_train_table -j "$(nproc)" >/dev/null

# train_timed CONFIG PREFIX [eoe train options...]: trains CONFIG into PREFIX.ckpt, its output
# in PREFIX.log and its wall-clock seconds in PREFIX.ckpt.wall (bench_train_table reads them).
train_timed() {
  local config=$1 prefix=$2 start end
  shift 2
  echo "training $(basename "$prefix") ..." >&2
  start=$(date +%s.%N)
  build/bin/eoe train --config "$config" --out "$prefix.ckpt" "$@" > "$prefix.log" 2>&1
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f\n", b - a }' > "$prefix.ckpt.wall"
}
