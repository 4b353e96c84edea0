#!/usr/bin/env bash
# The Debian package runs a cluster (issue 27): builds the package of this build (cpack),
# checks what dpkg says it holds and depends on (and lintian, when installed, finds no error), extracts it with dpkg -x into a scratch
# folder, and runs the netns case of test_mesh_processes (3 nodes in 3 network namespaces,
# answers equal to the reference; n3 killed -9 and started again in its namespace, taken back
# with its experts, answers equal again) with the extracted /usr/bin/eoe.
#   tests/package_cluster.sh BUILD_DIR TEST_MESH_PROCESSES
set -euo pipefail
build=$1 test_bin=$2
scratch=$(mktemp -d "${TMPDIR:-/tmp}/eoe_test_package_XXXXXX")
trap 'rm -rf "$scratch"' EXIT
(cd "$build" && cpack -G DEB -B "$scratch/out" > "$scratch/cpack.log" 2>&1) \
  || { cat "$scratch/cpack.log"; exit 1; }
deb=$(ls "$scratch"/out/eoe_*.deb)
info=$(dpkg -I "$deb")
files=$(dpkg -c "$deb")
for want in "Package: eoe" "libcaf-core0.17" "libcaf-io0.17" "libcaf-openssl0.17" "libssl3"; do
  grep -q "$want" <<< "$info" || { echo "dpkg -I: no '$want' in"; echo "$info"; exit 1; }
done
for want in ./usr/bin/eoe ./usr/bin/eoe-trace ./usr/lib/systemd/system/eoe-node@.service \
            ./usr/share/eoe/configs/default.toml ./usr/share/doc/eoe/README.md; do
  grep -q " $want\$" <<< "$files" || { echo "dpkg -c: no $want"; exit 1; }
done
if command -v lintian > /dev/null; then # errors fail, warnings (no man pages) do not
  lint=$(lintian "$deb" 2>&1 || true)
  if grep -q "^E: " <<< "$lint"; then echo "lintian:"; echo "$lint"; exit 1; fi
fi
dpkg -x "$deb" "$scratch/root"
"$scratch/root/usr/bin/eoe" inspect "$scratch/root/usr/share/eoe/configs/lm/tiny.toml" > /dev/null
# 3 hosts as namespaces, one killed and started again; a node killed mid-load (0 wrong,
# service again) and started again (back with its experts); the head killed and started
# again from the package's binary, resuming its epoch with the same outputs.
for case in "3 nodes in separate network namespaces joined by veth pairs" \
            "kill -9 of one node of 3 mid-load*" "kill -9 of the head with *"; do
  EOE_BIN_DIR="$scratch/root/usr/bin" "$test_bin" --warn NoTests "$case"
done
echo "the package's files ran the cluster"
