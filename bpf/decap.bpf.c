// SPDX-License-Identifier: GPL-2.0
/* PLACEHOLDER so the tree builds while xdp_decap is written: passes all. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("xdp")
int xdp_decap(struct xdp_md *ctx) { return XDP_PASS; }
char LICENSE[] SEC("license") = "GPL";
