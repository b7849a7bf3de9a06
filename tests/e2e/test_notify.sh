#!/usr/bin/env bash
# The notify protocol of the real `xdplb run`, without systemd: a datagram
# socket passed as NOTIFY_SOCKET records every message. Checked:
#   - start-up that fails (a capability dropped, an interface that cannot take
#     the program) exits 1 naming the cause and never sends READY=1;
#   - READY=1 (with STATUS=) comes first, once the program is attached and
#     the rings answer lookups; WATCHDOG=1 follows while the loop runs;
#   - SIGHUP: RELOADING=1 with MONOTONIC_USEC=, then READY=1 with the new
#     STATUS=; a refused reload says so in STATUS=;
#   - a main loop wedged inside a reload (the config replaced by a FIFO that
#     nobody writes: the reload blocks reading it) stops the WATCHDOG=1 pings,
#     which resume once the reload completes;
#   - SIGTERM: STOPPING=1 is the last message;
#   - SIGHUPs during start-up neither kill the daemon nor get lost.
# Its own namespace (xt-notify-lb) and pin path, so it runs beside the others.
source "$(dirname "$0")/lib.sh"
e2e_skip_unless_root

NS=xt-notify-lb
PIN=/sys/fs/bpf/xdplb-notify
LISTEN=127.0.0.1:9461
WORK=$(mktemp -d /tmp/xdplb-e2e-notify.XXXXXX)
SOCK=$WORK/notify.sock
MSGS=$WORK/messages
RECV_PID= DAEMON_PID=

cleanup() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "--- notify messages ---"; cat "$MSGS" 2>/dev/null || true
    echo "--- daemon log (last 30 lines) ---"; tail -30 "$WORK/daemon.log" 2>/dev/null || true
  fi
  [[ -n $DAEMON_PID ]] && { kill -9 "$DAEMON_PID" 2>/dev/null; wait "$DAEMON_PID" 2>/dev/null; } || true
  [[ -n $RECV_PID ]] && { kill "$RECV_PID" 2>/dev/null; wait "$RECV_PID" 2>/dev/null; } || true
  ip netns del $NS 2>/dev/null || true
  rm -rf "$PIN" "$WORK"
  exit $rc
}
trap cleanup EXIT

mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
ip netns del $NS 2>/dev/null || true
rm -rf "$PIN"
ip netns add $NS
in_ns $NS ip link set lo up
in_ns $NS ip link add eth0 type veth peer name peer0
in_ns $NS ip link set eth0 up
in_ns $NS ip link set peer0 up
in_ns $NS ip addr add 10.79.0.1/24 dev eth0
# A bridge has no driver XDP hook: native attach fails there.
in_ns $NS ip link add nox type bridge
in_ns $NS ip link set nox up

# The receiver: one line per datagram, "<CLOCK_MONOTONIC usec> <message>" with
# the message's newlines shown as '|'.
cat >"$WORK/recv.py" <<'PY'
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a", buffering=1) as out:
    while True:
        m = s.recv(4096).decode()
        out.write("%d %s\n" % (time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000, m.replace("\n", "|")))
PY
python3 "$WORK/recv.py" "$SOCK" "$MSGS" &
RECV_PID=$!
wait_until 5 test -S "$SOCK"
: >"$MSGS"

# config IFACES BACKENDS: one VIP, health checks off (backends count as up).
config() {
  cat <<TOML
[daemon]
interfaces = [$1]
xdp_mode = "native"
pin_path = "$PIN"
hash_seed = 7
flow_table_size = 4096
tunnel_source_v4 = "10.79.0.1"
tunnel_source_v6 = "fd00:79::1"
max_vips = 4
max_backends = 16

[metrics]
listen = "$LISTEN"

[admin]
socket = "$ADMIN_SOCK"

[[vip]]
name = "web"
address = "198.51.100.79"
port = 80
ring_size = 1021
[vip.health_check]
type = "none"
TOML
  for ((i = 1; i <= $2; i++)); do printf '[[vip.backend]]\naddress = "10.79.0.%d"\n' $((10 + i)); done
}
CONFIG=$WORK/xdplb.toml
ADMIN_SOCK=$WORK/admin.sock

# run_daemon [PREFIX...]: the daemon in the namespace, messages to $SOCK.
run_daemon() {
  nsenter --net=/run/netns/$NS -- env NOTIFY_SOCKET="$SOCK" WATCHDOG_USEC=400000 "$@" \
    "$XDPLB_BIN" run --no-watch --config "$CONFIG" >>"$WORK/daemon.log" 2>&1 &
  DAEMON_PID=$!
}
count() { grep -c -- "$1" "$MSGS" || true; }
# expect_failed_start WHAT PATTERN [PREFIX...]: exits 1, log names PATTERN, no message at all.
expect_failed_start() {
  local what=$1 pattern=$2
  shift 2
  : >"$MSGS"; : >"$WORK/daemon.log"
  run_daemon "$@"
  local rc=0
  wait "$DAEMON_PID" || rc=$?
  DAEMON_PID=
  sleep 0.2  # a datagram sent just before exit is in the receiver's socket
  [[ $rc -eq 1 ]] || { echo "FAIL: $what: exit $rc, want 1"; cat "$WORK/daemon.log"; exit 1; }
  grep -q -- "$pattern" "$WORK/daemon.log" || { echo "FAIL: $what: log does not name '$pattern'"; cat "$WORK/daemon.log"; exit 1; }
  [[ $(count READY=1) -eq 0 ]] || { echo "FAIL: $what: READY=1 sent"; exit 1; }
  echo "ok: $what -> exit 1, no READY=1: $(grep -m1 -- "$pattern" "$WORK/daemon.log" | sed 's/^.*\] //')"
}

# ---- start-up failures never signal readiness ---------------------------
config '"eth0"' 3 >"$CONFIG"
# The unit's three capabilities minus one each (root keeps across exec only
# what the bounding set allows; CAP_SYS_ADMIN would stand in for two of them).
for cap in bpf perfmon net_admin; do
  others=$(printf '%s\n' bpf perfmon net_admin | grep -vx "$cap" | sed 's/^/+/' | paste -sd,)
  expect_failed_start "without CAP_${cap^^}" "lacks CAP_${cap^^}" setpriv --bounding-set=-all,"$others" --
done
config '"eth0", "nox"' 3 >"$CONFIG"
expect_failed_start "native attach impossible on one interface" "attach XDP to nox"
in_ns $NS "$XDPLB_BIN" detach --config "$CONFIG" >/dev/null 2>&1 || true

# ---- start: READY=1 first, once attached and the rings answer ------------
config '"eth0"' 3 >"$CONFIG"
: >"$MSGS"
run_daemon
wait_until 20 grep -q READY=1 "$MSGS"
first=$(head -1 "$MSGS" | cut -d' ' -f2-)
[[ $first == "READY=1|STATUS=1 VIPs, 3/3 backends in rings, ring generations "* ]] ||
  { echo "FAIL: first message is '$first'"; exit 1; }
link_out=$(in_ns $NS ip -d link show eth0)
grep -q "prog/xdp" <<<"$link_out" || { echo "FAIL: READY=1 but nothing attached to eth0"; exit 1; }
backend=$(in_ns $NS "$XDPLB_BIN" lookup --socket "$ADMIN_SOCK" web 203.0.113.7 40000)
[[ $backend == 10.79.0.1[123] ]] || { echo "FAIL: READY=1 but the live ring answers '$backend'"; exit 1; }
echo "ok: first message: $first; attached; live lookup -> $backend"
wait_until 5 bash -c "[[ \$(grep -c WATCHDOG=1 '$MSGS') -ge 3 ]]"
echo "ok: WATCHDOG=1 every ~200 ms with WATCHDOG_USEC=400000"

# ---- reload: RELOADING=1 with MONOTONIC_USEC, then READY=1 ----------------
config '"eth0"' 4 >"$CONFIG"
before=$(wc -l <"$MSGS")
kill -HUP "$DAEMON_PID"
wait_until 10 bash -c "tail -n +$((before + 1)) '$MSGS' | grep -q 'READY=1'"
reload=$(tail -n +$((before + 1)) "$MSGS" | grep -v WATCHDOG=1)
python3 - "$reload" <<'PY'
import sys
lines = [l.split(" ", 1) for l in sys.argv[1].strip().splitlines()]
assert len(lines) >= 2, lines
(t1, m1), (t2, m2) = lines[0], lines[1]
assert m1.startswith("RELOADING=1|MONOTONIC_USEC="), m1
usec = int(m1.split("MONOTONIC_USEC=")[1])
# Stamped by the daemon just before sending: at or before our receipt, and recent.
assert int(t1) - 2_000_000 < usec <= int(t1), (usec, t1)
assert m2 == "READY=1|STATUS=1 VIPs, 4/4 backends in rings, ring generations 2", m2
print("ok: reload: %s then %s" % (m1, m2))
PY

# A refused reload: RELOADING=1, READY=1 again (the running config stays), and
# STATUS= says so.
echo 'this is = not toml [' >"$CONFIG"
before=$(wc -l <"$MSGS")
kill -HUP "$DAEMON_PID"
wait_until 10 bash -c "tail -n +$((before + 1)) '$MSGS' | grep -q 'READY=1'"
refused=$(tail -n +$((before + 1)) "$MSGS" | grep -v WATCHDOG=1 | cut -d' ' -f2-)
[[ $(head -1 <<<"$refused") == RELOADING=1* ]] || { echo "FAIL: refused reload: $refused"; exit 1; }
grep -q "^READY=1|STATUS=1 VIPs, 4/4 backends in rings, .*reload refused" <<<"$refused" ||
  { echo "FAIL: refused reload: $refused"; exit 1; }
echo "ok: refused reload: $(tail -1 <<<"$refused")"

# ---- `xdplb reload` (the unit's ExecReload) returns after the verdict ------
config '"eth0"' 5 >"$CONFIG"
out=$(in_ns $NS "$XDPLB_BIN" reload --pid "$DAEMON_PID" --config "$CONFIG") || { echo "FAIL: reload: $out"; exit 1; }
# No waiting: the new backend is in the ring when the command returns.
n=$(in_ns $NS "$XDPLB_BIN" status --json --socket "$ADMIN_SOCK" | python3 -c '
import json, sys
print(sum(b["in_ring"] for v in json.load(sys.stdin)["vips"] for b in v["backends"]))')
[[ $n == 5 ]] || { echo "FAIL: xdplb reload returned with $n backends in the ring, want 5"; exit 1; }
echo "ok: xdplb reload: '$out'; 5 backends in the ring on return"
sed -i 's/^ring_size = 1021/ring_size = 1000/' "$CONFIG"
before=$(wc -l <"$MSGS")
rc=0
out=$(in_ns $NS "$XDPLB_BIN" reload --pid "$DAEMON_PID" --config "$CONFIG" 2>&1) || rc=$?
[[ $rc -eq 1 && $out == *"vip[0].ring_size"*"refused"* ]] || { echo "FAIL: refused xdplb reload: rc $rc: $out"; exit 1; }
echo "ok: xdplb reload of a bad file: exit 1: $(head -1 <<<"$out")"
wait_until 5 bash -c "tail -n +$((before + 1)) '$MSGS' | grep -q 'READY=1.*last reload refused'"
config '"eth0"' 4 >"$CONFIG"
in_ns $NS "$XDPLB_BIN" reload --pid "$DAEMON_PID" --config "$CONFIG" >/dev/null

# ---- maintenance shows in STATUS= ------------------------------------------
before=$(wc -l <"$MSGS")
in_ns $NS "$XDPLB_BIN" maintenance on --socket "$ADMIN_SOCK" >/dev/null
wait_until 5 bash -c "tail -n +$((before + 1)) '$MSGS' | grep -q 'STATUS=.*MAINTENANCE'"
before=$(wc -l <"$MSGS")
in_ns $NS "$XDPLB_BIN" maintenance off --socket "$ADMIN_SOCK" >/dev/null
wait_until 5 bash -c "tail -n +$((before + 1)) '$MSGS' | grep 'STATUS=' | grep -vq MAINTENANCE"
echo "ok: maintenance on/off: STATUS= says MAINTENANCE, then no longer"

# ---- a config path that is not a regular file is refused, not waited on --
rm "$CONFIG"
mkfifo "$CONFIG"
before=$(wc -l <"$MSGS")
p0=$(count WATCHDOG=1)
kill -HUP "$DAEMON_PID"
wait_until 10 bash -c "tail -n +$((before + 1)) '$MSGS' | grep -q 'READY=1.*last reload refused'"
wait_until 5 bash -c "[[ \$(grep -c WATCHDOG=1 '$MSGS') -ge $((p0 + 3)) ]]"
echo "ok: a FIFO as the config file is refused at once; pings go on"
rm "$CONFIG"
config '"eth0"' 4 >"$CONFIG"

# ---- a wedged main loop stops the pings ----------------------------------
# Only the main thread is stopped (ptrace), as a loop stuck in a call would
# be: the other threads run on, and none of them may ping.
python3 "$ROOT/tests/e2e/tools/stop_thread.py" "$DAEMON_PID" 2.2 >"$WORK/stop.out" &
stopper=$!
wait_until 5 grep -q stopped "$WORK/stop.out"
sleep 0.3  # a ping already in flight
p0=$(count WATCHDOG=1)
sleep 1.6  # four ping periods
p1=$(count WATCHDOG=1)
wait "$stopper"
[[ $p1 -eq $p0 ]] || { echo "FAIL: $((p1 - p0)) WATCHDOG=1 while the loop was blocked"; exit 1; }
echo "ok: no WATCHDOG=1 for 1.6 s while the main thread was stopped"
wait_until 5 bash -c "[[ \$(grep -c WATCHDOG=1 '$MSGS') -ge $((p1 + 3)) ]]"
echo "ok: the main thread runs again, pings resumed"

# ---- stop: STOPPING=1 last ------------------------------------------------
kill -TERM "$DAEMON_PID"
rc=0
wait "$DAEMON_PID" || rc=$?
DAEMON_PID=
[[ $rc -eq 0 ]] || { echo "FAIL: exit $rc after SIGTERM"; exit 1; }
sleep 0.2
last=$(tail -1 "$MSGS" | cut -d' ' -f2-)
[[ $last == STOPPING=1 ]] || { echo "FAIL: last message '$last'"; exit 1; }
echo "ok: STOPPING=1 last; exit 0"
# ---- SIGHUP during start-up waits for the loop, it does not kill ----------
# From the daemon's first log line (the config is loaded: the signals are
# installed before that) until READY=1, a SIGHUP every 5 ms: the start-up
# work after it (program attach, HTTP listeners) takes far longer, so with
# the signals installed late one of them would meet the default action.
: >"$MSGS"; : >"$WORK/daemon.log"
run_daemon
# Polled every 2 ms, not by wait_until's 100 ms: with the pinned state
# adopted, start-up after the first line can take only about 100 ms.
for ((i = 0; i < 5000; i++)); do
  [[ -s $WORK/daemon.log ]] && break
  sleep 0.002
done
sent=0
for ((i = 0; i < 2000; i++)); do
  grep -q READY=1 "$MSGS" && break
  kill -HUP "$DAEMON_PID" 2>/dev/null || break
  sent=$((sent + 1))
  sleep 0.005
done
kill -0 "$DAEMON_PID" 2>/dev/null || { echo "FAIL: the daemon died of a SIGHUP during start-up ($sent sent)"; exit 1; }
[[ $sent -ge 2 ]] || { echo "FAIL: only $sent SIGHUP sent before READY=1: the test did not reach start-up"; exit 1; }
wait_until 10 grep -q READY=1 "$MSGS"
# The SIGHUPs waited in the signal set: a reload follows READY=1.
wait_until 10 grep -q RELOADING=1 "$MSGS"
echo "ok: $sent SIGHUP during start-up: the daemon started and reloaded after READY=1"
kill -TERM "$DAEMON_PID"
rc=0
wait "$DAEMON_PID" || rc=$?
DAEMON_PID=
[[ $rc -eq 0 ]] || { echo "FAIL: exit $rc after SIGTERM"; exit 1; }

in_ns $NS "$XDPLB_BIN" detach --config "$CONFIG" >/dev/null
echo PASS
