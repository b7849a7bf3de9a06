/* SPDX-License-Identifier: GPL-2.0 */
/* The balancer's steps, as one inline function so the benchmark wrapper
 * (bpf/bench_wrapper.bpf.c) runs exactly the same code. */
#ifndef XDPLB_BPF_LB_BALANCER_H
#define XDPLB_BPF_LB_BALANCER_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lb_counters.h"
#include "lb_echo.h"
#include "lb_encap.h"
#include "lb_flows.h"
#include "lb_hash.h"
#include "lb_maps.h"
#include "lb_nexthop.h"
#include "lb_parsing.h"
#include "lb_vips.h"
#include "lb_shared.h"

/* VIP of the packet (contract: see lb_vips in lb_shared.h): the port-0 entry
 * of the address+protocol first, so traffic to other addresses costs one
 * lookup; then the port VIPs it lists, and the exact port only when the
 * address has more port VIPs than it lists. IPv4
 * fragments, first and later, go to the port-0 entry's fragment VIP and hash
 * with ports 0, so every fragment of a datagram reaches the same backend. */
static __always_inline int lb_match_vip(void *data, void *data_end, struct lb_pkt *p, __u32 *vip_id)
{
	struct lb_vip_value *v0, *v;
	int rc;

	v0 = lb_vip_lookup(p, p->key.proto, 0);
	if (!v0)
		return LB_R_PASS_NOT_VIP;
	if (p->is_frag) {
		*vip_id = v0->frag_vip_id;
		return *vip_id ? -1 : LB_R_DROP_FRAGMENT;
	}
	if (!p->icmp) { /* an ICMP too-big message carries the quoted ports */
		rc = lb_parse_l4(data, data_end, p);
		if (rc >= 0)
			return rc;
	}
	if (v0->flags & LB_VIP_F_HAS_PORTS) {
#pragma unroll
		for (int i = 0; i < LB_VIP_INLINE_PORTS; i++) {
			if (v0->port_vip_ids[i] && v0->ports[i] == p->key.dport) {
				*vip_id = v0->port_vip_ids[i];
				return -1;
			}
		}
	}
	if (v0->flags & LB_VIP_F_MORE_PORTS) {
		v = lb_vip_lookup(p, p->key.proto, p->key.dport);
		if (v) {
			*vip_id = v->vip_id;
			return -1;
		}
	}
	if (v0->flags & LB_VIP_F_ALIAS)
		return LB_R_PASS_NOT_VIP;
	*vip_id = v0->vip_id;
	return -1;
}

static __always_inline int lb_usable(const struct lb_backend *be)
{
	return be->state == LB_BACKEND_UP || be->state == LB_BACKEND_DRAINING;
}

static __always_inline int lb_balance(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct lb_pkt p = {};
	struct lb_config *cfg;
	struct lb_backend *be = 0;
	struct lb_flow_entry *fe = 0, *victim = 0;
	struct lb_nexthop *nh = 0;
	struct lb_vip_stats *vs;
	__u32 vip_id = 0, backend_id = 0, hash = 0, zero = 0;
	__u64 now = 0, bytes;
	int rc, new_flow = 0;

	p.frame_len = data_end - data;
	bytes = p.frame_len;
	rc = lb_parse_l3(data, data_end, &p);
	if (rc >= 0)
		return lb_exit(rc, bytes, rc == LB_R_DROP_MALFORMED ? XDP_DROP : XDP_PASS);
	if (p.icmp == LB_ICMP_ECHO)
		return lb_echo_reply(ctx, &p, bytes);
	rc = lb_match_vip(data, data_end, &p, &vip_id);
	if (rc >= 0)
		return lb_exit(rc, bytes, rc == LB_R_PASS_NOT_VIP ? XDP_PASS : XDP_DROP);

	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!cfg)
		return lb_exit(LB_R_DROP_INTERNAL, bytes, XDP_DROP);

	/* The flow hash picks the ring slot, the flow-table set and the IPv6
	 * flow label. The packet's set is scanned for every packet: a known
	 * flow is a hit unless the packet is a SYN (always a new flow: it
	 * takes the ring), and a new flow's entry goes to the way the scan
	 * picked. */
	hash = lb_flow_hash(&p.key, cfg->hash_seed);
	if (cfg->flow_sets) {
		__u32 set_idx = lb_flow_set_index(hash, cfg->flow_sets);
		struct lb_flow_set *set = bpf_map_lookup_elem(&lb_flows, &set_idx);

		if (set)
			fe = lb_flow_find(set, &p, &victim);
	}
	if (fe && !p.syn) {
		__u32 id;

		now = bpf_ktime_get_coarse_ns();
		if (lb_flow_read(fe, &p, &id)) {
			be = bpf_map_lookup_elem(&lb_backends, &id);
			if (be && lb_usable(be) &&
			    (p.key.proto != IPPROTO_UDP ||
			     now - fe->last_seen_ns < LB_UDP_FLOW_TIMEOUT_NS)) {
				backend_id = id;
				if (now - fe->last_seen_ns > LB_FLOW_REFRESH_NS)
					fe->last_seen_ns = now;
			}
		}
	}
	if (!backend_id) {
		/* The live buffer of the VIP's two (lb_shared.h): the selector
		 * is read once, and M and the slot come from that one buffer,
		 * so a packet sees one whole ring (docs/design.md, contract 2). */
		struct lb_ring_sel *sel = bpf_map_lookup_elem(&lb_ring_sel, &vip_id);
		__u32 idx, slot, m;
		struct lb_ring_elem *e;
		void *ring;

		if (!sel)
			return lb_exit(LB_R_DROP_NO_BACKEND, bytes, XDP_DROP);
		idx = LB_RING_INDEX(vip_id, *(volatile __u32 *)&sel->active & 1);
		ring = bpf_map_lookup_elem(&lb_rings, &idx);
		if (!ring)
			return lb_exit(LB_R_DROP_NO_BACKEND, bytes, XDP_DROP);
		idx = LB_RING_SIZE_SLOT / LB_RING_SLOTS_PER_ELEM;
		e = bpf_map_lookup_elem(ring, &idx);
		if (!e)
			return lb_exit(LB_R_DROP_NO_BACKEND, bytes, XDP_DROP);
		m = e->slot[LB_RING_SIZE_SLOT % LB_RING_SLOTS_PER_ELEM];
		if (m == 0)
			return lb_exit(LB_R_DROP_NO_BACKEND, bytes, XDP_DROP);
		slot = LB_RING_HEADER_SLOTS + hash % m;
		idx = slot / LB_RING_SLOTS_PER_ELEM;
		e = bpf_map_lookup_elem(ring, &idx);
		if (!e)
			return lb_exit(LB_R_DROP_NO_BACKEND, bytes, XDP_DROP);
		backend_id = e->slot[slot % LB_RING_SLOTS_PER_ELEM];
		if (backend_id == LB_ID_NONE)
			return lb_exit(LB_R_DROP_NO_BACKEND, bytes, XDP_DROP);
		be = bpf_map_lookup_elem(&lb_backends, &backend_id);
		if (!be || be->state != LB_BACKEND_UP)
			return lb_exit(LB_R_DROP_NO_BACKEND, bytes, XDP_DROP);
		if (!now)
			now = bpf_ktime_get_coarse_ns();
		/* An ICMP too-big message follows its flow (or the ring) but
		 * makes no flow. */
		if (victim && !p.icmp)
			lb_flow_insert(victim, fe != 0, &p, backend_id, now,
				       cfg->flow_insert_limit);
		new_flow = !p.icmp;
	}
	if (!be)
		return lb_exit(LB_R_DROP_INTERNAL, bytes, XDP_DROP);

	/* The outer family follows the backend; an IPv6 packet cannot ride IPv4. */
	if (be->family == LB_FAMILY_V4) {
		if (p.key.family != LB_FAMILY_V4)
			return lb_exit(LB_R_DROP_NO_TUNNEL, bytes, XDP_DROP);
		if (!(cfg->flags & LB_CFG_F_TUNNEL_V4))
			return lb_exit(LB_R_DROP_NO_TUNNEL, bytes, XDP_DROP);
	} else if (!(cfg->flags & LB_CFG_F_TUNNEL_V6)) {
		return lb_exit(LB_R_DROP_NO_TUNNEL, bytes, XDP_DROP);
	}

	if (!now)
		now = bpf_ktime_get_coarse_ns();
	rc = lb_nexthop(
	    ctx, backend_id, be, cfg,
	    p.ip_len + (be->family == LB_FAMILY_V4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr)),
	    now, &nh);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return lb_exit(LB_R_DROP_FIB, bytes, XDP_DROP);

	/* Trailing bytes past the IP length (Ethernet padding) are not part of
	 * the inner packet. */
	if (p.l2_len + p.ip_len < p.frame_len) {
		if (bpf_xdp_adjust_tail(ctx, (int)(p.l2_len + p.ip_len) - (int)p.frame_len))
			return lb_exit(LB_R_DROP_ENCAP, bytes, XDP_DROP);
	}
	if (be->family == LB_FAMILY_V4)
		rc = lb_encap_v4(ctx, &p, be, cfg);
	else
		rc = lb_encap_v6(ctx, &p, be, cfg, hash);
	if (rc)
		return lb_exit(LB_R_DROP_ENCAP, bytes, XDP_DROP);

	vs = bpf_map_lookup_elem(&lb_vip_stats, &vip_id);
	if (vs) {
		vs->packets++;
		vs->bytes += bytes;
		vs->new_flows += new_flow;
		vs->icmp_too_big += p.icmp == LB_ICMP_TOO_BIG;
	}
	lb_count(&lb_backend_stats, backend_id, bytes);

	/* No neighbour entry yet: the kernel forwards the encapsulated packet,
	 * resolving the neighbour on the way; later packets take the fast path. */
	if (!nh)
		return lb_exit(LB_R_PASS_NO_NEIGH, bytes, XDP_PASS);

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + sizeof(struct ethhdr) > data_end)
		return lb_exit(LB_R_DROP_INTERNAL, bytes, XDP_DROP);
	__builtin_memcpy(((struct ethhdr *)data)->h_dest, nh->dmac, 6);
	__builtin_memcpy(((struct ethhdr *)data)->h_source, nh->smac, 6);
	if (nh->ifindex == ctx->ingress_ifindex)
		return lb_exit(LB_R_TX, bytes, XDP_TX);
	rc = bpf_redirect_map(&lb_tx_ports, nh->ifindex, XDP_PASS);
	if (rc == XDP_REDIRECT)
		return lb_exit(LB_R_REDIRECT, bytes, XDP_REDIRECT);
	return lb_exit(LB_R_PASS_NO_TXPORT, bytes, XDP_PASS);
}

#endif
