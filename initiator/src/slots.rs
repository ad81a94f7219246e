//! The in-flight table: one preallocated slot (request frame included) per request the
//! initiator may have outstanding. Pure bookkeeping, no I/O; allocates only in
//! [`SlotTable::new`].

use std::time::Instant;

use crate::error::Op;
use crate::tag;
use crate::wire::Expect;

/// One outstanding request and the frame that carries it.
#[derive(Debug)]
pub(crate) struct Slot {
    live: bool,
    /// Generation of the latest transmission (see [`crate::tag`]).
    pub generation: u32,
    pub op: Op,
    pub expect: Expect,
    pub lba: u64,
    pub sectors: u8,
    pub user: u64,
    /// Transmissions so far, the first included.
    pub attempts: u32,
    pub submitted_at: Instant,
    pub deadline: Instant,
    /// The request as sent; `frame[..frame_len]` is on the wire.
    pub frame: Box<[u8]>,
    pub frame_len: usize,
}

impl Slot {
    /// The tag of the latest transmission of the request in slot `index`.
    pub fn tag(&self, index: usize) -> u32 {
        tag::encode(index, self.generation)
    }

    /// Starts the next transmission: a new generation, hence a new tag, which is returned.
    pub fn next_transmission(&mut self, index: usize) -> u32 {
        self.generation = tag::next_generation(self.generation);
        self.tag(index)
    }
}

/// 32 random bits from the standard library's per-process random hash keys.
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(std::process::id().into());
    hasher.finish() as u32
}

/// Fixed-size table of slots with a free list.
#[derive(Debug)]
pub(crate) struct SlotTable {
    slots: Vec<Slot>,
    /// Indices of idle slots; a stack, so a freed slot is reused first (its generation
    /// moves on, so replies to its previous request stay stale).
    free: Vec<usize>,
}

impl SlotTable {
    /// `depth` slots (at most [`tag::MAX_SLOTS`]) each with a frame buffer of
    /// `frame_capacity_bytes`.
    pub fn new(depth: usize, frame_capacity_bytes: usize) -> SlotTable {
        let depth = depth.min(tag::MAX_SLOTS);
        let now = Instant::now();
        // Generations start at a random point per table: two initiators sharing a MAC
        // (two tools on one host) see each other's replies, and must not take them for
        // their own.
        let first_generation = random_u32() & tag::GENERATION_MASK;
        let slots = (0..depth)
            .map(|_| Slot {
                live: false,
                generation: first_generation,
                op: Op::Read,
                expect: Expect::NoData,
                lba: 0,
                sectors: 0,
                user: 0,
                attempts: 0,
                submitted_at: now,
                deadline: now,
                frame: vec![0u8; frame_capacity_bytes].into_boxed_slice(),
                frame_len: 0,
            })
            .collect();
        SlotTable {
            slots,
            free: (0..depth).rev().collect(),
        }
    }

    pub fn depth(&self) -> usize {
        self.slots.len()
    }

    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Takes an idle slot and marks it live; `None` when all are in flight. The caller fills
    /// it in.
    pub fn acquire(&mut self) -> Option<(usize, &mut Slot)> {
        let index = self.free.pop()?;
        let slot = self.slots.get_mut(index)?;
        slot.live = true;
        Some((index, slot))
    }

    /// Returns a live slot to the free list; a no-op for an idle or unknown index.
    pub fn release(&mut self, index: usize) {
        if let Some(slot) = self.slots.get_mut(index) {
            if slot.live {
                slot.live = false;
                self.free.push(index);
            }
        }
    }

    /// Forgets every outstanding request; their late replies will be stale.
    pub fn abandon_all(&mut self) {
        for index in 0..self.slots.len() {
            self.release(index);
        }
    }

    /// What the request in `index` expects, if it is live and `generation` is its latest
    /// transmission.
    pub fn lookup(&self, index: usize, generation: u32) -> Option<Expect> {
        let slot = self.slots.get(index)?;
        (slot.live && slot.generation == generation).then_some(slot.expect)
    }

    pub fn get(&self, index: usize) -> Option<&Slot> {
        self.slots.get(index).filter(|s| s.live)
    }

    pub fn get_mut(&mut self, index: usize) -> Option<&mut Slot> {
        self.slots.get_mut(index).filter(|s| s.live)
    }

    /// The earliest retransmission deadline of the live slots.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter(|s| s.live)
            .map(|s| s.deadline)
            .min()
    }

    /// The first live slot whose deadline is at or before `now`.
    pub fn first_expired(&self, now: Instant) -> Option<usize> {
        self.slots.iter().position(|s| s.live && s.deadline <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn acquire_until_full_then_release() {
        let mut t = SlotTable::new(3, 64);
        assert_eq!((t.depth(), t.in_flight()), (3, 0));
        let a = t.acquire().unwrap().0;
        let b = t.acquire().unwrap().0;
        let c = t.acquire().unwrap().0;
        assert_eq!((a, b, c), (0, 1, 2));
        assert!(t.acquire().is_none());
        assert_eq!(t.in_flight(), 3);
        t.release(b);
        t.release(b);
        t.release(99);
        assert_eq!(t.in_flight(), 2);
        assert_eq!(t.acquire().unwrap().0, b);
        t.abandon_all();
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn lookup_needs_live_slot_and_latest_generation() {
        let mut t = SlotTable::new(2, 64);
        let (i, slot) = t.acquire().unwrap();
        slot.expect = Expect::Data { sectors: 2 };
        let first = slot.next_transmission(i);
        let (_, g1) = tag::decode(first).unwrap();
        assert_eq!(t.lookup(i, g1), Some(Expect::Data { sectors: 2 }));
        let second = t.get_mut(i).unwrap().next_transmission(i);
        let (_, g2) = tag::decode(second).unwrap();
        assert_eq!(
            t.lookup(i, g1),
            None,
            "reply to the retransmitted request is stale"
        );
        assert_eq!(t.lookup(i, g2), Some(Expect::Data { sectors: 2 }));
        t.release(i);
        assert_eq!(t.lookup(i, g2), None, "reply after completion is stale");
        assert_eq!(t.lookup(7, g2), None);
        // The slot's next request gets a tag no earlier transmission had.
        let (j, slot) = t.acquire().unwrap();
        assert_eq!(j, i);
        let third = slot.next_transmission(j);
        assert!(third != first && third != second);
    }

    #[test]
    fn deadlines() {
        let mut t = SlotTable::new(4, 8);
        assert_eq!(t.next_deadline(), None);
        let now = Instant::now();
        let later = now + Duration::from_millis(50);
        t.acquire().unwrap().1.deadline = later;
        t.acquire().unwrap().1.deadline = now;
        assert_eq!(t.next_deadline(), Some(now));
        assert_eq!(t.first_expired(now), Some(1));
        t.release(1);
        assert_eq!(t.first_expired(now), None);
        assert_eq!(t.first_expired(later), Some(0));
    }
}
