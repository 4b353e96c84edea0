#!/usr/bin/env bash
# Fresh Debian 12 machine -> dependencies, build, every test. What .ci/run calls.
#   tools/test.sh            Release build in build/
#   tools/test.sh asan       Debug + ASan + UBSan in build-asan/
#   tools/test.sh tsan       TSan in build-tsan/
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"

tools/setup
cmake --preset "$preset"
cmake --build --preset "$preset" -j "$(nproc)"
ctest --preset "$preset" -j "$(nproc)"
