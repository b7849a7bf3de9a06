# Shared helpers of the end-to-end tests: each test builds its own testbed
# (names derived from the test's name, so tests can run in parallel), waits
# for readiness by polling with bounds, and cleans up in a trap.
set -euo pipefail

ROOT=${XDPLB_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export XDPLB_BIN=${XDPLB_BIN:-$ROOT/build/xdplb}
TESTBED=$ROOT/scripts/testbed.sh
CLIENT=$ROOT/scripts/e2e_client.py

e2e_skip_unless_root() {
  if [[ $(id -u) -ne 0 ]]; then
    if [[ ${XDPLB_REQUIRE_PRIVILEGED:-0} == 1 ]]; then echo "FAIL: needs root" >&2; exit 1; fi
    echo "skipped: end-to-end tests need root (network namespaces, XDP)"; exit 77
  fi
}

# e2e_testbed NAME: testbed up, $WORK made (removed by the trap), $CONFIG
# and $ADMIN_SOCK named; nothing written or started.
e2e_testbed() {
  e2e_skip_unless_root
  NAME=$1
  WORK=$(mktemp -d "/tmp/xdplb-e2e-$NAME.XXXXXX")
  trap e2e_cleanup EXIT
  "$TESTBED" up "$NAME" >"$WORK/testbed.log" 2>&1 || { cat "$WORK/testbed.log"; exit 1; }
  eval "$("$TESTBED" env "$NAME")"
  CONFIG=$WORK/xdplb.toml
  # Each testbed's daemon has an admin socket of its own.
  ADMIN_SOCK=$WORK/admin.sock
}

# e2e_init NAME: testbed up, config written to $WORK/xdplb.toml, daemon started.
e2e_init() {
  e2e_testbed "$1"
  write_config 100 100 200 >"$CONFIG"
  start_daemon
}

e2e_cleanup() {
  local rc=$?
  if [[ $rc -ne 0 && -f ${WORK:-/nonexistent}/daemon.log ]]; then
    echo "--- daemon log (last 40 lines) ---"; tail -40 "$WORK/daemon.log"
  fi
  if [[ -n ${DAEMON_PID:-} ]]; then kill -9 "$DAEMON_PID" 2>/dev/null; wait "$DAEMON_PID" 2>/dev/null; fi || true
  [[ -n ${NAME:-} ]] && "$TESTBED" down "$NAME" >/dev/null 2>&1 || true
  [[ -n ${WORK:-} ]] && rm -rf "$WORK"
  exit $rc
}

in_ns() { nsenter --net="/run/netns/$1" -- "${@:2}"; }
in_cl() { in_ns "$TB_CL" "$@"; }
in_lb() { in_ns "$TB_LB" "$@"; }

# write_config W1 W2 W3 [extra backend lines for web]: the e2e config.
write_config() {
  cat <<TOML
[daemon]
interfaces = ["eth0"]
pin_path = "$TB_PIN"
hash_seed = 3
flow_table_size = 65536
tunnel_source_v4 = "10.77.0.1"
tunnel_source_v6 = "fd00:77::1"

[metrics]
listen = "127.0.0.1:9450"

[admin]
socket = "$ADMIN_SOCK"

[[vip]]
name = "web"
address = "$TB_VIP4"
port = 80
ring_size = 65537
[vip.health_check]
type = "http"
interval = "300ms"
timeout = "150ms"
rise = 2
fall = 2
[[vip.backend]]
address = "10.77.0.11"
weight = $1
[[vip.backend]]
address = "10.77.0.12"
weight = $2
[[vip.backend]]
address = "10.77.0.13"
weight = $3
${4:-}

[[vip]]
name = "web6"
address = "$TB_VIP6"
port = 80
ring_size = 16381
[vip.health_check]
type = "tcp"
interval = "300ms"
timeout = "150ms"
[[vip.backend]]
address = "fd00:77::11"
[[vip.backend]]
address = "fd00:77::12"
[[vip.backend]]
address = "fd00:77::13"

[[vip]]
name = "web46"
address = "$TB_VIP46"
port = 80
ring_size = 16381
[vip.health_check]
type = "tcp"
interval = "300ms"
timeout = "150ms"
[[vip.backend]]
address = "fd00:77::11"
[[vip.backend]]
address = "fd00:77::12"
[[vip.backend]]
address = "fd00:77::13"
TOML
}

# wait_until SECONDS CMD...: polls every 0.1 s.
wait_until() {
  local limit=$1; shift
  local end=$((SECONDS + limit))
  while ((SECONDS < end)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "timed out after ${limit}s waiting for: $*" >&2
  return 1
}

# The daemon's CLI against this testbed's admin socket.
xdplb_admin() { in_lb "$XDPLB_BIN" "$1" --socket "$ADMIN_SOCK" "${@:2}"; }
status_json() { xdplb_admin status --json; }

# in_ring VIP BACKEND -> exit 0 when BACKEND is in VIP's ring
in_ring() {
  status_json | python3 -c "
import json,sys
s=json.load(sys.stdin)
ok=[b['in_ring'] and b['health']=='up' for v in s['vips'] if v['name']=='$1' for b in v['backends'] if b['address']=='$2']
sys.exit(0 if ok and ok[0] else 1)"
}
not_in_ring() { ! in_ring "$@"; }

all_up() {
  status_json | python3 -c "
import json,sys
s=json.load(sys.stdin)
sys.exit(0 if all(b['health']=='up' for v in s['vips'] for b in v['backends'] if b['in_config'] and b['weight']>0) else 1)"
}

start_daemon() {
  # nsenter execs the daemon: $! is the daemon itself, for signals.
  nsenter --net="/run/netns/$TB_LB" -- "$XDPLB_BIN" run --config "$CONFIG" >>"$WORK/daemon.log" 2>&1 &
  DAEMON_PID=$!
  wait_until 20 in_lb curl -sf http://127.0.0.1:9450/healthz
  wait_until 20 all_up
}

# spread VIP N -> "backend count" lines
spread() { in_cl timeout 300 python3 "$CLIENT" spread "$1" 80 "$2"; }

# check_shares "OUTPUT" "b1=25 b2=25 b3=50" TOLERANCE_PP
check_shares() {
  python3 - "$1" "$2" "$3" <<'PY'
import sys
counts = dict(l.split() for l in sys.argv[1].strip().splitlines())
want = dict(kv.split("=") for kv in sys.argv[2].split())
tol = float(sys.argv[3])
total = sum(int(v) for v in counts.values())
if int(counts.get("error", 0)):
    sys.exit("errors: %s" % counts)
for b, share in want.items():
    got = 100.0 * int(counts.get(b, 0)) / total
    print("  %s: %.1f%% (want %s%% +- %s)" % (b, got, share, tol))
    if abs(got - float(share)) > tol:
        sys.exit("%s got %.1f%%, want %s%%" % (b, got, share))
PY
}
