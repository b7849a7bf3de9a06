#!/usr/bin/env bash
# The ECMP testbed: several balancers behind a router that spreads flows over
# them by ECMP, each balancer announcing the VIP by BGP (BIRD 2) only while
# `xdplb run` keeps its route in table 4350. Network namespaces and veth only;
# never touches the host's own interfaces or routes.
#
#   scripts/testbed_ecmp.sh up [NAME]      build it (a previous one is removed first)
#   scripts/testbed_ecmp.sh down [NAME]    remove everything, even after a failed up
#   scripts/testbed_ecmp.sh env [NAME]     print the shell variables describing it
#   scripts/testbed_ecmp.sh config [NAME] N [MIN_UP] [ANNOUNCE]
#                                          print balancer N's xdplb.toml (ANNOUNCE=0: no [announce])
#   scripts/testbed_ecmp.sh start-lb|stop-lb NAME N     xdplb run in balancer N (config from `config`)
#   scripts/testbed_ecmp.sh start-backend|stop-backend NAME bN
#
#   NAME-cl eth0 10.78.1.2 ── c0 10.78.1.1 NAME-rt (BIRD: BGP AS 65000 to each balancer,
#                                 │          kernel export with `merge paths yes` = ECMP,
#                                 │          fib_multipath_hash_policy=1: L4 hash)
#                            rt 10.78.0.1
#            ┌───────────────── NAME-sw: bridge br0 ─────────────────────────┐
#      p-rt, p-lb1..3 (xdp pass-through: they receive the balancers' XDP_TX), p-b1..3
#            └──────┬───────────────┬───────────────┬──────────────┬────────┘
#   NAME-lb1..3 eth0 10.78.0.21..23: xdp_balancer,      NAME-b1..3 eth0 10.78.0.11..13:
#     BIRD (AS 65001) learning kernel table 4350 and      xdp_decap, VIP on lo,
#     exporting it to the router with next hop self       backend_server.py on :80,
#                                                         default route via the router (DSR)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
XDPLB=${XDPLB_BIN:-$ROOT/build/xdplb}
NAME=${2:-ecmp}
P="xe-$NAME"
NS_SW=$P-sw NS_CL=$P-cl NS_RT=$P-rt
LBS=(1 2 3)
BACKENDS=(b1 b2 b3)
VIP4=198.51.100.10
TABLE=4350
RUN=/run/xdplb-ecmp-$NAME  # BIRD configs, sockets, pid files, daemon logs

in_ns() { nsenter --net="/run/netns/$1" -- "${@:2}"; }

all_ns() { echo "$NS_CL $NS_RT ${LBS[*]/#/$P-lb} ${BACKENDS[*]/#/$P-} $NS_SW"; }

down() {
  for ns in $(all_ns); do
    if ip netns list | grep -qw "$ns"; then
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
  for n in "${LBS[@]}"; do rm -rf "/sys/fs/bpf/xdplb-$NAME-lb$n"; done
  rm -rf "$RUN"
}

link() {  # link NS IFNAME SWPORT
  ip link add "$2" netns "$1" type veth peer name "$3" netns $NS_SW
  in_ns "$1" ip link set "$2" up
  # A frame rewritten by XDP and sent on with XDP_TX loses veth's
  # "checksum left to hardware" note: the stack must fill checksums.
  in_ns "$1" ethtool -K "$2" tx off >/dev/null
  in_ns $NS_SW ip link set "$3" master br0 up
}

bird_timers='connect delay time 1; connect retry time 1; error wait time 1, 2; hold time 3; keepalive time 1;'

router_bird() {
  cat <<BIRD
log "$RUN/bird-rt.log" all;
router id 10.78.0.1;
protocol device { scan time 1; }
# Install what BGP learned into the main table; equal routes from several
# balancers become one multipath route.
protocol kernel {
  merge paths yes;
  ipv4 { import none; export all; };
}
template bgp balancer {
  local 10.78.0.1 as 65000;
  $bird_timers
  ipv4 { import all; export none; };
}
BIRD
  for n in "${LBS[@]}"; do echo "protocol bgp lb$n from balancer { neighbor 10.78.0.2$n as 65001; }"; done
}

lb_bird() {  # lb_bird N
  cat <<BIRD
log "$RUN/bird-lb$1.log" all;
router id 10.78.0.2$1;
protocol device { scan time 1; }
# config/bird-xdplb.conf, with short timers for the tests.
protocol kernel xdplb_routes {
  kernel table $TABLE;
  learn;
  scan time 1;
  ipv4 { import all; export none; };
}
protocol bgp upstream {
  local 10.78.0.2$1 as 65001;
  neighbor 10.78.0.1 as 65000;
  $bird_timers
  ipv4 { import none; export where proto = "xdplb_routes"; next hop self; };
}
BIRD
}

start_bird() {  # start_bird NS TAG CONFIGTEXT
  printf '%s\n' "$3" >"$RUN/bird-$2.conf"
  in_ns "$1" bird -c "$RUN/bird-$2.conf" -s "$RUN/bird-$2.ctl" -P "$RUN/bird-$2.pid"
}

up() {
  [[ -x $XDPLB ]] || { echo "testbed: $XDPLB not built" >&2; exit 1; }
  command -v bird >/dev/null || { echo "testbed: bird (Debian package bird2) is not installed" >&2; exit 1; }
  mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
  down
  mkdir -p "$RUN"
  for ns in $(all_ns); do
    ip netns add "$ns"
    in_ns "$ns" ip link set lo up
  done
  in_ns $NS_SW ip link add br0 type bridge
  in_ns $NS_SW ip link set br0 up

  # Client and router.
  ip link add eth0 netns $NS_CL type veth peer name c0 netns $NS_RT
  in_ns $NS_CL ip link set eth0 up
  in_ns $NS_RT ip link set c0 up
  in_ns $NS_CL ip addr add 10.78.1.2/24 dev eth0
  in_ns $NS_CL ip route add default via 10.78.1.1
  in_ns $NS_RT ip addr add 10.78.1.1/24 dev c0
  link $NS_RT rt p-rt
  in_ns $NS_RT ip addr add 10.78.0.1/24 dev rt
  in_ns $NS_RT sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1 \
    net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.rt.rp_filter=0 net.ipv4.conf.c0.rp_filter=0

  for n in "${LBS[@]}"; do
    local ns=$P-lb$n
    link "$ns" eth0 "p-lb$n"
    in_ns "$ns" ip addr add 10.78.0.2$n/24 dev eth0
    in_ns "$ns" ip route add default via 10.78.0.1
    # bpf_fib_lookup answers "forwarding disabled" unless forwarding is on.
    in_ns "$ns" sysctl -qw net.ipv4.ip_forward=1
    in_ns $NS_SW "$XDPLB" decap attach "p-lb$n" --pass-through >/dev/null
  done

  local i=11
  for b in "${BACKENDS[@]}"; do
    local ns=$P-$b
    link "$ns" eth0 "p-$b"
    in_ns "$ns" ip addr add 10.78.0.$i/24 dev eth0
    in_ns "$ns" ip route add default via 10.78.0.1
    in_ns "$ns" ip addr add $VIP4/32 dev lo
    in_ns "$ns" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
      net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0
    in_ns "$ns" "$XDPLB" decap attach eth0 10.78.0.$i >/dev/null
    start_backend "$b"
    i=$((i + 1))
  done

  start_bird $NS_RT rt "$(router_bird)"
  for n in "${LBS[@]}"; do start_bird "$P-lb$n" "lb$n" "$(lb_bird "$n")"; done

  for n in 1 2 3; do
    local ok=0
    for _ in $(seq 1 50); do
      if in_ns $NS_RT curl -sf -m 1 "http://10.78.0.$((10 + n))/" >/dev/null 2>&1; then ok=1; break; fi
      sleep 0.1
    done
    [[ $ok == 1 ]] || { echo "testbed: backend b$n does not answer" >&2; exit 1; }
  done
  echo "ECMP testbed $NAME is up: client $NS_CL, router $NS_RT, balancers ${LBS[*]/#/$P-lb}, backends ${BACKENDS[*]/#/$P-}"
}

# config N [MIN_UP] [ANNOUNCE]: balancer N's xdplb.toml. Every balancer has the
# same VIPs, backends and hash_seed, so their rings are byte-identical.
config() {
  local n=$1 min_up=${2:-1} announce=${3:-1}
  cat <<TOML
[daemon]
interfaces = ["eth0"]
pin_path = "/sys/fs/bpf/xdplb-$NAME-lb$n"
hash_seed = 7
flow_table_size = 65536
tunnel_source_v4 = "10.78.0.2$n"

[metrics]
listen = "127.0.0.1:9450"

[admin]
socket = "$RUN/lb$n.sock"
TOML
  if [[ $announce == 1 ]]; then
    printf '\n[announce]\ntable = %s\ndelay = "%s"\n' $TABLE "${XDPLB_ECMP_DELAY:-3s}"
  fi
  cat <<TOML

[[vip]]
name = "web"
address = "$VIP4"
port = 80
ring_size = 65537
min_up = $min_up
[vip.health_check]
type = "http"
interval = "300ms"
timeout = "150ms"
rise = 2
fall = 2
[[vip.backend]]
address = "10.78.0.11"
[[vip.backend]]
address = "10.78.0.12"
[[vip.backend]]
address = "10.78.0.13"
TOML
}

start_lb() {  # start_lb N (config in $RUN/lbN.toml, written by the caller or here)
  local n=$1
  [[ -f $RUN/lb$n.toml ]] || config "$n" >"$RUN/lb$n.toml"
  nsenter --net="/run/netns/$P-lb$n" -- setsid "$XDPLB" run --config "$RUN/lb$n.toml" \
    >>"$RUN/lb$n.log" 2>&1 </dev/null &
  echo $! >"$RUN/lb$n.pid"
}

stop_lb() {  # stop_lb N: SIGTERM (fail static: the datapath and routes stay)
  [[ -f $RUN/lb$1.pid ]] && kill "$(cat "$RUN/lb$1.pid")" 2>/dev/null || true
}

start_backend() {
  in_ns "$P-$1" setsid python3 "$ROOT/scripts/backend_server.py" "$1" 80 >/dev/null 2>&1 </dev/null &
}

stop_backend() {
  for pid in $(ip netns pids "$P-$1" 2>/dev/null); do
    if tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null | grep -q backend_server.py; then kill "$pid"; fi
  done
}

env_() {
  cat <<ENV
TB_NAME=$NAME
TB_PREFIX=$P
TB_CL=$NS_CL
TB_RT=$NS_RT
TB_SW=$NS_SW
TB_VIP4=$VIP4
TB_TABLE=$TABLE
TB_RUN=$RUN
TB_LBS="${LBS[*]}"
ENV
}

case ${1:-} in
  up) up ;;
  down) down ;;
  env) env_ ;;
  config) config "${3:?balancer number}" "${4:-1}" "${5:-1}" ;;
  start-lb) start_lb "${3:?balancer number}" ;;
  stop-lb) stop_lb "${3:?balancer number}" ;;
  start-backend) start_backend "${3:?backend}" ;;
  stop-backend) stop_backend "${3:?backend}" ;;
  *) echo "usage: $0 up|down|env [NAME] | config NAME N [MIN_UP] [ANNOUNCE] | start-lb|stop-lb NAME N | start-backend|stop-backend NAME bN" >&2; exit 2 ;;
esac
