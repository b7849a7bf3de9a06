#!/usr/bin/env bash
# The ECMP demo (also `scripts/demo.sh --ecmp`), as root on Debian 12: a
# router running BIRD with multipath, three balancers each running `xdplb
# run` and a BIRD speaker, three backends (scripts/testbed_ecmp.sh). Shows the
# router's ECMP route with one next hop per balancer, new connections spread
# over the balancers, then balancer 1 in maintenance under 30 held
# connections: its next hop leaves the router, no connection is lost or
# changes backend, and it comes back. Cleans up, even on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
[[ $(id -u) -eq 0 ]] || { echo "demo: run as root (sudo scripts/demo_ecmp.sh)" >&2; exit 1; }

if [[ -z ${XDPLB_BIN:-} ]]; then
  scripts/install-deps.sh
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j "$(nproc)" --target xdplb
  export XDPLB_BIN=$ROOT/build/xdplb
fi
NAME=demo
WORK=$(mktemp -d /tmp/xdplb-demo-ecmp.XXXXXX)
cleanup() {
  trap - EXIT INT TERM
  scripts/testbed_ecmp.sh down $NAME >/dev/null 2>&1 || true
  rm -rf "$WORK"
  echo "demo: cleaned up"
}
trap cleanup EXIT INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
in_ns() { nsenter --net="/run/netns/$1" -- "${@:2}"; }
wait_for() {  # wait_for SECONDS CMD...
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do ((SECONDS < end)) || { echo "demo: timed out: $*" >&2; exit 1; }; sleep 0.2; done
}

step "testbed: client, router (BIRD, ECMP), three balancers (xdplb + BIRD), three backends"
scripts/testbed_ecmp.sh up $NAME
eval "$(scripts/testbed_ecmp.sh env $NAME)"
route() { in_ns "$TB_RT" ip route show "$TB_VIP4/32"; }
hops() { route | grep -o 'via 10\.78\.0\.2[0-9]' | sort -u | wc -l; }
hops_are() { [[ $(hops) == "$1" ]]; }
metric() { in_ns "$TB_PREFIX-lb$1" curl -sf http://127.0.0.1:9450/metrics | awk -v k="$2" '$1 == k { printf "%.0f\n", $2 }'; }

step "xdplb run on each balancer ([announce] table = 4350, delay = 3s)"
sed -n '/\[announce\]/,/^delay/p' <(scripts/testbed_ecmp.sh config $NAME 1)
for n in $TB_LBS; do scripts/testbed_ecmp.sh start-lb $NAME "$n"; done
for n in $TB_LBS; do wait_for 30 in_ns "$TB_PREFIX-lb$n" curl -sf http://127.0.0.1:9450/healthz; done
echo "router before the delay: $(route | wc -l) route lines for $TB_VIP4"
wait_for 30 hops_are 3
echo "balancer 1's announce table:"; in_ns "$TB_PREFIX-lb1" ip route show table 4350
echo "the router's ECMP route:"; route

step "120 new connections from the client: spread over balancers and backends"
declare -A before
for n in $TB_LBS; do before[$n]=$(metric "$n" 'xdplb_vip_new_flows_total{vip="web"}'); done
in_ns "$TB_CL" python3 scripts/e2e_client.py spread "$TB_VIP4" 80 120 | sed 's/^/  backend /'
for n in $TB_LBS; do
  echo "  balancer $n: $(($(metric "$n" 'xdplb_vip_new_flows_total{vip="web"}') - before[$n])) new flows, ring digest $(metric "$n" 'xdplb_ring_digest{vip="web"}')"
done

step "30 long-lived connections (a request every 100 ms each)"
for i in $(seq 1 30); do
  in_ns "$TB_CL" timeout 120 python3 scripts/e2e_client.py hold "$TB_VIP4" 80 100 "$WORK/hold$i" &
  echo $! >"$WORK/hold$i.pid"
done
answering() { for i in $(seq 1 30); do [[ -s $WORK/hold$i ]] || return 1; done; }
wait_for 60 answering
sleep 1

step "xdplb maintenance on (balancer 1)"
in_ns "$TB_PREFIX-lb1" "$XDPLB_BIN" maintenance on --socket "$TB_RUN/lb1.sock"
t0=$SECONDS
wait_for 10 hops_are 2
echo "balancer 1 left the router after $((SECONDS - t0)) s:"; route
in_ns "$TB_PREFIX-lb1" "$XDPLB_BIN" status --socket "$TB_RUN/lb1.sock" | head -3
sleep 3

step "xdplb maintenance off: back after the 3 s delay"
in_ns "$TB_PREFIX-lb1" "$XDPLB_BIN" maintenance off --socket "$TB_RUN/lb1.sock"
wait_for 15 hops_are 3
route
sleep 1

step "the 30 connections"
for i in $(seq 1 30); do touch "$WORK/hold$i.stop"; done
bad=0
for i in $(seq 1 30); do
  if ! wait "$(cat "$WORK/hold$i.pid")"; then
    bad=$((bad + 1))
    echo "  connection $i: $(sort "$WORK/hold$i" | uniq -c | tr '\n' ' ')"
  fi
done
echo "$(cat "$WORK"/hold? "$WORK"/hold?? | wc -l) answers; $bad of 30 connections broke or changed backend"
((bad == 0)) && echo "no connection lost through a balancer's maintenance"
