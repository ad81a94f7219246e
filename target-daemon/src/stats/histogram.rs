//! A fixed-bucket latency histogram written by one thread and read by others, lock-free.
//!
//! Buckets are log-linear: below 1024 ns one bucket; from 2^10 ns to 2^36 ns (about 68.7 s)
//! every power of two is split into [`SUB_BUCKETS`] equal sub-buckets; above that one
//! overflow bucket. A bucket is named by its inclusive upper bound. A sample `v` in
//! [1024 ns, 2^36 ns) lies in a bucket `[lo, hi]` with `hi - lo + 1 = 2^e / SUB_BUCKETS` and
//! `lo >= 2^e`, so reporting `hi` for `v` overstates it by less than `1 / SUB_BUCKETS`
//! (12.5 %) and never understates it: every quantile this module reports is within
//! `[exact, exact * 1.125)` of the exact one, for samples of at least 1024 ns. Below 1024 ns
//! a quantile reads 1023 ns; above 2^36 ns it reads the exact maximum.
//!
//! Recording is two plain loads and stores on the writer's own cache lines (no locked
//! read-modify-write, no allocation); readers load each bucket with `Relaxed` ordering and
//! may see a sample in `count` before its bucket, which [`HistogramSnapshot`] hides by
//! deriving the count from the buckets themselves.

use std::sync::atomic::{AtomicU64, Ordering};

/// Sub-buckets per power of two (a power of two itself).
pub const SUB_BUCKETS: usize = 8;
const SUB_BITS: u32 = SUB_BUCKETS.trailing_zeros();
/// Samples below 2^MIN_EXPONENT ns share the first bucket.
const MIN_EXPONENT: u32 = 10;
/// Samples of 2^MAX_EXPONENT ns and above share the overflow bucket.
const MAX_EXPONENT: u32 = 36;
/// Every bucket: the one below 1024 ns, the log-linear ones, the overflow one.
pub const BUCKETS: usize = 1 + (MAX_EXPONENT - MIN_EXPONENT) as usize * SUB_BUCKETS + 1;

/// The bucket a sample of `value_ns` falls in.
pub fn bucket_of(value_ns: u64) -> usize {
    if value_ns < 1 << MIN_EXPONENT {
        return 0;
    }
    if value_ns >= 1 << MAX_EXPONENT {
        return BUCKETS - 1;
    }
    let exponent = 63 - value_ns.leading_zeros();
    let sub = (value_ns >> (exponent - SUB_BITS)) as usize & (SUB_BUCKETS - 1);
    1 + (exponent - MIN_EXPONENT) as usize * SUB_BUCKETS + sub
}

/// The largest value bucket `index` holds (`u64::MAX` for the overflow bucket).
pub fn upper_bound_ns(index: usize) -> u64 {
    if index == 0 {
        return (1 << MIN_EXPONENT) - 1;
    }
    if index >= BUCKETS - 1 {
        return u64::MAX;
    }
    let exponent = MIN_EXPONENT + ((index - 1) / SUB_BUCKETS) as u32;
    let sub = ((index - 1) % SUB_BUCKETS) as u64;
    ((SUB_BUCKETS as u64 + sub + 1) << (exponent - SUB_BITS)) - 1
}

/// The histogram itself: [`BUCKETS`] counters, a sum and a maximum
/// (`(BUCKETS + 2) * 8` = 1696 bytes).
#[derive(Debug)]
pub struct AtomicHistogram {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        AtomicHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }
}

impl AtomicHistogram {
    /// Records one sample. Only one thread may call this on a given histogram (its
    /// writer); any thread may read it at the same time.
    pub fn record(&self, value_ns: u64) {
        let bucket = &self.buckets[bucket_of(value_ns)];
        bucket.store(bucket.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        let sum = self.sum_ns.load(Ordering::Relaxed);
        self.sum_ns
            .store(sum.saturating_add(value_ns), Ordering::Relaxed);
        if value_ns > self.max_ns.load(Ordering::Relaxed) {
            self.max_ns.store(value_ns, Ordering::Relaxed);
        }
    }

    /// The counts as they are now (each bucket read once, `Relaxed`).
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
            max_ns: self.max_ns.load(Ordering::Relaxed),
        }
    }
}

/// Plain values of one or more [`AtomicHistogram`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub buckets: [u64; BUCKETS],
    pub sum_ns: u64,
    pub max_ns: u64,
}

impl Default for HistogramSnapshot {
    fn default() -> Self {
        HistogramSnapshot {
            buckets: [0; BUCKETS],
            sum_ns: 0,
            max_ns: 0,
        }
    }
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Adds another reading (of another worker) to this one.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// The value at `quantile` (0..=1): the upper bound of the bucket holding that rank,
    /// capped at the maximum seen; 0 without samples. See the module documentation for
    /// the error bound.
    pub fn quantile_ns(&self, quantile: f64) -> u64 {
        quantile_of(
            self.buckets
                .iter()
                .enumerate()
                .map(|(i, &n)| (upper_bound_ns(i), n)),
            quantile,
        )
        .min(self.max_ns)
    }

    /// `[upper_bound_ns, count]` of each non-empty bucket, in increasing order.
    pub fn non_empty(&self) -> Vec<[u64; 2]> {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| [upper_bound_ns(i), n])
            .collect()
    }
}

/// The bound of the bucket holding rank `ceil(quantile * total)` among `(bound, count)`
/// buckets in increasing bound order; 0 when they are empty. Shared by the daemon and by
/// clients working on bucket differences.
pub fn quantile_of(buckets: impl Iterator<Item = (u64, u64)> + Clone, quantile: f64) -> u64 {
    let total: u64 = buckets.clone().map(|(_, n)| n).sum();
    if total == 0 {
        return 0;
    }
    let rank = ((quantile.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    let mut last = 0;
    for (bound, n) in buckets {
        seen += n;
        last = bound;
        if n > 0 && seen >= rank {
            return bound;
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_the_range_in_order() {
        assert_eq!(BUCKETS, 210);
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1023), 0);
        assert_eq!(bucket_of(1024), 1);
        assert_eq!(upper_bound_ns(1), 1024 + 128 - 1);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_of((1 << 36) - 1), BUCKETS - 2);
        assert_eq!(upper_bound_ns(BUCKETS - 2), (1 << 36) - 1);
        for i in 0..BUCKETS - 1 {
            let hi = upper_bound_ns(i);
            assert_eq!(bucket_of(hi), i, "bucket {i}");
            assert_eq!(bucket_of(hi + 1), i + 1, "bucket {i}");
        }
    }

    #[test]
    fn every_value_is_overstated_by_less_than_one_eighth() {
        let mut value = 1024u64;
        while value < 1 << 36 {
            let bound = upper_bound_ns(bucket_of(value));
            assert!(bound >= value);
            assert!(
                ((bound - value) as f64) < value as f64 / SUB_BUCKETS as f64,
                "{value} -> {bound}"
            );
            value += value / 37 + 1;
        }
    }

    /// Quantiles against the exact ones of the same samples (a deterministic spread over
    /// five decades, like service latencies with a long tail).
    #[test]
    fn quantiles_are_within_the_bound_of_exact_ones() {
        let h = AtomicHistogram::default();
        let mut samples = Vec::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Log-uniform between 2 µs and 200 ms.
            let decades = (x % 1_000_000) as f64 / 1e6 * 5.0;
            let ns = (10f64.powf(decades) * 2000.0) as u64;
            samples.push(ns);
            h.record(ns);
        }
        samples.sort_unstable();
        let s = h.snapshot();
        assert_eq!(s.count(), samples.len() as u64);
        assert_eq!(s.sum_ns, samples.iter().sum::<u64>());
        assert_eq!(s.max_ns, *samples.last().unwrap());
        for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0] {
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            let exact = samples[rank - 1];
            let got = s.quantile_ns(q);
            assert!(got >= exact, "q {q}: {got} < exact {exact}");
            assert!(
                (got - exact) as f64 <= exact as f64 / SUB_BUCKETS as f64,
                "q {q}: {got} vs exact {exact}"
            );
        }
    }

    #[test]
    fn merge_and_differences() {
        let a = AtomicHistogram::default();
        let b = AtomicHistogram::default();
        assert_eq!(a.snapshot().quantile_ns(0.5), 0);
        for ns in [5_000, 6_000, 7_000] {
            a.record(ns);
        }
        b.record(1 << 40);
        let mut total = a.snapshot();
        total.merge(&b.snapshot());
        assert_eq!(total.count(), 4);
        assert_eq!(total.max_ns, 1 << 40);
        // The overflow bucket reports the exact maximum.
        assert_eq!(total.quantile_ns(1.0), 1 << 40);
        assert_eq!(
            total.non_empty().last(),
            Some(&[u64::MAX, 1]),
            "overflow bucket"
        );
        let p50 = total.quantile_ns(0.5);
        assert!((6_000..6_750).contains(&p50), "{p50}");
        // Quantiles of bucket lists (what a client computes over an interval).
        let list = [(1023, 0), (2047, 3), (4095, 1)];
        assert_eq!(quantile_of(list.iter().copied(), 0.5), 2047);
        assert_eq!(quantile_of(list.iter().copied(), 0.99), 4095);
        assert_eq!(quantile_of(std::iter::empty(), 0.5), 0);
    }
}
