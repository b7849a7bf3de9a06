#!/usr/bin/env bash
# docs/design.md "Neighbours and egress": with `type = "none"` checks nothing
# but the daemon talks to a backend, so the daemon itself must resolve its
# next hop; and a backend whose route leaves through an interface xdplb is
# not attached to is reported (log, status, metric).
#  1. The balancer's neighbour table holds no entry for the backend; after
#     the daemon's first pass it does (REACHABLE/STALE/DELAY), and
#     connections to the VIP are forwarded (tx), none dropped as no_neigh.
#  2. A backend routed through nx0 (a veth xdplb is not attached to): the
#     warning names backend and interface, `xdplb status` says NOT ATTACHED,
#     xdplb_backend_egress_attached is 0 for it and 1 for the other.
source "$(dirname "$0")/lib.sh"
e2e_testbed neigh

B=10.77.0.11 B6=fd00:77::12 AWAY=10.66.0.5
in_lb ip link add nx0 type veth peer name nx1
in_lb ip link set nx0 up
in_lb ip link set nx1 up
in_lb ip addr add 10.66.0.1/24 dev nx0
in_lb ip neigh flush dev eth0
for a in "$B" "$B6"; do
  if in_lb ip neigh show "$a" dev eth0 | grep -q .; then
    echo "FAIL: the balancer already has a neighbour entry for $a"; exit 1
  fi
done

cat >"$CONFIG" <<TOML
[daemon]
interfaces = ["eth0"]
pin_path = "$TB_PIN"
tunnel_source_v4 = "10.77.0.1"
tunnel_source_v6 = "fd00:77::1"
flow_table_size = 65536

[metrics]
listen = "127.0.0.1:9450"

[admin]
socket = "$ADMIN_SOCK"

[[vip]]
name = "web"
address = "$TB_VIP4"
port = 80
[vip.health_check]
type = "none"
[[vip.backend]]
address = "$B"

[[vip]]
name = "web6"
address = "$TB_VIP6"
port = 80
[vip.health_check]
type = "none"
[[vip.backend]]
address = "$B6"

[[vip]]
name = "away"
address = "$TB_VIP4"
port = 81
[vip.health_check]
type = "none"
[[vip.backend]]
address = "$AWAY"
TOML
start_daemon

resolved() { in_lb ip neigh show "$1" dev eth0 | grep -Eq 'REACHABLE|STALE|DELAY'; }
wait_until 10 resolved "$B"
wait_until 10 resolved "$B6"
echo "neighbours after the daemon's pass: $(in_lb ip neigh show "$B" dev eth0); $(in_lb ip neigh show "$B6" dev eth0)"

for _ in 1 2 3 4 5; do
  in_cl curl -sf -m 2 "http://$TB_VIP4/" >/dev/null || { echo "FAIL: no answer through $TB_VIP4"; exit 1; }
  in_cl curl -sf -m 2 "http://[$TB_VIP6]/" >/dev/null || { echo "FAIL: no answer through $TB_VIP6"; exit 1; }
done
in_lb curl -sf http://127.0.0.1:9450/metrics >"$WORK/metrics.txt"
python3 - "$WORK/metrics.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def val(pattern, default=None):
    m = re.search("^" + pattern + r" (\S+)$", text, re.M)
    if not m:
        if default is not None: return default
        sys.exit("missing: " + pattern)
    return float(m.group(1))
tx = val(r'xdplb_packets_total\{action="tx",reason="tx"\}', 0) + \
     val(r'xdplb_packets_total\{action="redirect",reason="redirect"\}', 0)
no_neigh = val(r'xdplb_packets_total\{action="drop",reason="no_neigh"\}', 0)
print("forwarded %d, no_neigh %d" % (tx, no_neigh))
assert tx >= 10, "not every connection was forwarded"
assert no_neigh == 0, "packets dropped for want of a neighbour"
ok = val(r'xdplb_backend_egress_attached\{vip="web",backend="10.77.0.11"\}')
away = val(r'xdplb_backend_egress_attached\{vip="away",backend="10.66.0.5"\}')
print("egress_attached web/10.77.0.11 %d, away/10.66.0.5 %d" % (ok, away))
assert ok == 1 and away == 0
PY

grep -q "egress: backend $AWAY of VIP away: its route leaves through nx0, which xdp_balancer is not attached to" \
  "$WORK/daemon.log" || { echo "FAIL: no egress warning in the log"; exit 1; }
xdplb_admin status >"$WORK/status.txt"
grep -q "egress: 1 backend(s) routed through interfaces xdplb is not attached to" "$WORK/status.txt" &&
  grep -q "dev nx0 (NOT ATTACHED)" "$WORK/status.txt" ||
  { echo "FAIL: status does not say it"; cat "$WORK/status.txt"; exit 1; }
grep -E "egress|via" "$WORK/status.txt"
echo "PASS"
