#!/usr/bin/env bash
# Fresh Debian 12 machine -> dependencies, build, the main job: the embedded default EoE model,
# trained briefly on Fashion-MNIST, then run on test images, showing which experts each token
# activated on every layer.
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
echo
echo "== training it on Fashion-MNIST (eoe train --config configs/default.toml)"
"$eoe" train --config configs/default.toml --out "$out/default.ckpt"
echo
echo "== the trained model on test images (eoe forward --checkpoint $out/default.ckpt)"
"$eoe" forward --checkpoint "$out/default.ckpt" --tokens 8
echo
echo "plots: $out/default.ckpt.loss.svg, $out/default.ckpt.accuracy.svg, $out/default.ckpt.experts.svg"
