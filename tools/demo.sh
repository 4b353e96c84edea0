#!/usr/bin/env bash
# Fresh Debian 12 machine -> dependencies, build, the main job: the embedded default EoE model
# on Fashion-MNIST test images, showing which experts each token activated on every layer.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/setup
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"

eoe=build/bin/eoe
echo
echo "== the model: parameters and memory (eoe inspect)"
"$eoe" inspect
echo
echo "== an in-process EoE forward (eoe forward --tokens 8)"
"$eoe" forward --tokens 8
