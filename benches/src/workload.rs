//! What the next request is: read or write (the `--read-pct` mix) and where (the LBA
//! pattern). Requests are aligned to their own size: the span is cut into blocks of
//! `--sectors` sectors and every request covers exactly one block, so two requests either
//! cover the same sectors or none in common (which keeps the verify table per block).

use crate::rng::SplitMix64;

/// Where consecutive requests go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    /// Uniformly random blocks over the span.
    Random,
    /// Block after block from the start of the span, wrapping at its end.
    Sequential,
}

/// The span cut into request-sized blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Sectors per request (one AoE frame).
    pub sectors: u8,
    /// Whole blocks in the span; a trailing partial block is never used.
    pub blocks: u64,
}

impl Geometry {
    /// `None` when `sectors` is 0 or the span holds not even one block.
    pub fn new(span_sectors: u64, sectors: u8) -> Option<Geometry> {
        let blocks = span_sectors.checked_div(u64::from(sectors))?;
        (blocks > 0).then_some(Geometry { sectors, blocks })
    }

    /// First sector of `block`.
    pub fn lba(&self, block: u64) -> u64 {
        block * u64::from(self.sectors)
    }
}

/// One request to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Next {
    pub read: bool,
    pub block: u64,
}

/// Deterministic request generator (given the seed).
#[derive(Clone, Debug)]
pub struct Workload {
    pattern: Pattern,
    blocks: u64,
    read_pct: u8,
    cursor: u64,
    rng: SplitMix64,
}

impl Workload {
    /// `read_pct` is clamped to 100; `blocks` must be at least 1.
    pub fn new(pattern: Pattern, blocks: u64, read_pct: u8, seed: u64) -> Workload {
        Workload {
            pattern,
            blocks: blocks.max(1),
            read_pct: read_pct.min(100),
            cursor: 0,
            rng: SplitMix64::new(seed),
        }
    }

    pub fn next_request(&mut self) -> Next {
        let read = match self.read_pct {
            0 => false,
            100 => true,
            pct => self.rng.below(100) < u64::from(pct),
        };
        let block = match self.pattern {
            Pattern::Random => self.rng.below(self.blocks),
            Pattern::Sequential => {
                let b = self.cursor;
                self.cursor = if b + 1 >= self.blocks { 0 } else { b + 1 };
                b
            }
        };
        Next { read, block }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_cuts_whole_blocks() {
        let g = Geometry::new(1001, 2).unwrap();
        assert_eq!(g.blocks, 500);
        assert_eq!(g.lba(0), 0);
        assert_eq!(g.lba(499), 998);
        assert_eq!(Geometry::new(1, 2), None);
        assert_eq!(Geometry::new(100, 0), None);
        assert_eq!(Geometry::new(17, 17).unwrap().blocks, 1);
    }

    #[test]
    fn sequential_walks_and_wraps() {
        let mut w = Workload::new(Pattern::Sequential, 3, 100, 1);
        let blocks: Vec<u64> = (0..7).map(|_| w.next_request().block).collect();
        assert_eq!(blocks, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn random_stays_in_span_and_spreads() {
        let mut w = Workload::new(Pattern::Random, 64, 50, 42);
        let mut hits = [0u32; 64];
        for _ in 0..64_000 {
            let n = w.next_request();
            hits[n.block as usize] += 1;
        }
        assert!(hits.iter().all(|&h| (700..1300).contains(&h)), "{hits:?}");
        let mut one = Workload::new(Pattern::Random, 1, 50, 42);
        assert!((0..100).all(|_| one.next_request().block == 0));
    }

    #[test]
    fn mix_follows_read_pct() {
        for (pct, lo, hi) in [(0u8, 0, 0), (100, 10_000, 10_000), (30, 2_800, 3_200)] {
            let mut w = Workload::new(Pattern::Random, 1000, pct, 5);
            let reads = (0..10_000).filter(|_| w.next_request().read).count();
            assert!((lo..=hi).contains(&reads), "pct {pct}: {reads} reads");
        }
        let mut w = Workload::new(Pattern::Random, 10, 250, 5);
        assert!((0..100).all(|_| w.next_request().read), "clamped to 100");
    }

    #[test]
    fn seeds_reproduce() {
        let mut a = Workload::new(Pattern::Random, 1 << 30, 50, 9);
        let mut b = Workload::new(Pattern::Random, 1 << 30, 50, 9);
        for _ in 0..1000 {
            assert_eq!(a.next_request(), b.next_request());
        }
    }
}
