//! Stalls of a CPU that no program on it can see: the gaps in a loop that does nothing but
//! read the clock (binary `xblade-stalls`).
//!
//! On a VM the host may stop running a vCPU for tens of microseconds (another task on the
//! physical core, the host's own interrupts, a VM exit); the guest's `/proc/stat` does not
//! always count that as steal time, and its `/proc/interrupts` shows nothing. A loop that
//! reads `CLOCK_MONOTONIC` back to back sees each such stall as one long gap between two
//! reads. At queue depth 1 every stall on the CPU that holds the request in flight delays
//! that request by its length, so the stalls per second, against a target's requests per
//! second, say how deep into the tail the machine itself reaches (`delayed_ops` in the
//! generator's report counts the same step from the other side).
//!
//! The counting is pure ([`GapCounts`], [`measure`] with the clock passed in) so that the
//! tests can drive it with a made-up clock.

use serde::Serialize;

/// Lower bounds of the gap classes, in nanoseconds: a gap of at least `GAP_CLASSES_NS[i]`
/// and less than `GAP_CLASSES_NS[i + 1]` counts in class `i`. Gaps under 2 µs are the
/// loop's own pace (a clock read is 20–50 ns) and cache misses; they are not counted.
pub const GAP_CLASSES_NS: [u64; 6] = [2_000, 5_000, 10_000, 20_000, 50_000, 1_000_000];

/// A stall at least this long delays a request by more than `stats::DELAYED_BY_NS` minus
/// the request's own slack; [`GapCounts::stalls_at_least_10us`] counts them.
pub const STALL_NS: u64 = 10_000;

/// What one CPU's clock loop saw.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GapCounts {
    /// Clock reads made.
    pub reads: u64,
    /// Time from the first read to the last, in nanoseconds.
    pub elapsed_ns: u64,
    /// Gaps per class of [`GAP_CLASSES_NS`].
    pub gaps: [u64; GAP_CLASSES_NS.len()],
    /// Summed length of the counted gaps (at least 2 µs each), in nanoseconds.
    pub gap_ns: u64,
    /// The longest gap, in nanoseconds.
    pub longest_gap_ns: u64,
}

impl GapCounts {
    /// Counts one gap between two consecutive clock reads.
    pub fn record(&mut self, gap_ns: u64) {
        self.reads += 1;
        self.elapsed_ns = self.elapsed_ns.saturating_add(gap_ns);
        self.longest_gap_ns = self.longest_gap_ns.max(gap_ns);
        // The last class whose lower bound the gap reaches, if any.
        if let Some(class) = GAP_CLASSES_NS.iter().rposition(|&low| gap_ns >= low) {
            self.gaps[class] += 1;
            self.gap_ns = self.gap_ns.saturating_add(gap_ns);
        }
    }

    /// Gaps of at least [`STALL_NS`].
    pub fn stalls_at_least_10us(&self) -> u64 {
        GAP_CLASSES_NS
            .iter()
            .zip(self.gaps)
            .filter(|&(&low, _)| low >= STALL_NS)
            .map(|(_, n)| n)
            .sum()
    }

    fn seconds(&self) -> f64 {
        self.elapsed_ns as f64 / 1e9
    }

    /// The report for one CPU.
    pub fn summary(&self, cpu: usize) -> CpuStalls {
        let per_s = |n: u64| {
            if self.elapsed_ns == 0 {
                0.0
            } else {
                n as f64 / self.seconds()
            }
        };
        CpuStalls {
            cpu,
            seconds: self.seconds(),
            clock_reads: self.reads,
            gaps_per_s: GAP_CLASSES_NS
                .iter()
                .zip(self.gaps)
                .map(|(&low_ns, n)| GapClass {
                    at_least_ns: low_ns,
                    per_s: per_s(n),
                })
                .collect(),
            stalls_at_least_10us_per_s: per_s(self.stalls_at_least_10us()),
            lost_frac: if self.elapsed_ns == 0 {
                0.0
            } else {
                self.gap_ns as f64 / self.elapsed_ns as f64
            },
            longest_gap_ns: self.longest_gap_ns,
        }
    }
}

/// One class of gaps in a [`CpuStalls`] report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GapClass {
    pub at_least_ns: u64,
    pub per_s: f64,
}

/// One CPU's stalls, as `xblade-stalls --json` writes them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CpuStalls {
    pub cpu: usize,
    pub seconds: f64,
    pub clock_reads: u64,
    pub gaps_per_s: Vec<GapClass>,
    pub stalls_at_least_10us_per_s: f64,
    /// Share of the time that went to gaps of at least 2 µs.
    pub lost_frac: f64,
    pub longest_gap_ns: u64,
}

/// Reads `now_ns` back to back until `duration_ns` have passed since the first read, and
/// counts the gaps. `now_ns` must not go backwards (`CLOCK_MONOTONIC` does not); a reading
/// that does counts as a gap of zero.
pub fn measure(duration_ns: u64, mut now_ns: impl FnMut() -> u64) -> GapCounts {
    let mut counts = GapCounts::default();
    let start_ns = now_ns();
    let mut last_ns = start_ns;
    loop {
        let t_ns = now_ns();
        counts.record(t_ns.saturating_sub(last_ns));
        last_ns = t_ns;
        if t_ns.saturating_sub(start_ns) >= duration_ns {
            return counts;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_fall_in_their_classes() {
        let mut c = GapCounts::default();
        for gap in [
            30, 1_999, 2_000, 4_999, 5_000, 10_000, 19_999, 20_000, 50_000, 2_000_000,
        ] {
            c.record(gap);
        }
        assert_eq!(c.gaps, [2, 1, 2, 1, 1, 1]);
        assert_eq!(c.reads, 10);
        assert_eq!(c.stalls_at_least_10us(), 5);
        assert_eq!(c.longest_gap_ns, 2_000_000);
        assert_eq!(c.gap_ns, c.elapsed_ns - 30 - 1_999);
    }

    #[test]
    fn a_made_up_clock_with_two_stalls() {
        // 100 ms of reads every 40 ns, with a 25 us stall at 30 ms and a 7 us one at 60 ms.
        let mut t_ns = 0u64;
        let counts = measure(100_000_000, || {
            let before = t_ns;
            t_ns += 40;
            if before < 30_000_000 && t_ns >= 30_000_000 {
                t_ns += 25_000;
            }
            if before < 60_000_000 && t_ns >= 60_000_000 {
                t_ns += 7_000;
            }
            before
        });
        assert!(counts.elapsed_ns >= 100_000_000);
        assert_eq!(counts.gaps, [0, 1, 0, 1, 0, 0]);
        let s = counts.summary(3);
        assert_eq!(s.cpu, 3);
        assert!((s.stalls_at_least_10us_per_s - 10.0).abs() < 1e-2, "{s:?}");
        assert!((s.lost_frac - 320_800e-9).abs() < 1e-6, "{s:?}");
        assert_eq!(s.gaps_per_s[3].at_least_ns, 20_000);
        assert_eq!(s.longest_gap_ns, 25_040);
    }

    #[test]
    fn a_clock_that_goes_back_is_not_a_stall() {
        let mut readings = [0u64, 100, 50, 2_000_000_000].into_iter();
        let counts = measure(1_000, || readings.next().unwrap_or(u64::MAX));
        // 0 -> 100 (gap 100), 100 -> 50 (0), 50 -> 2 s (the last gap, a stall).
        assert_eq!(counts.reads, 3);
        assert_eq!(counts.gaps[5], 1);
        assert_eq!(counts.summary(0).clock_reads, 3);
    }

    #[test]
    fn an_empty_measurement_reports_zeros_not_nan() {
        let s = GapCounts::default().summary(0);
        assert_eq!(
            (s.seconds, s.stalls_at_least_10us_per_s, s.lost_frac),
            (0.0, 0.0, 0.0)
        );
    }
}
