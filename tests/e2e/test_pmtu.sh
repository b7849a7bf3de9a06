#!/usr/bin/env bash
# Path MTU discovery through the balancer (direct server return): a router
# between a backend and the client sends its ICMP "fragmentation needed" to
# the VIP, the source of the backend's packets. xdp_balancer forwards it in
# the tunnel to the backend of the flow it quotes, the backend's xdp_decap
# passes it to its kernel, and the kernel lowers that connection's path MTU.
# The client plays the router: it quotes the backend's next segment of a
# live connection (so the backend's TCP finds it in its send window).
# `xdplb lookup` of that connection's 5-tuple names its flow-table entry.
source "$(dirname "$0")/lib.sh"
e2e_init pmtu
declare -A addr=([b1]=10.77.0.11 [b2]=10.77.0.12 [b3]=10.77.0.13)

in_cl timeout 60 python3 "$CLIENT" pmtu "$TB_VIP4" 80 1280 "$WORK/pmtu.txt" &
PMTU=$!
wait_until 10 test -s "$WORK/pmtu.txt"
read -r backend lport <"$WORK/pmtu.txt"
echo "connection from port $lport is on $backend; ICMP frag-needed (MTU 1280) sent to $TB_VIP4"

# The backend's socket of that connection: its path MTU drops to 1280.
pmtu_of() {  # pmtu_of BACKEND: "pmtu:N" of the connection there, or nothing
  in_ns "$TB_PREFIX-$1" ss -tin state established "( sport = :80 and dport = :$lport )" |
    grep -o 'pmtu:[0-9]*' | head -1
}
pmtu_is() { [[ $(pmtu_of "$1") == "pmtu:$2" ]]; }
wait_until 5 pmtu_is "$backend" 1280 ||
  { echo "FAIL: the backend's connection has '$(pmtu_of "$backend")', want pmtu:1280"; exit 1; }
echo "$backend (${addr[$backend]}): $(pmtu_of "$backend") on the connection"
# The other backends saw nothing of it.
for b in b1 b2 b3; do
  [[ $b == "$backend" ]] && continue
  [[ -z $(pmtu_of "$b") ]] || { echo "FAIL: $b has the connection too"; exit 1; }
done
# (Output captured first: grep -q closing the pipe early would fail curl
# under pipefail.)
metrics=$(in_lb curl -sf http://127.0.0.1:9450/metrics)
grep -qx 'xdplb_vip_icmp_too_big_total{vip="web"} 1' <<<"$metrics" ||
  { echo "FAIL: xdplb_vip_icmp_too_big_total{vip=\"web\"} is not 1:"; grep icmp <<<"$metrics"; exit 1; }
echo "xdplb_vip_icmp_too_big_total{vip=\"web\"} 1"
# `xdplb lookup` of that 5-tuple names the flow table's entry: its backend.
out=$(xdplb_admin lookup web 10.77.0.2 "$lport")
echo "xdplb lookup web 10.77.0.2 $lport:"
echo "$out"
grep -q "^flow table: ${addr[$backend]} " <<<"$out" ||
  { echo "FAIL: lookup does not name the flow table's ${addr[$backend]}"; exit 1; }
touch "$WORK/pmtu.txt.stop"
wait "$PMTU"
echo "PASS"
