#!/usr/bin/env bash
# A long-lived connection survives a reload that adds and removes other
# backends, a reload that drains its own backend, kill -9 of the daemon, a
# restart that adopts the pinned state, and a graceful stop and start (an
# upgrade); while the daemon is dead new
# connections are still balanced (fail static); an invalid file is refused
# with its location and the running config keeps serving.
source "$(dirname "$0")/lib.sh"
e2e_init survive

in_cl timeout 100 python3 "$CLIENT" hold "$TB_VIP4" 80 90 "$WORK/hold.txt" &
HOLD=$!
wait_until 5 test -s "$WORK/hold.txt"
mine=$(head -1 "$WORK/hold.txt")
declare -A addr=([b1]=10.77.0.11 [b2]=10.77.0.12 [b3]=10.77.0.13)
echo "held connection is on $mine"


# 1. Reload that removes another backend and adds a new one.
other=b1; [[ $mine == b1 ]] && other=b2
write_config 100 100 100 $'[[vip.backend]]\naddress = "10.77.0.14"' |
  python3 -c "import sys; t=sys.stdin.read(); sys.stdout.write(t.replace('[[vip.backend]]\naddress = \"${addr[$other]}\"\nweight = 100\n', '', 1))" >"$CONFIG.new"
mv "$CONFIG.new" "$CONFIG"
kill -HUP "$DAEMON_PID"
wait_until 5 grep -q "backend removed: web ${addr[$other]}" "$WORK/daemon.log"
grep -q "backend added: web 10.77.0.14" "$WORK/daemon.log"
echo "reload: removed $other, added 10.77.0.14"
write_config 100 100 100 >"$CONFIG"
kill -HUP "$DAEMON_PID"
wait_until 5 in_ring web "${addr[$other]}"

# 2. Drain the held connection's own backend: new connections avoid it.
w=(100 100 100); idx=${mine#b}; w[$((idx - 1))]=0
write_config "${w[@]}" >"$CONFIG"
kill -HUP "$DAEMON_PID"
wait_until 5 not_in_ring web "${addr[$mine]}"
out=$(spread "$TB_VIP4" 200)
if grep -q "^$mine " <<<"$out"; then echo "FAIL: drained $mine got new connections: $out"; exit 1; fi
echo "drained $mine: new connections avoid it"

# 3. kill -9: the datapath keeps forwarding (fail static).
kill -9 "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true
out=$(spread "$TB_VIP4" 200)
echo "while the daemon is dead: $(tr '\n' ' ' <<<"$out")"
grep -q '^error ' <<<"$out" && { echo "FAIL: connections failed while the daemon was dead"; exit 1; }
[[ $(wc -l <<<"$out") -ge 2 ]] || { echo "FAIL: not balanced while dead"; exit 1; }

# 4. Restart: pinned state adopted.
start_daemon
grep -q "adopted pinned" "$WORK/daemon.log" || { echo "FAIL: no adoption"; exit 1; }

# 4b. SIGTERM (as systemd stops it for an upgrade), traffic while stopped,
# and a start that adopts the pinned state again.
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true
grep -q "stays attached and its maps pinned" "$WORK/daemon.log" || { echo "FAIL: no clean stop logged"; exit 1; }
out=$(spread "$TB_VIP4" 100)
grep -q '^error ' <<<"$out" && { echo "FAIL: connections failed after SIGTERM"; exit 1; }
start_daemon
[[ $(grep -c "adopted pinned" "$WORK/daemon.log") -ge 2 ]] || { echo "FAIL: second start did not adopt"; exit 1; }
echo "graceful stop and start: adopted again, $(wc -l <"$WORK/hold.txt") answers on the held connection so far"

# 5. An invalid file is refused with its location; the running config serves.
printf '[daemon]\ninterfaces = ["eth0"]\nxdp_mode = "warp"\n' >"$CONFIG"
kill -HUP "$DAEMON_PID"
wait_until 5 grep -q "reload refused" "$WORK/daemon.log"
grep -E "xdplb.toml:3:12: daemon.xdp_mode: 'warp' is not one of" "$WORK/daemon.log"
out=$(spread "$TB_VIP4" 100)
grep -q '^error ' <<<"$out" && { echo "FAIL: not serving after a refused reload"; exit 1; }

touch "$WORK/hold.txt.stop"
wait "$HOLD" || { echo "FAIL: the held connection broke or moved:"; sort "$WORK/hold.txt" | uniq -c; exit 1; }
echo "held connection: $(wc -l <"$WORK/hold.txt") answers, all from $(sort -u "$WORK/hold.txt")"
echo "PASS"
