/* SPDX-License-Identifier: GPL-2.0 */
/* Tunnel-mode health probes (docs/design.md "Health checks through the
 * tunnel"): the map layouts that tc_probe_encap and the daemon share. The
 * daemon's probe socket connects to VIP:port with SO_MARK = LB_PROBE_MARK_BASE
 * | slot; tc_probe_encap, on egress, wraps such a packet in the outer header
 * of lb_probe_targets[slot] and sends it to that backend. */
#ifndef XDPLB_BPF_SHARED_LB_PROBE_H
#define XDPLB_BPF_SHARED_LB_PROBE_H

#include <linux/types.h>

#define LB_PROBE_MARK_BASE 0x584c0000U /* "XL" in the high 16 bits */
#define LB_PROBE_MARK_MASK 0xffff0000U
#define LB_PROBE_SLOTS 65536U /* one per distinct backend address probed */

/* lb_probe_targets: ARRAY[LB_PROBE_SLOTS] of lb_probe_target. family 0 = the
 * slot is free: a packet marked with it is dropped (never sent unwrapped,
 * where the VIP's route would take it to whichever backend the balancer picks). */
struct lb_probe_target {
	__u8 family; /* of the outer header: LB_FAMILY_V4 or LB_FAMILY_V6 */
	__u8 pad[3];
	__u8 src[16]; /* outer source: daemon.tunnel_source_v4/v6 */
	__u8 dst[16]; /* outer destination: the backend */
};

enum lb_probe_reason {
	LB_P_PASS_UNMARKED = 0, /* not a probe: untouched */
	LB_P_ENCAP_TX,		/* wrapped, leaves by this interface */
	LB_P_ENCAP_REDIRECT,	/* wrapped, redirected to the backend's interface */
	LB_P_ENCAP_NEIGH,	/* wrapped, redirected; the kernel resolves the neighbour */
	LB_P_DROP_NO_TARGET,	/* marked, but its slot is free */
	LB_P_DROP_UNSUPPORTED,	/* not TCP/UDP over IPv4/IPv6, or IPv6 inside IPv4 */
	LB_P_DROP_GROW,		/* bpf_skb_adjust_room refused (too big for the MTU) */
	LB_P_DROP_FIB,		/* no route to the backend */
	LB_P_DROP_TOO_BIG,	/* wrapped, larger than the MTU of the route to the backend */
	LB_PROBE_REASON_MAX,
};

#define LB_PROBE_REASON_NAMES                                                                      \
	{                                                                                          \
		"unmarked", "encap_tx", "encap_redirect", "encap_neigh", "no_target",              \
		    "unsupported", "grow", "fib", "too_big"                                        \
	}

/* lb_probe_stats: PERCPU_ARRAY[LB_PROBE_REASON_MAX] of lb_counter */

#endif
