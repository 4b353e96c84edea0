#!/usr/bin/env bash
# Fresh Debian 12 machine -> dependencies, build, the main job: the embedded default EoE model,
# trained on Fashion-MNIST if no checkpoint is there yet, served by a cluster of 3 node
# processes on loopback (every expert an actor), queried, checked against the in-process
# reference, grown by a hot-added expert, traced (summary, Perfetto JSON and an HTML page of
# every message), and shut down; then a byte-level EoE language model streaming text from a
# 3-node cluster (K/V in context shard actors), checked step by step against in-process, and
# streamed over HTTP by its OpenAI-compatible gateway (curl -N on /v1/completions).
set -euo pipefail
cd "$(dirname "$0")/.."

tools/setup
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"

eoe=build/bin/eoe
out=build/demo

# The [[node]] tables of 3 nodes n1..n3 on loopback, on ports from $1.
node_tables() {
  for n in 1 2 3; do
    printf '\n[[node]]\nname = "n%d"\nport = %d\n' "$n" $(($1 + n - 1))
  done
}
mkdir -p "$out"
echo
echo "== the model: parameters and memory (eoe inspect)"
"$eoe" inspect

if [ ! -f "$out/default.ckpt" ]; then
  echo
  echo "== training it on Fashion-MNIST (eoe train --config configs/default.toml)"
  "$eoe" train --config configs/default.toml --out "$out/default.ckpt"
fi

cluster="$out/cluster.toml"
cat > "$cluster" <<TOML
# The demo cluster: 3 node processes on loopback serving the trained default model.
[cluster]
name = "demo"
checkpoint = "$(pwd)/$out/default.ckpt"
head = "n1"

[trace]
dir = "$(pwd)/$out/trace"    # each node writes <node>.trace.jsonl here
collector = "127.0.0.1:4439"   # live stream: eoe-trace follow 127.0.0.1:4439

$(node_tables 4431)
TOML

echo
echo "== starting 3 nodes (eoe up $cluster)"
"$eoe" down "$cluster" >/dev/null 2>&1 || true
rm -rf "$out/trace"
"$eoe" up "$cluster"
trap '"$eoe" down "$cluster"' EXIT
"$eoe" status "$cluster"
echo
echo "== requests through the mesh (eoe infer --connect 127.0.0.1:4431 --reference)"
"$eoe" infer --connect 127.0.0.1:4431 --input fashion --tokens 6 --reference --trace
echo
echo "== hot-add: a zero-initialised expert joins layer 2 on n2 (outputs unchanged until trained)"
"$eoe" ctl --connect 127.0.0.1:4431 add-expert --layer 2 --node n2 --init zero
"$eoe" infer --connect 127.0.0.1:4431 --input fashion --tokens 6 --reference --trace
"$eoe" down "$cluster"
trap - EXIT
echo
echo "== the trace of those requests (eoe-trace summary $out/trace)"
trace=build/bin/eoe-trace
"$trace" summary "$out/trace" | sed -n '1,2p;/^expert activation/,$p'
"$trace" perfetto "$out/trace" -o "$out/trace.json"
"$trace" html "$out/trace" -o "$out/flows.html"

# A language model from the cluster: the byte-level EoE transformer of bench/lm_compare.sh
# when it has been trained, else configs/lm/tiny.toml (trained here in seconds).
lm=build/lm_compare/eoe.ckpt
if [ ! -f "$lm" ]; then
  lm="$out/lm_tiny.ckpt"
  if [ ! -f "$lm" ]; then
    echo
    echo "== training a tiny byte-level EoE language model on the fortunes text (configs/lm/tiny.toml)"
    "$eoe" train --config configs/lm/tiny.toml --out "$lm" | tail -n 2
  fi
fi
lm_cluster="$out/lm_cluster.toml"
cat > "$lm_cluster" <<TOML
# The demo's language-model cluster: 3 node processes; each session's keys and values open a
# context shard every 16 positions (the first on the head, the next ones on the next nodes),
# and the head's gateway serves the OpenAI completions API.
[cluster]
name = "demo_lm"
checkpoint = "$(pwd)/$lm"
head = "n1"
kv_shard_positions = 16

[gateway]
listen = "127.0.0.1:4448"

$(node_tables 4441)
TOML
echo
echo "== text from a 3-node cluster (eoe generate --connect 127.0.0.1:4441 --reference)"
"$eoe" down "$lm_cluster" >/dev/null 2>&1 || true
"$eoe" up "$lm_cluster"
trap '"$eoe" down "$lm_cluster"' EXIT
"$eoe" generate --connect 127.0.0.1:4441 --prompt "The computer " --tokens 160 \
  --temperature 0.7 --top-p 0.95 --seed 1 --reference
echo
echo "== the same model over HTTP, streamed as it is decoded: one event per byte (curl -N)"
model=$(curl -s http://127.0.0.1:4448/v1/models | sed 's/.*"id":"\([^"]*\)".*/\1/')
curl -sN http://127.0.0.1:4448/v1/completions -H 'Content-Type: application/json' \
  -d "{\"model\": \"$model\", \"prompt\": \"The computer \", \"max_tokens\": 8, \"temperature\": 0, \"stream\": true}" \
  | grep -v '^$'
echo
echo "== and not streamed, with its usage (curl .../v1/completions)"
curl -s http://127.0.0.1:4448/v1/completions -H 'Content-Type: application/json' \
  -d "{\"model\": \"$model\", \"prompt\": \"The computer \", \"max_tokens\": 64, \"temperature\": 0.7, \"seed\": 1}"
"$eoe" down "$lm_cluster"
trap - EXIT

echo
echo "plots of the training run: $out/default.ckpt.{loss,accuracy,experts}.svg"
echo "trace files:                $out/trace/*.trace.jsonl"
echo "timeline (ui.perfetto.dev): $out/trace.json"
echo "message flows page:         $out/flows.html   (tools/trace_screenshot.sh $out/flows.html flows.png)"
