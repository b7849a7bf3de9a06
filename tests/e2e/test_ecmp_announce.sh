#!/usr/bin/env bash
# Three balancers behind ECMP: (1) no route before `delay`, then one ECMP route
# on the router with a next hop per balancer; (2) new connections spread over
# the balancers and over every backend; (3) 10,000 random flows: `xdplb
# lookup` names the same backend on every balancer, and the ring digests agree.
source "$(dirname "$0")/lib_ecmp.sh"
export XDPLB_ECMP_DELAY=6s
ecmp_init ecmpann

# (1) Before the delay: a ready balancer holds no route, the router has none.
for n in $TB_LBS; do "$TESTBED" start-lb "$NAME" "$n"; done
for n in $TB_LBS; do
  wait_until 60 lb_up "$n" || fail "balancer $n not ready"
  lb_no_route "$n" || fail "balancer $n has a route before the delay"
  [[ $(lb_metric "$n" 'xdplb_vip_announced{vip="web"}') == 0 ]] || fail "lb$n reports announced before the delay"
done
nexthops_are 0 || fail "the router has a route before the delay"
echo "ready balancers, before the delay: no route anywhere"
for n in $TB_LBS; do wait_until 30 lb_has_route "$n" || fail "balancer $n: no route after the delay"; done
# The daemon's own times: route added >= 6 s after announcing started.
for n in $TB_LBS; do
  python3 - "$TB_RUN/lb$n.log" <<'PY' || fail "balancer $n announced before its delay"
import datetime, sys
t = {}
for line in open(sys.argv[1]):
    for key, what in (("start", "announce: table"), ("added", "added to table")):
        if what in line and key not in t:
            t[key] = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f")
d = (t["added"] - t["start"]).total_seconds()
print("  %s: route added %.2f s after announcing started (delay 6 s)" % (sys.argv[1].split("/")[-1], d))
sys.exit(0 if d >= 5.95 else 1)
PY
done
lb_routes 1
wait_until 20 nexthops_are 3 || fail "the router's route has $(nexthops) next hops, want 3"
echo "after the delay, the router's ECMP route:"; in_rt ip route show "$TB_VIP4/32"
for n in $TB_LBS; do
  [[ $(lb_metric "$n" 'xdplb_vip_announced{vip="web"}') == 1 ]] || fail "lb$n: xdplb_vip_announced is not 1"
  lb_cli "$n" status | grep -q "announced yes" || fail "lb$n: status does not say announced"
done

# (2) Spread over balancers and backends.
declare -A before
for n in $TB_LBS; do before[$n]=$(lb_metric "$n" 'xdplb_vip_new_flows_total{vip="web"}'); done
out=$(spread 600)
echo "$out"
grep -q '^error' <<<"$out" && fail "connections failed"
for b in b1 b2 b3; do
  c=$(awk -v b=$b '$1 == b { print $2 }' <<<"$out")
  ((${c:-0} >= 100)) || fail "backend $b got ${c:-0} of 600 connections"
done
for n in $TB_LBS; do
  d=$(($(lb_metric "$n" 'xdplb_vip_new_flows_total{vip="web"}') - before[$n]))
  echo "balancer $n: $d new flows"
  ((d >= 100)) || fail "balancer $n took $d of 600 new flows (ECMP does not spread)"
done

# (3) Every balancer predicts the same backend for 10,000 random flows.
python3 -c "
import random
r = random.Random(14)
for _ in range(10000):
    print('10.%d.%d.%d %d' % (r.randrange(256), r.randrange(256), r.randrange(1, 255), r.randrange(1024, 65536)))
" >"$WORK/flows"
for n in $TB_LBS; do
  lb_cli "$n" lookup web <"$WORK/flows" >"$WORK/lookup$n"
  [[ $(wc -l <"$WORK/lookup$n") == 10000 ]] || fail "lb$n answered $(wc -l <"$WORK/lookup$n") lookups"
done
cmp "$WORK/lookup1" "$WORK/lookup2" || fail "lb1 and lb2 disagree"
cmp "$WORK/lookup1" "$WORK/lookup3" || fail "lb1 and lb3 disagree"
sort "$WORK/lookup1" | uniq -c
[[ $(sort -u "$WORK/lookup1" | wc -l) == 3 ]] || fail "the lookups do not name all three backends"
digests=$(for n in $TB_LBS; do lb_metric "$n" 'xdplb_ring_digest{vip="web"}'; done | sort -u)
echo "ring digests: $digests"
[[ $(wc -l <<<"$digests") == 1 && $digests != 0 ]] || fail "ring digests differ or are 0: $digests"
lb_cli 1 status | grep -q "ring digest $digests" ||
  fail "xdplb status does not print the digest"
echo "PASS"
