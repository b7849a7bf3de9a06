#!/usr/bin/env bash
# (7) A config without [announce] touches no routing table: every table of
# the balancer's namespace is the same before and after the daemon ran, and
# the router learns nothing.
source "$(dirname "$0")/lib_ecmp.sh"
ecmp_init ecmpnoa 1 0
grep -q announce "$TB_RUN/lb1.toml" && fail "the config has [announce]"
tables() { in_lb 1 ip -N route show table all; in_lb 1 ip -N -6 route show table all; }
# eth0's IPv6 link-local address appears after the link comes up and is
# tentative until its duplicate address detection ends (~1.3 s here); only
# then does the kernel add its local route. A snapshot taken before that
# differs from a later one whatever the daemon did: wait for a settled
# link-local address and nothing tentative.
settled() {
  [[ -n $(in_lb 1 ip -6 addr show dev eth0 scope link -tentative) &&
     -z $(in_lb 1 ip -6 addr show tentative) ]]
}
wait_until 10 settled || fail "lb1's IPv6 addresses are still tentative"
tables >"$WORK/before"
start_lbs 1
sleep 2
out=$(lb_cli 1 status)
grep -q "announce: off" <<<"$out" || fail "status does not say announce: off"
[[ $(lb_metric 1 'xdplb_vip_announced{vip="web"}') == 0 ]] || fail "xdplb_vip_announced is not 0"
"$TESTBED" stop-lb "$NAME" 1
wait_until 10 bash -c "! kill -0 $(lb_pid 1) 2>/dev/null" || fail "lb1 did not stop"
in_lb 1 "$XDPLB_BIN" detach --config "$TB_RUN/lb1.toml"
wait_until 10 settled || fail "lb1's IPv6 addresses are tentative again"
tables >"$WORK/after"
diff "$WORK/before" "$WORK/after" || fail "the routing tables changed"
[[ -z $(in_lb 1 ip route show table all proto 250) ]] || fail "a route of protocol 250 exists"
nexthops_are 0 || fail "the router learned a route"
echo "$(wc -l <"$WORK/before") routes in every table, unchanged"
echo "PASS"
