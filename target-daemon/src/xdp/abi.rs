//! What the XDP program and the daemon share: the constants of `xdp-prog/xblade_abi.h` (parsed
//! by `build.rs` into `$OUT_DIR/xdp_abi.rs`, so never copied by hand) and the Rust twins of its
//! map key/value structs, whose layout is checked against the header's size constants here at
//! compile time (and by aya against the object's BTF when the maps are opened).

use std::mem::{offset_of, size_of};

include!(concat!(env!("OUT_DIR"), "/xdp_abi.rs"));

/// Value of the `targets` map (`struct xblade_target`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TargetValue {
    /// `XBLADE_TARGET_ACL`, `XBLADE_TARGET_MARKER`.
    pub flags: u32,
}

/// Key of the `acl` map (`struct xblade_acl_key`): no implicit padding, `pad` always zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct AclKey {
    /// The export's `targets` key, `(major << 8) | minor`.
    pub target: u32,
    /// Source MAC, wire order.
    pub mac: [u8; 6],
    /// Zero.
    pub pad: [u8; 2],
}

impl AclKey {
    pub(crate) fn new(target: u32, mac: [u8; 6]) -> Self {
        Self {
            target,
            mac,
            pad: [0; 2],
        }
    }
}

// SAFETY: both are `repr(C)` structs of integers with no implicit padding (checked below), so
// every byte is initialised and any bit pattern is a valid value.
unsafe impl aya::Pod for TargetValue {}
// SAFETY: as above.
unsafe impl aya::Pod for AclKey {}

const _: () = {
    assert!(size_of::<TargetValue>() == XBLADE_TARGET_VALUE_SIZE as usize);
    assert!(size_of::<AclKey>() == XBLADE_ACL_KEY_SIZE as usize);
    assert!(offset_of!(AclKey, mac) == 4);
    assert!(offset_of!(AclKey, pad) == 10);
    // Every export plus, at most, one shelf marker per export, 255 slot markers and the full
    // wildcard.
    assert!(XBLADE_TARGETS_MAX_ENTRIES >= 2 * XBLADE_MAX_EXPORTS + 256);
    assert!(XBLADE_TARGET_ACL & XBLADE_TARGET_MARKER == 0);
    // The counter indices: distinct and inside the array.
    let counters = [
        XBLADE_COUNTER_PASS_NOT_AOE,
        XBLADE_COUNTER_PASS_RESPONSE,
        XBLADE_COUNTER_PASS_OTHER_TARGET,
        XBLADE_COUNTER_DROP_ACL,
        XBLADE_COUNTER_REDIRECT,
        XBLADE_COUNTER_PASS_NO_SOCKET,
        XBLADE_COUNTER_DROP_MALFORMED,
    ];
    assert!(counters.len() == XBLADE_COUNTER_COUNT as usize);
    let mut i = 0;
    while i < counters.len() {
        assert!(counters[i] < XBLADE_COUNTER_COUNT);
        let mut j = i + 1;
        while j < counters.len() {
            assert!(counters[i] != counters[j]);
            j += 1;
        }
        i += 1;
    }
    assert!(XBLADE_MAJOR_ANY == 0xFFFF && XBLADE_MINOR_ANY == 0xFF);
};
