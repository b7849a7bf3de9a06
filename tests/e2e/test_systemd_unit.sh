#!/usr/bin/env bash
# The unit passes `systemd-analyze verify` (with ExecStart pointing at the
# built binary) and its exposure score stays at or below 2.5.
set -euo pipefail
ROOT=${XDPLB_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=${XDPLB_BIN:-$ROOT/build/xdplb}
command -v systemd-analyze >/dev/null || { echo "skipped: systemd-analyze not installed"; exit 77; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
sed "s|/usr/sbin/xdplb|$BIN|g" "$ROOT/systemd/xdplb.service" >"$WORK/xdplb.service"
out=$(systemd-analyze verify "$WORK/xdplb.service" 2>&1 || true)
if [[ -n $out ]]; then echo "systemd-analyze verify:"; echo "$out"; exit 1; fi
echo "systemd-analyze verify: clean"
score=$(systemd-analyze security --offline=true "$WORK/xdplb.service" | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
echo "exposure score: $score"
awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.5) }' || { echo "FAIL: exposure $score > 2.5"; exit 1; }
echo PASS
