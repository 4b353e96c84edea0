#!/usr/bin/env bash
# Request latency during membership changes against steady state, on the 3-node loopback
# cluster (configs/cluster/local3.toml, the embedded default model): `eoe bench load` at
# concurrency 64, first alone, then while 20 changes run (10 zero-expert additions, each
# removed again), every answer checked against the reference of the epoch that served it.
#   bench/membership_latency.sh [REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/.."
requests="${1:-4000}"
eoe=build/bin/eoe
cluster=configs/cluster/local3.toml
addr=127.0.0.1:4421

"$eoe" down "$cluster" >/dev/null 2>&1 || true
"$eoe" up "$cluster"
trap '"$eoe" down "$cluster"' EXIT

echo "== steady state"
"$eoe" bench load --connect "$addr" --requests "$requests" --concurrency 64

echo "== during 20 membership changes"
(
  sleep 0.5
  next=(8 8 8) # the default model's layers have 8 experts; new ones get ids 8, 9, ...
  for i in $(seq 0 9); do
    layer=$((i % 3))
    "$eoe" ctl --connect "$addr" add-expert --layer "$layer" --node "n$((1 + i % 3))" --init zero
    "$eoe" ctl --connect "$addr" remove-expert "$layer.${next[$layer]}"
    next[$layer]=$((next[$layer] + 1))
  done
) &
changes=$!
"$eoe" bench load --connect "$addr" --requests "$requests" --concurrency 64
wait "$changes"
"$eoe" status "$cluster" | tail -n 2
