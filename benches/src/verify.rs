//! Data verification (`--verify`).
//!
//! Every sector a write carries is derived from (run nonce, LBA, write sequence number): a
//! 24-byte header (nonce, LBA, sequence, little-endian u64s) and 488 bytes of pseudo-random
//! data keyed by the three. A sector read back is therefore self-describing, and is accepted
//! only if it is intact, names the LBA it was read from, and carries a generation that was
//! written to that block:
//!
//! * the generation of the last acknowledged write to the block; or
//! * after a write that failed or timed out (which the target may or may not have applied,
//!   sector by sector, now or late), also that write's generation; after a second such
//!   write to the same block, any generation of this run ("tainted" blocks stay tolerant
//!   for the rest of the run, because an abandoned write can still land later);
//! * content that is not this run's at all only while no write to the block was ever
//!   acknowledged (the image's previous content).
//!
//! Requests cover whole blocks and the engine never has two requests on one block in
//! flight ([`VerifyTable::try_begin`]), so the table is per block and needs no history.
//! It is allocated once, up front: 8 bytes and 1 bit per block.

use crate::rng::mix64;

/// Bytes per sector.
pub const SECTOR_BYTES: usize = 512;
const WORDS: usize = SECTOR_BYTES / 8;
const HEADER_WORDS: usize = 3;
/// `alt` value meaning "any generation of this run".
const ANY: u32 = u32::MAX;
/// Largest table accepted (blocks); 4 GiB of generations.
pub const MAX_BLOCKS: u64 = 1 << 29;

/// Why a sector read back is not one that was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The sector does not carry this run's nonce, but a write to the block was
    /// acknowledged: the write was lost (or the read returned other data).
    Foreign,
    /// This run's data, but written for another LBA (a misdirected write or read).
    Misplaced { found_lba: u64 },
    /// This run's data for this LBA, but of a generation that is not acceptable: stale data
    /// (an older write) or a phantom (a generation never written here).
    WrongGeneration { found: u64, expected: u32 },
    /// The header is right but the sector differs from the pattern at `offset`.
    Corrupt { offset: usize },
    /// The reply carried another amount of data than the block holds.
    Length { bytes: usize },
}

/// The first bad sector of a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyFailure {
    /// The sector's LBA.
    pub lba: u64,
    pub mismatch: Mismatch,
}

impl core::fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "lba {}: ", self.lba)?;
        match self.mismatch {
            Mismatch::Foreign => f.write_str("not data of this run, but a write was acknowledged"),
            Mismatch::Misplaced { found_lba } => {
                write!(f, "this run's data for lba {found_lba} (misdirected)")
            }
            Mismatch::WrongGeneration { found, expected } => write!(
                f,
                "generation {found}, expected {expected} (stale or phantom write)"
            ),
            Mismatch::Corrupt { offset } => {
                write!(f, "corrupt data at byte {offset} of the sector")
            }
            Mismatch::Length { bytes } => write!(f, "reply carried {bytes} bytes of data"),
        }
    }
}

/// The table was not allocated: the span has too many blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableTooLarge {
    pub blocks: u64,
}

/// Per-block generations and in-flight bits (see the module documentation).
#[derive(Debug)]
pub struct VerifyTable {
    nonce: u64,
    sectors: u8,
    /// Generation of the last acknowledged write (0: none yet).
    generation: Box<[u32]>,
    /// The generation of a failed write (0: none; [`ANY`]: several).
    alternative: Box<[u32]>,
    busy: Box<[u64]>,
    next_seq: u32,
}

impl VerifyTable {
    /// A table for `blocks` blocks of `sectors` sectors. `nonce` tells this run's data from
    /// any other's (derive it from the seed and the clock).
    pub fn new(blocks: u64, sectors: u8, nonce: u64) -> Result<VerifyTable, TableTooLarge> {
        if blocks > MAX_BLOCKS {
            return Err(TableTooLarge { blocks });
        }
        let n = usize::try_from(blocks).map_err(|_| TableTooLarge { blocks })?;
        Ok(VerifyTable {
            nonce,
            sectors,
            generation: vec![0; n].into_boxed_slice(),
            alternative: vec![0; n].into_boxed_slice(),
            busy: vec![0; n.div_ceil(64)].into_boxed_slice(),
            next_seq: 1,
        })
    }

    /// Memory the table takes for `blocks` blocks.
    pub fn bytes_for(blocks: u64) -> u64 {
        blocks.saturating_mul(8).saturating_add(blocks.div_ceil(8))
    }

    pub fn blocks(&self) -> u64 {
        self.generation.len() as u64
    }

    /// Marks `block` in flight; `false` (and nothing changes) when it already is or is out
    /// of range.
    pub fn try_begin(&mut self, block: u64) -> bool {
        let Some((word, bit)) = self.bit(block) else {
            return false;
        };
        if *word & bit != 0 {
            return false;
        }
        *word |= bit;
        true
    }

    /// The request on `block` is over (whatever its outcome).
    pub fn end(&mut self, block: u64) {
        if let Some((word, bit)) = self.bit(block) {
            *word &= !bit;
        }
    }

    pub fn is_busy(&self, block: u64) -> bool {
        let i = usize::try_from(block / 64).unwrap_or(usize::MAX);
        self.busy
            .get(i)
            .is_some_and(|w| w & (1u64 << (block % 64)) != 0)
    }

    fn bit(&mut self, block: u64) -> Option<(&mut u64, u64)> {
        if block >= self.blocks() {
            return None;
        }
        let word = self.busy.get_mut(usize::try_from(block / 64).ok()?)?;
        Some((word, 1u64 << (block % 64)))
    }

    /// A fresh write generation (never 0 or the "any" marker).
    pub fn next_generation(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq = match seq.wrapping_add(1) {
            0 | ANY => 1,
            s => s,
        };
        seq
    }

    /// Writes the data of write generation `seq` to `block` into `out` (which should be
    /// `sectors` x 512 bytes; a shorter buffer gets whole sectors only).
    pub fn fill(&self, block: u64, seq: u32, out: &mut [u8]) {
        let first = block * u64::from(self.sectors);
        for (i, sector) in out.chunks_exact_mut(SECTOR_BYTES).enumerate() {
            let lba = first + i as u64;
            let key = self.key(lba, seq);
            let header = [self.nonce, lba, u64::from(seq)];
            for (w, chunk) in sector.chunks_exact_mut(8).enumerate() {
                let word = match header.get(w) {
                    Some(&h) => h,
                    None => body_word(key, w),
                };
                chunk.copy_from_slice(&word.to_le_bytes());
            }
        }
    }

    fn key(&self, lba: u64, seq: u32) -> u64 {
        mix64(mix64(self.nonce ^ lba) ^ u64::from(seq))
    }

    /// Checks the data read from `block`.
    pub fn check(&self, block: u64, data: &[u8]) -> Result<(), VerifyFailure> {
        let first = block * u64::from(self.sectors);
        let i = usize::try_from(block).unwrap_or(usize::MAX);
        let (Some(&generation), Some(&alternative)) =
            (self.generation.get(i), self.alternative.get(i))
        else {
            return Err(VerifyFailure {
                lba: first,
                mismatch: Mismatch::Length { bytes: data.len() },
            });
        };
        if data.len() != usize::from(self.sectors) * SECTOR_BYTES {
            return Err(VerifyFailure {
                lba: first,
                mismatch: Mismatch::Length { bytes: data.len() },
            });
        }
        for (s, sector) in data.chunks_exact(SECTOR_BYTES).enumerate() {
            let lba = first + s as u64;
            self.check_sector(lba, sector, generation, alternative)
                .map_err(|mismatch| VerifyFailure { lba, mismatch })?;
        }
        Ok(())
    }

    fn check_sector(
        &self,
        lba: u64,
        sector: &[u8],
        generation: u32,
        alternative: u32,
    ) -> Result<(), Mismatch> {
        let word = |w: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&sector[w * 8..w * 8 + 8]);
            u64::from_le_bytes(b)
        };
        if word(0) != self.nonce {
            // The image's previous content is fine until a write is acknowledged.
            return if generation == 0 {
                Ok(())
            } else {
                Err(Mismatch::Foreign)
            };
        }
        let found_lba = word(1);
        if found_lba != lba {
            return Err(Mismatch::Misplaced { found_lba });
        }
        let found = word(2);
        let acceptable = (generation != 0 && found == u64::from(generation))
            || (alternative != 0 && found == u64::from(alternative))
            || (alternative == ANY && found != 0 && found < u64::from(ANY));
        if !acceptable {
            return Err(Mismatch::WrongGeneration {
                found,
                expected: generation,
            });
        }
        // `found` was just checked to be one of this run's u32 generations.
        let key = self.key(lba, found as u32);
        for w in HEADER_WORDS..WORDS {
            let expected = body_word(key, w);
            let got = word(w);
            if got != expected {
                let byte = (got ^ expected).trailing_zeros() as usize / 8;
                return Err(Mismatch::Corrupt {
                    offset: w * 8 + byte,
                });
            }
        }
        Ok(())
    }

    /// The write of generation `seq` to `block` was acknowledged.
    pub fn write_done(&mut self, block: u64, seq: u32) {
        if let Some(g) = usize::try_from(block)
            .ok()
            .and_then(|i| self.generation.get_mut(i))
        {
            *g = seq;
        }
    }

    /// The write of generation `seq` to `block` failed or timed out: it may or may not
    /// have reached the medium, sector by sector, and may still land later.
    pub fn write_uncertain(&mut self, block: u64, seq: u32) {
        if let Some(a) = usize::try_from(block)
            .ok()
            .and_then(|i| self.alternative.get_mut(i))
        {
            *a = if *a == 0 || *a == seq { seq } else { ANY };
        }
    }
}

fn body_word(key: u64, w: usize) -> u64 {
    mix64(key.wrapping_add(w as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: u64 = 0x1234_5678_9abc_def0;

    fn table() -> VerifyTable {
        VerifyTable::new(100, 2, NONCE).unwrap()
    }

    fn written(t: &VerifyTable, block: u64, seq: u32) -> Vec<u8> {
        let mut buf = vec![0u8; 1024];
        t.fill(block, seq, &mut buf);
        buf
    }

    fn mismatch(r: Result<(), VerifyFailure>) -> Mismatch {
        r.unwrap_err().mismatch
    }

    #[test]
    fn written_data_reads_back_and_is_self_describing() {
        let mut t = table();
        let seq = t.next_generation();
        let data = written(&t, 7, seq);
        assert_eq!(&data[0..8], &NONCE.to_le_bytes());
        assert_eq!(
            &data[8..16],
            &14u64.to_le_bytes(),
            "lba of block 7's first sector"
        );
        assert_eq!(&data[512 + 8..512 + 16], &15u64.to_le_bytes());
        assert_eq!(&data[16..24], &u64::from(seq).to_le_bytes());
        t.write_done(7, seq);
        assert_eq!(t.check(7, &data), Ok(()));
        // Two generations differ everywhere in the body.
        let other = written(&t, 7, seq + 1);
        assert!(data[24..512]
            .chunks(8)
            .zip(other[24..512].chunks(8))
            .all(|(a, b)| a != b));
    }

    #[test]
    fn unwritten_blocks_accept_foreign_content_only() {
        let t = table();
        assert_eq!(t.check(3, &[0u8; 1024]), Ok(()));
        assert_eq!(t.check(3, &[0xa5u8; 1024]), Ok(()));
        // Data of this run on a block never written: a phantom (or misdirected) write.
        let phantom = written(&t, 3, 5);
        assert_eq!(
            mismatch(t.check(3, &phantom)),
            Mismatch::WrongGeneration {
                found: 5,
                expected: 0
            }
        );
    }

    #[test]
    fn lost_write_stale_data_and_misdirection_are_caught() {
        let mut t = table();
        let first = t.next_generation();
        let second = t.next_generation();
        t.write_done(4, first);
        t.write_done(4, second);
        assert_eq!(mismatch(t.check(4, &[0u8; 1024])), Mismatch::Foreign);
        assert_eq!(
            mismatch(t.check(4, &written(&t, 4, first))),
            Mismatch::WrongGeneration {
                found: u64::from(first),
                expected: second
            }
        );
        let f = t.check(4, &written(&t, 5, second)).unwrap_err();
        assert_eq!(f.lba, 8);
        assert_eq!(f.mismatch, Mismatch::Misplaced { found_lba: 10 });
        // The second sector alone is wrong: the failure names it.
        let mut mixed = written(&t, 4, second);
        mixed[512..].copy_from_slice(&written(&t, 4, first)[512..]);
        assert_eq!(t.check(4, &mixed).unwrap_err().lba, 9);
    }

    #[test]
    fn any_flipped_byte_is_corruption_at_its_offset() {
        let mut t = table();
        let seq = t.next_generation();
        t.write_done(2, seq);
        let good = written(&t, 2, seq);
        for offset in [24usize, 100, 511, 512 + 24, 1023] {
            let mut bad = good.clone();
            bad[offset] ^= 0x10;
            let f = t.check(2, &bad).unwrap_err();
            assert_eq!(f.lba, 4 + (offset / 512) as u64);
            assert_eq!(
                f.mismatch,
                Mismatch::Corrupt {
                    offset: offset % 512
                }
            );
        }
        assert_eq!(
            mismatch(t.check(2, &good[..512])),
            Mismatch::Length { bytes: 512 }
        );
        assert!(t.check(100, &good).is_err(), "block out of range");
    }

    #[test]
    fn uncertain_writes_widen_what_is_accepted() {
        let mut t = table();
        let a = t.next_generation();
        let b = t.next_generation();
        let c = t.next_generation();
        let d = t.next_generation();
        t.write_done(1, a);
        t.write_uncertain(1, b);
        // Either the old or the failed write, per sector.
        let mut mixed = written(&t, 1, a);
        mixed[512..].copy_from_slice(&written(&t, 1, b)[512..]);
        assert_eq!(t.check(1, &mixed), Ok(()));
        assert!(t.check(1, &written(&t, 1, c)).is_err());
        // A later acknowledged write: the failed one may still land, so it stays acceptable.
        t.write_done(1, c);
        assert_eq!(t.check(1, &written(&t, 1, c)), Ok(()));
        assert_eq!(t.check(1, &written(&t, 1, b)), Ok(()));
        assert!(t.check(1, &written(&t, 1, a)).is_err());
        // Two failed writes: any generation of this run, but still the right LBA and intact.
        t.write_uncertain(1, d);
        assert_eq!(t.check(1, &written(&t, 1, a)), Ok(()));
        assert!(t.check(1, &written(&t, 1, 999)).is_ok());
        assert!(t.check(1, &written(&t, 2, a)).is_err());
        assert_eq!(mismatch(t.check(1, &[0; 1024])), Mismatch::Foreign);
        // Before any acknowledged write, an uncertain one keeps the old content acceptable.
        t.write_uncertain(9, d);
        assert_eq!(t.check(9, &[7; 1024]), Ok(()));
        assert_eq!(t.check(9, &written(&t, 9, d)), Ok(()));
    }

    #[test]
    fn busy_bits_keep_one_request_per_block() {
        let mut t = table();
        assert!(t.try_begin(63));
        assert!(t.try_begin(64));
        assert!(!t.try_begin(63));
        assert!(t.is_busy(63) && t.is_busy(64) && !t.is_busy(62));
        t.end(63);
        assert!(!t.is_busy(63));
        assert!(t.try_begin(63));
        assert!(!t.try_begin(100), "out of range");
        t.end(1000); // no panic
    }

    #[test]
    fn generations_skip_reserved_values() {
        let mut t = table();
        t.next_seq = u32::MAX - 1;
        assert_eq!(t.next_generation(), u32::MAX - 1);
        assert_eq!(t.next_generation(), 1);
        assert!(VerifyTable::new(MAX_BLOCKS + 1, 2, 0).is_err());
        assert_eq!(VerifyTable::bytes_for(64), 64 * 8 + 8);
    }
}
