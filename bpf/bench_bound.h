/* SPDX-License-Identifier: GPL-2.0 */
/* Benchmark-only (perf/bench_balancer.cpp, perf/bench_linerate.cpp), never
 * attached by the daemon. */
#ifndef XDPLB_BPF_BENCH_BOUND_H
#define XDPLB_BPF_BENCH_BOUND_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lb_balancer.h"

/* Lower bounds (perf/README.md, "Lower bounds"): only the steps every
 * IP-in-IP balancer must take for an established packet, from
 * xdp_balancer's own code, added one at a time:
 *   BENCH_BOUND_ENCAP  grow the front, move the Ethernet header, write the
 *                      outer header (lb_encap_v4/v6) to one backend: the
 *                      least a tunnel costs;
 *   BENCH_BOUND_PARSE  + the parser (lb_parse_l3, lb_parse_l4);
 *   BENCH_BOUND_HASH   + the flow hash, backend 1 + hash % 8 of one family;
 *   BENCH_BOUND_FLOW   + the flow table: the set of the keyed hash, the
 *                      scan, the check word, the entry's backend (a miss
 *                      aborts, so a figure is a hit);
 * and then xdp_balancer's own further steps, to see what each costs:
 *   BENCH_BOUND_VIP    + the VIP match (lb_match_vip, which takes over the
 *                      parser's L4 step) and the entry's backend belonging
 *                      to that VIP;
 *   BENCH_BOUND_HOP    + the clock, the next-hop cache, the MACs;
 *   BENCH_BOUND_COUNT  + the VIP's, the backend's and the reason's counters.
 * What xdp_balancer adds to the last is its remaining checks (backend state,
 * UDP age, tunnel family, lengths, MTU, VLAN, echo, MSS clamp).
 * A flow-table miss aborts, so that bench_balancer's figure is a hit,
 * unless miss_ok (bench_linerate, whose 1,000,000 flows do not all fit):
 * then the backend stays the hash's. */
#define BENCH_BOUND_ENCAP 0
#define BENCH_BOUND_PARSE 1
#define BENCH_BOUND_HASH 2
#define BENCH_BOUND_FLOW 3
#define BENCH_BOUND_VIP 4
#define BENCH_BOUND_HOP 5
#define BENCH_BOUND_COUNT 6

static __always_inline int bench_bound(struct xdp_md *ctx, const int step, const int miss_ok)
{
	__u32 zero = 0, id, hash = 0, vip_id = 0;
	struct lb_pkt p = {};
	struct lb_config *cfg;
	struct lb_backend *be;
	struct lb_nexthop *nh = 0;
	struct lb_vip_stats *vs;
	void *data, *data_end;
	__u64 bytes;

	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!cfg)
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (step >= BENCH_BOUND_PARSE) {
		p.frame_len = data_end - data;
		if (lb_parse_l3(data, data_end, &p) >= 0)
			return XDP_ABORTED;
		if (step >= BENCH_BOUND_VIP ? lb_match_vip(data, data_end, &p, cfg, &vip_id) >= 0
					    : lb_parse_l4(data, data_end, &p) >= 0)
			return XDP_ABORTED;
	} else {
		/* What the parser finds in the benchmarks' frames (no VLAN
		 * tag, no padding). */
		struct ethhdr *eth = data;

		if ((void *)(eth + 1) > data_end)
			return XDP_ABORTED;
		p.l2_len = sizeof(struct ethhdr);
		p.ip_len = (__u32)(data_end - data) - sizeof(struct ethhdr);
		p.key.family = eth->h_proto == bpf_htons(ETH_P_IP) ? LB_FAMILY_V4 : LB_FAMILY_V6;
	}
	id = p.key.family == LB_FAMILY_V4 ? 1 : 11;
	if (step >= BENCH_BOUND_HASH) {
		hash = lb_flow_hash(&p.key, cfg->hash_seed);
		id += hash % 8;
	}
	if (step >= BENCH_BOUND_FLOW) {
		__u32 set_idx =
		    lb_flow_set_index(lb_flow_hash(&p.key, cfg->flow_secret), cfg->flow_sets);
		struct lb_flow_set *set = bpf_map_lookup_elem(&lb_flows, &set_idx);
		struct lb_flow_entry *fe, *victim = 0;

		if (!set)
			return XDP_ABORTED;
		fe = lb_flow_find(set, &p, &victim);
		if ((!fe || !lb_flow_read(fe, &p, &id)) && !miss_ok)
			return XDP_ABORTED;
	}
	be = bpf_map_lookup_elem(&lb_backends, &id);
	if (!be || (step >= BENCH_BOUND_VIP && be->vip_id != vip_id))
		return XDP_ABORTED;
	if (step >= BENCH_BOUND_HOP &&
	    (lb_nexthop(ctx, id, be, cfg, lb_now(lb_percpu()), &nh) != BPF_FIB_LKUP_RET_SUCCESS ||
	     !nh))
		return XDP_ABORTED;
	bytes = p.frame_len;
	if (p.key.family == LB_FAMILY_V4 ? lb_encap_v4(ctx, &p, be, cfg)
					 : lb_encap_v6(ctx, &p, be, cfg, hash))
		return XDP_ABORTED;
	if (step >= BENCH_BOUND_HOP) {
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		if (data + sizeof(struct ethhdr) > data_end)
			return XDP_ABORTED;
		__builtin_memcpy(((struct ethhdr *)data)->h_dest, nh->dmac, 6);
		__builtin_memcpy(((struct ethhdr *)data)->h_source, nh->smac, 6);
	}
	if (step >= BENCH_BOUND_COUNT) {
		vs = bpf_map_lookup_elem(&lb_vip_stats, &vip_id);
		if (vs) {
			vs->packets++;
			vs->bytes += bytes;
		}
		lb_count(&lb_backend_stats, id, bytes);
		return lb_exit(LB_R_TX, bytes, XDP_TX);
	}
	return XDP_TX;
}

#endif
