#!/usr/bin/env bash
# Builds CAF 0.17.6 with ThreadSanitizer into build-tsan/caf (once), from Debian's own source
# package, for `tools/test.sh tsan`. Why: Debian's libcaf is not instrumented, so TSan cannot
# see the happens-before of CAF's mailboxes and reports every message an actor receives as a
# race. Nothing leaves Debian's package registry; the result stays under build-tsan/.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="$PWD/build-tsan/caf"
[ -f "$prefix/lib/libcaf_core.so" ] && exit 0

work="$PWD/build-tsan/caf-src"
mkdir -p "$work/lists/partial"
cd "$work"
# A deb-src entry and package lists of our own: the system's apt state is left as it is.
cat > sources.list <<'LIST'
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
LIST
apt_opts=(-o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/nonexistent
          -o Dir::State::Lists="$work/lists" -o APT::Sandbox::User=root)
apt-get "${apt_opts[@]}" -qq update
# Only the upstream tarball is needed (the Debian tarball may be missing from the mirror).
apt-get "${apt_opts[@]}" -qq source --download-only actor-framework 2>/dev/null || true
tarball=$(ls actor-framework_0.17.6*.orig.tar.gz 2>/dev/null | head -n 1)
[ -n "$tarball" ] || { echo "caf_tsan: Debian's actor-framework 0.17.6 source did not download" >&2; exit 1; }
rm -rf actor-framework-0.17.6 && tar xzf "$tarball"
cd actor-framework-0.17.6
# 0.17.6 misses an #include <limits> that g++ 12 needs (libcaf_io receive_buffer.hpp). No memory
# pools: TSan must see every allocation.
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DEXTRA_FLAGS="-fsanitize=thread -include limits" -DCAF_NO_MEM_MANAGEMENT=yes \
  -DCAF_NO_EXAMPLES=yes -DCAF_NO_UNIT_TESTS=yes -DCAF_NO_OPENCL=yes -DCAF_NO_PYTHON=yes \
  -DCAF_NO_TOOLS=yes -DCAF_NO_CURL_EXAMPLES=yes > ../configure.log
make -C build -j "$(nproc)" > ../build.log
make -C build install > ../install.log
echo "caf_tsan: CAF 0.17.6 with ThreadSanitizer in $prefix"
