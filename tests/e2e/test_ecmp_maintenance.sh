#!/usr/bin/env bash
# (4) Flow survival: 30 long-lived connections while balancer 1 goes into
# maintenance (its next hop leaves the router within 5 s) and comes back:
# every connection keeps working and keeps its backend, including those ECMP
# moved to another balancer. Maintenance shows in status and /metrics and
# survives a daemon restart.
source "$(dirname "$0")/lib_ecmp.sh"
ecmp_init ecmpmnt
start_lbs
wait_until 30 nexthops_are 3 || fail "the router's route has $(nexthops) next hops, want 3"

HOLDS=30
for i in $(seq 1 $HOLDS); do
  in_cl timeout 200 python3 "$CLIENT" hold "$TB_VIP4" 80 180 "$WORK/hold$i" &
  echo $! >"$WORK/hold$i.pid"
done
answering() { for i in $(seq 1 $HOLDS); do [[ -s $WORK/hold$i ]] || return 1; done; }
if ! wait_until 60 answering; then
  for i in $(seq 1 $HOLDS); do
    [[ -s $WORK/hold$i ]] || echo "connection $i: no answer; $(kill -0 "$(cat "$WORK/hold$i.pid")" 2>/dev/null && echo running || echo exited)"
  done
  fail "not every held connection answers"
fi
packets() { lb_metric "$1" 'xdplb_vip_packets_total{vip="web"}'; }
newflows() { lb_metric "$1" 'xdplb_vip_new_flows_total{vip="web"}'; }
p1=$(packets 1); sleep 1; p1b=$(packets 1)
((p1b > p1)) || fail "balancer 1 carries none of the $HOLDS connections (ECMP sent none there?)"
echo "balancer 1 carries held connections: $((p1b - p1)) packets in 1 s"

nf_other=$(($(newflows 2) + $(newflows 3)))
t0=$SECONDS
lb_cli 1 maintenance on | tee "$WORK/mnt.out"
grep -q "maintenance on" "$WORK/mnt.out" || fail "xdplb maintenance on said: $(cat "$WORK/mnt.out")"
lb_no_route 1 || fail "balancer 1 still holds its route in maintenance"
wait_until 5 router_lacks 1 || fail "balancer 1's next hop is still on the router after 5 s"
echo "balancer 1's next hop left the router in $((SECONDS - t0)) s"
nexthops_are 2 || fail "the router has $(nexthops) next hops, want 2"
[[ $(lb_metric 1 xdplb_maintenance) == 1 ]] || fail "xdplb_maintenance is not 1"
[[ $(lb_metric 1 'xdplb_vip_announced{vip="web"}') == 0 ]] || fail "xdplb_vip_announced is not 0"
lb_status 1 | python3 -c "import json,sys; sys.exit(0 if json.load(sys.stdin)['maintenance'] else 1)" ||
  fail "status --json does not say maintenance"
lb_cli 1 status | grep -q "maintenance: ON" || fail "status does not say maintenance"
sleep 1
p1=$(packets 1); sleep 2; p1b=$(packets 1)
echo "balancer 1 in maintenance: $((p1b - p1)) packets in 2 s"
((p1b - p1 <= 2)) || fail "balancer 1 still gets traffic in maintenance"
moved=$(($(newflows 2) + $(newflows 3) - nf_other))
echo "flows ECMP moved to balancers 2 and 3 (flow-table misses there): $moved"
((moved >= 1)) || fail "no connection moved to another balancer"

# Maintenance survives a restart (kept under pin_path), and the restarted
# daemon announces nothing.
"$TESTBED" stop-lb "$NAME" 1
wait_until 10 bash -c "! kill -0 $(lb_pid 1) 2>/dev/null" || fail "lb1 did not stop"
start_lbs 1
[[ $(lb_metric 1 xdplb_maintenance) == 1 ]] || fail "maintenance lost across a restart"
sleep 4  # longer than the 3 s delay
lb_no_route 1 || fail "a restarted daemon in maintenance announced"

t0=$SECONDS
lb_cli 1 maintenance off
wait_until 15 lb_has_route 1 || fail "no route after maintenance off"
wait_until 10 nexthops_are 3 || fail "balancer 1 did not come back on the router"
echo "balancer 1 back on the router $((SECONDS - t0)) s after maintenance off (delay 3 s)"
sleep 2

for i in $(seq 1 $HOLDS); do touch "$WORK/hold$i.stop"; done
bad=0
for i in $(seq 1 $HOLDS); do
  if ! wait "$(cat "$WORK/hold$i.pid")"; then
    bad=$((bad + 1)); echo "connection $i: $(sort "$WORK/hold$i" | uniq -c | tr '\n' ' ')"
  fi
done
answers=$(cat "$WORK"/hold? "$WORK"/hold?? | wc -l)
echo "$HOLDS connections, $answers answers, $bad broken or moved to another backend"
((bad == 0)) || fail "$bad connections broke or changed backend"
echo "PASS"
