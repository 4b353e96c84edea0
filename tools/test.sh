#!/usr/bin/env bash
# Fresh Debian 12 machine -> dependencies, build, every test. What .ci/run calls.
#   tools/test.sh            Release build in build/
#   tools/test.sh asan       Debug + ASan + UBSan in build-asan/
#   tools/test.sh tsan       TSan in build-tsan/, against a TSan build of CAF (build-tsan/caf)
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"

tools/setup
# TSan needs a CAF built with it (tools/caf_tsan.sh, from Debian's source package).
if [ "$preset" = tsan ]; then tools/caf_tsan.sh; fi
cmake --preset "$preset"
cmake --build --preset "$preset" -j "$(nproc)"
# Every test; then nothing of theirs may be left in the temp dir, failed cases included (issue 26).
tests/check_tmp_clean.sh ctest --preset "$preset" -j "$(nproc)"
