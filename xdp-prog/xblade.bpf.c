// SPDX-License-Identifier: GPL-2.0
//
// xblade XDP program: steer AoE (ATA over Ethernet, ethertype 0x88A2) requests
// for the shelf.slot pairs this host serves into the AF_XDP socket bound to
// the receiving queue; leave every other frame to the kernel stack.
//
// Build: clang -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -c xblade.bpf.c
// (-g is required: the BTF-style maps below need a .BTF section.)
//
// Verdicts, in order:
//   not AoE (after at most one 802.1Q tag)          -> XDP_PASS     pass_not_aoe
//   AoE but shorter than the 10-byte AoE header     -> XDP_DROP     drop_malformed
//   response flag (0x08) set                        -> XDP_PASS     pass_response
//   (major << 8) | minor not in `targets`           -> XDP_PASS     pass_other_target
//   entry has XBLADE_TARGET_ACL and
//     (key, source MAC) not in `acl`                -> XDP_DROP     drop_acl
//   no socket in `xsks` for this RX queue           -> XDP_PASS     pass_no_socket
//   otherwise                                       -> XSKMAP redirect  redirect
//
// Many exports, each with its own mask list (ACL):
//   `targets` (hash, key (major << 8) | minor) holds one entry per served export, value
//   struct xblade_target { flags }: XBLADE_TARGET_ACL when the export's mask list is
//   non-empty. `acl` (hash, key struct xblade_acl_key { target, mac[6], pad[2] }) holds one
//   entry per (export, allowed source MAC): export A's list never admits or blocks anyone on
//   export B.
//
// Wildcards: a request's key is computed the same way whatever the wildcards, and the
// daemon keeps *marker* entries (flags XBLADE_TARGET_MARKER, never XBLADE_TARGET_ACL) in
// `targets` for exactly the wildcard keys that match something served:
//   (major << 8) | 0xFF     while any export of shelf `major` is served   (e7.any)
//   (0xFFFF << 8) | minor   while any export with slot `minor` is served  (any.minor)
//   (0xFFFF << 8) | 0xFF    while any export at all is served             (any.any)
// So one lookup decides: a partial wildcard for a shelf (or slot) not served here passes to
// the kernel as pass_other_target, one that matches is redirected. Wildcard requests are not
// ACL-checked here (a marker has no mask list): userspace checks each matching export's
// mask list. Markers are added and removed by target-daemon/src/xdp/ from its mirror of the
// maps (see there for the order of updates that never briefly denies or unserves).
//
// Counter indices, map sizes and the layouts of the structs are in xblade_abi.h, which
// target-daemon/build.rs parses into Rust constants; the daemon checks the map sizes at load.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xblade_abi.h"

#define ETH_P_AOE 0x88A2
#define ETH_P_8021Q_TAG 0x8100
#define VLAN_HLEN 4
#define AOE_HLEN 10          /* ver/flags, error, major(2), minor, command, tag(4) */
#define AOE_FLAG_RESPONSE 0x08

/* Served exports and wildcard markers, key (major << 8) | minor (see the header comment). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XBLADE_TARGETS_MAX_ENTRIES);
	__type(key, __u32);
	__type(value, struct xblade_target);
} targets SEC(".maps");

/* Allowed (export, source MAC) pairs of the exports whose entry has XBLADE_TARGET_ACL. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XBLADE_ACL_MAX_ENTRIES);
	__type(key, struct xblade_acl_key);
	__type(value, __u8);
} acl SEC(".maps");

/* One AF_XDP socket per RX queue, indexed by queue id. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, XBLADE_XSKS_MAX_ENTRIES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XBLADE_COUNTER_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		*v += 1; /* per-CPU slot: no atomic needed */
}

/*
 * "xdp.frags": the program is multi-buffer aware (BPF_F_XDP_HAS_FRAGS). It reads only the
 * headers, which are always in the first fragment, so jumbo frames need nothing more; and
 * without the flag native XDP on veth refuses MTUs above about 3.5 KB.
 */
SEC("xdp.frags")
int xblade_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 off = sizeof(*eth);
	__u16 proto;

	if ((void *)(eth + 1) > data_end) {
		count(XBLADE_COUNTER_PASS_NOT_AOE);
		return XDP_PASS;
	}
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q_TAG)) {
		/* TCI (2 bytes) then the encapsulated ethertype (2 bytes). */
		__be16 *inner = data + off + 2;

		if ((void *)(inner + 1) > data_end) {
			count(XBLADE_COUNTER_PASS_NOT_AOE);
			return XDP_PASS;
		}
		proto = *inner;
		off += VLAN_HLEN;
	}
	if (proto != bpf_htons(ETH_P_AOE)) {
		count(XBLADE_COUNTER_PASS_NOT_AOE);
		return XDP_PASS;
	}

	__u8 *aoe = data + off;

	if ((void *)(aoe + AOE_HLEN) > data_end) {
		count(XBLADE_COUNTER_DROP_MALFORMED);
		return XDP_DROP;
	}
	if (aoe[0] & AOE_FLAG_RESPONSE) {
		count(XBLADE_COUNTER_PASS_RESPONSE);
		return XDP_PASS;
	}

	__u16 major = ((__u16)aoe[2] << 8) | aoe[3];
	__u8 minor = aoe[4];
	/* An export's key, or for a wildcard request the key of its marker. */
	__u32 key = ((__u32)major << 8) | minor;
	struct xblade_target *target = bpf_map_lookup_elem(&targets, &key);

	if (!target) {
		count(XBLADE_COUNTER_PASS_OTHER_TARGET);
		return XDP_PASS;
	}
	if (target->flags & XBLADE_TARGET_ACL) {
		struct xblade_acl_key acl_key = { .target = key };

		/* Within the Ethernet header, checked above. */
		__builtin_memcpy(acl_key.mac, eth->h_source, sizeof(acl_key.mac));
		if (!bpf_map_lookup_elem(&acl, &acl_key)) {
			count(XBLADE_COUNTER_DROP_ACL);
			return XDP_DROP;
		}
	}

	/* Copy to the stack: a helper's key may not point into the context. */
	__u32 queue = ctx->rx_queue_index;

	if (!bpf_map_lookup_elem(&xsks, &queue)) {
		count(XBLADE_COUNTER_PASS_NO_SOCKET);
		return XDP_PASS;
	}
	/* Count before redirecting: the redirect itself may still fail (e.g. the
	 * socket's RX ring is full), which the kernel accounts as rx_dropped on
	 * the socket (XDP_STATISTICS), not here. */
	count(XBLADE_COUNTER_REDIRECT);
	return bpf_redirect_map(&xsks, queue, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
