#!/usr/bin/env bash
# No forwarding loops (docs/design.md "Datapath"): traffic to a VIP address
# that no VIP takes — another TCP port, UDP to TCP-only VIPs, GRE, IP
# protocol 253, ICMP other than echo — is dropped by xdp_balancer
# (vip_unhandled), never handed to the balancer's kernel, which forwards
# (ip_forward=1, as bpf_fib_lookup needs) and routes the VIP back toward the
# router. Shown by the kernel's own counters in the balancer's namespace:
# IpForwDatagrams and Ip6OutForwDatagrams do not grow, while
# xdplb_packets_total{reason="vip_unhandled"} grows by exactly what was sent.
source "$(dirname "$0")/lib.sh"
e2e_init no_loops

# Besides the testbed's route of the VIPs toward the "router", a default
# route back toward it, as a balancer behind a router has.
in_lb ip route replace default via 10.77.0.254
in_lb ip -6 route replace default via fd00:77::fe
[[ $(in_lb sysctl -n net.ipv4.ip_forward) == 1 ]] || { echo "FAIL: ip_forward is off"; exit 1; }

# fwd: the balancer kernel's forwarded datagrams, IPv4 and IPv6 summed.
fwd() {
  in_lb python3 - <<'PY'
lines = open("/proc/net/snmp").read().splitlines()
ip = [l.split()[1:] for l in lines if l.startswith("Ip:")]
v4 = int(dict(zip(ip[0], ip[1]))["ForwDatagrams"])
v6 = {l.split()[0]: int(l.split()[1]) for l in open("/proc/net/snmp6") if l.strip()}
print(v4 + v6["Ip6OutForwDatagrams"])
PY
}
unhandled() {  # xdplb_packets_total{..., reason="vip_unhandled"}, 0 when absent
  local m
  m=$(in_lb curl -sf http://127.0.0.1:9450/metrics)
  python3 -c '
import re, sys
m = re.search(r"^xdplb_packets_total\{action=\"[a-z]+\",reason=\"vip_unhandled\"\} (\S+)$", sys.stdin.read(), re.M)
print(int(float(m.group(1))) if m else 0)' <<<"$m"
}

# The packets, each kind N times, from the client (which routes the VIPs via
# the balancer). Raw sockets so that each is exactly one packet: no SYN
# retransmission, no reply expected.
N=20
send_all() {
  in_cl timeout 30 python3 - "$TB_VIP4" "$TB_VIP6" "$N" <<'PY'
import socket, struct, sys
vip4, vip6, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
sent = 0
def raw(family, proto, addr, payload):
    global sent
    s = socket.socket(family, socket.SOCK_RAW, proto)
    for _ in range(n):
        s.sendto(payload, (addr, 0))
        sent += 1
    s.close()
# TCP SYN to port 81 (the VIPs serve 80 only); checksum 0: not checked.
syn = struct.pack("!HHIIBBHHH", 40000, 81, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
raw(socket.AF_INET, socket.IPPROTO_TCP, vip4, syn)
raw(socket.AF_INET6, socket.IPPROTO_TCP, vip6, syn)
# UDP to the TCP-only VIPs' port.
for fam, addr in ((socket.AF_INET, vip4), (socket.AF_INET6, vip6)):
    u = socket.socket(fam, socket.SOCK_DGRAM)
    for _ in range(n):
        u.sendto(b"loop?", (addr, 80))
        sent += 1
    u.close()
# GRE (47), an unassigned protocol (253), ICMP timestamp request (13).
raw(socket.AF_INET, 47, vip4, b"\x00\x00\x08\x00" + b"\x45" + b"\x00" * 19)
raw(socket.AF_INET, 253, vip4, b"\x00" * 8)
raw(socket.AF_INET6, 253, vip6, b"\x00" * 8)
raw(socket.AF_INET, socket.IPPROTO_ICMP, vip4, bytes([13, 0, 0, 0]) + b"\x00" * 16)
print(sent)
PY
}

fwd0=$(fwd)
un0=$(unhandled)
sent=$(send_all)
want=$((un0 + sent))
echo "sent $sent packets to VIP addresses that no VIP takes"
# The counters follow the packets within a scrape; bounded.
reached() { (($(unhandled) >= want)); }
wait_until 10 reached || { echo "FAIL: vip_unhandled grew by $(($(unhandled) - un0)), want $sent"; exit 1; }
# A packet the kernel forwards takes microseconds; give strays a moment.
sleep 0.5
fwd1=$(fwd)
un1=$(unhandled)
echo "vip_unhandled: $un0 -> $un1 (+$((un1 - un0))); forwarded datagrams: $fwd0 -> $fwd1"
((un1 - un0 == sent)) || { echo "FAIL: vip_unhandled grew by $((un1 - un0)), want $sent"; exit 1; }
((fwd1 == fwd0)) || { echo "FAIL: the balancer's kernel forwarded $((fwd1 - fwd0)) datagrams"; exit 1; }
echo "PASS"
