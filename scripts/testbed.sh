#!/usr/bin/env bash
# A testbed of network namespaces made of real kernel parts, for the demo and
# the end-to-end tests. Never touches the host's own interfaces or routes.
#
#   scripts/testbed.sh up [NAME]     build it (idempotent: a previous one is removed first)
#   scripts/testbed.sh down [NAME]   remove everything, even after a failed up
#   scripts/testbed.sh env [NAME]    print the shell variables describing it
#
#                  ┌──────────── NAME-sw: bridge br0 ─────────────┐
#   NAME-cl eth0 ──┤ p-cl   p-lb (xdp pass-through)  p-b1 p-b2 p-b3├── NAME-b1..3 eth0
#   10.77.0.2      │          │                                    │   10.77.0.11..13, fd00:77::11..13
#   fd00:77::2     └──────────┼────────────────────────────────────┘   xdp_decap on eth0, VIPs on lo,
#                        NAME-lb eth0 10.77.0.1 / fd00:77::1            backend_server.py on :80
#                        xdp_balancer (attached by `xdplb run`)
#
# VIPs: 198.51.100.10 (IPv4), 2001:db8:100::10 (IPv6), 198.51.100.20 (IPv4
# VIP with IPv6 backends: 4in6). The client routes them via the balancer;
# backends answer the client directly (direct server return).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
XDPLB=${XDPLB_BIN:-$ROOT/build/xdplb}
NAME=${2:-demo}
P="xt-$NAME"
NS_SW=$P-sw NS_CL=$P-cl NS_LB=$P-lb
BACKENDS=(b1 b2 b3)
VIP4=198.51.100.10 VIP6=2001:db8:100::10 VIP46=198.51.100.20

# nsenter, not `ip netns exec`: the latter remounts /sys, hiding the host's
# /sys/fs/bpf, where the daemon pins its maps and libxdp looks for bpffs.
in_ns() { nsenter --net="/run/netns/$1" -- "${@:2}"; }

down() {
  for ns in $NS_CL $NS_LB "${BACKENDS[@]/#/$P-}" $NS_SW; do
    if ip netns list | grep -qw "$ns"; then
      # End whatever runs inside (servers, daemons), then the namespace.
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
  rm -rf "/sys/fs/bpf/xdplb-$NAME"
}

link() {  # link NS IFNAME SWPORT
  ip link add "$2" netns "$1" type veth peer name "$3" netns $NS_SW
  in_ns "$1" ip link set "$2" up
  # veth leaves checksums to "hardware" (CHECKSUM_PARTIAL); a frame rewritten
  # by XDP and sent on with XDP_TX loses that note and arrives with a partial
  # TCP checksum. Real NICs fill checksums on the wire; here the stack must.
  in_ns "$1" ethtool -K "$2" tx off >/dev/null
  in_ns $NS_SW ip link set "$3" master br0 up
}

up() {
  [[ -x $XDPLB ]] || { echo "testbed: $XDPLB not built (run scripts/test.sh or cmake --build build)" >&2; exit 1; }
  mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
  down
  for ns in $NS_SW $NS_CL $NS_LB "${BACKENDS[@]/#/$P-}"; do
    ip netns add "$ns"
    in_ns "$ns" ip link set lo up
    in_ns "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  done
  in_ns $NS_SW ip link add br0 type bridge
  in_ns $NS_SW ip link set br0 up

  link $NS_CL eth0 p-cl
  in_ns $NS_CL ip addr add 10.77.0.2/24 dev eth0
  in_ns $NS_CL ip -6 addr add fd00:77::2/64 dev eth0 nodad
  in_ns $NS_CL ip route add 198.51.100.0/24 via 10.77.0.1
  in_ns $NS_CL ip -6 route add 2001:db8:100::/64 via fd00:77::1

  link $NS_LB eth0 p-lb
  in_ns $NS_LB ip addr add 10.77.0.1/24 dev eth0
  in_ns $NS_LB ip -6 addr add fd00:77::1/64 dev eth0 nodad
  # bpf_fib_lookup answers "forwarding disabled" unless forwarding is on.
  in_ns $NS_LB sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
  # The balancer sends frames back out of eth0 with XDP_TX; a veth peer drops
  # them unless it runs an XDP program too: a pass-through one.
  in_ns $NS_SW "$XDPLB" decap attach p-lb --pass-through >/dev/null
  # The balancer routes the VIPs as a host with a default route does: the
  # tunnel-mode health probes leave by that route (docs/design.md "Health
  # checks through the tunnel"). Its "router" is a neighbour entry nobody
  # answers to, so a packet xdp_balancer passes is flooded and dropped.
  in_ns $NS_LB ip neigh add 10.77.0.254 lladdr 02:00:5e:77:00:fe dev eth0 nud permanent
  in_ns $NS_LB ip -6 neigh add fd00:77::fe lladdr 02:00:5e:77:00:fe dev eth0 nud permanent
  in_ns $NS_LB ip route add 198.51.100.0/24 via 10.77.0.254
  in_ns $NS_LB ip -6 route add 2001:db8:100::/64 via fd00:77::fe

  local i=11
  for b in "${BACKENDS[@]}"; do
    local ns=$P-$b
    link "$ns" eth0 "p-$b"
    in_ns "$ns" ip addr add 10.77.0.$i/24 dev eth0
    in_ns "$ns" ip -6 addr add fd00:77::$i/64 dev eth0 nodad
    in_ns "$ns" ip addr add $VIP4/32 dev lo
    in_ns "$ns" ip addr add $VIP46/32 dev lo
    in_ns "$ns" ip -6 addr add $VIP6/128 dev lo
    # The VIPs are on lo: never answer ARP for them, never let rp_filter drop
    # decapsulated packets.
    in_ns "$ns" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
      net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0
    in_ns "$ns" "$XDPLB" decap attach eth0 10.77.0.$i fd00:77::$i >/dev/null
    start_backend "$b"
    i=$((i + 1))
  done
  # Wait until every backend answers on its own address (bounded).
  for n in 1 2 3; do
    local ok=0
    for _ in $(seq 1 50); do
      if in_ns $NS_CL curl -sf -m 1 "http://10.77.0.$((10 + n))/" >/dev/null 2>&1; then ok=1; break; fi
      sleep 0.1
    done
    [[ $ok == 1 ]] || { echo "testbed: backend b$n does not answer" >&2; exit 1; }
  done
  echo "testbed $NAME is up: client $NS_CL, balancer $NS_LB (eth0), backends ${BACKENDS[*]/#/$P-}"
}

start_backend() {  # start_backend b1
  local ns=$P-$1
  in_ns "$ns" setsid python3 "$ROOT/scripts/backend_server.py" "$1" 80 \
    >/dev/null 2>&1 </dev/null &
}

stop_backend() {  # stop_backend b1
  for pid in $(ip netns pids "$P-$1" 2>/dev/null); do
    if tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null | grep -q backend_server.py; then kill "$pid"; fi
  done
}

env_() {
  cat <<ENV
TB_NAME=$NAME
TB_CL=$NS_CL
TB_LB=$NS_LB
TB_SW=$NS_SW
TB_PREFIX=$P
TB_VIP4=$VIP4
TB_VIP6=$VIP6
TB_VIP46=$VIP46
TB_PIN=/sys/fs/bpf/xdplb-$NAME
ENV
}

case ${1:-} in
  up) up ;;
  down) down ;;
  env) env_ ;;
  start-backend) start_backend "$3" ;;
  stop-backend) stop_backend "$3" ;;
  *) echo "usage: $0 up|down|env [NAME] | start-backend|stop-backend NAME bN" >&2; exit 2 ;;
esac
