/* SPDX-License-Identifier: GPL-2.0 */
/* Next hop of a backend, resolved per backend rather than per packet: a
 * per-CPU cache (lb_nexthops, indexed by backend id) holds the egress
 * interface and MAC addresses that bpf_fib_lookup found, and is refreshed
 * when older than LB_NEXTHOP_MAX_AGE_NS, so a route or neighbour change is
 * followed within a second. A full bpf_fib_lookup costs ~48 ns here; the
 * cache hit costs one per-CPU array lookup and a clock read.
 *
 * Returns the BPF_FIB_LKUP_RET_* of the (cached) lookup; on SUCCESS *out
 * points at the cache entry, whose mtu is the route's MTU: the caller checks every packet against
 * it (docs/design.md, "Path MTU"); a too-big packet never fails the lookup itself (it used to be
 * counted as fib). Only SUCCESS results are cached: a missing neighbour is asked again on the next
 * packet (the packet itself is dropped, no_neigh).
 */
#ifndef XDPLB_BPF_LB_NEXTHOP_H
#define XDPLB_BPF_LB_NEXTHOP_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lb_maps.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

static __always_inline int lb_nexthop(struct xdp_md *ctx, __u32 backend_id,
				      const struct lb_backend *be, const struct lb_config *cfg,
				      __u64 now, struct lb_nexthop **out)
{
	struct bpf_fib_lookup fib = {};
	struct lb_nexthop *nh;
	__u32 mtu;
	int rc;

	nh = bpf_map_lookup_elem(&lb_nexthops, &backend_id);
	if (!nh)
		return BPF_FIB_LKUP_RET_NOT_FWDED;
	if (nh->resolved_ns && nh->fib_status == BPF_FIB_LKUP_RET_SUCCESS &&
	    now - nh->resolved_ns < LB_NEXTHOP_MAX_AGE_NS) {
		*out = nh;
		return BPF_FIB_LKUP_RET_SUCCESS;
	}

	fib.ifindex = ctx->ingress_ifindex;
	if (be->family == LB_FAMILY_V4) {
		fib.family = AF_INET;
		__builtin_memcpy(&fib.ipv4_src, cfg->tunnel_src_v4, 4);
		__builtin_memcpy(&fib.ipv4_dst, be->addr, 4);
	} else {
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, cfg->tunnel_src_v6, 16);
		__builtin_memcpy(fib.ipv6_dst, be->addr, 16);
	}
	/* Asked for a 65,535-byte packet, the lookup answers FRAG_NEEDED with
	 * the route's MTU in mtu_result (the documented use since 5.12); the
	 * second lookup, with that size, fills the MACs. Two lookups per
	 * refresh, i.e. per backend and CPU every LB_NEXTHOP_MAX_AGE_NS. */
	fib.tot_len = 0xffff;
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	mtu = 0xffff;
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
		mtu = fib.mtu_result;
		fib.ifindex = ctx->ingress_ifindex;
		fib.tot_len = mtu;
		rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	}
	nh->fib_status = rc;
	nh->resolved_ns = now;
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		__builtin_memcpy(nh->dmac, fib.dmac, 6);
		__builtin_memcpy(nh->smac, fib.smac, 6);
		nh->ifindex = fib.ifindex;
		nh->mtu = mtu;
		*out = nh;
	}
	return rc;
}

#endif
