/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* The flow hash, specified once and compiled into both the XDP program and the
 * daemon, so `xdplb lookup` predicts the backend a flow reaches (contract 1).
 *
 * Specification: MurmurHash3_x86_32 (Austin Appleby, public domain) over the
 * 40 bytes of struct lb_flow_key read as ten 32-bit little-endian words, with
 * the configured hash_seed as the seed. The key is zero-filled first: an IPv4
 * address occupies addr[0..3]; ports are in network byte order as on the
 * wire; IPv4 fragments hash with both ports 0. The ring slot of a flow is
 * hash % M. The Maglev builder hashes backend addresses with the same
 * function (lb_murmur3_32 over the 16 address bytes).
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

/* The flow hash: key must be a fully initialised struct lb_flow_key (40 bytes,
 * 4-byte aligned). Unrolled by the compiler in BPF (constant trip count). */
/* A 32-bit word that may alias any type: the key is a struct of other
 * types, and without this C++'s aliasing rules let the compiler read stale
 * words (while a byte-wise copy would cost four loads a word in BPF). */
typedef __u32 __attribute__((may_alias)) lb_word_t;

LB_HASH_INLINE __u32 lb_flow_hash(const void *key, __u32 seed)
{
	const lb_word_t *w = (const lb_word_t *)key;
	__u32 h = seed;

#ifndef __cplusplus
#pragma unroll
#endif
	for (int i = 0; i < 10; i++)
		h = lb_murmur_round(h, w[i]);
	return lb_murmur_fmix(h, 40);
}

#endif
