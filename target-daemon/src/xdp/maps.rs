//! The pure part of driving the `targets` and `acl` maps: key encoding, wildcard markers, the
//! maps' content for a set of exports, and the ordered list of single-entry operations that
//! turns one content into another without ever briefly denying or unserving what is allowed
//! and served both before and after. Nothing here touches the kernel; `mod.rs` applies the
//! operations and keeps a [`MapState`] mirror of what the maps hold.

use std::collections::{BTreeMap, BTreeSet};

use super::abi::{
    AclKey, XBLADE_MAJOR_ANY, XBLADE_MINOR_ANY, XBLADE_TARGET_ACL, XBLADE_TARGET_MARKER,
};

/// A MAC address, wire order.
pub(crate) type Mac = [u8; 6];

/// The `targets` key of shelf `major`, slot `minor` (also of a wildcard: 0xFFFF / 0xFF).
pub(crate) fn target_key(major: u16, minor: u8) -> u32 {
    (u32::from(major) << 8) | u32::from(minor)
}

/// Shelf and slot of a `targets` key.
pub(crate) fn split_key(key: u32) -> (u16, u8) {
    ((key >> 8) as u16, (key & 0xFF) as u8)
}

/// Whether `key` names a wildcard (a marker), not an export.
pub(crate) fn is_wildcard(key: u32) -> bool {
    let (major, minor) = split_key(key);
    u32::from(major) == XBLADE_MAJOR_ANY || u32::from(minor) == XBLADE_MINOR_ANY
}

/// The wildcard marker keys that must be present while `exports` (keys) are served: for every
/// export eM.m, `M.any`, `any.m` and `any.any`.
pub(crate) fn markers(exports: impl IntoIterator<Item = u32>) -> BTreeSet<u32> {
    let any_major = XBLADE_MAJOR_ANY as u16;
    let any_minor = XBLADE_MINOR_ANY as u8;
    let mut out = BTreeSet::new();
    for key in exports {
        let (major, minor) = split_key(key);
        out.insert(target_key(major, any_minor));
        out.insert(target_key(any_major, minor));
        out.insert(target_key(any_major, any_minor));
    }
    out
}

/// `targets` flags of an export with this mask list.
pub(crate) fn export_flags(mask_empty: bool) -> u32 {
    if mask_empty {
        0
    } else {
        XBLADE_TARGET_ACL
    }
}

/// What the `targets` and `acl` maps hold (or should hold).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MapState {
    /// `targets`: key → flags.
    pub targets: BTreeMap<u32, u32>,
    /// `acl`: the keys present.
    pub acl: BTreeSet<AclKey>,
}

impl MapState {
    /// The content that serves exactly `exports` (key, mask list; an empty list means no ACL),
    /// markers included. Keys must not be wildcards and must be distinct (the caller checks).
    pub(crate) fn for_exports<'a>(
        exports: impl IntoIterator<Item = (u32, &'a BTreeSet<Mac>)>,
    ) -> MapState {
        let mut state = MapState::default();
        for (key, mask) in exports {
            debug_assert!(!is_wildcard(key));
            state.targets.insert(key, export_flags(mask.is_empty()));
            state
                .acl
                .extend(mask.iter().map(|mac| AclKey::new(key, *mac)));
        }
        let markers = markers(state.export_keys().collect::<Vec<_>>());
        for key in markers {
            state.targets.insert(key, XBLADE_TARGET_MARKER);
        }
        state
    }

    /// The served exports' keys, in order.
    pub(crate) fn export_keys(&self) -> impl Iterator<Item = u32> + '_ {
        self.targets.keys().copied().filter(|k| !is_wildcard(*k))
    }

    /// Whether `key` is a served export (not a marker).
    pub(crate) fn serves(&self, key: u32) -> bool {
        !is_wildcard(key) && self.targets.contains_key(&key)
    }

    /// The `acl` entries of export `key`.
    pub(crate) fn mask_of(&self, key: u32) -> impl Iterator<Item = Mac> + '_ {
        self.acl
            .range(AclKey::new(key, [0; 6])..=AclKey::new(key, [0xFF; 6]))
            .map(|k| k.mac)
    }

    /// The sub-state of export `key` alone: its `targets` entry (if any) and its `acl` entries.
    pub(crate) fn export_only(&self, key: u32) -> MapState {
        MapState {
            targets: self
                .targets
                .get(&key)
                .map(|flags| (key, *flags))
                .into_iter()
                .collect(),
            acl: self.mask_of(key).map(|mac| AclKey::new(key, mac)).collect(),
        }
    }

    /// Records that `op` succeeded.
    pub(crate) fn apply(&mut self, op: &Op) {
        match *op {
            Op::PutTarget { key, flags } => {
                self.targets.insert(key, flags);
            }
            Op::DelTarget { key } => {
                self.targets.remove(&key);
            }
            Op::PutAcl(key) => {
                self.acl.insert(key);
            }
            Op::DelAcl(key) => {
                self.acl.remove(&key);
            }
        }
    }

    /// What the program does with a request for `key` (an export or a wildcard) from `mac`:
    /// `true` when it is redirected (served and admitted), as the C program decides.
    #[cfg(test)]
    pub(crate) fn admits(&self, key: u32, mac: Mac) -> bool {
        match self.targets.get(&key) {
            None => false,
            Some(flags) if flags & XBLADE_TARGET_ACL != 0 => {
                self.acl.contains(&AclKey::new(key, mac))
            }
            Some(_) => true,
        }
    }
}

/// One single-entry map update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Insert or replace a `targets` entry.
    PutTarget {
        /// Key.
        key: u32,
        /// `struct xblade_target.flags`.
        flags: u32,
    },
    /// Remove a `targets` entry.
    DelTarget {
        /// Key.
        key: u32,
    },
    /// Insert an `acl` entry.
    PutAcl(AclKey),
    /// Remove an `acl` entry.
    DelAcl(AclKey),
}

/// The operations that turn `current` into `desired`, in an order such that every state in
/// between (after any prefix of them, so also when one fails):
/// * serves and admits every (key, MAC) that both `current` and `desired` admit, and keeps
///   every key present in both present (so served exports and markers never blink);
/// * admits nothing that neither `current` nor `desired` admits (a new export never appears
///   before its ACL entries; an ACL is never briefly off);
/// * has no more entries in either map than the larger of `current` and `desired`.
///
/// Shrink first, then grow:
/// 1. remove `targets` entries not wanted, and clear the ACL flag of exports losing their ACL;
/// 2. remove `acl` entries not wanted (their export is gone or no longer checks them);
/// 3. insert the new `acl` entries;
/// 4. insert new `targets` entries (exports with their ACL flag, markers) and set the ACL flag
///    of exports gaining an ACL (their MACs are in since step 3).
pub(crate) fn plan(current: &MapState, desired: &MapState) -> Vec<Op> {
    let mut shrink_targets = Vec::new();
    let mut grow_targets = Vec::new();
    for (key, flags) in &current.targets {
        match desired.targets.get(key) {
            None => shrink_targets.push(Op::DelTarget { key: *key }),
            Some(new) if new == flags => {}
            Some(new) => {
                let op = Op::PutTarget {
                    key: *key,
                    flags: *new,
                };
                if new & XBLADE_TARGET_ACL == 0 {
                    // Losing (or not gaining) the ACL: before any of its MACs go.
                    shrink_targets.push(op);
                } else {
                    // Gaining the ACL: after its MACs are in.
                    grow_targets.push(op);
                }
            }
        }
    }
    for (key, flags) in &desired.targets {
        if !current.targets.contains_key(key) {
            grow_targets.push(Op::PutTarget {
                key: *key,
                flags: *flags,
            });
        }
    }
    let mut ops = shrink_targets;
    ops.extend(current.acl.difference(&desired.acl).map(|k| Op::DelAcl(*k)));
    ops.extend(desired.acl.difference(&current.acl).map(|k| Op::PutAcl(*k)));
    ops.extend(grow_targets);
    ops
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const A: Mac = [2, 0, 0, 0, 0, 0xA];
    const B: Mac = [2, 0, 0, 0, 0, 0xB];
    const C: Mac = [2, 0, 0, 0, 0, 0xC];

    fn state(exports: &[(u16, u8, &[Mac])]) -> MapState {
        let sets: Vec<(u32, BTreeSet<Mac>)> = exports
            .iter()
            .map(|(major, minor, mask)| {
                (target_key(*major, *minor), mask.iter().copied().collect())
            })
            .collect();
        MapState::for_exports(sets.iter().map(|(k, m)| (*k, m)))
    }

    #[test]
    fn keys_encode_like_the_c_program() {
        assert_eq!(target_key(7, 3), 0x0703);
        assert_eq!(target_key(0xFFFF, 0xFF), 0x00FF_FFFF);
        assert_eq!(target_key(0x1234, 0x56), 0x0012_3456);
        assert_eq!(split_key(0x0012_3456), (0x1234, 0x56));
        assert!(is_wildcard(target_key(7, 0xFF)));
        assert!(is_wildcard(target_key(0xFFFF, 3)));
        assert!(!is_wildcard(target_key(0xFFFE, 0xFE)));
        let k = AclKey::new(0x0703, A);
        // SAFETY: AclKey is repr(C) without implicit padding (checked in abi.rs).
        let bytes: [u8; 12] = unsafe { std::mem::transmute(k) };
        assert_eq!(&bytes[..4], &0x0703u32.to_ne_bytes());
        assert_eq!(&bytes[4..10], &A);
        assert_eq!(&bytes[10..], &[0, 0]);
    }

    #[test]
    fn markers_cover_exactly_the_served_wildcards() {
        let m = markers([target_key(7, 1), target_key(7, 2), target_key(3, 1)]);
        let expect: BTreeSet<u32> = [
            target_key(7, 0xFF),
            target_key(3, 0xFF),
            target_key(0xFFFF, 1),
            target_key(0xFFFF, 2),
            target_key(0xFFFF, 0xFF),
        ]
        .into();
        assert_eq!(m, expect);
        assert!(markers([]).is_empty());

        let s = state(&[(7, 1, &[A]), (3, 1, &[])]);
        assert_eq!(s.targets[&target_key(7, 1)], XBLADE_TARGET_ACL);
        assert_eq!(s.targets[&target_key(3, 1)], 0);
        assert_eq!(s.targets[&target_key(7, 0xFF)], XBLADE_TARGET_MARKER);
        assert_eq!(s.targets[&target_key(0xFFFF, 0xFF)], XBLADE_TARGET_MARKER);
        assert!(!s.targets.contains_key(&target_key(0xFFFF, 2)));
        assert_eq!(
            s.export_keys().collect::<Vec<_>>(),
            [target_key(3, 1), target_key(7, 1)]
        );
        assert_eq!(s.mask_of(target_key(7, 1)).collect::<Vec<_>>(), [A]);
        assert_eq!(s.mask_of(target_key(3, 1)).count(), 0);
        // Wildcards are admitted without an ACL check; other shelves are not served.
        assert!(s.admits(target_key(7, 0xFF), C));
        assert!(!s.admits(target_key(9, 0xFF), A));
        assert!(!s.admits(target_key(7, 1), B));
        assert!(s.admits(target_key(7, 1), A));
    }

    #[test]
    fn removing_the_last_export_of_a_shelf_removes_its_marker() {
        let before = state(&[(7, 1, &[]), (7, 2, &[]), (3, 1, &[])]);
        let after = state(&[(7, 2, &[]), (3, 1, &[])]);
        let ops = plan(&before, &after);
        assert_eq!(
            ops,
            [Op::DelTarget {
                key: target_key(7, 1)
            }]
        );
        let last = state(&[(3, 1, &[])]);
        let ops = plan(&after, &last);
        assert_eq!(
            ops,
            [
                Op::DelTarget {
                    key: target_key(7, 2)
                },
                Op::DelTarget {
                    key: target_key(7, 0xFF)
                },
                Op::DelTarget {
                    key: target_key(0xFFFF, 2)
                },
            ]
        );
        let ops = plan(&last, &MapState::default());
        assert_eq!(ops.len(), 4, "{ops:?}");
    }

    #[test]
    fn acl_on_inserts_macs_first_and_off_clears_the_flag_first() {
        let open = state(&[(1, 2, &[])]);
        let closed = state(&[(1, 2, &[A, B])]);
        let key = target_key(1, 2);
        assert_eq!(
            plan(&open, &closed),
            [
                Op::PutAcl(AclKey::new(key, A)),
                Op::PutAcl(AclKey::new(key, B)),
                Op::PutTarget {
                    key,
                    flags: XBLADE_TARGET_ACL
                },
            ]
        );
        assert_eq!(
            plan(&closed, &open),
            [
                Op::PutTarget { key, flags: 0 },
                Op::DelAcl(AclKey::new(key, A)),
                Op::DelAcl(AclKey::new(key, B)),
            ]
        );
        // A changed list: removals first (room in the map), the common MAC untouched.
        let other = state(&[(1, 2, &[B, C])]);
        assert_eq!(
            plan(&closed, &other),
            [
                Op::DelAcl(AclKey::new(key, A)),
                Op::PutAcl(AclKey::new(key, C)),
            ]
        );
        assert!(plan(&other, &other).is_empty());
    }

    #[test]
    fn export_only_is_the_exports_own_entries() {
        let s = state(&[(1, 2, &[A]), (1, 3, &[B])]);
        let sub = s.export_only(target_key(1, 2));
        assert_eq!(sub.targets.len(), 1);
        assert_eq!(
            sub.acl.iter().copied().collect::<Vec<_>>(),
            [AclKey::new(target_key(1, 2), A)]
        );
        assert!(s.serves(target_key(1, 3)));
        assert!(!s.serves(target_key(1, 0xFF)));
    }

    /// Random exports: a few shelves and slots, masks from a few MACs.
    fn exports_strategy() -> impl Strategy<Value = Vec<(u16, u8, Vec<Mac>)>> {
        let macs = [A, B, C];
        prop::collection::btree_map(
            (0u16..3, 0u8..3),
            prop::collection::vec(prop::sample::select(macs.to_vec()), 0..3),
            0..6,
        )
        .prop_map(|m| m.into_iter().map(|((a, b), v)| (a, b, v)).collect())
    }

    fn to_state(exports: &[(u16, u8, Vec<Mac>)]) -> MapState {
        let v: Vec<(u16, u8, &[Mac])> = exports
            .iter()
            .map(|(a, b, m)| (*a, *b, m.as_slice()))
            .collect();
        state(&v)
    }

    proptest! {
        #[test]
        fn every_intermediate_state_is_safe(
            before in exports_strategy(),
            after in exports_strategy(),
        ) {
            let (cur, want) = (to_state(&before), to_state(&after));
            let ops = plan(&cur, &want);
            // Every key a request can carry here, wildcards included, and every MAC.
            let mut keys = Vec::new();
            for major in [0u16, 1, 2, 0xFFFF] {
                for minor in [0u8, 1, 2, 0xFF] {
                    keys.push(target_key(major, minor));
                }
            }
            let macs = [A, B, C];
            let mut s = cur.clone();
            let check = |s: &MapState| {
                for &key in &keys {
                    for mac in macs {
                        let (b, a, now) = (cur.admits(key, mac), want.admits(key, mac), s.admits(key, mac));
                        prop_assert!(!(b && a) || now, "{key:#x} {mac:?} briefly denied");
                        prop_assert!(!now || b || a, "{key:#x} {mac:?} briefly admitted");
                    }
                    if cur.targets.contains_key(&key) && want.targets.contains_key(&key) {
                        prop_assert!(s.targets.contains_key(&key), "{key:#x} briefly unserved");
                    }
                }
                prop_assert!(s.targets.len() <= cur.targets.len().max(want.targets.len()));
                prop_assert!(s.acl.len() <= cur.acl.len().max(want.acl.len()));
                Ok(())
            };
            check(&s)?;
            for op in &ops {
                s.apply(op);
                check(&s)?;
            }
            prop_assert_eq!(&s, &want);
            // Minimal: each op changes something, so a second plan is empty.
            prop_assert!(plan(&s, &want).is_empty());
            // Per-export plans (set_export_mask) agree with the whole.
            for key in want.export_keys() {
                if cur.serves(key) {
                    let sub = plan(&cur.export_only(key), &want.export_only(key));
                    prop_assert!(sub.iter().all(|op| ops.contains(op)));
                }
            }
        }
    }
}
