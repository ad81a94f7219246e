//! The worker's clock: nanoseconds since the worker started, from `CLOCK_MONOTONIC`
//! (`Instant`, a vDSO `clock_gettime(2)`), with the last reading of the current loop pass
//! kept for the uses that need only "about now".
//!
//! Two kinds of use:
//! - [`PassClock::now_ns`] reads the clock. For stamps whose difference is reported: the
//!   end of a request's latency (at the TX ring), disk submission and completion.
//! - [`PassClock::recent_ns`] returns a reading taken earlier in the same loop pass (or on
//!   the wake-up that began it), and reads only when there is none. For the start of a
//!   request's latency (taken off the RX ring in this pass: a reading from the start of the
//!   pass is no later than the request's arrival seen by the worker, so a latency is never
//!   understated), the spin window and the busy/idle split.
//!
//! Each read costs about 25 ns on the project's VM (vDSO, `tsc` clock source). Before, a
//! worker that slept between bursts read it five times per wake-up (on waking, at receive,
//! at transmit, at the end of the working pass and at the end of the idle pass before the
//! next sleep); now three. A worker that never sleeps reads it twice per pass instead of
//! three times.

use std::time::Instant;

pub(super) struct PassClock {
    epoch: Instant,
    /// The last reading, in ns since `epoch`.
    last_ns: u64,
    /// `last_ns` was read in the current pass (or on the wake-up that began it).
    read_this_pass: bool,
}

impl PassClock {
    pub(super) fn new() -> PassClock {
        PassClock {
            epoch: Instant::now(),
            last_ns: 0,
            read_this_pass: false,
        }
    }

    /// Reads the clock.
    pub(super) fn now_ns(&mut self) -> u64 {
        let now_ns = self.epoch.elapsed().as_nanos() as u64;
        debug_assert!(now_ns >= self.last_ns, "CLOCK_MONOTONIC went back");
        self.last_ns = now_ns;
        self.read_this_pass = true;
        now_ns
    }

    /// The last reading of this pass, or a new one when the pass has none.
    pub(super) fn recent_ns(&mut self) -> u64 {
        if self.read_this_pass {
            self.last_ns
        } else {
            self.now_ns()
        }
    }

    /// A new loop pass begins: the next [`PassClock::recent_ns`] reads the clock again.
    /// Not called after a wake-up, whose reading serves the pass it begins.
    pub(super) fn next_pass(&mut self) {
        self.read_this_pass = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_pass_reuses_its_last_reading_and_the_next_pass_reads_again() {
        let mut clock = PassClock::new();
        let first_ns = clock.recent_ns();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(clock.recent_ns(), first_ns, "the same pass: no new reading");
        let read_ns = clock.now_ns();
        assert!(read_ns >= first_ns + 2_000_000, "now_ns always reads");
        assert_eq!(clock.recent_ns(), read_ns, "the pass's latest reading");
        clock.next_pass();
        std::thread::sleep(Duration::from_millis(2));
        assert!(
            clock.recent_ns() >= read_ns + 2_000_000,
            "a new pass reads again"
        );
    }
}
