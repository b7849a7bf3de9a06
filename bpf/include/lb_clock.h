/* SPDX-License-Identifier: GPL-2.0 */
/* The packet path's clock: bpf_ktime_get_coarse_ns() read at most once per
 * jiffy on each CPU (docs/design.md, "Clock"). */
#ifndef LB_CLOCK_H
#define LB_CLOCK_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lb_maps.h"
#include "lb_shared.h"

/* The coarse clock as bpf_ktime_get_coarse_ns() gives it, read when this
 * CPU first saw the current jiffy. Usually the same value: the coarse clock
 * moves only at ticks. A packet read in the tick's short window between its
 * jiffies update and its clock update keeps the previous tick's time for
 * the whole tick, so a CPU can be one tick behind another: ages taken
 * across CPUs are compared signed. bpf_jiffies64() is inlined by the
 * x86-64 and arm64 JITs and the per-CPU lookup by the verifier (6.10+), so
 * a packet costs two loads and a compare where the helper is a call into a
 * seqcount loop. rl: this CPU's lb_ratelimit entry, or 0 (then the helper
 * is read). */
static __always_inline __u64 lb_now(struct lb_ratelimit *rl)
{
	__u64 j = bpf_jiffies64();

	if (!rl)
		return bpf_ktime_get_coarse_ns();
	if (rl->clock_jiffies != j) {
		rl->clock_ns = bpf_ktime_get_coarse_ns();
		rl->clock_jiffies = j;
	}
	return rl->clock_ns;
}

/* This CPU's lb_ratelimit entry (token buckets and clock cache). */
static __always_inline struct lb_ratelimit *lb_percpu(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&lb_ratelimit, &zero);
}

#endif
