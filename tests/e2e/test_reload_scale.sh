#!/usr/bin/env bash
# `xdplb reload` (the unit's ExecReload) against a daemon with 1,000 VIPs x
# 100 backends: it waits on the small reload status of the admin socket, not
# on /metrics (tens of MB at this size), so it returns with the verdict in
# seconds: exit 0 for a good file, 1 with the errors for a bad one.
source "$(dirname "$0")/lib.sh"
e2e_testbed rscale
fail() { echo "FAIL: $*"; exit 1; }

# big_config WEIGHT: 1,000 VIPs (one address, ports 1000-1999), each with 100
# backends (10.80.V.B, never probed); the first backend of VIP 0 has WEIGHT.
big_config() {
  python3 - "$1" "$TB_PIN" "$TB_VIP4" "$ADMIN_SOCK" <<'PY'
import sys
w, pin, vip, sock = sys.argv[1:]
out = [f'''[daemon]
interfaces = ["eth0"]
pin_path = "{pin}"
hash_seed = 11
flow_table_size = 65536
tunnel_source_v4 = "10.77.0.1"
max_vips = 1024
max_backends = 131072

[metrics]
listen = "127.0.0.1:9450"

[admin]
socket = "{sock}"
''']
for v in range(1000):
    out.append(f'[[vip]]\nname = "v{v}"\naddress = "{vip}"\nport = {1000 + v}\nring_size = 10007\n'
               '[vip.health_check]\ntype = "none"\n')
    for b in range(100):
        weight = w if v == 0 and b == 0 else "100"
        out.append(f'[[vip.backend]]\naddress = "10.{80 + v // 250}.{v % 250}.{b + 1}"\nweight = {weight}\n')
print("\n".join(out))
PY
}
big_config 100 >"$CONFIG"
"$XDPLB_BIN" check --no-interface-check "$CONFIG"
nsenter --net="/run/netns/$TB_LB" -- "$XDPLB_BIN" run --config "$CONFIG" >>"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
wait_until 120 in_lb curl -sf http://127.0.0.1:9450/healthz
bytes=$(in_lb curl -sf http://127.0.0.1:9450/metrics | wc -c)
echo "daemon up: /metrics is $bytes bytes"
((bytes > 10000000)) || fail "/metrics is only $bytes bytes: not the scale this test is about"

big_config 0 >"$CONFIG"
start=$(date +%s.%N)
out=$(in_lb "$XDPLB_BIN" reload --pid "$DAEMON_PID" --config "$CONFIG" --timeout 120) ||
  fail "reload: $out"
secs=$(python3 -c "import sys; print('%.2f' % ($(date +%s.%N) - $start))")
echo "ok: xdplb reload at 1,000 VIPs x 100 backends: '$out' in $secs s"
w=$(xdplb_admin status --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
print([b["weight"] for v in s["vips"] if v["name"] == "v0" for b in v["backends"]][0])')
[[ $w == 0 ]] || fail "after the reload the first backend of v0 has weight $w, want 0"
echo "ok: the new weight is live when reload returns"

sed -i 's/^ring_size = 10007$/ring_size = 10000/' "$CONFIG"
rc=0
out=$(in_lb "$XDPLB_BIN" reload --pid "$DAEMON_PID" --config "$CONFIG" --timeout 120 2>&1) || rc=$?
[[ $rc == 1 && $out == *"ring_size"*"refused"* ]] || fail "bad reload: rc $rc: $(tail -3 <<<"$out")"
echo "ok: a bad file: exit 1: $(tail -1 <<<"$out")"
