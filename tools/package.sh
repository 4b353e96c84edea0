#!/usr/bin/env bash
# Builds the Debian package of the default (x86-64-v3) release build: build/eoe_<version>_amd64.deb
# with eoe, eoe-trace, the configs, the README and eoe-node@.service (cmake/Packaging.cmake),
# then lists what it holds and depends on.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup
cmake --preset release
cmake --build --preset release -j "$(nproc)" --target eoe eoe-trace
(cd build && cpack -G DEB)
deb=$(ls -t build/eoe_*.deb | head -1)
dpkg -I "$deb"
dpkg -c "$deb"
if command -v lintian > /dev/null; then lintian "$deb" || true; fi
echo "package: $deb"
