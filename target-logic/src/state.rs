//! Control-plane state that initiators (and the operator) can change: the config string, the
//! MAC mask list (an ACL) and the reservation. Rarely written, read on every ATA request,
//! shared by all workers of a target. The lists are fixed-capacity arrays: no allocation
//! after start-up.

use aoe_proto::config::MAX_STRING_LEN;
use aoe_proto::Mac;

/// Most MACs the mask list holds (a full list answers edits with MError 3, "list full").
pub const MAX_MASK_ENTRIES: usize = 64;
/// Most MACs a reservation holds.
pub const MAX_RESERVE_ENTRIES: usize = 64;

/// A set of MAC addresses in insertion order with a fixed capacity.
#[derive(Clone, Debug)]
pub struct MacList<const N: usize> {
    macs: [Mac; N],
    len: usize,
}

/// Lists are equal when their entries are: slots past `len` hold stale values.
impl<const N: usize> PartialEq for MacList<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<const N: usize> Eq for MacList<N> {}

impl<const N: usize> Default for MacList<N> {
    fn default() -> Self {
        Self {
            macs: [Mac::ZERO; N],
            len: 0,
        }
    }
}

/// A list that is already at capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListFull;

impl<const N: usize> MacList<N> {
    pub fn capacity(&self) -> usize {
        N
    }

    pub fn as_slice(&self) -> &[Mac] {
        &self.macs[..self.len]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn contains(&self, mac: Mac) -> bool {
        self.as_slice().contains(&mac)
    }

    /// Adds `mac` unless present.
    pub fn add(&mut self, mac: Mac) -> Result<(), ListFull> {
        if self.contains(mac) {
            return Ok(());
        }
        let slot = self.macs.get_mut(self.len).ok_or(ListFull)?;
        *slot = mac;
        self.len += 1;
        Ok(())
    }

    /// Removes `mac` if present, keeping the order of the others.
    pub fn remove(&mut self, mac: Mac) {
        if let Some(i) = self.as_slice().iter().position(|m| *m == mac) {
            self.macs.copy_within(i + 1..self.len, i);
            self.len -= 1;
        }
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// A list of `macs` (each once, in order), or how many distinct MACs it would hold.
    fn from_macs(macs: &[Mac]) -> Result<Self, TooManyMacs> {
        let mut list = Self::default();
        list.add_all(macs)?;
        Ok(list)
    }

    /// Adds every MAC of `macs` or, when they do not all fit, none (and says how many
    /// distinct MACs the list would have held).
    fn add_all(&mut self, macs: &[Mac]) -> Result<(), TooManyMacs> {
        let mut next = self.clone();
        for mac in macs {
            if next.add(*mac).is_err() {
                let mut would_hold = self.len;
                for (i, m) in macs.iter().enumerate() {
                    if !self.contains(*m) && !macs[..i].contains(m) {
                        would_hold += 1;
                    }
                }
                return Err(TooManyMacs {
                    capacity: N,
                    would_hold,
                });
            }
        }
        *self = next;
        Ok(())
    }
}

/// An operator's list that does not fit: nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyMacs {
    /// Most MACs the list holds.
    pub capacity: usize,
    /// Distinct MACs the list would have held.
    pub would_hold: usize,
}

/// How an operator edits a mask list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskEdit {
    /// The list becomes exactly these MACs (none: the list is cleared, no ACL).
    Set,
    /// These MACs join the list (those already on it stay where they are).
    Add,
    /// These MACs leave the list (absent ones are ignored).
    Remove,
}

/// The whole control-plane state of one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetState {
    config: [u8; MAX_STRING_LEN],
    config_len: usize,
    pub mask: MacList<MAX_MASK_ENTRIES>,
    pub reservation: MacList<MAX_RESERVE_ENTRIES>,
    /// The operator set the reservation (`xbladectl reserve`), not an initiator. On a locked
    /// export such a reservation cannot be changed from the wire. False when unreserved.
    pub operator_reserved: bool,
}

impl Default for TargetState {
    fn default() -> Self {
        Self {
            config: [0; MAX_STRING_LEN],
            config_len: 0,
            mask: MacList::default(),
            reservation: MacList::default(),
            operator_reserved: false,
        }
    }
}

/// A config string longer than [`MAX_STRING_LEN`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StringTooLong;

impl TargetState {
    pub fn config_string(&self) -> &[u8] {
        &self.config[..self.config_len]
    }

    pub fn set_config_string(&mut self, value: &[u8]) -> Result<(), StringTooLong> {
        let dst = self.config.get_mut(..value.len()).ok_or(StringTooLong)?;
        dst.copy_from_slice(value);
        self.config_len = value.len();
        Ok(())
    }

    /// The operator's edit of the mask list: all of it or, when the list would overflow,
    /// none of it. Returns whether the list changed.
    pub fn edit_mask(&mut self, edit: MaskEdit, macs: &[Mac]) -> Result<bool, TooManyMacs> {
        let next = match edit {
            MaskEdit::Set => MacList::from_macs(macs)?,
            MaskEdit::Add => {
                let mut next = self.mask.clone();
                next.add_all(macs)?;
                next
            }
            MaskEdit::Remove => {
                let mut next = self.mask.clone();
                for mac in macs {
                    next.remove(*mac);
                }
                next
            }
        };
        let changed = next != self.mask;
        self.mask = next;
        Ok(changed)
    }

    /// The operator reserves the target for `holders` (none: releases it). Returns whether
    /// the state changed (the holders, or who set them).
    pub fn reserve_by_operator(&mut self, holders: &[Mac]) -> Result<bool, TooManyMacs> {
        let next = MacList::from_macs(holders)?;
        let by_operator = !next.is_empty();
        let changed = next != self.reservation || by_operator != self.operator_reserved;
        self.reservation = next;
        self.operator_reserved = by_operator;
        Ok(changed)
    }

    /// True when `src` may use the target at all (the mask list is empty or lists it).
    pub fn admits(&self, src: Mac) -> bool {
        self.mask.is_empty() || self.mask.contains(src)
    }

    /// True when `src` may issue commands a reservation guards (unreserved, or a holder).
    pub fn reservation_allows(&self, src: Mac) -> bool {
        self.reservation.is_empty() || self.reservation.contains(src)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> Mac {
        Mac([2, 0, 0, 0, 0, n])
    }

    #[test]
    fn mac_list_add_remove_keeps_order_and_capacity() {
        let mut list = MacList::<3>::default();
        list.add(mac(1)).unwrap();
        list.add(mac(2)).unwrap();
        list.add(mac(2)).unwrap();
        list.add(mac(3)).unwrap();
        assert_eq!(list.as_slice(), &[mac(1), mac(2), mac(3)]);
        assert_eq!(list.add(mac(4)), Err(ListFull));
        assert_eq!(list.add(mac(3)), Ok(()), "present: not an add");
        list.remove(mac(2));
        assert_eq!(list.as_slice(), &[mac(1), mac(3)]);
        list.remove(mac(9));
        assert_eq!(list.len(), 2);
        list.add(mac(4)).unwrap();
        assert_eq!(list.as_slice(), &[mac(1), mac(3), mac(4)]);
        let mut other = MacList::<3>::default();
        other.add(mac(1)).unwrap();
        other.add(mac(3)).unwrap();
        other.add(mac(4)).unwrap();
        assert_eq!(list, other, "equality ignores stale slots");
        list.clear();
        assert!(list.is_empty());
    }

    #[test]
    fn operator_mask_edits_are_all_or_nothing() {
        let mut s = TargetState::default();
        assert_eq!(
            s.edit_mask(MaskEdit::Set, &[mac(1), mac(2), mac(1)]),
            Ok(true)
        );
        assert_eq!(s.mask.as_slice(), &[mac(1), mac(2)]);
        assert_eq!(s.edit_mask(MaskEdit::Add, &[mac(2), mac(3)]), Ok(true));
        assert_eq!(s.mask.as_slice(), &[mac(1), mac(2), mac(3)]);
        assert_eq!(s.edit_mask(MaskEdit::Add, &[mac(3)]), Ok(false));
        assert_eq!(s.edit_mask(MaskEdit::Remove, &[mac(2), mac(9)]), Ok(true));
        assert_eq!(s.mask.as_slice(), &[mac(1), mac(3)]);
        assert_eq!(s.edit_mask(MaskEdit::Remove, &[mac(9)]), Ok(false));
        let many: Vec<Mac> = (0..MAX_MASK_ENTRIES as u8).map(|i| mac(100 + i)).collect();
        assert_eq!(
            s.edit_mask(MaskEdit::Add, &many),
            Err(TooManyMacs {
                capacity: MAX_MASK_ENTRIES,
                would_hold: MAX_MASK_ENTRIES + 2
            })
        );
        assert_eq!(s.mask.as_slice(), &[mac(1), mac(3)], "unchanged on error");
        assert_eq!(s.edit_mask(MaskEdit::Set, &many), Ok(true));
        assert_eq!(s.mask.len(), MAX_MASK_ENTRIES);
        assert_eq!(s.edit_mask(MaskEdit::Set, &[]), Ok(true));
        assert!(s.mask.is_empty());
    }

    #[test]
    fn operator_reservation_is_marked_and_released() {
        let mut s = TargetState::default();
        s.reservation.add(mac(1)).unwrap();
        assert_eq!(
            s.reserve_by_operator(&[mac(1)]),
            Ok(true),
            "now the operator's"
        );
        assert!(s.operator_reserved);
        assert_eq!(s.reserve_by_operator(&[mac(1)]), Ok(false));
        assert_eq!(s.reserve_by_operator(&[]), Ok(true));
        assert!(s.reservation.is_empty() && !s.operator_reserved);
        let many: Vec<Mac> = (0..=MAX_RESERVE_ENTRIES as u8).map(mac).collect();
        assert!(s.reserve_by_operator(&many).is_err());
        assert!(s.reservation.is_empty() && !s.operator_reserved);
    }

    #[test]
    fn config_string_bounds() {
        let mut s = TargetState::default();
        assert_eq!(s.config_string(), b"");
        s.set_config_string(&[b'x'; MAX_STRING_LEN]).unwrap();
        assert_eq!(s.config_string().len(), MAX_STRING_LEN);
        assert_eq!(
            s.set_config_string(&[0; MAX_STRING_LEN + 1]),
            Err(StringTooLong)
        );
        assert_eq!(
            s.config_string().len(),
            MAX_STRING_LEN,
            "unchanged on error"
        );
    }

    #[test]
    fn admission_and_reservation() {
        let mut s = TargetState::default();
        assert!(s.admits(mac(1)) && s.reservation_allows(mac(1)));
        s.mask.add(mac(2)).unwrap();
        assert!(!s.admits(mac(1)) && s.admits(mac(2)));
        s.reservation.add(mac(3)).unwrap();
        assert!(!s.reservation_allows(mac(2)) && s.reservation_allows(mac(3)));
    }
}
