/* SPDX-License-Identifier: GPL-2.0 */
/* The balancer's steps, as one inline function so the benchmark wrapper
 * (bpf/bench_wrapper.bpf.c) runs exactly the same code. */
#ifndef XDPLB_BPF_LB_BALANCER_H
#define XDPLB_BPF_LB_BALANCER_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lb_clock.h"
#include "lb_counters.h"
#include "lb_echo.h"
#include "lb_encap.h"
#include "lb_flows.h"
#include "lb_hash.h"
#include "lb_maps.h"
#include "lb_mss.h"
#include "lb_nexthop.h"
#include "lb_parsing.h"
#include "lb_too_big.h"
#include "lb_vips.h"
#include "lb_shared.h"

/* Fragments (docs/design.md, "Fragments"): a first fragment carries the
 * TCP/UDP header and is matched and hashed with its real ports, which it
 * records under (source, destination, IP id, protocol) in lb_frags; a later
 * fragment takes the ports of its first, so every fragment of a datagram
 * reaches the backend its flow reaches. A later fragment whose first was
 * not seen (reordered, or the entry evicted) cannot be placed: dropped. */
static __always_inline void lb_frag_key(const struct lb_pkt *p, struct lb_frag_key *k)
{
	__u64 *w = (__u64 *)k;

	w[0] = p->key_words[0];
	w[1] = p->key_words[1];
	w[2] = p->key_words[2];
	w[3] = p->key_words[3];
	w[4] = (__u64)p->frag_id | (__u64)p->frag_id_hi << 16 | (__u64)p->key.proto << 32 |
	       (__u64)p->key.family << 40;
}

/* VIP of the packet (contract: see lb_vips in lb_shared.h): the port-0 entry
 * of the address+protocol first, so traffic to other addresses costs one
 * lookup; then the port VIPs it lists, and the exact port only when the
 * address has more port VIPs than it lists. A packet to a VIP address that
 * no VIP takes (another port or protocol) is dropped, never passed: the
 * kernel would route it back towards the router that sent it
 * (docs/design.md, "No forwarding loops"). p->mss_clamp gets the VIP's
 * clamp for a TCP SYN (docs/design.md, "MSS clamp"), else stays 0. */
static __always_inline int lb_match_vip(void *data, void *data_end, struct lb_pkt *p,
					const struct lb_config *cfg, __u32 *vip_id)
{
	struct lb_vip_value *v0, *v;
	int rc;

	/* A VIP address has a port-0 entry for both TCP and UDP (an alias for
	 * a protocol it has no VIP of), so a miss is a non-VIP address: one
	 * lookup, in the VIP index (docs/design.md, "Hot path", "VIP index"). */
	v0 = lb_vip_port0(p, p->key.proto, cfg);
	if (!v0)
		return LB_R_PASS_NOT_VIP;
	if (p->later_frag) {
		struct lb_frag_key fk;
		__u32 *ports;

		lb_frag_key(p, &fk);
		ports = bpf_map_lookup_elem(&lb_frags, &fk);
		if (!ports)
			return LB_R_DROP_FRAGMENT;
		p->key_words[4] = LB_KEY_TAIL(*ports, p->key.proto, p->key.family);
	} else if (!p->icmp) { /* an ICMP error carries the quoted ports */
		rc = lb_parse_l4(data, data_end, p);
		if (rc >= 0)
			return rc;
	}
	if (v0->flags & LB_VIP_F_HAS_PORTS) {
#pragma unroll
		for (int i = 0; i < LB_VIP_INLINE_PORTS; i++) {
			if (v0->port_vip_ids[i] && v0->ports[i] == p->key.dport) {
				*vip_id = v0->port_vip_ids[i];
				/* Its clamp is in its exact entry: read for
				 * SYNs only, and only when one of the listed
				 * port VIPs has one. */
				if (p->syn && (v0->flags & LB_VIP_F_PORT_CLAMP)) {
					v = lb_vip_lookup(p, p->key.proto, p->key.dport);
					if (v && v->vip_id == *vip_id)
						p->mss_clamp = v->mss_clamp;
				}
				goto found;
			}
		}
	}
	if (v0->flags & LB_VIP_F_MORE_PORTS) {
		v = lb_vip_lookup(p, p->key.proto, p->key.dport);
		if (v) {
			*vip_id = v->vip_id;
			if (p->syn)
				p->mss_clamp = v->mss_clamp;
			goto found;
		}
	}
	if (v0->flags & LB_VIP_F_ALIAS)
		return LB_R_DROP_VIP_UNHANDLED;
	*vip_id = v0->vip_id;
	if (p->syn)
		p->mss_clamp = v0->mss_clamp;
found:
	if (p->is_frag && !p->later_frag) {
		struct lb_frag_key fk;
		__u32 ports = (__u32)p->key_words[4];

		lb_frag_key(p, &fk);
		bpf_map_update_elem(&lb_frags, &fk, &ports, BPF_ANY);
	}
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
	__u32 vip_id = 0, backend_id = 0, hash = 0, zero = 0, overhead;
	__u64 now = 0, bytes;
	int rc, new_flow = 0, have_hash = 0;

	p.frame_len = data_end - data;
	bytes = p.frame_len;
	rc = lb_parse_l3(data, data_end, &p);
	if (rc >= 0) {
		/* Another protocol to a VIP address: dropped, not passed
		 * (lb_match_vip says why); neighbour discovery excepted. */
		if (rc == LB_R_PASS_OTHER_PROTO && p.icmp != LB_ICMP_ND && lb_is_vip_address(&p))
			rc = LB_R_DROP_VIP_UNHANDLED;
		return lb_exit(rc, bytes,
			       rc == LB_R_PASS_NOT_IP || rc == LB_R_PASS_OTHER_PROTO ? XDP_PASS
										     : XDP_DROP);
	}
	if (p.icmp == LB_ICMP_ECHO)
		return lb_echo_reply(ctx, &p, bytes);
	cfg = bpf_map_lookup_elem(&lb_config, &zero);
	if (!cfg)
		return lb_exit(LB_R_DROP_INTERNAL, bytes, XDP_DROP);
	rc = lb_match_vip(data, data_end, &p, cfg, &vip_id);
	if (rc >= 0)
		return lb_exit(rc, bytes, rc == LB_R_PASS_NOT_VIP ? XDP_PASS : XDP_DROP);
	/* A tagged frame would leave with its tag whatever VLAN the route to
	 * the backend names: only when the operator says the backends are on
	 * that VLAN (LB_CFG_F_VLAN_KEEP). Checked here, where VIP packets only
	 * arrive: untagged and non-VIP traffic pays nothing. Echo replies and
	 * too-big answers go back where the request came from, tag and all. */
	if (p.l2_len != sizeof(struct ethhdr) && !(cfg->flags & LB_CFG_F_VLAN_KEEP))
		return lb_exit(LB_R_PASS_VLAN, bytes, XDP_PASS);
	/* The MSS clamp rewrites the TCP header in place (no exit after this
	 * point passes the packet to the kernel). Here, with its value and
	 * result in p on the stack, not later next to the encapsulation: there
	 * the live values cost established packets ~4 ns of spills
	 * (perf/README.md). A fragmented SYN is left alone: a first fragment
	 * need not hold the whole TCP header, and SYNs are not fragmented in
	 * practice. */
	if (p.mss_clamp && !p.is_frag && p.key.proto == IPPROTO_TCP)
		p.clamped = lb_mss_clamp(ctx, p.l2_len + p.l3_hdr_len, p.ip_len - p.l3_hdr_len,
					 p.mss_clamp) == 1;

	/* The flow-table set comes from a hash keyed with the table's own
	 * secret (lb_config.flow_secret), the ring slot and the IPv6 flow
	 * label from the flow hash keyed with the shared hash_seed
	 * (contract 1): crafted tuples cannot aim at a chosen set
	 * (docs/design.md, "Flow table"). The packet's set is scanned for
	 * every packet: a known flow of this VIP is a hit unless the packet
	 * is a SYN (always a new flow: it takes the ring), and a new flow's
	 * entry goes to the way the scan picked. */
	if (cfg->flow_sets) {
		__u32 set_idx =
		    lb_flow_set_index(lb_flow_hash(&p.key, cfg->flow_secret), cfg->flow_sets);
		struct lb_flow_set *set = bpf_map_lookup_elem(&lb_flows, &set_idx);

		if (set)
			fe = lb_flow_find(set, &p, &victim);
	}
	if (fe && !p.syn) {
		__u32 id;

		now = lb_now(lb_percpu());
		if (lb_flow_read(fe, &p, &id)) {
			be = bpf_map_lookup_elem(&lb_backends, &id);
			/* A backend of another VIP (the entry outlived a VIP
			 * whose address, port or protocol another VIP now has)
			 * is a miss. Ages are signed: the CPU that wrote
			 * last_seen may be a tick ahead of this one (lb_clock.h). */
			if (be && be->vip_id == vip_id && lb_usable(be) &&
			    (p.key.proto != IPPROTO_UDP ||
			     (__s64)(now - fe->last_seen_ns) < (__s64)LB_UDP_FLOW_TIMEOUT_NS)) {
				backend_id = id;
				if ((__s64)(now - fe->last_seen_ns) > (__s64)LB_FLOW_REFRESH_NS)
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

		hash = lb_flow_hash(&p.key, cfg->hash_seed);
		have_hash = 1;
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
			now = lb_now(lb_percpu());
		/* An ICMP error follows its flow (or the ring) but makes no
		 * flow. */
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
		overhead = sizeof(struct iphdr);
	} else {
		if (!(cfg->flags & LB_CFG_F_TUNNEL_V6))
			return lb_exit(LB_R_DROP_NO_TUNNEL, bytes, XDP_DROP);
		overhead = sizeof(struct ipv6hdr);
	}
	/* The outer length field holds 65,535 at most (IPv4 total length,
	 * IPv6 payload length): a longer packet would leave with a length
	 * that lies. */
	if (p.ip_len + (be->family == LB_FAMILY_V4 ? overhead : 0) > 0xffff)
		return lb_exit(LB_R_DROP_TOO_LONG, bytes, XDP_DROP);

	if (!now)
		now = lb_now(lb_percpu());
	rc = lb_nexthop(ctx, backend_id, be, cfg, now, &nh);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return lb_exit(LB_R_DROP_NO_NEIGH, bytes, XDP_DROP);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS || !nh)
		return lb_exit(LB_R_DROP_FIB, bytes, XDP_DROP);
	/* Every packet is checked against the route's MTU once encapsulated
	 * (docs/design.md, "Path MTU"). */
	if (p.ip_len + overhead > nh->mtu && nh->mtu) {
		__u32 dev_mtu = 0;

		/* Larger than the ingress interface allows: a GRO/GSO
		 * aggregate of generic mode, not a packet a client sent. */
		if (bpf_check_mtu(ctx, 0, &dev_mtu, 0, 0) >= 0 && dev_mtu && p.ip_len > dev_mtu)
			return lb_exit(LB_R_DROP_GSO, bytes, XDP_DROP);
		return lb_send_too_big(ctx, &p, nh->mtu - overhead, cfg, now, bytes);
	}

	/* Trailing bytes past the IP length (Ethernet padding) are not part of
	 * the inner packet. */
	if (p.l2_len + p.ip_len < p.frame_len) {
		if (bpf_xdp_adjust_tail(ctx, (int)(p.l2_len + p.ip_len) - (int)p.frame_len))
			return lb_exit(LB_R_DROP_ENCAP, bytes, XDP_DROP);
	}
	if (be->family == LB_FAMILY_V4) {
		rc = lb_encap_v4(ctx, &p, be, cfg);
	} else {
		if (!have_hash)
			hash = lb_flow_hash(&p.key, cfg->hash_seed);
		rc = lb_encap_v6(ctx, &p, be, cfg, hash);
	}
	if (rc)
		return lb_exit(LB_R_DROP_ENCAP, bytes, XDP_DROP);

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + sizeof(struct ethhdr) > data_end)
		return lb_exit(LB_R_DROP_INTERNAL, bytes, XDP_DROP);
	__builtin_memcpy(((struct ethhdr *)data)->h_dest, nh->dmac, 6);
	__builtin_memcpy(((struct ethhdr *)data)->h_source, nh->smac, 6);
	if (nh->ifindex == ctx->ingress_ifindex) {
		rc = XDP_TX;
	} else {
		/* An egress that is not in lb_tx_ports is dropped: the frame
		 * is addressed to the next hop, the kernel would drop it as
		 * another host's. */
		rc = bpf_redirect_map(&lb_tx_ports, nh->ifindex, XDP_DROP);
		if (rc != XDP_REDIRECT)
			return lb_exit(LB_R_DROP_NO_TXPORT, bytes, XDP_DROP);
	}

	vs = bpf_map_lookup_elem(&lb_vip_stats, &vip_id);
	if (vs) {
		vs->packets++;
		vs->bytes += bytes;
		vs->new_flows += new_flow;
		vs->icmp_too_big += p.icmp == LB_ICMP_TOO_BIG;
		vs->mss_clamped += p.clamped;
	}
	lb_count(&lb_backend_stats, backend_id, bytes);
	return lb_exit(rc == XDP_TX ? LB_R_TX : LB_R_REDIRECT, bytes, rc);
}

#endif
