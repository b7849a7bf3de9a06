# Helpers of the ECMP end-to-end tests (scripts/testbed_ecmp.sh): a router
# running BIRD with multipath, three balancers each running `xdplb run` and a
# BIRD speaker, three backends. Names derive from the test's name; every wait
# is bounded; the trap removes everything, also on failure.
set -euo pipefail

ROOT=${XDPLB_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export XDPLB_BIN=${XDPLB_BIN:-$ROOT/build/xdplb}
TESTBED=$ROOT/scripts/testbed_ecmp.sh
CLIENT=$ROOT/scripts/e2e_client.py

e2e_skip_unless_root() {
  if [[ $(id -u) -ne 0 ]]; then
    if [[ ${XDPLB_REQUIRE_PRIVILEGED:-0} == 1 ]]; then echo "FAIL: needs root" >&2; exit 1; fi
    echo "skipped: end-to-end tests need root (network namespaces, XDP)"; exit 77
  fi
}

fail() { echo "FAIL: $*" >&2; exit 1; }

# ecmp_init NAME [MIN_UP] [ANNOUNCE]: testbed up, configs written, nothing started.
ecmp_init() {
  e2e_skip_unless_root
  command -v bird >/dev/null || fail "bird is not installed (scripts/install-deps.sh installs bird2)"
  NAME=$1
  trap ecmp_cleanup EXIT
  WORK=$(mktemp -d "/tmp/xdplb-e2e-$NAME.XXXXXX")
  "$TESTBED" up "$NAME" >"$WORK/testbed.log" 2>&1 || { cat "$WORK/testbed.log"; exit 1; }
  eval "$("$TESTBED" env "$NAME")"
  for n in $TB_LBS; do "$TESTBED" config "$NAME" "$n" "${2:-1}" "${3:-1}" >"$TB_RUN/lb$n.toml"; done
}

ecmp_cleanup() {
  local rc=$?
  if [[ $rc -ne 0 && -n ${TB_RUN:-} ]]; then
    for f in "$TB_RUN"/lb?.log; do [[ -f $f ]] && { echo "--- $f (last 25 lines) ---"; tail -25 "$f"; }; done
    echo "--- router: ip route ---"; in_rt ip route 2>/dev/null || true
  fi
  [[ -n ${NAME:-} ]] && "$TESTBED" down "$NAME" >/dev/null 2>&1 || true
  [[ -n ${WORK:-} ]] && rm -rf "$WORK"
  exit $rc
}

in_ns() { nsenter --net="/run/netns/$1" -- "${@:2}"; }
in_cl() { in_ns "$TB_CL" "$@"; }
in_rt() { in_ns "$TB_RT" "$@"; }
in_lb() { local n=$1; shift; in_ns "$TB_PREFIX-lb$n" "$@"; }

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

# lb_cli N COMMAND [ARGS]: the CLI against balancer N's admin socket.
lb_cli() { local n=$1; shift; in_lb "$n" "$XDPLB_BIN" "$1" --socket "$TB_RUN/lb$n.sock" "${@:2}"; }
lb_status() { lb_cli "$1" status --json; }
lb_metrics() { in_lb "$1" curl -sf http://127.0.0.1:9450/metrics; }
# lb_metric N 'NAME{LABELS}' -> the value (0 when absent)
lb_metric() { lb_metrics "$1" | awk -v k="$2" '$1 == k { v = $2 } END { print (v == "" ? 0 : v) }'; }

lb_up() { in_lb "$1" curl -sf http://127.0.0.1:9450/healthz; }
lb_all_up() {
  lb_status "$1" | python3 -c "
import json,sys
s=json.load(sys.stdin)
sys.exit(0 if all(b['health']=='up' for v in s['vips'] for b in v['backends'] if b['in_config']) else 1)"
}

# start_lbs [N...]: xdplb run in each balancer (default all), ready and healthy.
start_lbs() {
  local n
  for n in ${@:-$TB_LBS}; do "$TESTBED" start-lb "$NAME" "$n"; done
  for n in ${@:-$TB_LBS}; do wait_until 60 lb_up "$n" || fail "balancer $n not ready"; done
  for n in ${@:-$TB_LBS}; do wait_until 60 lb_all_up "$n" || fail "balancer $n: backends not up"; done
}

lb_pid() { cat "$TB_RUN/lb$1.pid"; }

# The routes xdplb keeps in balancer N's announce table.
lb_routes() { in_lb "$1" ip route show table "$TB_TABLE"; }
lb_has_route() { lb_routes "$1" | grep -q "^blackhole $TB_VIP4 proto 250"; }
lb_no_route() { ! lb_routes "$1" | grep -q "$TB_VIP4"; }

# Next hops of the VIP's route in the router's main table (0 when none).
nexthops() { in_rt ip route show "$TB_VIP4/32" | grep -o 'via 10\.78\.0\.2[0-9]' | sort -u | wc -l; }
nexthops_are() { [[ $(nexthops) == "$1" ]]; }
router_has() { in_rt ip route show "$TB_VIP4/32" | grep -q "via 10.78.0.2$1 "; }
router_lacks() { ! router_has "$1"; }

# spread N -> "backend count" lines (new connections from the client)
spread() { in_cl timeout 300 python3 "$CLIENT" spread "$TB_VIP4" 80 "$1"; }
