#!/usr/bin/env bash
# Runs a command (the test suite) and fails if it left anything named eoe* in the temp dir
# (issue 26: the tests clean up after themselves, failed cases included). What was there before
# the command started does not count, nor what matches EOE_TMP_IGNORE (a glob, e.g.
# 'eoe_bench_*' while a benchmark runs beside the tests). tools/test.sh runs ctest under it:
#   tests/check_tmp_clean.sh ctest --preset release -j 2
# Exit status: the command's when it failed, else 1 when it left something, else 0.
set -uo pipefail
if [ $# -eq 0 ]; then
  echo "usage: $0 COMMAND [ARG...]" >&2
  exit 2
fi
tmp="${TMPDIR:-/tmp}"
entries() {
  find "$tmp" -mindepth 1 -maxdepth 1 -name 'eoe*' -printf '%f\n' | LC_ALL=C sort
}
before="$(entries)"
"$@"
rc=$?
left=()
while IFS= read -r name; do
  [ -n "$name" ] || continue
  # shellcheck disable=SC2053 # EOE_TMP_IGNORE is a glob
  if [ -n "${EOE_TMP_IGNORE:-}" ] && [[ "$name" == $EOE_TMP_IGNORE ]]; then continue; fi
  left+=("$name")
done < <(LC_ALL=C comm -13 <(printf '%s\n' "$before") <(entries))
if [ ${#left[@]} -gt 0 ]; then
  echo "check_tmp_clean: '$*' left ${#left[@]} entr$([ ${#left[@]} -eq 1 ] && echo y || echo ies) in $tmp:" >&2
  printf '  %s\n' "${left[@]}" >&2
  [ "$rc" -ne 0 ] || rc=1
else
  echo "check_tmp_clean: nothing left in $tmp"
fi
exit "$rc"
