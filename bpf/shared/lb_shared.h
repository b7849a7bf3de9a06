/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/* The one definition of every map key, value, enum and constant that the BPF
 * programs and the C++ daemon share. Plain fixed-width C with explicit padding;
 * the C++ side static_asserts every size (lb/datapath/layout.h). Bump
 * LB_LAYOUT_VERSION whenever anything here changes meaning or size: a daemon
 * that finds pinned maps of another version replaces them (docs/design.md, contract 4).
 */
#ifndef XDPLB_BPF_SHARED_LB_SHARED_H
#define XDPLB_BPF_SHARED_LB_SHARED_H

#include <linux/types.h>

/* 7: lb_vip_value's unused pad0 became mss_clamp (+ LB_VIP_F_PORT_CLAMP),
 * lb_vip_stats gained mss_clamped. A layout-6 entry's pad0 is zero, which
 * would read as "no clamp", but lb_vip_stats grew: pinned maps of layout 6
 * cannot be read as 7 (docs/design.md, "MSS clamp"). Also new in 7: the
 * reason LB_R_PASS_VLAN (lb_reason_stats grew) and LB_CFG_F_VLAN_KEEP. */
/* 8: the VIP index lb_vip_index (docs/design.md, "VIP index"): lb_config
 * grew its selector, multipliers and size. */
#define LB_LAYOUT_VERSION 8

#define LB_FAMILY_V4 4
#define LB_FAMILY_V6 6

/* Backend id 0 and VIP id 0 mean "none": an uninitialised ring slot or map
 * entry can never forward (learned from Katran). */
#define LB_ID_NONE 0

/* Rings. Every VIP has two ring buffers, inner maps of the ARRAY_OF_MAPS
 * lb_rings at LB_RING_INDEX(vip id, buffer), and lb_ring_sel[vip id] names
 * the live one. A swap rewrites the other buffer in place (the daemon mmaps
 * it) and then flips the selector with one 4-byte store: no map-in-map
 * update, so no RCU grace period on the path (docs/design.md, "Ring swap").
 *
 * A buffer is an ARRAY (BPF_F_INNER_MAP | BPF_F_MMAPABLE, so sizes may differ
 * per VIP) of struct lb_ring_elem: two __u32 slots per element, so the
 * buffer's memory is a plain __u32 array of slots (an array element takes 8
 * bytes anyway). Slot 0 is the ring size M, slot 1 the ring generation, slots
 * 2..M+1 backend ids. Keeping M inside the buffer makes a size change atomic
 * with the ring (docs/design.md, contract 2); keeping the generation there lets a restarted
 * daemon continue counting (docs/design.md, contract 4). Slot of a flow:
 * LB_RING_HEADER_SLOTS + hash % M, in element slot / 2, half slot % 2. */
#define LB_RING_SIZE_SLOT 0
#define LB_RING_GEN_SLOT 1
#define LB_RING_HEADER_SLOTS 2
#define LB_RING_SLOTS_PER_ELEM 2
#define LB_RING_BUFFERS 2
#define LB_RING_INDEX(vip_id, buffer) ((vip_id)*LB_RING_BUFFERS + (buffer))

struct lb_ring_elem {
	__u32 slot[LB_RING_SLOTS_PER_ELEM];
};

/* lb_ring_sel: ARRAY vip id -> lb_ring_sel. A flip rewrites the whole value;
 * only the low byte of `active` changes, so a reader never sees a torn
 * selector. The generation copy lets a restarted daemon continue counting
 * without opening the ring maps (which needs CAP_SYS_ADMIN for maps another
 * process created). */
struct lb_ring_sel {
	__u32 active;	  /* the live buffer: 0 or 1 */
	__u32 generation; /* generation of the live ring (its LB_RING_GEN_SLOT) */
};

/* A per-CPU next-hop cache entry older than this is refreshed through
 * bpf_fib_lookup, so routes and neighbours changes are followed within 1 s. */
#define LB_NEXTHOP_MAX_AGE_NS (500ULL * 1000 * 1000)

/* The token buckets of ICMP sent by the balancer itself (too-big answers,
 * echo replies) hold this many messages: lb_config.*_interval_ns refill one
 * (docs/design.md, "Path MTU"). */
#define LB_RATE_BURST 50

/* UDP flow entries idle for longer than this are treated as misses. */
#define LB_UDP_FLOW_TIMEOUT_NS (30ULL * 1000 * 1000 * 1000)
/* A flow entry's last_seen is rewritten at most this often (less cache-line
 * bouncing between CPUs on busy flows). */
#define LB_FLOW_REFRESH_NS (1ULL * 1000 * 1000 * 1000)

/* Outer header constants of the encapsulation. */
#define LB_OUTER_TTL 64

/* ---- map sizes --------------------------------------------------------------
 * Sizes are set by the daemon at load time (bpf_map__set_max_entries) from its
 * configuration, never fixed here: memory grows with what is configured.
 *   lb_vips          3 * max_vips   (each VIP plus its address's two port-0 entries)
 *   lb_vip_index     2 * LB_VIP_INDEX_SLOTS(max_vips) (two halves)
 *   lb_rings         2 * (max_vips + 1) (index = LB_RING_INDEX(VIP id, buffer))
 *   lb_ring_sel      max_vips + 1   (index = VIP id; 0 unused)
 *   lb_vip_stats     max_vips + 1
 *   lb_backends      max_backends + 1 (index = backend id; 0 unused)
 *   lb_nexthops      max_backends + 1
 *   lb_backend_stats max_backends + 1
 *   lb_flows         ceil(flow_table_size / LB_FLOW_WAYS) sets
 *   lb_tx_ports      DEVMAP_HASH ifindex -> ifindex, 64 entries
 *   lb_config        1
 *   lb_reason_stats  LB_REASON_MAX
 *   lb_flow_stats    1
 *   lb_frags         LB_FRAG_ENTRIES (fixed)
 *   lb_ratelimit     1
 */

/* ---- addresses ---------------------------------------------------------- */

/* An IPv4 address is stored in the first 4 bytes of addr[16], rest zero. */

/* ---- lb_vips: HASH lb_vip_key -> lb_vip_value ------------------------------
 * Every VIP address has a port-0 entry for TCP and one for UDP, whatever the
 * protocols of its VIPs. Each is either a real every-port VIP or, flagged
 * LB_VIP_F_ALIAS, a marker that only says "this address has VIPs" (of this
 * protocol when it lists ports, else of the other one only). The datapath
 * looks up the port-0 entry first, so a packet to a non-VIP address costs
 * one lookup whatever its protocol (layout 6). The port-0 entry
 * also lists up to LB_VIP_INLINE_PORTS port VIPs of its address+protocol, so
 * a packet to one of them costs one lookup too; only an address with more
 * port VIPs than that (LB_VIP_F_MORE_PORTS) looks up the exact port next.
 * Every port VIP keeps its own exact entry as well (listing, adoption). */
struct lb_vip_key {
	__u8 addr[16];
	__u16 port;  /* network byte order; 0 = every port */
	__u8 proto;  /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family; /* LB_FAMILY_V4 or LB_FAMILY_V6 */
};

#define LB_VIP_F_ALIAS 0x1	/* port-0 entry that is not itself a VIP */
#define LB_VIP_F_HAS_PORTS 0x2	/* port-0 entry: VIPs with a port exist for this address+proto */
#define LB_VIP_F_MORE_PORTS 0x4 /* port-0 entry: more port VIPs than ports[] lists */
/* port-0 entry: a port VIP that ports[] lists has an mss_clamp, kept in its
 * exact entry (looked up for its SYNs only) */
#define LB_VIP_F_PORT_CLAMP 0x8

#define LB_VIP_INLINE_PORTS 4

struct lb_vip_value {
	__u32 vip_id; /* index into lb_rings and lb_vip_stats; 0 on an alias */
	__u32 flags;  /* LB_VIP_F_* */
	/* TCP VIPs: SYNs carrying an MSS option above this are lowered to it
	 * (docs/design.md, "MSS clamp"); 0 = off. Was pad0 until layout 7. */
	__u16 mss_clamp;
	__u16 pad0;
	__u32 pad;
	/* port-0 entries: port VIPs of this address+proto (port in network
	 * byte order, VIP id); unused slots have port_vip_ids[i] == 0. */
	__u16 ports[LB_VIP_INLINE_PORTS];
	__u32 port_vip_ids[LB_VIP_INLINE_PORTS];
};

/* ---- lb_vip_index: ARRAY of lb_vip_slot, two halves -----------------------
 * A copy of lb_vips' port-0 entries in an open-addressed ARRAY, so that the
 * lookup every packet makes is inlined: one multiply hash and one cache line
 * instead of the hash map's jhash and bucket walk (docs/design.md, "VIP
 * index"). lb_vips stays the authority: the exact-port entries, listing and
 * adoption use it, and so does every packet while lb_config.vip_index is
 * LB_VIP_INDEX_OFF.
 *
 * Two halves of lb_config.vip_index_slots (a power of two) slots each, at
 * half * vip_index_slots. The daemon writes a whole half that no packet
 * reads (through mmap), then names it in lb_config.vip_index (half + 1).
 * A half it stopped naming is rewritten only after an RCU grace period, as
 * ring buffers are (contract 2). Any change to lb_vips first sets
 * vip_index to LB_VIP_INDEX_OFF, so the index never serves what lb_vips no
 * longer says.
 *
 * The slot of a key is lb_vip_index_hash (lb_hash.h) of its words and the
 * half's vip_index_mult, >> vip_index_shift; then the next ones, up to
 * LB_VIP_INDEX_PROBES in all (wrapping within the half). An empty slot
 * (key[2] == 0: every key has a family) is a miss; LB_VIP_INDEX_PROBES
 * taken slots without the key send the packet to lb_vips: the daemon puts
 * every key in the first free slot of its probes, or leaves it out when they
 * are all taken. key[] is the lb_vip_key as three words: addr[0..7],
 * addr[8..15], and port | proto << 16 | family << 24. */
#define LB_VIP_INDEX_PROBES 4
/* lb_config.vip_index: 0 = off (use lb_vips; what a zeroed config says),
 * 1 = half 0, 2 = half 1 */
#define LB_VIP_INDEX_OFF 0
/* Slots per half: the power of two at least twice the port-0 entries
 * max_vips can need (two per address, one address per VIP at most), and at
 * least LB_VIP_INDEX_MIN_SLOTS. */
#define LB_VIP_INDEX_MIN_SLOTS 64

struct lb_vip_slot {
	__u64 key[3];
	struct lb_vip_value value;
};

/* ---- lb_backends: ARRAY backend id -> lb_backend --------------------------- */
enum lb_backend_state {
	LB_BACKEND_NONE = 0,	 /* unused id */
	LB_BACKEND_UP = 1,	 /* in rings, keeps its flows */
	LB_BACKEND_DRAINING = 2, /* not in rings, keeps its flows */
	LB_BACKEND_DOWN = 3,	 /* not in rings, its flows rehash */
};

/* A backend is one address within one VIP (health and counters are per VIP):
 * the same address in two VIPs has two ids. vip_id lets a restarted daemon
 * map ids back to its config. */
struct lb_backend {
	__u8 addr[16];
	__u32 vip_id;
	__u8 family; /* LB_FAMILY_V4 or LB_FAMILY_V6 */
	__u8 state;  /* enum lb_backend_state */
	__u8 pad[2];
};

/* ---- lb_flows: ARRAY set index -> lb_flow_set ------------------------------
 * A set-associative flow table (docs/design.md, "Flow table"): a flow lives
 * in set lb_flow_set_index(lb_flow_hash(key, flow_secret), flow_sets), in one of
 * its LB_FLOW_WAYS ways. A new flow takes the way that already holds its key,
 * else an empty way, else the way seen least recently (LRU within the set).
 * One table for all CPUs, written without locks: a way that another CPU is
 * rewriting can be read half old, half new, so every entry carries `check`,
 * lb_flow_check() of its key and backend, and a way whose check does
 * not match is a miss (the packet takes the ring, as after an eviction).
 * The array is BPF_F_MMAPABLE, which page-aligns it, so every way is one
 * 64-byte cache line; the daemon reads it through mmap. */
#define LB_FLOW_WAYS 4

struct lb_flow_key {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport; /* network byte order; 0 for fragments */
	__u16 dport; /* network byte order; 0 for fragments */
	__u8 proto;
	__u8 family; /* 0 = an empty way */
	__u16 pad;   /* always 0: the key is hashed whole */
};

struct lb_flow_entry {
	struct lb_flow_key key;
	__u32 backend_id;
	__u32 check;	    /* lb_flow_check(key, backend_id) */
	__u64 last_seen_ns; /* bpf_ktime_get_coarse_ns(), refreshed at most
			     * every LB_FLOW_REFRESH_NS; not under check */
	__u64 pad;
};

struct lb_flow_set {
	struct lb_flow_entry way[LB_FLOW_WAYS];
};

/* lb_flow_stats: PERCPU_ARRAY[1] of lb_flow_stats, what new flows did to the
 * table: the sizing signal for flow_table_size. An early eviction replaces
 * a flow seen within LB_FLOW_EARLY_NS: the table turns over faster than
 * that, so flows that live longer may lose their entry (and take the ring
 * again: the same backend unless the ring changed). A CPU writes at most
 * lb_config.flow_insert_limit entries a second (a SYN-flood guard, as
 * Katran's); above it new flows rely on the ring alone (`skipped`). */
#define LB_FLOW_EARLY_NS (60ULL * 1000 * 1000 * 1000)

struct lb_flow_stats {
	__u64 inserts;	       /* entries written for new flows */
	__u64 evictions;       /* ... that replaced another flow's entry */
	__u64 early_evictions; /* ... of a flow seen within LB_FLOW_EARLY_NS */
	__u64 skipped;	       /* new flows not written: over flow_insert_limit */
	/* The guard's state on this CPU (not counters): the current 1 s window
	 * and the entries written in it. */
	__u64 window_start_ns;
	__u64 window_inserts;
};

/* ---- lb_config: ARRAY[1] of lb_config ------------------------------------- */
#define LB_CFG_F_TUNNEL_V4 0x1 /* tunnel_src_v4 is set: IPv4 backends usable */
#define LB_CFG_F_TUNNEL_V6 0x2 /* tunnel_src_v6 is set: IPv6 backends usable */
/* daemon.vlan = "keep": VLAN-tagged frames to a VIP are balanced and leave
 * with their tag (the operator says the backends are on that VLAN behind the
 * interface the route names). Without it they pass to the kernel untouched
 * (LB_R_PASS_VLAN): xdplb never emits a frame on a VLAN the route to the
 * backend does not name (docs/design.md, "VLAN-tagged frames"). Layout 7. */
#define LB_CFG_F_VLAN_KEEP 0x4

struct lb_config {
	__u32 layout_version; /* LB_LAYOUT_VERSION of the daemon that wrote it */
	__u32 hash_seed;
	__u32 flags; /* LB_CFG_F_* */
	__u8 tunnel_src_v4[4];
	__u8 tunnel_src_v6[16];
	__u32 flow_sets;	 /* sets in lb_flows; 0 = no flow table (every packet
				  * takes the ring) */
	__u32 flow_insert_limit; /* new-flow entries a CPU writes per second at
				  * most (SYN-flood guard): the daemon's
				  * whole-table limit over the possible CPUs,
				  * rounded up (docs/design.md, "Flow table");
				  * 0 = no limit */
	/* Key of the flow-table set index (lb_flow_hash(key, flow_secret)):
	 * random, made when the table is created and kept with it, so the
	 * sets of crafted tuples cannot be predicted (docs/design.md, "Flow
	 * table"). Rings keep hash_seed. */
	__u32 flow_secret;
	/* Token bucket refill of the too-big answers and echo replies a CPU
	 * sends (1e9 / rate); 0 = never sent. */
	__u32 icmp_interval_ns;
	__u32 echo_interval_ns;
	/* The VIP index (lb_vip_index above): 1 + the half packets read, or
	 * LB_VIP_INDEX_OFF; only the low byte ever changes, so a reader never
	 * sees it torn. Layout 8. */
	__u32 vip_index;
	__u32 vip_index_slots; /* slots per half, a power of two */
	__u32 vip_index_shift; /* 64 - log2(vip_index_slots) */
	__u64 vip_index_mult[2]; /* each half's hash multiplier (odd) */
};

/* ---- lb_ratelimit: PERCPU_ARRAY[1] of lb_ratelimit ----------------------
 * Each CPU's own state: the theoretical arrival time of the next message of
 * each bucket (a generic cell rate algorithm, which is a token bucket), and
 * the packet path's clock cache: bpf_ktime_get_coarse_ns() as read when
 * this CPU first saw jiffy clock_jiffies (bpf/include/lb_clock.h; layout
 * 8). */
struct lb_ratelimit {
	__u64 too_big_tat;
	__u64 echo_tat;
	__u64 clock_jiffies;
	__u64 clock_ns;
};

/* ---- lb_frags: LRU_HASH lb_frag_key -> __u32 ports -------------------------
 * A first fragment records the ports of its TCP/UDP header (as the flow key
 * holds them: sport | dport << 16, network byte order) under its datagram;
 * later fragments take them (docs/design.md, "Fragments"). */
#define LB_FRAG_ENTRIES 8192

struct lb_frag_key {
	__u8 src[16];
	__u8 dst[16];
	__u32 id; /* IPv4 id (16 bits) or IPv6 fragment id, as on the wire */
	__u8 proto;
	__u8 family;
	__u16 pad;
};

/* ---- lb_nexthops: PERCPU_ARRAY backend id -> lb_nexthop ---------------------
 * Filled by the program itself from bpf_fib_lookup; per CPU so entries are
 * never read torn. */
struct lb_nexthop {
	__u8 dmac[6];
	__u8 smac[6];
	__u32 ifindex;	   /* egress interface */
	__u32 fib_status;  /* last BPF_FIB_LKUP_RET_* */
	__u32 mtu;	   /* the route's MTU (bpf_fib_lookup mtu_result); 0 = unknown */
	__u64 resolved_ns; /* bpf_ktime_get_coarse_ns() of the lookup; 0 = never */
};

/* ---- counters --------------------------------------------------------------
 * Every exit of xdp_balancer names one reason; lb_reason_stats (PERCPU_ARRAY,
 * LB_REASON_MAX entries of lb_counter) counts packets and bytes per reason. */
enum lb_reason {
	LB_R_PASS_NOT_IP = 0,  /* not IPv4/IPv6 (ARP, LLDP, ...) */
	LB_R_PASS_NOT_VIP,     /* IP, to an address that has no VIP */
	LB_R_PASS_OTHER_PROTO, /* neither TCP, UDP nor ICMP about a VIP, to no VIP address */
	LB_R_DROP_NO_NEIGH,    /* no neighbour entry for the next hop to the backend yet */
	LB_R_DROP_MALFORMED,   /* truncated header or a length field that lies */
	LB_R_DROP_NO_BACKEND,  /* the VIP's ring is empty */
	LB_R_DROP_FRAGMENT,    /* a later IP fragment whose first fragment was not seen */
	LB_R_DROP_FIB,	       /* no route to the backend, forwarding disabled, ... */
	LB_R_DROP_ENCAP,       /* the packet could not be grown for the outer header */
	LB_R_DROP_NO_TUNNEL,   /* no tunnel source configured for the backend's family */
	LB_R_DROP_INTERNAL,    /* a map entry that the daemon must have written is missing */
	LB_R_TX,	       /* forwarded out of the ingress interface */
	LB_R_REDIRECT,	       /* forwarded out of another interface (devmap) */
	LB_R_DROP_NO_TXPORT,   /* the route to the backend leaves by an interface not in lb_tx_ports
				*/
	LB_R_ECHO_REPLY,       /* ICMP/ICMPv6 echo request to a VIP address, answered (XDP_TX) */
	LB_R_DROP_VIP_UNHANDLED,  /* to a VIP address, but no VIP takes its port or protocol */
	LB_R_TOO_BIG,		  /* too big for the route once encapsulated: answered with
				   * ICMP frag-needed / packet-too-big (XDP_TX) */
	LB_R_DROP_TOO_BIG_UNSENT, /* too big, not answered: over icmp_rate, or an ICMP error */
	LB_R_DROP_ECHO_REFUSED,	  /* echo request with IPv4 options or from a bad source */
	LB_R_DROP_ECHO_LIMITED,	  /* echo request over echo_rate */
	LB_R_DROP_TOO_LONG,	  /* cannot be encapsulated within 65,535 bytes */
	LB_R_DROP_GSO,	/* larger than the ingress MTU: a GRO/GSO aggregate (generic mode) */
	LB_R_PASS_VLAN, /* VLAN-tagged, to a VIP, daemon.vlan = "pass": to the kernel untouched */
	LB_REASON_MAX,
};

/* Names for the reasons, in enum order; used for logs and metric labels. */
#define LB_REASON_NAMES                                                                            \
	{                                                                                          \
		"not_ip", "not_vip", "other_proto", "no_neigh", "malformed", "no_backend",         \
		    "fragment", "fib", "encap", "no_tunnel", "internal", "tx", "redirect",         \
		    "no_txport", "echo_reply", "vip_unhandled", "too_big", "too_big_unsent",       \
		    "echo_refused", "echo_limited", "too_long", "gso", "vlan"                      \
	}

struct lb_counter {
	__u64 packets;
	__u64 bytes;
};

/* lb_vip_stats: PERCPU_ARRAY vip id -> lb_vip_stats */
struct lb_vip_stats {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;    /* packets that took the ring (flow-table miss or SYN) */
	__u64 icmp_too_big; /* ICMP too-big messages forwarded to the backend of
			     * the flow they quote (also in packets/bytes); other
			     * ICMP errors are forwarded likewise, counted in
			     * packets only */
	__u64 mss_clamped;  /* SYNs forwarded with their MSS option lowered to
			     * the VIP's mss_clamp */
};

/* lb_backend_stats: PERCPU_ARRAY backend id -> lb_counter */

/* ---- xdp_decap ------------------------------------------------------------- */
/* xdp_decap's maps are its own (not pinned, not lb_config's layout).
 * lb_decap_addrs: HASH lb_addr -> __u32 (1): the host's addresses; only
 * tunnel packets whose outer destination is one of them are decapsulated.
 * lb_decap_sources: HASH lb_addr -> __u32 (1): the balancers' tunnel
 * sources; with LB_DECAP_F_SOURCES set in lb_decap_config, a tunnel packet
 * from any other outer source is dropped (docs/design.md, "Decapsulator"). */
struct lb_addr {
	__u8 addr[16];
	__u8 family;
	__u8 pad[3];
};

#define LB_DECAP_F_SOURCES 0x1 /* only outer sources in lb_decap_sources */

/* lb_decap_config: ARRAY[1] of lb_decap_config */
struct lb_decap_config {
	__u32 flags; /* LB_DECAP_F_* */
	__u32 pad;
};

enum lb_decap_reason {
	LB_D_PASS_NOT_TUNNEL = 0, /* not 4in4, 6in6 or 4in6: untouched */
	LB_D_PASS_NOT_LOCAL,	  /* tunnel packet, but not to one of our addresses */
	LB_D_DECAP_4IN4,
	LB_D_DECAP_6IN6,
	LB_D_DECAP_4IN6,
	LB_D_DROP_MALFORMED, /* truncated or lying outer or inner header */
	LB_D_DROP_INTERNAL,  /* bpf_xdp_adjust_head failed */
	LB_D_PASS_FRAGMENT,  /* an outer fragment: passed to the kernel whole, not
			      * decapsulated (its inner header is not all there) */
	LB_D_DROP_SOURCE,    /* outer source not in lb_decap_sources */
	LB_DECAP_REASON_MAX,
};

#define LB_DECAP_REASON_NAMES                                                                      \
	{                                                                                          \
		"not_tunnel", "not_local", "decap_4in4", "decap_6in6", "decap_4in6", "malformed",  \
		    "internal", "fragment", "source"                                               \
	}

/* lb_decap_stats: PERCPU_ARRAY[LB_DECAP_REASON_MAX] of lb_counter */

#endif
