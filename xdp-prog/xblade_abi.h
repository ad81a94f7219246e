/* SPDX-License-Identifier: GPL-2.0 OR MIT OR Apache-2.0 */
/*
 * What the XDP program (xblade.bpf.c) and the daemon (target-daemon/src/xdp/) must agree on.
 *
 * This header is the single source: target-daemon/build.rs parses every `#define XBLADE_*`
 * below and generates the Rust constants from it (`$OUT_DIR/xdp_abi.rs`), failing the build if a
 * line is not of the form `#define XBLADE_NAME <integer literal>`. So keep every XBLADE_ define
 * a plain decimal or hex literal (no expressions, no casts). The structs are not parsed: their
 * sizes are given as defines too, checked here with _Static_assert and in Rust with const
 * assertions, and aya checks them against the maps' BTF when the maps are opened. At load time
 * the daemon also checks each map's max_entries against these constants.
 */
#ifndef XBLADE_ABI_H
#define XBLADE_ABI_H

#include <linux/types.h>

/* Indices of the per-CPU `counters` array, one per verdict. */
#define XBLADE_COUNTER_PASS_NOT_AOE 0
#define XBLADE_COUNTER_PASS_RESPONSE 1
#define XBLADE_COUNTER_PASS_OTHER_TARGET 2
#define XBLADE_COUNTER_DROP_ACL 3
#define XBLADE_COUNTER_REDIRECT 4
#define XBLADE_COUNTER_PASS_NO_SOCKET 5
#define XBLADE_COUNTER_DROP_MALFORMED 6
#define XBLADE_COUNTER_COUNT 7

/* AoE wildcards ("any shelf", "any slot"). */
#define XBLADE_MAJOR_ANY 0xFFFF
#define XBLADE_MINOR_ANY 0xFF

/* Served exports per interface (shelf.slot pairs). */
#define XBLADE_MAX_EXPORTS 4096
/*
 * `targets` holds the exports and the wildcard markers: at most one shelf marker per export,
 * one slot marker per slot value 0..254 and the full-wildcard marker, so
 * 2 * XBLADE_MAX_EXPORTS + 255 + 1.
 */
#define XBLADE_TARGETS_MAX_ENTRIES 8448
/* (export, source MAC) pairs of all exports' mask lists together. */
#define XBLADE_ACL_MAX_ENTRIES 16384
/* RX queues: the XSKMAP is indexed by queue id. */
#define XBLADE_XSKS_MAX_ENTRIES 64

/* `struct xblade_target.flags` */
#define XBLADE_TARGET_ACL 0x1    /* export with a non-empty mask list: check `acl` */
#define XBLADE_TARGET_MARKER 0x2 /* wildcard marker, not an export; never has XBLADE_TARGET_ACL */

/* sizeof the structs below */
#define XBLADE_TARGET_VALUE_SIZE 4
#define XBLADE_ACL_KEY_SIZE 12

/* Value of `targets` (key: (major << 8) | minor, host byte order). */
struct xblade_target {
	__u32 flags;
};

/* Key of `acl`: no implicit padding; `pad` must be zero. */
struct xblade_acl_key {
	__u32 target; /* (major << 8) | minor of the export, host byte order */
	__u8 mac[6];  /* source MAC, wire order */
	__u8 pad[2];
};

_Static_assert(sizeof(struct xblade_target) == XBLADE_TARGET_VALUE_SIZE, "xblade_target size");
_Static_assert(sizeof(struct xblade_acl_key) == XBLADE_ACL_KEY_SIZE, "xblade_acl_key size");
_Static_assert(__builtin_offsetof(struct xblade_acl_key, mac) == 4, "xblade_acl_key.mac offset");
_Static_assert(__builtin_offsetof(struct xblade_acl_key, pad) == 10, "xblade_acl_key.pad offset");
_Static_assert(XBLADE_TARGETS_MAX_ENTRIES >= 2 * XBLADE_MAX_EXPORTS + 256,
	       "targets must hold every export and every marker");
_Static_assert(XBLADE_COUNTER_DROP_MALFORMED < XBLADE_COUNTER_COUNT, "counter count");

#endif /* XBLADE_ABI_H */
