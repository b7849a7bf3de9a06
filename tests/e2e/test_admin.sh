#!/usr/bin/env bash
# The admin API lives on the daemon's UNIX socket only: the metrics port
# answers no /api/v1/* path (GET or HEAD), the socket is 0660, the CLI finds it
# by --socket or through --config, --url against the metrics port is refused
# with a hint, no endpoint publishes the hash seed, HEAD /metrics has no body
# and /healthz reports the main loop's liveness.
source "$(dirname "$0")/lib.sh"
e2e_init admin
fail() { echo "FAIL: $*"; exit 1; }

# ---- the metrics port: /metrics and /healthz, nothing under /api/v1 ----
for path in /api/v1/status "/api/v1/lookup?vip=web&src=10.77.0.2&sport=4000" /api/v1/reload \
  /api/v1/ /api/v1; do
  for method in GET HEAD; do
    code=$(in_lb curl -s -o /dev/null -w '%{http_code}' -X "$method" "http://127.0.0.1:9450$path")
    [[ $code == 404 ]] || fail "$method $path on the metrics port answered $code, want 404"
  done
done
echo "ok: the metrics port answers 404 to every /api/v1 path (GET and HEAD)"
code=$(in_lb curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9450/metrics)
[[ $code == 200 ]] || fail "GET /metrics answered $code"
head_out=$(in_lb curl -s -I --max-time 5 http://127.0.0.1:9450/metrics)
grep -q "^HTTP/1.1 200" <<<"$head_out" || fail "HEAD /metrics: $head_out"
grep -q "xdplb_" <<<"$head_out" && fail "HEAD /metrics carried a body"
echo "ok: HEAD /metrics: 200, no body"
healthz=$(in_lb curl -sf http://127.0.0.1:9450/healthz)
[[ $healthz =~ ^ok:\ datapath\ attached,\ main\ loop\ last\ ticked\ [0-9.]+\ s\ ago$ ]] ||
  fail "/healthz: '$healthz'"
echo "ok: /healthz: $healthz"

# ---- capabilities after start: CAP_BPF and CAP_NET_ADMIN only ----
capeff=$(awk '/^CapEff:/ {print $2}' "/proc/$DAEMON_PID/status")
[[ $capeff == 0000008000001000 ]] ||
  fail "CapEff $capeff after start, want 0000008000001000 (cap_net_admin, cap_bpf)"
grep -q "capabilities after start: net_admin, bpf" "$WORK/daemon.log" ||
  fail "no 'capabilities after start' line: $(grep -i capab "$WORK/daemon.log")"
echo "ok: CapEff $capeff after start (cap_net_admin, cap_bpf)"

# ---- the admin socket ----
[[ -S $ADMIN_SOCK ]] || fail "no socket at $ADMIN_SOCK"
mode=$(stat -c %a "$ADMIN_SOCK")
[[ $mode == 660 ]] || fail "admin socket mode $mode, want 660"
echo "ok: $ADMIN_SOCK is a socket, mode $mode"
json=$(status_json)
python3 - "$json" <<'PY' || fail "status JSON: $json"
import json, sys
s = json.loads(sys.argv[1])
assert "hash_seed" not in s, "status publishes the hash seed"
assert sorted(v["name"] for v in s["vips"]) == ["web", "web46", "web6"], s["vips"]
PY
echo "ok: xdplb status --socket: 3 VIPs, no hash_seed"
reload_json=$(in_lb curl -sf --unix-socket "$ADMIN_SOCK" http://x/api/v1/reload)
python3 - "$reload_json" <<'PY' || fail "/api/v1/reload: $reload_json"
import json, sys
r = json.loads(sys.argv[1])
assert r["generation"] == 0 and r["result"] == "success" and r["errors"] == [], r
assert "hash_seed" not in r
PY
echo "ok: /api/v1/reload on the socket: $reload_json"
# --config: the socket comes from the file.
in_lb "$XDPLB_BIN" status --config "$CONFIG" | grep -q "^VIP web " || fail "status --config"
echo "ok: xdplb status --config FILE finds the socket in the file"
# --url against the metrics port: refused, with the reason.
rc=0
out=$(in_lb "$XDPLB_BIN" status --url 127.0.0.1:9450 2>&1) || rc=$?
[[ $rc == 1 && $out == *"answered 404"*"serves no /api/v1"* ]] || fail "status --url metrics: rc $rc: $out"
echo "ok: status --url <metrics port>: exit 1: $out"
# The CLI names a bad option.
rc=0
out=$(in_lb "$XDPLB_BIN" status --sockett x 2>&1) || rc=$?
[[ $rc == 2 && $out == *"--sockett"* ]] || fail "bad option: rc $rc: $out"
echo "ok: a bad option: exit 2: $(head -1 <<<"$out")"
# lookup, daemon form, through the socket.
b=$(xdplb_admin lookup web 10.77.0.2 40000)
[[ $b == 10.77.0.1[123] ]] || fail "lookup --socket: '$b'"
off=$(in_lb "$XDPLB_BIN" lookup --config "$CONFIG" web 10.77.0.2 40000)
[[ $b == "$off" ]] || fail "live lookup $b, offline $off"
echo "ok: lookup --socket web 10.77.0.2 40000 -> $b (offline: $off)"
# reload: the socket from the config file; the generation moves. The reload
# adds a VIP, whose first ring map needs CAP_BPF: kept after the drop.
sed -i 's/^weight = 200$/weight = 150/' "$CONFIG"
cat >>"$CONFIG" <<TOML

[[vip]]
name = "extra"
address = "$TB_VIP4"
port = 8080
ring_size = 1021
[vip.health_check]
type = "none"
[[vip.backend]]
address = "10.77.0.11"
TOML
out=$(in_lb "$XDPLB_BIN" reload --pid "$DAEMON_PID" --config "$CONFIG") || fail "reload: $out"
gen=$(in_lb curl -sf --unix-socket "$ADMIN_SOCK" http://x/api/v1/reload | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])')
[[ $gen == 1 ]] || fail "reload generation $gen after one reload"
b=$(xdplb_admin lookup extra 10.77.0.2 40000)
[[ $b == 10.77.0.11 ]] || fail "the VIP added by the reload answers '$b'"
echo "ok: xdplb reload --config: '$out'; generation 1; the new VIP's ring is live ($b)"

# ---- stop: the socket file goes with the daemon ----
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || fail "daemon exit status $?"
DAEMON_PID=
[[ ! -e $ADMIN_SOCK ]] || fail "$ADMIN_SOCK left behind after stop"
echo "ok: stopped; $ADMIN_SOCK removed"
