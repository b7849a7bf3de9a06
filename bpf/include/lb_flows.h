/* SPDX-License-Identifier: GPL-2.0 */
/* The flow table (lb_flows, laid out in bpf/shared/lb_shared.h): finding a
 * flow in its set and writing an entry. No locks: an entry another CPU is
 * rewriting fails its check and is a miss. */
#ifndef XDPLB_BPF_LB_FLOWS_H
#define XDPLB_BPF_LB_FLOWS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lb_hash.h"
#include "lb_maps.h"
#include "lb_parsing.h"
#include "lb_shared.h"

static __always_inline int lb_flow_key_eq(const struct lb_flow_entry *e, const struct lb_pkt *p)
{
	const __u64 *k = (const __u64 *)&e->key;

	return k[0] == p->key_words[0] && k[1] == p->key_words[1] && k[2] == p->key_words[2] &&
	       k[3] == p->key_words[3] && k[4] == p->key_words[4];
}

/* The way of set that holds the packet's key, or 0. *victim is the way a
 * new entry for the key goes to: the key's own way, else the first empty
 * one, else the one seen least recently. */
static __always_inline struct lb_flow_entry *
lb_flow_find(struct lb_flow_set *set, const struct lb_pkt *p, struct lb_flow_entry **victim)
{
	struct lb_flow_entry *empty = 0, *oldest = &set->way[0];

#pragma unroll
	for (int i = 0; i < LB_FLOW_WAYS; i++) {
		struct lb_flow_entry *e = &set->way[i];

		if (lb_flow_key_eq(e, p)) {
			*victim = e;
			return e;
		}
		if (!empty && e->key.family == 0)
			empty = e;
		if (e->last_seen_ns < oldest->last_seen_ns)
			oldest = e;
	}
	*victim = empty ? empty : oldest;
	return 0;
}

/* Whether a way that holds the packet's key is whole: its check matches the
 * key and the backend read here (each read once, so the backend checked is
 * the backend used). */
static __always_inline int lb_flow_read(const struct lb_flow_entry *e, const struct lb_pkt *p,
					__u32 *backend_id)
{
	__u32 id = *(volatile const __u32 *)&e->backend_id;
	__u32 check = *(volatile const __u32 *)&e->check;

	if (check != lb_flow_check(&p->key, id))
		return 0;
	*backend_id = id;
	return 1;
}

/* Writes the packet's flow into way e (the victim lb_flow_find chose) and
 * counts it in lb_flow_stats: an insert, and an eviction when e held another
 * flow (early when that flow was seen within LB_FLOW_EARLY_NS). Above
 * `limit` entries this CPU wrote in the current second (0: no limit), a new
 * entry is not written and counted as skipped: under a SYN flood the table
 * keeps the flows it has, and the flood's flows rely on the ring. The way
 * that already holds the key is always rewritten (it adds nothing to the
 * table): a flow that moved off a down backend must not keep an entry that
 * sends it back when that backend returns. `own`: e already holds the key
 * (lb_flow_find found it, so it is also the victim). */
static __always_inline void lb_flow_insert(struct lb_flow_entry *e, int own, const struct lb_pkt *p,
					   __u32 backend_id, __u64 now, __u32 limit)
{
	__u64 *k = (__u64 *)&e->key;
	__u32 zero = 0;
	struct lb_flow_stats *st = bpf_map_lookup_elem(&lb_flow_stats, &zero);

	if (st) {
		if (limit && !own) {
			if (now - st->window_start_ns >= 1000000000ULL) {
				st->window_start_ns = now;
				st->window_inserts = 0;
			}
			if (st->window_inserts >= limit) {
				st->skipped++;
				return;
			}
			st->window_inserts++;
		}
		st->inserts++;
		if (e->key.family && !own) {
			st->evictions++;
			if ((__s64)(now - e->last_seen_ns) < (__s64)LB_FLOW_EARLY_NS)
				st->early_evictions++;
		}
	}
	k[0] = p->key_words[0];
	k[1] = p->key_words[1];
	k[2] = p->key_words[2];
	k[3] = p->key_words[3];
	k[4] = p->key_words[4];
	e->backend_id = backend_id;
	e->last_seen_ns = now;
	e->check = lb_flow_check(&p->key, backend_id);
}

#endif
