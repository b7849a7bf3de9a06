/* SPDX-License-Identifier: GPL-2.0 */
/* Looking up lb_vips by the packet's destination address (contract: see
 * lb_vips in lb_shared.h). */
#ifndef XDPLB_BPF_LB_VIPS_H
#define XDPLB_BPF_LB_VIPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

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

#endif
