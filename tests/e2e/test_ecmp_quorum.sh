#!/usr/bin/env bash
# (5) Quorum: with min_up = 2, two backends failing withdraws the VIP from
# every balancer and from the router; their recovery announces it again.
source "$(dirname "$0")/lib_ecmp.sh"
ecmp_init ecmpquo 2
start_lbs
wait_until 30 nexthops_are 3 || fail "the router's route has $(nexthops) next hops, want 3"

"$TESTBED" stop-backend "$NAME" b1
sleep 2
for n in $TB_LBS; do lb_has_route "$n" || fail "one backend down (2 of 3 up, min_up 2) withdrew lb$n"; done
nexthops_are 3 || fail "one backend down changed the router's route"
echo "one backend down: still announced by all three"

t0=$SECONDS
"$TESTBED" stop-backend "$NAME" b2
for n in $TB_LBS; do wait_until 10 lb_no_route "$n" || fail "lb$n still announces with 1 backend up"; done
wait_until 10 nexthops_are 0 || fail "the router still has $(nexthops) next hops"
echo "two backends down: withdrawn everywhere after $((SECONDS - t0)) s"
for n in $TB_LBS; do
  [[ $(lb_metric "$n" 'xdplb_vip_announced{vip="web"}') == 0 ]] || fail "lb$n: xdplb_vip_announced is not 0"
done

t0=$SECONDS
"$TESTBED" start-backend "$NAME" b1
"$TESTBED" start-backend "$NAME" b2
for n in $TB_LBS; do wait_until 20 lb_has_route "$n" || fail "lb$n did not announce again"; done
wait_until 15 nexthops_are 3 || fail "the router has $(nexthops) next hops after recovery, want 3"
echo "recovered: announced again after $((SECONDS - t0)) s (health rise + 3 s delay)"
out=$(in_cl timeout 60 python3 "$CLIENT" spread "$TB_VIP4" 80 60)
grep -q '^error' <<<"$out" && fail "connections failed after recovery: $out"
echo "PASS"
