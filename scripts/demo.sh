#!/usr/bin/env bash
# The demo, on a fresh Debian 12 machine, as root: installs what is missing,
# builds, brings up the testbed (scripts/testbed.sh), runs `xdplb run` with
# config/demo.toml in the balancer's namespace and shows it working: real
# HTTP requests with a live per-backend table, a backend's service stopped
# and its traffic moving to the others, the service restored and its traffic
# returning, then /metrics and `xdplb status`. Finishes by itself in under
# two minutes and cleans up, even on Ctrl-C.
set -euo pipefail
# `--ecmp`: the several-balancers demo instead (scripts/demo_ecmp.sh).
[[ ${1:-} == --ecmp ]] && exec "$(dirname "$0")/demo_ecmp.sh"
cd "$(dirname "$0")/.."
ROOT=$PWD
[[ $(id -u) -eq 0 ]] || { echo "demo: run as root (sudo scripts/demo.sh)" >&2; exit 1; }

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target xdplb
export XDPLB_BIN=$ROOT/build/xdplb
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

NAME=demo
DEMO_START=$SECONDS
WORK=$(mktemp -d /tmp/xdplb-demo.XXXXXX)
cleanup() {
  trap - EXIT INT TERM
  [[ -n ${DAEMON:-} ]] && kill "$DAEMON" 2>/dev/null || true
  scripts/testbed.sh down $NAME >/dev/null 2>&1 || true
  rm -rf "$WORK"
  echo "demo: cleaned up"
}
trap cleanup EXIT INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
in_ns() { nsenter --net="/run/netns/$1" -- "${@:2}"; }

step "testbed: client, balancer and three backends in network namespaces"
scripts/testbed.sh up $NAME
eval "$(scripts/testbed.sh env $NAME)"

step "xdplb run --config config/demo.toml (in $TB_LB)"
nsenter --net="/run/netns/$TB_LB" -- "$XDPLB_BIN" run --config config/demo.toml >"$WORK/daemon.log" 2>&1 &
DAEMON=$!
for _ in $(seq 1 100); do in_ns "$TB_LB" curl -sf http://127.0.0.1:9450/healthz >/dev/null && break; sleep 0.1; done
sleep 1.5
sed 's/^/  daemon: /' "$WORK/daemon.log" | tail -8

# Requests from the client for SECONDS, one table row per second.
traffic() {
  local seconds=$1
  printf '  %-8s %8s %8s %8s %8s\n' time b1 b2 b3 errors
  for t in $(seq 1 "$seconds"); do
    local out next=$(( $(date +%s%N) + 1000000000 ))
    out=$(in_ns "$TB_CL" timeout 5 python3 scripts/e2e_client.py spread "$TB_VIP4" 80 60)
    # One row a second, whatever the requests took.
    local left=$(( (next - $(date +%s%N)) / 1000000 ))
    (( left > 0 )) && sleep "$(printf '0.%03d' "$left")"
    printf '  %-8s %8s %8s %8s %8s\n' "${t}s" \
      "$(awk '$1=="b1"{print $2}' <<<"$out")" "$(awk '$1=="b2"{print $2}' <<<"$out")" \
      "$(awk '$1=="b3"{print $2}' <<<"$out")" "$(awk '$1=="error"{print $2}' <<<"$out")"
  done
}

step "60 new HTTP connections a second to VIP $TB_VIP4: spread over three backends"
traffic 4
step "stopping b2's web service: health checks (every 500 ms, fall 2) take it out of the ring"
scripts/testbed.sh stop-backend $NAME b2
traffic 5
echo "  (errors: connections that reached b2 in the moment before its checks failed: refused by its host)"
grep -E "health web 10.77.0.12|ring swapped: VIP web" "$WORK/daemon.log" | tail -2 | sed 's/^/  daemon: /'
step "restoring b2: rise 2 checks later its traffic returns"
scripts/testbed.sh start-backend $NAME b2
traffic 5
step "xdplb status"
in_ns "$TB_LB" "$XDPLB_BIN" status --config config/demo.toml
step "an excerpt of /metrics"
in_ns "$TB_LB" curl -s http://127.0.0.1:9450/metrics |
  grep -E '^xdplb_(vip_packets_total|vip_new_flows_total|backend_packets_total|backend_up|ring_generation|packets_total\{action="(tx|pass)",reason="(tx|not_vip)"\})' | sed 's/^/  /'
step "lookup: the backend a new flow from 10.77.0.2:40000 reaches"
in_ns "$TB_LB" "$XDPLB_BIN" lookup --socket /run/xdplb-demo/admin.sock web 10.77.0.2 40000 | sed 's/^/  /'
step "ping $TB_VIP4 from the client: the balancer itself answers for the VIP"
in_ns "$TB_CL" ping -c 2 -i 0.2 -W 1 "$TB_VIP4" | sed -n '2,3p' | sed 's/^/  /' || true
step "done: the demo ran for $((SECONDS - DEMO_START)) s after the build"
