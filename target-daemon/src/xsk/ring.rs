//! The four AF_XDP rings: single-producer/single-consumer queues shared with the kernel.
//!
//! Each ring is an mmapped region laid out as described by `XDP_MMAP_OFFSETS`
//! (`struct xdp_ring_offset`): a `producer` and a `consumer` `u32`, a `flags` `u32`
//! (`XDP_RING_NEED_WAKEUP`) and `size` entries. The indices are free-running `u32`s (they wrap
//! at 2^32, never at `size`); the slot of index `i` is `i & (size - 1)`, which is why `size`
//! must be a power of two.
//!
//! | ring | userspace is | entry |
//! |---|---|---|
//! | fill (`XDP_UMEM_FILL_RING`) | producer | `u64` UMEM address of a free frame |
//! | completion (`XDP_UMEM_COMPLETION_RING`) | consumer | `u64` address of a sent frame |
//! | RX (`XDP_RX_RING`) | consumer | `struct xdp_desc` of a received frame |
//! | TX (`XDP_TX_RING`) | producer | `struct xdp_desc` of a frame to send |
//!
//! Like libxdp (`xsk_ring_prod__reserve`, `xsk_ring_cons__peek`), each side keeps a cached copy
//! of the other side's index and only re-reads the shared one (an acquire load, pairing with the
//! kernel's `smp_store_release`) when the cache says there is not enough room or data. Our own
//! index is published with a release store after the entries are written (producer) or read
//! (consumer), pairing with the kernel's `smp_load_acquire` (see `net/xdp/xsk_queue.h`).
//!
//! The API is batch oriented and never allocates: a producer `reserve`s up to `n` slots,
//! `write`s entries `0..reserved` and `submit`s some prefix of them; a consumer `peek`s up to
//! `max` entries, reads entries `0..peeked` and `release`s some prefix of them.

use std::{
    marker::PhantomData,
    ptr::NonNull,
    sync::atomic::{fence, AtomicU32, Ordering},
};

/// Pointers into one mapped ring. Nothing here owns the mapping; [`super::XskSocket`] does, and
/// keeps it alive for as long as the ring can be reached.
#[derive(Debug)]
struct RawRing<T> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    entries: NonNull<T>,
    mask: u32,
}

impl<T: Copy> RawRing<T> {
    /// # Safety
    ///
    /// `base` must point to a mapping, valid and not moved or unmapped for the lifetime of the
    /// ring, in which `base + off.producer`, `+ off.consumer` and `+ off.flags` are 4-byte
    /// aligned `u32`s and `base + off.desc` is a `T`-aligned array of `size` `T`s; `size` must be
    /// a non-zero power of two. The memory may be concurrently written by one peer (the kernel)
    /// following the ring protocol, but by no other party.
    unsafe fn new(base: NonNull<u8>, off: &libc::xdp_ring_offset, size: u32) -> Self {
        debug_assert!(size.is_power_of_two());
        // SAFETY: the caller guarantees that every offset lies within the mapping, so the
        // additions stay inside one allocation and the results are non-null.
        unsafe {
            Self {
                producer: base.add(off.producer as usize).cast(),
                consumer: base.add(off.consumer as usize).cast(),
                flags: base.add(off.flags as usize).cast(),
                entries: base.add(off.desc as usize).cast(),
                mask: size - 1,
            }
        }
    }

    fn size(&self) -> u32 {
        self.mask + 1
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: `new`'s contract: an aligned u32 inside a live mapping; AtomicU32 has the
        // layout of u32, and all accesses (ours and the kernel's) are atomic-width loads/stores.
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { self.consumer.as_ref() }
    }

    fn flags(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { self.flags.as_ref() }
    }

    /// Reads the entry at free-running index `idx`.
    fn read(&self, idx: u32) -> T {
        let slot = (idx & self.mask) as usize;
        // SAFETY: `slot < size`, so the pointer is inside the entry array (`new`'s contract).
        // The protocol gives the consumer exclusive access to slots in [consumer, producer)
        // after the acquire load of `producer`; a volatile read keeps the compiler from
        // assuming anything about memory the kernel writes.
        unsafe { self.entries.as_ptr().add(slot).read_volatile() }
    }

    /// Writes the entry at free-running index `idx`.
    fn write(&mut self, idx: u32, value: T) {
        let slot = (idx & self.mask) as usize;
        // SAFETY: `slot < size` (see `read`). The producer owns the slots in
        // [producer, consumer + size) until it publishes them with a release store.
        unsafe { self.entries.as_ptr().add(slot).write_volatile(value) }
    }
}

/// Userspace side of a ring that userspace fills: the fill ring ([`FillRing`], `u64` frame
/// addresses) and the TX ring ([`TxRing`], `struct xdp_desc`).
#[derive(Debug)]
pub struct ProducerRing<T> {
    raw: RawRing<T>,
    /// Next index to publish; equal to the shared `producer` (only we write it).
    prod: u32,
    /// Cached `consumer + size`: we may write indices below this without looking again.
    cons_limit: u32,
    /// Slots reserved by the last `reserve`, starting at `prod`.
    reserved: u32,
    _entry: PhantomData<T>,
}

/// Fill ring (`XDP_UMEM_FILL_RING`): hands free UMEM frames to the kernel for reception.
pub type FillRing = ProducerRing<u64>;
/// TX ring (`XDP_TX_RING`): frames to transmit.
pub type TxRing = ProducerRing<libc::xdp_desc>;

impl<T: Copy> ProducerRing<T> {
    /// # Safety
    ///
    /// As for `RawRing::new`; additionally the ring must be in its initial state or this must
    /// be the only userspace view of it (the indices are read once, here).
    pub(crate) unsafe fn new(base: NonNull<u8>, off: &libc::xdp_ring_offset, size: u32) -> Self {
        // SAFETY: forwarded to the caller.
        let raw = unsafe { RawRing::new(base, off, size) };
        let prod = raw.producer().load(Ordering::Relaxed);
        let cons_limit = raw.consumer().load(Ordering::Acquire).wrapping_add(size);
        Self {
            raw,
            prod,
            cons_limit,
            reserved: 0,
            _entry: PhantomData,
        }
    }

    /// Number of entries in the ring.
    pub fn size(&self) -> u32 {
        self.raw.size()
    }

    /// Free slots, re-reading the kernel's consumer index. Reserved-but-unsubmitted slots count
    /// as free.
    pub fn free_slots(&mut self) -> u32 {
        self.refresh();
        self.cons_limit.wrapping_sub(self.prod)
    }

    fn refresh(&mut self) {
        // Acquire: pairs with the kernel's release of `consumer`, so its reads of the slots it
        // gives back happened before we overwrite them.
        let cons = self.raw.consumer().load(Ordering::Acquire);
        self.cons_limit = cons.wrapping_add(self.raw.size());
    }

    /// Reserves up to `n` slots starting at the first unsubmitted one and returns how many were
    /// reserved (0 when the ring is full). A new `reserve` replaces the previous reservation;
    /// nothing is visible to the kernel before [`submit`](Self::submit).
    pub fn reserve(&mut self, n: u32) -> u32 {
        let mut free = self.cons_limit.wrapping_sub(self.prod);
        if free < n {
            self.refresh();
            free = self.cons_limit.wrapping_sub(self.prod);
        }
        self.reserved = n.min(free);
        self.reserved
    }

    /// Writes entry `i` (`0 <= i < reserved`) of the current reservation. An index outside the
    /// reservation is a caller bug: it is masked into the ring (memory stays safe) but may
    /// overwrite an entry the kernel has not consumed yet.
    pub fn write(&mut self, i: u32, entry: T) {
        debug_assert!(
            i < self.reserved,
            "write({i}) outside reservation of {}",
            self.reserved
        );
        self.raw.write(self.prod.wrapping_add(i), entry);
    }

    /// Publishes the first `n` reserved entries to the kernel (clamped to the reservation) and
    /// ends the reservation.
    pub fn submit(&mut self, n: u32) {
        let n = n.min(self.reserved);
        self.reserved = 0;
        if n == 0 {
            return;
        }
        self.prod = self.prod.wrapping_add(n);
        // Release: the entry writes above become visible before the new producer index
        // (pairs with the kernel's smp_load_acquire of `producer`).
        self.raw.producer().store(self.prod, Ordering::Release);
    }

    /// Whether the kernel asked to be woken (`XDP_RING_NEED_WAKEUP` in the ring's flags):
    /// after submitting, kick with `sendto` (TX ring) or `recvfrom`/`poll` (fill ring).
    /// Only meaningful on a socket bound with `XDP_USE_NEED_WAKEUP`.
    pub fn needs_wakeup(&self) -> bool {
        // Order our producer store before the flags load (a store-load pair, which even x86
        // may reorder): otherwise we could read a stale "no wakeup needed" while the kernel,
        // still seeing the old producer, goes to sleep waiting for us.
        fence(Ordering::SeqCst);
        self.raw.flags().load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }
}

/// Userspace side of a ring that the kernel fills: the RX ring ([`RxRing`], `struct
/// xdp_desc`) and the completion ring ([`CompRing`], `u64` frame addresses).
#[derive(Debug)]
pub struct ConsumerRing<T> {
    raw: RawRing<T>,
    /// Next index to release; equal to the shared `consumer` (only we write it).
    cons: u32,
    /// Cached kernel `producer`.
    prod: u32,
    /// Entries handed out by the last `peek`, starting at `cons`.
    peeked: u32,
    _entry: PhantomData<T>,
}

/// RX ring (`XDP_RX_RING`): received frames.
pub type RxRing = ConsumerRing<libc::xdp_desc>;
/// Completion ring (`XDP_UMEM_COMPLETION_RING`): frames the kernel has finished sending.
pub type CompRing = ConsumerRing<u64>;

impl<T: Copy> ConsumerRing<T> {
    /// # Safety
    ///
    /// As for [`ProducerRing::new`].
    pub(crate) unsafe fn new(base: NonNull<u8>, off: &libc::xdp_ring_offset, size: u32) -> Self {
        // SAFETY: forwarded to the caller.
        let raw = unsafe { RawRing::new(base, off, size) };
        let cons = raw.consumer().load(Ordering::Relaxed);
        let prod = raw.producer().load(Ordering::Acquire);
        Self {
            raw,
            cons,
            prod,
            peeked: 0,
            _entry: PhantomData,
        }
    }

    /// Number of entries in the ring.
    pub fn size(&self) -> u32 {
        self.raw.size()
    }

    /// Makes up to `max` entries readable, starting at the first unreleased one, and returns
    /// how many (0 when the ring is empty). A new `peek` replaces the previous one.
    pub fn peek(&mut self, max: u32) -> u32 {
        let mut avail = self.prod.wrapping_sub(self.cons);
        if avail < max {
            // Acquire: pairs with the kernel's release of `producer`, so the entries it
            // wrote are visible before we read them.
            self.prod = self.raw.producer().load(Ordering::Acquire);
            avail = self.prod.wrapping_sub(self.cons);
        }
        self.peeked = max.min(avail);
        self.peeked
    }

    /// Entries waiting on the ring, those of the current peek included, by the kernel's
    /// `producer` read now.
    pub fn waiting(&mut self) -> u32 {
        // Acquire: as in `peek` (the entries counted may be read next).
        self.prod = self.raw.producer().load(Ordering::Acquire);
        self.prod.wrapping_sub(self.cons)
    }

    /// Entry `i` (`0 <= i < peeked`) of the last `peek`. An index outside it is a caller bug: it
    /// is masked into the ring (memory stays safe) but the value is meaningless.
    pub fn get(&self, i: u32) -> T {
        debug_assert!(i < self.peeked, "get({i}) outside peek of {}", self.peeked);
        self.raw.read(self.cons.wrapping_add(i))
    }

    /// Gives the first `n` peeked entries back to the kernel (clamped to the peek) and ends the
    /// peek. Read everything you need from them first.
    pub fn release(&mut self, n: u32) {
        let n = n.min(self.peeked);
        self.peeked = 0;
        if n == 0 {
            return;
        }
        self.cons = self.cons.wrapping_add(n);
        // Release: our reads of the entries happen before the kernel may overwrite them.
        self.raw.consumer().store(self.cons, Ordering::Release);
    }
}

impl ConsumerRing<libc::xdp_desc> {
    /// Descriptor `i` of the last `peek` (see [`get`](Self::get)).
    pub fn desc(&self, i: u32) -> libc::xdp_desc {
        self.get(i)
    }
}

impl ConsumerRing<u64> {
    /// Frame address `i` of the last `peek` (see [`get`](Self::get)).
    pub fn addr(&self, i: u32) -> u64 {
        self.get(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: u32 = 8;

    /// A fake mapped ring: producer at 0, consumer at 64, flags at 128, entries at 192
    /// (cache-line separated, as the kernel lays them out).
    struct TestRing {
        mem: Box<[u64]>,
    }

    impl TestRing {
        fn new(start_index: u32) -> Self {
            let mut ring = Self {
                mem: vec![0u64; (192 + 16 * SIZE as usize) / 8].into_boxed_slice(),
            };
            ring.set_producer(start_index);
            ring.set_consumer(start_index);
            ring
        }

        fn offsets() -> libc::xdp_ring_offset {
            libc::xdp_ring_offset {
                producer: 0,
                consumer: 64,
                flags: 128,
                desc: 192,
            }
        }

        fn base(&mut self) -> NonNull<u8> {
            NonNull::new(self.mem.as_mut_ptr().cast::<u8>()).expect("non-null")
        }

        fn word(&self, byte_off: usize) -> &AtomicU32 {
            // SAFETY: `byte_off` is one of the 8-aligned offsets above, inside `mem`.
            unsafe {
                &*self
                    .mem
                    .as_ptr()
                    .cast::<u8>()
                    .add(byte_off)
                    .cast::<AtomicU32>()
            }
        }

        fn producer(&self) -> u32 {
            self.word(0).load(Ordering::SeqCst)
        }
        fn consumer(&self) -> u32 {
            self.word(64).load(Ordering::SeqCst)
        }
        fn set_producer(&mut self, v: u32) {
            self.word(0).store(v, Ordering::SeqCst);
        }
        fn set_consumer(&mut self, v: u32) {
            self.word(64).store(v, Ordering::SeqCst);
        }
        fn set_flags(&mut self, v: u32) {
            self.word(128).store(v, Ordering::SeqCst);
        }
        fn slot(&self, idx: u32) -> u64 {
            self.mem[192 / 8 + (idx & (SIZE - 1)) as usize]
        }
        fn set_slot(&mut self, idx: u32, v: u64) {
            self.mem[192 / 8 + (idx & (SIZE - 1)) as usize] = v;
        }
    }

    fn producer(t: &mut TestRing) -> FillRing {
        // SAFETY: TestRing lays out the ring as the contract requires and outlives the ring
        // in every test; the test plays the kernel side only between ring calls.
        unsafe { FillRing::new(t.base(), &TestRing::offsets(), SIZE) }
    }

    fn consumer(t: &mut TestRing) -> CompRing {
        // SAFETY: as in `producer`.
        unsafe { CompRing::new(t.base(), &TestRing::offsets(), SIZE) }
    }

    #[test]
    fn producer_fills_then_blocks_until_consumed() {
        let mut t = TestRing::new(0);
        let mut r = producer(&mut t);
        assert_eq!(r.free_slots(), SIZE);
        assert_eq!(r.reserve(5), 5);
        for i in 0..5 {
            r.write(i, 100 + u64::from(i));
        }
        assert_eq!(t.producer(), 0, "nothing published before submit");
        r.submit(5);
        assert_eq!(t.producer(), 5);
        assert_eq!(r.reserve(10), 3, "only the rest of the ring");
        r.submit(3);
        assert_eq!(r.reserve(1), 0, "full");
        assert_eq!(
            (0..5).map(|i| t.slot(i)).collect::<Vec<_>>(),
            [100, 101, 102, 103, 104]
        );
        t.set_consumer(4); // kernel consumed four
        assert_eq!(r.reserve(8), 4);
        assert_eq!(r.free_slots(), 4);
    }

    #[test]
    fn partial_submit_and_re_reserve() {
        let mut t = TestRing::new(0);
        let mut r = producer(&mut t);
        assert_eq!(r.reserve(4), 4);
        r.write(0, 7);
        r.write(1, 8);
        r.submit(2);
        assert_eq!(t.producer(), 2);
        // The two unsubmitted slots are free again and come first in the next reservation.
        assert_eq!(r.reserve(1), 1);
        r.write(0, 9);
        r.submit(5); // clamped to the reservation
        assert_eq!(t.producer(), 3);
        assert_eq!([t.slot(0), t.slot(1), t.slot(2)], [7, 8, 9]);
        r.submit(1); // no reservation: nothing happens
        assert_eq!(t.producer(), 3);
    }

    #[test]
    fn producer_wraps_at_u32_max() {
        let start = u32::MAX - 2;
        let mut t = TestRing::new(start);
        let mut r = producer(&mut t);
        assert_eq!(r.free_slots(), SIZE);
        assert_eq!(r.reserve(6), 6);
        for i in 0..6 {
            r.write(i, u64::from(i));
        }
        r.submit(6);
        assert_eq!(t.producer(), start.wrapping_add(6));
        assert_eq!(t.producer(), 3);
        for i in 0..6 {
            assert_eq!(t.slot(start.wrapping_add(i)), u64::from(i));
        }
        assert_eq!(r.reserve(8), 2);
        t.set_consumer(start.wrapping_add(6));
        assert_eq!(r.reserve(8), 8);
    }

    #[test]
    fn consumer_peeks_releases_and_wraps() {
        let start = u32::MAX - 1;
        let mut t = TestRing::new(start);
        let mut r = consumer(&mut t);
        assert_eq!(r.peek(4), 0);
        for i in 0..5 {
            t.set_slot(start.wrapping_add(i), 50 + u64::from(i));
        }
        t.set_producer(start.wrapping_add(5));
        assert_eq!(r.peek(3), 3);
        assert_eq!([r.addr(0), r.addr(1), r.addr(2)], [50, 51, 52]);
        r.release(2);
        assert_eq!(t.consumer(), start.wrapping_add(2));
        // The unreleased entry comes first again.
        assert_eq!(r.peek(16), 3);
        assert_eq!([r.addr(0), r.addr(1), r.addr(2)], [52, 53, 54]);
        r.release(99); // clamped to the peek
        assert_eq!(t.consumer(), start.wrapping_add(5));
        assert_eq!(t.consumer(), 3);
        assert_eq!(r.peek(1), 0);
        r.release(1); // no peek: nothing happens
        assert_eq!(t.consumer(), 3);
    }

    #[test]
    fn consumer_uses_cache_until_short() {
        let mut t = TestRing::new(0);
        let mut r = consumer(&mut t);
        t.set_producer(4);
        assert_eq!(r.peek(2), 2);
        r.release(2);
        t.set_producer(6);
        // Two cached entries satisfy a peek of 2 without re-reading the producer...
        assert_eq!(r.peek(2), 2);
        // ...a larger peek re-reads it.
        assert_eq!(r.peek(8), 4);
    }

    #[test]
    fn waiting_counts_what_the_producer_says_now() {
        let start = u32::MAX - 2;
        let mut t = TestRing::new(start);
        let mut r = consumer(&mut t);
        t.set_producer(start.wrapping_add(5));
        assert_eq!(r.peek(2), 2);
        t.set_producer(start.wrapping_add(9));
        // The peek's cached producer said 5; the ring holds 9 (the peeked 2 included).
        assert_eq!(r.waiting(), 9);
        // The peek is intact: releasing it leaves 7.
        r.release(2);
        assert_eq!(r.waiting(), 7);
    }

    #[test]
    fn need_wakeup_flag() {
        let mut t = TestRing::new(0);
        let r = producer(&mut t);
        assert!(!r.needs_wakeup());
        t.set_flags(libc::XDP_RING_NEED_WAKEUP);
        assert!(r.needs_wakeup());
    }

    #[test]
    fn descriptor_rings() {
        // 16-byte entries: the RX/TX descriptor layout.
        let mut t = TestRing::new(0);
        // SAFETY: TestRing holds 8 16-byte entries at offset 192 and outlives both rings.
        let mut tx = unsafe { TxRing::new(t.base(), &TestRing::offsets(), SIZE) };
        // SAFETY: as above; the test uses the two views alternately, like the two peers.
        let mut rx = unsafe { RxRing::new(t.base(), &TestRing::offsets(), SIZE) };
        assert_eq!(tx.reserve(2), 2);
        tx.write(
            0,
            libc::xdp_desc {
                addr: 4096,
                len: 60,
                options: 0,
            },
        );
        tx.write(
            1,
            libc::xdp_desc {
                addr: 8192,
                len: 1514,
                options: 0,
            },
        );
        tx.submit(2);
        assert_eq!(rx.peek(8), 2);
        let d = rx.desc(1);
        assert_eq!((d.addr, d.len, d.options), (8192, 1514, 0));
        rx.release(2);
        assert_eq!(tx.free_slots(), SIZE);
    }
}
