// SPDX-License-Identifier: GPL-2.0
/* Line-rate benchmark programs (perf/bench_linerate.cpp), never installed.
 *
 * lr_gen runs under BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES on
 * the generator's veth: every run rewrites the frame's tuple (one of `pool`
 * flows at random, or in order while filling the table, or with
 * syn_per_64k / 65536 chance a SYN of a new tuple) and returns XDP_TX, so
 * the frame leaves for the peer, where xdp_balancer (or lr_reflect, the
 * do-nothing ceiling) runs in native mode. Their XDP_TX frames come back to
 * lr_count on the generator's veth, which counts them and drops them:
 * `tunnel` are IPv4-in-IPv4 packets from the tunnel source to one of the
 * configured backends, `other` every other IPv4 frame (what the reflector
 * sends back); frames of other types (the kernel's own IPv6 neighbour
 * discovery on the veth) are not counted.
 *
 * Lower bounds in xdp_balancer's place (perf/README.md, "bench_linerate"),
 * on the balancer's maps (every map of lb_maps.h is the balancer's, by fd):
 * lr_step_* are bench_bound.h's steps, from the tunnel alone
 * (lr_step_encap) to all of xdp_balancer's but its last checks; lr_bound is
 * that tunnel plus one read of the flow's set in the balancer's flow table,
 * the one memory access a flow table costs every packet, with the backend
 * taken from that line so the load cannot be left out; lr_bound4 reads
 * every way of the set (its four cache lines), as a scan that misses does. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "bench_bound.h"

#define LR_BACKENDS 8
#define LR_HDR 56

struct lr_state {
	__u32 pool;	   /* flows drawn from (at least 1) */
	__u32 fill;	   /* nonzero: tuples 0, 1, 2, ... as SYNs */
	__u32 syn_per_64k; /* share of SYNs of new tuples */
	__u32 counter;	   /* frames generated */
	__u64 rng;	   /* xorshift state */
	__u64 syns;	   /* SYNs of new tuples generated */
	__u32 tunnel_src;  /* outer source lr_count expects */
	__u32 backends[LR_BACKENDS];
	__u32 pad;
	/* The frame's first LR_HDR bytes: the balancer encapsulates a live
	 * frame in place, and its page comes back to the generator so changed: hence
	 * every run writes the headers again. */
	__u64 hdr[LR_HDR / 8];
};

struct lr_counts {
	__u64 tunnel;
	__u64 other;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lr_state);
} lr_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lr_counts);
} lr_counts SEC(".maps");

/* IPv4 without options, TCP: source address's last 2 bytes at 28, source
 * port at 34, flags at 47. */
SEC("xdp")
int lr_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0, idx;
	struct lr_state *st = bpf_map_lookup_elem(&lr_state, &zero);
	__u8 syn = 0;
	__u64 x;

	if (!st || data + LR_HDR > data_end)
		return XDP_ABORTED;
#pragma unroll
	for (int i = 0; i < LR_HDR / 8; i++)
		((__u64 *)data)[i] = st->hdr[i];
	x = st->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	st->rng = x;
	if (st->fill) {
		idx = st->counter;
		syn = 1;
	} else if (((__u32)x & 0xffff) < st->syn_per_64k) {
		idx = 0x80000000U | (__u32)st->syns++;
		syn = 1;
	} else {
		idx = (__u32)((x >> 32) % (st->pool ? st->pool : 1));
	}
	st->counter++;
	*(__u16 *)(data + 28) = (__u16)(idx >> 16);
	*(__u16 *)(data + 34) = (__u16)idx;
	*(__u8 *)(data + 47) = syn ? 0x02 : 0x10;
	return XDP_TX;
}

SEC("xdp")
int lr_reflect(struct xdp_md *ctx) { return XDP_TX; }

/* The tunnel of BENCH_BOUND_ENCAP (lb_encap_v4 to a backend of lb_backends,
 * ids 1..8) with no parser: the tuple is read at fixed offsets (IPv4, no
 * options), for the flow's set. ways: 1 reads way 0's backend id, 4 every
 * way's, and the backend is picked from them. */
static __always_inline int lr_tunnel(struct xdp_md *ctx, const int ways)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0, id, idx;
	struct lb_config *cfg = bpf_map_lookup_elem(&lb_config, &zero);
	struct iphdr *ih = data + sizeof(struct ethhdr);
	struct lb_pkt p = {};
	struct lb_flow_set *set;
	struct lb_backend *be;

	if (!cfg || (void *)(ih + 1) + 4 > data_end || ih->ihl != 5)
		return XDP_DROP;
	p.key_words[0] = ih->saddr;
	p.key_words[2] = ih->daddr;
	p.key_words[4] = LB_KEY_TAIL(*(__u32 *)(ih + 1), ih->protocol, LB_FAMILY_V4);
	p.l2_len = sizeof(struct ethhdr);
	p.ip_len = bpf_ntohs(ih->tot_len);
	idx = lb_flow_set_index(lb_flow_hash(&p.key, cfg->flow_secret), cfg->flow_sets);
	set = bpf_map_lookup_elem(&lb_flows, &idx);
	if (!set)
		return XDP_DROP;
	id = set->way[0].backend_id;
	if (ways > 1)
		id += set->way[1].backend_id + set->way[2].backend_id + set->way[3].backend_id;
	id = 1 + ((id - 1) & (LR_BACKENDS - 1));
	be = bpf_map_lookup_elem(&lb_backends, &id);
	if (!be || lb_encap_v4(ctx, &p, be, cfg))
		return XDP_DROP;
	return XDP_TX;
}

SEC("xdp")
int lr_bound(struct xdp_md *ctx) { return lr_tunnel(ctx, 1); }

SEC("xdp")
int lr_bound4(struct xdp_md *ctx) { return lr_tunnel(ctx, 4); }

#define LR_STEP(name, step)                                                                        \
	SEC("xdp")                                                                                 \
	int name(struct xdp_md *ctx) { return bench_bound(ctx, step, 1); }

LR_STEP(lr_step_encap, BENCH_BOUND_ENCAP)
LR_STEP(lr_step_parse, BENCH_BOUND_PARSE)
LR_STEP(lr_step_hash, BENCH_BOUND_HASH)
LR_STEP(lr_step_flow, BENCH_BOUND_FLOW)
LR_STEP(lr_step_vip, BENCH_BOUND_VIP)
LR_STEP(lr_step_hop, BENCH_BOUND_HOP)
LR_STEP(lr_step_count, BENCH_BOUND_COUNT)

SEC("xdp")
int lr_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct lr_counts *c = bpf_map_lookup_elem(&lr_counts, &zero);
	struct lr_state *st = bpf_map_lookup_elem(&lr_state, &zero);
	struct ethhdr *eth = data;
	struct iphdr *oh = data + sizeof(*eth);
	int ok = 0;

	if (!c || !st)
		return XDP_DROP;
	if ((void *)(oh + 1) <= data_end && eth->h_proto == bpf_htons(ETH_P_IP) &&
	    oh->protocol == IPPROTO_IPIP && oh->saddr == st->tunnel_src) {
#pragma unroll
		for (int i = 0; i < LR_BACKENDS; i++)
			if (oh->daddr == st->backends[i])
				ok = 1;
	}
	if (ok)
		c->tunnel++;
	else if ((void *)(eth + 1) <= data_end && eth->h_proto == bpf_htons(ETH_P_IP))
		c->other++;
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
