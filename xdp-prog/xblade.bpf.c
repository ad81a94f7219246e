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
//   shelf.slot not in `targets` (and no wildcard)   -> XDP_PASS     pass_other_target
//   ACL active and source MAC not in `acl`          -> XDP_DROP     drop_acl
//   no socket in `xsks` for this RX queue           -> XDP_PASS     pass_no_socket
//   otherwise                                       -> XSKMAP redirect  redirect
//
// Counter indices (mirrored by target-daemon/src/xdp/mod.rs, keep in sync):
//   0 pass_not_aoe, 1 pass_response, 2 pass_other_target, 3 drop_acl,
//   4 redirect, 5 pass_no_socket, 6 drop_malformed

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_P_AOE 0x88A2
#define ETH_P_8021Q_TAG 0x8100
#define VLAN_HLEN 4
#define AOE_HLEN 10          /* ver/flags, error, major(2), minor, command, tag(4) */
#define AOE_FLAG_RESPONSE 0x08
#define AOE_MAJOR_ANY 0xFFFF
#define AOE_MINOR_ANY 0xFF

enum counter {
	C_PASS_NOT_AOE = 0,
	C_PASS_RESPONSE = 1,
	C_PASS_OTHER_TARGET = 2,
	C_DROP_ACL = 3,
	C_REDIRECT = 4,
	C_PASS_NO_SOCKET = 5,
	C_DROP_MALFORMED = 6,
	C_COUNT = 7,
};

struct config {
	__u32 acl_active; /* non-zero: only source MACs present in `acl` may pass */
};

/* Served shelf.slot pairs, key (major << 8) | minor. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u8);
} targets SEC(".maps");

/* Allowed source MACs, key = the 6 wire-order bytes in the low 48 bits. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, __u8);
} acl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config SEC(".maps");

/* One AF_XDP socket per RX queue, indexed by queue id. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_COUNT);
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
		count(C_PASS_NOT_AOE);
		return XDP_PASS;
	}
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q_TAG)) {
		/* TCI (2 bytes) then the encapsulated ethertype (2 bytes). */
		__be16 *inner = data + off + 2;

		if ((void *)(inner + 1) > data_end) {
			count(C_PASS_NOT_AOE);
			return XDP_PASS;
		}
		proto = *inner;
		off += VLAN_HLEN;
	}
	if (proto != bpf_htons(ETH_P_AOE)) {
		count(C_PASS_NOT_AOE);
		return XDP_PASS;
	}

	__u8 *aoe = data + off;

	if ((void *)(aoe + AOE_HLEN) > data_end) {
		count(C_DROP_MALFORMED);
		return XDP_DROP;
	}
	if (aoe[0] & AOE_FLAG_RESPONSE) {
		count(C_PASS_RESPONSE);
		return XDP_PASS;
	}

	__u16 major = ((__u16)aoe[2] << 8) | aoe[3];
	__u8 minor = aoe[4];

	if (major != AOE_MAJOR_ANY && minor != AOE_MINOR_ANY) {
		__u32 key = ((__u32)major << 8) | minor;

		if (!bpf_map_lookup_elem(&targets, &key)) {
			count(C_PASS_OTHER_TARGET);
			return XDP_PASS;
		}
	}

	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);

	if (cfg && cfg->acl_active) {
		__u8 *s = eth->h_source;
		__u64 mac = ((__u64)s[0] << 40) | ((__u64)s[1] << 32) |
			    ((__u64)s[2] << 24) | ((__u64)s[3] << 16) |
			    ((__u64)s[4] << 8) | (__u64)s[5];

		if (!bpf_map_lookup_elem(&acl, &mac)) {
			count(C_DROP_ACL);
			return XDP_DROP;
		}
	}

	/* Copy to the stack: a helper's key may not point into the context. */
	__u32 queue = ctx->rx_queue_index;

	if (!bpf_map_lookup_elem(&xsks, &queue)) {
		count(C_PASS_NO_SOCKET);
		return XDP_PASS;
	}
	/* Count before redirecting: the redirect itself may still fail (e.g. the
	 * socket's RX ring is full), which the kernel accounts as rx_dropped on
	 * the socket (XDP_STATISTICS), not here. */
	count(C_REDIRECT);
	return bpf_redirect_map(&xsks, queue, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
