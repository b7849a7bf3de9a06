// SPDX-License-Identifier: GPL-2.0
/* xdp_balancer: Maglev backend selection for packets to VIPs, forwarded in an
 * IP-in-IP tunnel. The logic lives in bpf/include/lb_*.h by concern; this
 * file is the order of the steps. Every exit is counted under its reason. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lb_balancer.h"

SEC("xdp")
int xdp_balancer(struct xdp_md *ctx) { return lb_balance(ctx); }

char LICENSE[] SEC("license") = "GPL";
