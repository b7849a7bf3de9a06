#!/usr/bin/env bash
# 1,000 real TCP connections per VIP (IPv4, IPv6, and an IPv4 VIP with IPv6
# backends: 4in6) spread over the backends within +-5 points of their weights;
# `ping` of the VIPs is answered by the balancer itself.
source "$(dirname "$0")/lib.sh"
e2e_init spread

echo "IPv4 VIP, weights 100/100/200:"
check_shares "$(spread "$TB_VIP4" 1000)" "b1=25 b2=25 b3=50" 5
echo "IPv6 VIP (6in6), equal weights:"
check_shares "$(spread "$TB_VIP6" 1000)" "b1=33.3 b2=33.3 b3=33.3" 5
echo "IPv4 VIP with IPv6 backends (4in6), equal weights:"
check_shares "$(spread "$TB_VIP46" 1000)" "b1=33.3 b2=33.3 b3=33.3" 5
for v in "$TB_VIP4" "$TB_VIP6"; do
  out=$(in_cl ping -c 3 -i 0.2 -W 2 "$v") || { echo "$out"; echo "FAIL: ping $v"; exit 1; }
  grep -E "3 received" <<<"$out" || { echo "$out"; echo "FAIL: ping $v lost replies"; exit 1; }
done
metrics=$(in_lb curl -sf http://127.0.0.1:9450/metrics)
grep -x 'xdplb_packets_total{action="tx",reason="echo_reply"} 6' <<<"$metrics" ||
  { grep echo_reply <<<"$metrics"; echo "FAIL: echo replies not counted 6 times"; exit 1; }
echo "PASS"
