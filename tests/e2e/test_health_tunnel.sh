#!/usr/bin/env bash
# Tunnel-mode checks prove the path clients take (docs/design.md "Health
# checks through the tunnel"): a backend whose VIP is gone from its loopback
# (b2), and one whose decapsulator is detached (b3), go down within
# fall x interval in tunnel mode while a direct-mode check of the same
# backends stays up; repaired, both come back. IPv6 (6in6) and 4in6 backends
# are checked through the tunnel too.
source "$(dirname "$0")/lib.sh"
e2e_init health_tunnel

# The e2e config plus "webd": the same backends behind the same address on
# another port, checked directly on their own address (mode = "direct").
write_config 100 100 100 >"$CONFIG"
cat >>"$CONFIG" <<TOML

[[vip]]
name = "webd"
address = "$TB_VIP4"
port = 8080
[vip.health_check]
type = "http"
mode = "direct"
port = 80
interval = "300ms"
timeout = "150ms"
rise = 2
fall = 2
[[vip.backend]]
address = "10.77.0.11"
[[vip.backend]]
address = "10.77.0.12"
[[vip.backend]]
address = "10.77.0.13"
TOML
kill -HUP "$DAEMON_PID"
wait_until 10 in_ring webd 10.77.0.13

# goes_down VIP ADDR FALL: the daemon logs it down within FALL x interval
# (0.3 s, +10% jitter) + timeout (0.15 s) of $BROKE (ms since the epoch,
# taken when the fault was made), plus 0.4 s of scheduling slack. Measured from the
# daemon's own log line: polling `xdplb status` is slow on a busy machine.
goes_down() {
  local line at bound=$(($3 * 330 + 150 + 400))
  wait_until 15 not_in_ring "$1" "$2"
  line=$(grep "health $1 $2: up -> down" "$WORK/daemon.log" | tail -1)
  at=$(date -d "${line:0:23}" +%s%3N)
  echo "$1 $2 down $((at - BROKE)) ms after the fault (bound $bound ms with slack): $line"
  ((at - BROKE < bound)) || { echo "FAIL: $1 $2 took too long"; exit 1; }
}
# stays_up VIP ADDR: the direct check never saw it fail.
stays_up() {
  in_ring "$1" "$2" || { echo "FAIL: $1 $2 is not up"; exit 1; }
  if grep -q "health $1 $2: up -> down" "$WORK/daemon.log"; then
    echo "FAIL: the direct check of $2 went down"; exit 1
  fi
}

B2=$TB_PREFIX-b2 B3=$TB_PREFIX-b3

# 1. b2 loses its VIPs (4in4 and 6in6 paths); 4in6 VIP stays on its lo.
BROKE=$(date +%s%3N)
in_ns "$B2" ip addr del "$TB_VIP4/32" dev lo
in_ns "$B2" ip -6 addr del "$TB_VIP6/128" dev lo
goes_down web 10.77.0.12 2
goes_down web6 fd00:77::12 3
stays_up webd 10.77.0.12
stays_up web46 fd00:77::12
grep -q "health web 10.77.0.12: up -> down" "$WORK/daemon.log" ||
  { echo "FAIL: no transition logged for web 10.77.0.12"; exit 1; }
in_ns "$B2" ip addr add "$TB_VIP4/32" dev lo
in_ns "$B2" ip -6 addr add "$TB_VIP6/128" dev lo
wait_until 5 in_ring web 10.77.0.12
wait_until 5 in_ring web6 fd00:77::12
echo "b2 is back after its VIPs were restored"

# 2. b3's decapsulator is detached: every tunnel path to it fails.
BROKE=$(date +%s%3N)
in_ns "$B3" "$XDPLB_BIN" decap detach eth0 >/dev/null
goes_down web 10.77.0.13 2
goes_down web46 fd00:77::13 3
stays_up webd 10.77.0.13
in_ns "$B3" "$XDPLB_BIN" decap attach eth0 10.77.0.13 fd00:77::13 >/dev/null
wait_until 5 in_ring web 10.77.0.13
wait_until 5 in_ring web46 fd00:77::13
echo "b3 is back after its decapsulator was reattached"

# Clients reach every backend again.
out=$(spread "$TB_VIP4" 300)
echo "$out"
for b in b1 b2 b3; do grep -q "^$b " <<<"$out" || { echo "FAIL: $b gets no traffic"; exit 1; }; done
echo "PASS"
