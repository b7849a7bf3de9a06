#!/usr/bin/env bash
# (6) kill -9 of one daemon keeps its route and its forwarding; the restarted
# daemon adopts the route without a withdraw/announce flap; `xdplb detach`
# removes it.
source "$(dirname "$0")/lib_ecmp.sh"
ecmp_init ecmpfst
start_lbs
wait_until 30 nexthops_are 3 || fail "the router's route has $(nexthops) next hops, want 3"

kill -9 "$(lb_pid 1)"
wait_until 10 bash -c "! kill -0 $(lb_pid 1) 2>/dev/null" || fail "lb1 survived kill -9"
sleep 3  # BIRD scans the table every second
lb_has_route 1 || fail "kill -9 removed balancer 1's route"
nexthops_are 3 || fail "kill -9 took balancer 1 off the router"
out=$(in_cl timeout 120 python3 "$CLIENT" spread "$TB_VIP4" 80 300)
echo "$out"
grep -q '^error' <<<"$out" && fail "connections failed with balancer 1's daemon dead"
echo "with the daemon of balancer 1 dead: route kept, 300 connections served"

# Restart: watch the route every 50 ms from before the start until after the
# delay; it must never leave the table.
( end=$((SECONDS + 9)); while ((SECONDS < end)); do lb_has_route 1 || echo gone; sleep 0.05; done ) >"$WORK/watch" &
watch=$!
start_lbs 1
wait $watch
[[ ! -s $WORK/watch ]] || fail "the restarted daemon withdrew its adopted route ($(wc -l <"$WORK/watch") samples without it)"
grep -q "adopted 1 route" "$TB_RUN/lb1.log" || fail "the daemon did not log the adopted route"
grep -q "route $TB_VIP4/32 removed" "$TB_RUN/lb1.log" && fail "the restarted daemon removed and re-added its route"
nexthops_are 3 || fail "the router lost balancer 1 across the restart"
echo "restart: route adopted, never withdrawn"

# SIGTERM leaves the route too; detach removes it.
"$TESTBED" stop-lb "$NAME" 1
wait_until 10 bash -c "! kill -0 $(lb_pid 1) 2>/dev/null" || fail "lb1 did not stop"
lb_has_route 1 || fail "SIGTERM removed the route"
in_lb 1 "$XDPLB_BIN" detach --config "$TB_RUN/lb1.toml" | tee "$WORK/detach.out"
grep -q "removed 1 announced route(s) from table $TB_TABLE" "$WORK/detach.out" || fail "detach did not report the route"
lb_no_route 1 || fail "detach left the route"
wait_until 5 router_lacks 1 || fail "balancer 1 still on the router after detach"
echo "PASS"
