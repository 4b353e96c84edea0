#!/usr/bin/env bash
# Renders an eoe-trace HTML page in headless Chromium (Debian's chromium package) and writes a
# PNG screenshot of it.
#   tools/trace_screenshot.sh flows.html flows.png [WIDTH HEIGHT]
set -euo pipefail
page=${1:?usage: tools/trace_screenshot.sh PAGE.html OUT.png [WIDTH HEIGHT]}
out=${2:?usage: tools/trace_screenshot.sh PAGE.html OUT.png [WIDTH HEIGHT]}
width=${3:-1600}
height=${4:-2400}
browser=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $browser ]]; then
  echo "trace_screenshot: no chromium; install it with: apt-get install chromium" >&2
  exit 1
fi
[[ -f $page ]] || { echo "trace_screenshot: no page at $page" >&2; exit 1; }
abs=$(realpath "$page")
out_abs=$(realpath -m "$out")
# --no-sandbox: root in a container has no user namespace for the sandbox.
"$browser" --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
  --window-size="$width,$height" --screenshot="$out_abs" "file://$abs" 2>/dev/null
[[ -s $out_abs ]] || { echo "trace_screenshot: chromium wrote no screenshot" >&2; exit 1; }
echo "wrote $out ($width x $height)"
