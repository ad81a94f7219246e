//! What the operator (not an initiator) may do to an export: lock its mask list and config
//! string against the wire, and set its mask list and reservation directly.
//!
//! # What "locked" means
//!
//! AoE lets any host on the segment rewrite a target's mask list, config string and
//! reservation. A locked export keeps the first two for the operator:
//!
//! * a Mac Mask List edit whose directives would change the list is refused: the reply
//!   carries MError 1 (unspecified) and, as directive count, the index of the first
//!   directive that would have changed it; directives before it changed nothing. An edit
//!   that changes nothing (an add of a listed MAC, a delete of an absent one) and every read
//!   are answered as usual;
//! * a Query Config set (CCmd 3) or force set (CCmd 4) of a string other than the current one
//!   is refused with AoE error 4 (config string present) and the current string, as the
//!   spec answers a set of a string already present; tests, prefix tests and reads work;
//! * reservations stay the initiators' (clustering initiators take and hand over a
//!   reservation as they fail over, and locking them out would break that), except one the
//!   operator set: while it holds, a Reserve/Release set or force set that would change it is
//!   refused with AoE error 6 (target is reserved). Once the operator clears it (or an
//!   initiator's own reservation replaces it on an unlocked export) it is the initiators'
//!   again.
//!
//! Every refusal leaves the state as it was and is reported as
//! [`ReplyKind::RefusedLocked`](crate::ReplyKind::RefusedLocked). The operator's own edits
//! ([`Target::edit_mask`], [`Target::reserve_by_operator`],
//! [`Target::set_config_string_by_operator`]) are never refused for the lock.

use std::sync::atomic::Ordering;

use aoe_proto::Mac;

use super::{MaskEdit, StringTooLong, Target, TooManyMacs};

impl Target {
    /// Locks (or unlocks) the mask list and config string against changes from the wire,
    /// for every link this export is served on.
    pub fn set_locked(&self, locked: bool) {
        self.shared.locked.store(locked, Ordering::Release);
    }

    pub fn is_locked(&self) -> bool {
        self.shared.locked.load(Ordering::Acquire)
    }

    /// The operator's edit of the mask list: all of it, or (when the list would overflow)
    /// none of it. Returns whether the list changed; the caller mirrors and persists it.
    pub fn edit_mask(&self, edit: MaskEdit, macs: &[Mac]) -> Result<bool, TooManyMacs> {
        let mut state = self.lock();
        let changed = state.edit_mask(edit, macs)?;
        self.update_restricted(&state);
        Ok(changed)
    }

    /// The operator sets the config string (empty: clears it). Returns whether it changed;
    /// the caller persists it.
    pub fn set_config_string_by_operator(&self, value: &[u8]) -> Result<bool, StringTooLong> {
        let mut state = self.lock();
        if state.config_string() == value {
            return Ok(false);
        }
        state.set_config_string(value)?;
        Ok(true)
    }

    /// The operator reserves the export for `holders` (none: releases it). Returns whether
    /// the state changed; the caller persists it.
    pub fn reserve_by_operator(&self, holders: &[Mac]) -> Result<bool, TooManyMacs> {
        let mut state = self.lock();
        let changed = state.reserve_by_operator(holders)?;
        self.update_restricted(&state);
        Ok(changed)
    }
}
