#!/usr/bin/env bash
# Fresh Debian 12 machine -> dependencies, build, the main job: the embedded default EoE model,
# trained on Fashion-MNIST if no checkpoint is there yet, served by a cluster of 3 node
# processes on loopback (every expert an actor), queried, checked against the in-process
# reference, and shut down.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/setup
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"

eoe=build/bin/eoe
out=build/demo
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

[[node]]
name = "n1"
port = 4431

[[node]]
name = "n2"
port = 4432

[[node]]
name = "n3"
port = 4433
TOML

echo
echo "== starting 3 nodes (eoe up $cluster)"
"$eoe" down "$cluster" >/dev/null 2>&1 || true
"$eoe" up "$cluster"
trap '"$eoe" down "$cluster"' EXIT
"$eoe" status "$cluster"
echo
echo "== requests through the mesh (eoe infer --connect 127.0.0.1:4431 --reference)"
"$eoe" infer --connect 127.0.0.1:4431 --input fashion --tokens 6 --reference
echo
echo "plots of the training run: $out/default.ckpt.{loss,accuracy,experts}.svg"
