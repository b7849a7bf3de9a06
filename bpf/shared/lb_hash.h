/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* The flow hash, specified once and compiled into both the XDP program and the
 * daemon, so `xdplb lookup` predicts the backend a flow reaches (docs/design.md, contract 1).
 *
 * Specification (lb_flow_hash): struct lb_flow_key is zero-filled and read as
 * five 64-bit little-endian words w[0..4] (an IPv4 address occupies
 * addr[0..3]; ports are in network byte order as on the wire; IP fragments
 * hash with both ports 0). With S = seed * 0x9e3779b97f4a7c15 and the odd
 * constants K[0..4] below, all arithmetic modulo 2^64:
 *
 *     h = sum over i of (w[i] XOR S) * K[i]      flow hash = h >> 32
 *
 * The ring slot of a flow is flow hash % M and the IPv6 outer flow label
 * its low 20 bits; its flow-table set is (h' * sets) >> 32 where h' is the
 * same hash keyed with lb_config.flow_secret instead of the seed (a secret
 * of the table, docs/design.md "Flow table").
 * The five multiplies are independent, so the hash costs a few ns where ten
 * serial MurmurHash3 rounds cost ~25 ns on a new flow; the flow table needs
 * it for every packet (docs/design.md, "Flow hash").
 *
 * The Maglev builder hashes backend addresses with MurmurHash3_x86_32
 * (lb_murmur3_words over the 16 address bytes), also specified here.
 *
 * Only little-endian hosts are supported (x86-64, arm64).
 */
#ifndef XDPLB_BPF_SHARED_LB_HASH_H
#define XDPLB_BPF_SHARED_LB_HASH_H

#include <linux/types.h>

#ifdef __cplusplus
#define LB_HASH_INLINE static inline
#else
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#define LB_HASH_INLINE static __always_inline
#endif

#define LB_MURMUR_C1 0xcc9e2d51U
#define LB_MURMUR_C2 0x1b873593U

LB_HASH_INLINE __u32 lb_rotl32(__u32 x, int r) { return (x << r) | (x >> (32 - r)); }

LB_HASH_INLINE __u32 lb_murmur_round(__u32 h, __u32 k)
{
	k *= LB_MURMUR_C1;
	k = lb_rotl32(k, 15);
	k *= LB_MURMUR_C2;
	h ^= k;
	h = lb_rotl32(h, 13);
	return h * 5 + 0xe6546b64U;
}

LB_HASH_INLINE __u32 lb_murmur_fmix(__u32 h, __u32 len)
{
	h ^= len;
	h ^= h >> 16;
	h *= 0x85ebca6bU;
	h ^= h >> 13;
	h *= 0xc2b2ae35U;
	h ^= h >> 16;
	return h;
}

/* MurmurHash3_x86_32 of nwords 32-bit words (len = 4 * nwords bytes). */
LB_HASH_INLINE __u32 lb_murmur3_words(const __u32 *words, __u32 nwords, __u32 seed)
{
	const unsigned char *bytes = (const unsigned char *)words;
	__u32 h = seed;
	__u32 i;

	for (i = 0; i < nwords; i++) {
		__u32 w;

		__builtin_memcpy(&w, bytes + 4 * i, 4);
		h = lb_murmur_round(h, w);
	}
	return lb_murmur_fmix(h, nwords * 4);
}

/* Word i of a key. BPF reads it whole (the key is 8-byte aligned there); C++
 * copies it, as a struct lb_flow_key there may be only 2-byte aligned. */
typedef __u64 __attribute__((may_alias)) lb_word64_t;

LB_HASH_INLINE __u64 lb_key_word(const void *key, int i)
{
#ifdef __cplusplus
	__u64 w;

	__builtin_memcpy(&w, (const unsigned char *)key + 8 * i, 8);
	return w;
#else
	return ((const lb_word64_t *)key)[i];
#endif
}

#define LB_FLOW_SEED_MUL 0x9e3779b97f4a7c15ULL

/* The flow hash (specification above): key must be a fully initialised
 * struct lb_flow_key (40 bytes, 8-byte aligned). */
LB_HASH_INLINE __u32 lb_flow_hash(const void *key, __u32 seed)
{
	__u64 s = (__u64)seed * LB_FLOW_SEED_MUL;
	__u64 h = (lb_key_word(key, 0) ^ s) * 0xea8ff5f8d837115fULL +
		  (lb_key_word(key, 1) ^ s) * 0xd0a74cff026f4c85ULL +
		  (lb_key_word(key, 2) ^ s) * 0x8f8de0e973e1d037ULL +
		  (lb_key_word(key, 3) ^ s) * 0xf11fc8de3eb459c9ULL +
		  (lb_key_word(key, 4) ^ s) * 0x856980bb0977e471ULL;

	return (__u32)(h >> 32);
}

/* The flow-table set of a flow hash: [0, nsets) by a multiply and a shift
 * (Lemire's "fastrange"), not a division; it uses the hash's high bits, the
 * ring slot (hash % M) all of them. */
LB_HASH_INLINE __u32 lb_flow_set_index(__u32 flow_hash, __u32 nsets)
{
	return (__u32)(((__u64)flow_hash * nsets) >> 32);
}

/* The check word of a flow-table entry (lb_shared.h, lb_flows) over its key
 * and backend: the same form as the flow hash with other constants and no
 * seed. Keys of one set agree in the high bits of the flow hash, not in
 * these. */
LB_HASH_INLINE __u32 lb_flow_check(const void *key, __u32 backend_id)
{
	__u64 h = lb_key_word(key, 0) * 0xae7abed5658ef30dULL +
		  lb_key_word(key, 1) * 0xfad367d4ab3e1d35ULL +
		  lb_key_word(key, 2) * 0xf99e6ae5c3c79559ULL +
		  lb_key_word(key, 3) * 0xcc1d5c6a1f99f50dULL +
		  lb_key_word(key, 4) * 0x9fddb5fef1217709ULL +
		  (__u64)backend_id * 0xd7bfc82d73d9c869ULL;

	return (__u32)(h >> 32);
}

/* The VIP index's slot hash (lb_shared.h, lb_vip_index): a multiply, an
 * xor and a multiply of the lb_vip_key's three words by the half's odd
 * multiplier, whose top bits give the slot. The first multiply spreads the
 * first address word, so IPv6 addresses whose two halves differ in the same
 * bits do not collide for every multiplier. Two multiplies: a packet pays
 * ~2 ns (docs/design.md, "VIP index"). */
LB_HASH_INLINE __u64 lb_vip_index_hash(__u64 w0, __u64 w1, __u64 w2, __u64 mult)
{
	return ((w0 * mult) ^ w1 ^ w2) * mult;
}

#endif
