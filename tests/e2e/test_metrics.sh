#!/usr/bin/env bash
# /metrics agrees with the traffic sent, passes promtool, and a real
# Prometheus server scraping the daemon returns the series from its query API.
source "$(dirname "$0")/lib.sh"
e2e_init metrics

N=300
out=$(spread "$TB_VIP4" $N)
grep -q '^error ' <<<"$out" && { echo "FAIL: $out"; exit 1; }
in_lb curl -sf http://127.0.0.1:9450/metrics >"$WORK/metrics.txt"
promtool check metrics <"$WORK/metrics.txt"
python3 - "$WORK/metrics.txt" $N <<'PY'
import re, sys
text, n = open(sys.argv[1]).read(), int(sys.argv[2])
def val(pattern):
    m = re.search("^" + pattern + r" (\S+)$", text, re.M)
    if not m: sys.exit("missing: " + pattern)
    return float(m.group(1))
pkts = val(r'xdplb_vip_packets_total\{vip="web"\}')
flows = val(r'xdplb_vip_new_flows_total\{vip="web"\}')
backends = sum(float(v) for v in re.findall(r'^xdplb_backend_packets_total\{vip="web",[^}]*\} (\S+)$', text, re.M))
tx = val(r'xdplb_packets_total\{action="tx",reason="tx"\}')
print("web: %d connections -> %d packets, %d new flows, %d to backends, %d tx" % (n, pkts, flows, backends, tx))
# Each connection: SYN, ACK, request, ACK of the answer, FIN, last ACK: 5-9
# packets client->VIP, whatever TCP adds on top.
assert 4 * n <= pkts <= 12 * n, pkts
assert n <= flows <= n * 1.05, flows  # every SYN takes the ring
assert backends == pkts, (backends, pkts)
assert tx >= pkts
for name in ["xdplb_backend_up", "xdplb_backend_weight", "xdplb_ring_generation",
             "xdplb_ring_swaps_total", "xdplb_config_reloads_total", "xdplb_build_info",
             "xdplb_health_check_duration_seconds_bucket", "xdplb_backend_transitions_total",
             "xdplb_config_last_reload_success_timestamp_seconds"]:
    assert re.search("^" + name + "[ {]", text, re.M), name
PY

# A real Prometheus, inside the balancer's namespace, scraping every second.
cat >"$WORK/prometheus.yml" <<YML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: xdplb
    static_configs:
      - targets: ["127.0.0.1:9450"]
YML
nsenter --net="/run/netns/$TB_LB" -- prometheus --config.file="$WORK/prometheus.yml" \
  --storage.tsdb.path="$WORK/tsdb" --web.listen-address=127.0.0.1:9091 >"$WORK/prometheus.log" 2>&1 &
PROM=$!
trap 'kill $PROM 2>/dev/null; wait $PROM 2>/dev/null; e2e_cleanup' EXIT
query() {
  in_lb curl -sf "http://127.0.0.1:9091/api/v1/query?query=xdplb_vip_packets_total%7Bvip%3D%22web%22%7D" |
    python3 -c "import json,sys; r=json.load(sys.stdin)['data']['result']; sys.exit(0 if r and float(r[0]['value'][1]) > 0 else 1)"
}
wait_until 60 query
echo "Prometheus query API returns xdplb_vip_packets_total{vip=\"web\"}"
echo "PASS"
