#!/usr/bin/env bash
# Full-size uploads through the tunnel (docs/design.md "Path MTU", "MSS
# clamp"). Every testbed link has MTU 1500, so a client's 1500-byte packet
# does not fit the balancer's route to the backend once wrapped (+20 bytes
# 4in4, +40 6in6): xdp_balancer answers it with ICMP frag-needed / packet
# too big (`too_big`), the client's TCP lowers its segments, and a 300 KB
# upload to the IPv4 and to the IPv6 VIP completes.
# Then again with mss_clamp = 1200 on both VIPs (a reload) and the client's
# learned path MTU forgotten. What the clamp changes, measured: the
# backend's segments to the client (its send MSS comes from the clamped SYN),
# not the client's uploads, whose size the backend's SYN-ACK sets: that one
# never passes the balancer, so too_big is still needed.
source "$(dirname "$0")/lib.sh"
e2e_init mtu-upload
BYTES=300000
CLAMP=1200

metric() {  # metric SERIES -> its value (0 when absent)
  local v
  v=$(in_lb curl -sf http://127.0.0.1:9450/metrics | awk -v m="$1" '$1 == m { print $2 }')
  echo "${v:-0}"
}
too_big() { metric 'xdplb_packets_total{action="tx",reason="too_big"}'; }
clamped() { metric "xdplb_vip_mss_clamped_total{vip=\"$1\"}"; }
fail() { echo "FAIL: $*"; exit 1; }

# The client forgets the path MTU it learned for the VIPs: its exceptions
# live on the route, which goes and comes back.
forget_pmtu() {
  in_cl ip route del 198.51.100.0/24
  in_cl ip route add 198.51.100.0/24 via 10.77.0.1
  in_cl ip -6 route del 2001:db8:100::/64
  in_cl ip -6 route add 2001:db8:100::/64 via fd00:77::1
  local vip route
  for vip in "$TB_VIP4" "$TB_VIP6"; do
    route=$(in_cl ip route get "$vip")
    [[ $route != *" mtu "* ]] || fail "the client still has a path MTU to $vip: $route"
  done
}

# upload VIP NAME FAMILY_MTU CLAMPED(0|1): one upload and its checks.
upload() {
  local vip=$1 name=$2 learned_mss=$3 clamp=$4 tb0 cl0 out tb cl
  tb0=$(too_big) cl0=$(clamped "$name")
  out=$(in_cl timeout 60 python3 "$CLIENT" upload "$vip" 80 $BYTES) || fail "upload to $vip: '$out'"
  tb=$(($(too_big) - tb0)) cl=$(($(clamped "$name") - cl0))
  echo "$name ($vip) mss_clamp=$clamp: $out; too_big +$tb; mss_clamped +$cl"
  local received backend_mss client_mss
  received=$(grep -o 'received=[0-9]*' <<<"$out" | cut -d= -f2)
  backend_mss=$(grep -o 'backend_mss=[0-9]*' <<<"$out" | cut -d= -f2)
  client_mss=$(grep -o 'client_mss=[0-9]*' <<<"$out" | cut -d= -f2)
  [[ $received == "$BYTES" ]] || fail "the backend read ${received:-nothing} of $BYTES bytes"
  # The client's segments shrank to the MTU the balancer named (route MTU
  # minus the tunnel), whatever the clamp.
  ((tb > 0)) || fail "no too_big answer: full-size packets fit the tunnel?"
  ((client_mss <= learned_mss)) || fail "client MSS $client_mss > $learned_mss: no path MTU learned"
  if ((clamp)); then
    ((cl >= 1 && cl <= 3)) || fail "mss_clamped +$cl, want the SYN (1, or a retransmission)"
    ((backend_mss <= CLAMP)) || fail "backend MSS $backend_mss above the clamp $CLAMP"
  else
    ((cl == 0)) || fail "mss_clamped +$cl without a clamp"
    ((backend_mss > CLAMP)) || fail "backend MSS $backend_mss without a clamp"
  fi
}

# IPv4: 1500 - 20 (tunnel) = 1480, MSS 1440; IPv6: 1500 - 40 = 1460, MSS 1400.
forget_pmtu
upload "$TB_VIP4" web 1440 0
upload "$TB_VIP6" web6 1400 0

sed -i "/^name = \"web6\?\"$/a mss_clamp = $CLAMP" "$CONFIG"
[[ $(grep -c "^mss_clamp = $CLAMP$" "$CONFIG") == 2 ]] || fail "config not edited"
out=$(in_lb "$XDPLB_BIN" reload --pid "$DAEMON_PID" --config "$CONFIG") || fail "reload: $out"
echo "reload with mss_clamp = $CLAMP on web and web6: $out"
forget_pmtu
upload "$TB_VIP4" web 1440 1
upload "$TB_VIP6" web6 1400 1
echo "PASS"
