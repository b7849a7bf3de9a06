/* SPDX-License-Identifier: GPL-2.0 */
/* Counting: every exit of xdp_balancer goes through lb_exit(), which counts
 * the packet under its reason and returns the action (docs/design.md, contract 6). */
#ifndef XDPLB_BPF_LB_COUNTERS_H
#define XDPLB_BPF_LB_COUNTERS_H

#include "lb_maps.h"

static __always_inline void lb_count(void *map, __u32 idx, __u64 bytes)
{
	struct lb_counter *c = bpf_map_lookup_elem(map, &idx);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

static __always_inline int lb_exit(enum lb_reason reason, __u64 bytes, int action)
{
	lb_count(&lb_reason_stats, reason, bytes);
	return action;
}

#endif
