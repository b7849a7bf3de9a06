// SPDX-License-Identifier: GPL-2.0
/* PLACEHOLDER so the tree builds while xdp_balancer is written: passes all. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("xdp")
int xdp_balancer(struct xdp_md *ctx) { return XDP_PASS; }
char LICENSE[] SEC("license") = "GPL";
