/* SPDX-License-Identifier: GPL-2.0 */
/* Looking up lb_vips by the packet's destination address (contract: see
 * lb_vips in lb_shared.h). */
#ifndef XDPLB_BPF_LB_VIPS_H
#define XDPLB_BPF_LB_VIPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lb_hash.h"
#include "lb_maps.h"
#include "lb_parsing.h"
#include "lb_shared.h"

/* The lb_vips entry of the packet's destination address with this protocol
 * and port (network byte order; 0 = the address's port-0 entry), or 0. The
 * key is written as whole words, like the flow key (see struct lb_pkt):
 * w[2] holds port | proto << 16 | family << 24 (bytes 16..19 of the key;
 * the upper half lies beyond the 20-byte key). */
static __always_inline struct lb_vip_value *lb_vip_lookup(const struct lb_pkt *p, __u8 proto,
							  __u16 port)
{
	union {
		struct lb_vip_key k;
		__u64 w[3];
	} k;

	k.w[0] = p->key_words[2];
	k.w[1] = p->key_words[3];
	k.w[2] = (__u64)port | (__u64)proto << 16 | (__u64)p->key.family << 24;
	return bpf_map_lookup_elem(&lb_vips, &k);
}

/* The port-0 entry of the packet's destination address with this protocol,
 * or 0: from the VIP index while lb_config names a half of it, else from
 * lb_vips (lb_shared.h, lb_vip_index; docs/design.md, "VIP index"). The
 * probes stop at an empty slot, so a packet to a non-VIP address usually
 * reads one slot; after LB_VIP_INDEX_PROBES taken slots lb_vips answers. */
static __always_inline struct lb_vip_value *lb_vip_port0(const struct lb_pkt *p, __u8 proto,
							 const struct lb_config *cfg)
{
	__u32 half = cfg->vip_index - 1, slots = cfg->vip_index_slots, at;
	__u64 w0 = p->key_words[2], w1 = p->key_words[3];
	__u64 w2 = (__u64)proto << 16 | (__u64)p->key.family << 24;
	struct lb_vip_slot *s;

	if (half > 1) /* LB_VIP_INDEX_OFF (0) wraps */
		return lb_vip_lookup(p, proto, 0);
	at = lb_vip_index_hash(w0, w1, w2, cfg->vip_index_mult[half]) >> (cfg->vip_index_shift & 63);
#pragma unroll
	for (int i = 0; i < LB_VIP_INDEX_PROBES; i++) {
		__u32 idx = half * slots + ((at + i) & (slots - 1));

		s = bpf_map_lookup_elem(&lb_vip_index, &idx);
		if (!s || !s->key[2])
			return 0;
		if (s->key[0] == w0 && s->key[1] == w1 && s->key[2] == w2)
			return &s->value;
	}
	/* Every probe taken: the key may be one the daemon left out. */
	return lb_vip_lookup(p, proto, 0);
}

#endif
