//! The closed loop: keep `queue_depth` requests in flight against one target, one thread.
//!
//! Each turn of the loop fills every free slot (building the request in the slot's own,
//! preallocated frame), sends all new requests and due retransmissions with one system call
//! ([`Tx::send`]), takes every reply the receive ring holds, and only when the ring is
//! empty sleeps in `ppoll` until a reply, a retransmission deadline or the next second.
//! Replies are judged in place in the ring by `aoe_initiator::wire::classify`; read data is
//! verified there too. Nothing is allocated per request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aoe_initiator::wire::{self, Expect, Peer, Stray, Verdict};
use aoe_initiator::{tag, RequestError};
use aoe_proto::ata::{self, opcode, AtaHeader, AFLAG_EXTENDED, AFLAG_WRITE};

use crate::packet::{self, RxRing, Tx};
use crate::rng::mix64;
use crate::stats::{Interval, Kind, Stats};
use crate::verify::{VerifyFailure, VerifyTable};
use crate::workload::{Geometry, Pattern, Workload};

/// Bytes before the sector data of an (untagged) ATA frame.
const ATA_HEADER_BYTES: usize = 36;
/// Frames taken from the ring before timers are looked at again.
const RX_BATCH: usize = 4096;
/// Free blocks looked for per slot in verify mode before the slot waits for a later turn.
const VERIFY_PICKS: usize = 8;
/// Failures remembered for the report (the counters count them all).
pub const LOGGED_FAILURES: usize = 8;

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    pub queue_depth: usize,
    pub read_pct: u8,
    pub pattern: Pattern,
    pub geometry: Geometry,
    pub warmup: Duration,
    pub duration: Duration,
    pub timeout: Duration,
    /// Retransmissions before a request counts as timed out.
    pub retries: u32,
    pub seed: u64,
    /// Print a progress line on stderr every second.
    pub progress: bool,
    /// Poll the receive ring this long before sleeping (0: sleep at once).
    pub spin: Duration,
}

/// One failed request, for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedRequest {
    pub write: bool,
    pub lba: u64,
    pub error: RequestError,
}

/// What a run measured.
#[derive(Debug)]
pub struct RunResult {
    pub stats: Stats,
    /// Length of the measured window.
    pub measured: Duration,
    /// CPU time this process used in the measured window.
    pub cpu_user: Duration,
    pub cpu_sys: Duration,
    /// Requests still unanswered when the final drain gave up.
    pub abandoned: usize,
    /// The first verify failures.
    pub verify_log: Vec<VerifyFailure>,
    /// The first failed requests.
    pub error_log: Vec<FailedRequest>,
    /// Stopped early by SIGINT/SIGTERM.
    pub interrupted: bool,
}

#[derive(Debug)]
struct Slot {
    live: bool,
    generation: u32,
    write: bool,
    block: u64,
    /// Write generation (verify mode).
    seq: u32,
    attempts: u32,
    submitted: Instant,
    deadline: Instant,
    frame: Box<[u8]>,
    frame_len: usize,
}

/// Everything but the sockets, so the receive closure can borrow it while the ring is
/// borrowed too.
struct Core {
    cfg: EngineConfig,
    peer: Peer,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Slots whose frame goes out with the next send.
    outbox: Vec<usize>,
    workload: Workload,
    verify: Option<VerifyTable>,
    stats: Stats,
    /// Completions count toward the performance numbers (warm-up and measure phases).
    recording: bool,
    next_deadline: Instant,
    verify_log: Vec<VerifyFailure>,
    error_log: Vec<FailedRequest>,
}

/// 32 random bits from the standard library's per-process hash keys: tags start at a
/// random generation so that two runs on one MAC never take each other's replies.
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish() as u32
}

impl Core {
    fn new(cfg: EngineConfig, peer: Peer, verify: Option<VerifyTable>, now: Instant) -> Core {
        let data_bytes = ata::data_len(cfg.geometry.sectors);
        let first_generation = random_u32() & tag::GENERATION_MASK;
        let slots = (0..cfg.queue_depth)
            .map(|i| {
                let mut frame = vec![0u8; ATA_HEADER_BYTES + data_bytes].into_boxed_slice();
                // Write payload without --verify: a fixed pattern, filled once.
                for (j, chunk) in frame[ATA_HEADER_BYTES..].chunks_mut(8).enumerate() {
                    let word = mix64(cfg.seed ^ ((i as u64) << 32) ^ j as u64).to_le_bytes();
                    chunk.copy_from_slice(&word[..chunk.len()]);
                }
                Slot {
                    live: false,
                    generation: first_generation,
                    write: false,
                    block: 0,
                    seq: 0,
                    attempts: 0,
                    submitted: now,
                    deadline: now,
                    frame,
                    frame_len: 0,
                }
            })
            .collect();
        Core {
            cfg,
            peer,
            slots,
            free: (0..cfg.queue_depth).rev().collect(),
            outbox: Vec::with_capacity(cfg.queue_depth),
            workload: Workload::new(cfg.pattern, cfg.geometry.blocks, cfg.read_pct, cfg.seed),
            verify,
            stats: Stats::new(),
            recording: true,
            next_deadline: now + cfg.timeout,
            verify_log: Vec::with_capacity(LOGGED_FAILURES),
            error_log: Vec::with_capacity(LOGGED_FAILURES),
        }
    }

    fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Puts a new request in every free slot (in verify mode, as long as a block that is
    /// not in flight turns up).
    fn fill(&mut self, now: Instant) {
        while let Some(&index) = self.free.last() {
            let Some(next) = self.pick() else {
                return;
            };
            self.free.pop();
            self.start(index, next.read, next.block, now);
        }
    }

    fn pick(&mut self) -> Option<crate::workload::Next> {
        let Some(table) = self.verify.as_mut() else {
            return Some(self.workload.next_request());
        };
        for _ in 0..VERIFY_PICKS {
            let next = self.workload.next_request();
            if table.try_begin(next.block) {
                return Some(next);
            }
        }
        None
    }

    fn start(&mut self, index: usize, read: bool, block: u64, now: Instant) {
        let sectors = self.cfg.geometry.sectors;
        let lba = self.cfg.geometry.lba(block);
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        let header = AtaHeader {
            aflags: if read {
                AFLAG_EXTENDED
            } else {
                AFLAG_EXTENDED | AFLAG_WRITE
            },
            err_feature: 0,
            sector_count: sectors,
            cmd_status: if read {
                opcode::READ_SECTORS_EXT
            } else {
                opcode::WRITE_SECTORS_EXT
            },
            lba_bytes: AtaHeader::lba_bytes_for(lba, true),
        };
        slot.generation = tag::next_generation(slot.generation);
        let tag = tag::encode(index, slot.generation);
        // The frame holds the header and a full data area: encoding cannot fail. The data
        // area is left as it is (the fixed pattern, or the verify data written below).
        let header_len = wire::encode_ata_request(&mut slot.frame, &self.peer, tag, &header, &[])
            .unwrap_or(ATA_HEADER_BYTES);
        slot.frame_len = if read {
            header_len
        } else {
            header_len + ata::data_len(sectors)
        };
        slot.seq = 0;
        if let (false, Some(table)) = (read, self.verify.as_mut()) {
            slot.seq = table.next_generation();
            if let Some(data) = slot.frame.get_mut(header_len..slot.frame_len) {
                table.fill(block, slot.seq, data);
            }
        }
        slot.live = true;
        slot.write = !read;
        slot.block = block;
        slot.attempts = 1;
        slot.submitted = now;
        slot.deadline = now + self.cfg.timeout;
        self.next_deadline = self.next_deadline.min(slot.deadline);
        self.outbox.push(index);
    }

    /// Judges one received frame and completes the request it answers.
    fn on_frame(&mut self, frame: &[u8]) {
        let sectors = self.cfg.geometry.sectors;
        let slots = &self.slots;
        let verdict = wire::classify(frame, &self.peer, |index, generation| {
            let slot = slots.get(index)?;
            (slot.live && slot.generation == generation).then_some(if slot.write {
                Expect::NoData
            } else {
                Expect::Data { sectors }
            })
        });
        match verdict {
            Verdict::NotResponse => {}
            Verdict::Stray(why) => {
                self.stats.errors.stray_replies += 1;
                if why == Stray::Stale {
                    self.stats.errors.stale_replies += 1;
                }
            }
            Verdict::Reply { slot, outcome } => {
                let now = Instant::now();
                let result = outcome.map(|reply| frame.get(reply.data).unwrap_or_default());
                self.complete(slot, result, now);
            }
        }
    }

    /// Ends the request in `index`: `Ok(read data)` or why it failed.
    fn complete(&mut self, index: usize, result: Result<&[u8], RequestError>, now: Instant) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        if !slot.live {
            return;
        }
        slot.live = false;
        let (write, block, seq) = (slot.write, slot.block, slot.seq);
        let latency = now.saturating_duration_since(slot.submitted);
        self.free.push(index);
        let errors = &mut self.stats.errors;
        match result {
            Ok(data) => {
                if let Some(table) = self.verify.as_mut() {
                    if write {
                        table.write_done(block, seq);
                    } else if let Err(failure) = table.check(block, data) {
                        errors.verify_failures += 1;
                        if self.verify_log.len() < LOGGED_FAILURES {
                            self.verify_log.push(failure);
                        }
                    }
                }
                if self.recording {
                    let kind = if write { Kind::Write } else { Kind::Read };
                    let bytes = ata::data_len(self.cfg.geometry.sectors) as u64;
                    let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
                    self.stats.record(kind, ns, bytes);
                }
            }
            Err(error) => {
                match error {
                    RequestError::Ata { .. } => errors.ata_errors += 1,
                    RequestError::Aoe { .. } => errors.aoe_errors += 1,
                    RequestError::Timeout { .. } => errors.timeouts += 1,
                    _ => errors.bad_replies += 1,
                }
                if let (true, Some(table)) = (write, self.verify.as_mut()) {
                    table.write_uncertain(block, seq);
                }
                if self.error_log.len() < LOGGED_FAILURES {
                    self.error_log.push(FailedRequest {
                        write,
                        lba: self.cfg.geometry.lba(block),
                        error,
                    });
                }
            }
        }
        if let Some(table) = self.verify.as_mut() {
            table.end(block);
        }
    }

    /// Retransmits (with a new tag) every request whose reply is overdue, or gives it up
    /// after the last retry.
    fn expire(&mut self, now: Instant) {
        if now < self.next_deadline {
            return;
        }
        let mut next = now + self.cfg.timeout;
        let max_attempts = self.cfg.retries.saturating_add(1);
        for index in 0..self.slots.len() {
            let slot = &mut self.slots[index];
            if !slot.live {
                continue;
            }
            if slot.deadline > now {
                next = next.min(slot.deadline);
                continue;
            }
            if slot.attempts < max_attempts {
                slot.generation = tag::next_generation(slot.generation);
                let tag = tag::encode(index, slot.generation);
                if let Some(frame) = slot.frame.get_mut(..slot.frame_len) {
                    // The frame was built by encode_ata_request: its header parses.
                    let _ = wire::set_tag(frame, tag);
                }
                slot.attempts += 1;
                slot.deadline = now + self.cfg.timeout;
                self.stats.errors.retransmits += 1;
                self.outbox.push(index);
                continue;
            }
            let error = RequestError::Timeout {
                attempts: slot.attempts,
                timeout_ms: u64::try_from(self.cfg.timeout.as_millis()).unwrap_or(u64::MAX),
                last_tag: tag::encode(index, slot.generation),
            };
            self.complete(index, Err(error), now);
        }
        self.next_deadline = next;
    }
}

/// The closed-loop load generator.
pub struct Engine {
    rx: RxRing,
    tx: Tx,
    core: Core,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Warmup,
    Measure,
    Drain,
}

impl Engine {
    /// `verify` is the table for `--verify` (allocated by the caller, up front).
    pub fn new(
        cfg: EngineConfig,
        peer: Peer,
        rx: RxRing,
        tx: Tx,
        verify: Option<VerifyTable>,
    ) -> Engine {
        Engine {
            rx,
            tx,
            core: Core::new(cfg, peer, verify, Instant::now()),
        }
    }

    /// Runs warm-up, the measured window and a final drain of what is in flight. `stop`
    /// (set by a signal handler) ends the measured window early.
    pub fn run(mut self, stop: &AtomicBool) -> std::io::Result<RunResult> {
        let cfg = self.core.cfg;
        let start = Instant::now();
        let _ = self.rx.take_drops();
        let mut warm_end = start + cfg.warmup;
        let mut end = warm_end + cfg.duration;
        let mut phase = Phase::Warmup;
        let mut measure_start = start;
        let mut measure_end = start;
        let mut cpu_start = packet::cpu_time();
        let mut cpu_end = cpu_start;
        let mut drain_deadline = start;
        let mut next_tick = start + Duration::from_secs(1);
        let mut interrupted = false;
        loop {
            // Each reply is stamped when it is taken (never before it arrived); requests are
            // stamped after the replies are taken, just before they are built and sent.
            let core = &mut self.core;
            let got = self.rx.drain(RX_BATCH, |frame| core.on_frame(frame));
            let now = Instant::now();
            let io = &mut self.core.stats.io;
            io.turns += 1;
            io.frames_received += got as u64;
            // Before the phase changes below, so the second that ends is labelled with its
            // phase and its numbers are not reset by the end of the warm-up.
            if now >= next_tick {
                while next_tick <= now {
                    next_tick += Duration::from_secs(1);
                }
                let label = match phase {
                    Phase::Warmup => "warm-up",
                    Phase::Measure => "measure",
                    Phase::Drain => "drain",
                };
                let interval = self.core.stats.take_interval();
                if cfg.progress {
                    progress_line(now - start, label, &interval, &self.core);
                }
            }
            if !interrupted && stop.load(Ordering::Relaxed) {
                interrupted = true;
                warm_end = warm_end.min(now);
                end = end.min(now);
            }
            if phase == Phase::Warmup && now >= warm_end {
                phase = Phase::Measure;
                self.core.stats.reset_performance();
                measure_start = now;
                cpu_start = packet::cpu_time();
            }
            if phase == Phase::Measure && now >= end {
                phase = Phase::Drain;
                self.core.recording = false;
                measure_end = now;
                cpu_end = packet::cpu_time();
                let attempts = cfg.retries.saturating_add(1);
                drain_deadline = now + cfg.timeout.saturating_mul(attempts);
            }
            if phase == Phase::Drain && (self.core.in_flight() == 0 || now >= drain_deadline) {
                break;
            }
            if phase != Phase::Drain {
                self.core.fill(now);
            }
            self.core.expire(now);
            self.flush()?;
            if got == 0 {
                let wake = self.core.next_deadline.min(next_tick).min(match phase {
                    Phase::Warmup => warm_end,
                    Phase::Measure => end,
                    Phase::Drain => drain_deadline,
                });
                if !self.spin_until(now, wake) && wake > now {
                    self.core.stats.io.sleeps += 1;
                    // Sleep until a reply arrives or the next timer; `now` is at most a few
                    // microseconds old, so the wake-up is at most that early.
                    self.rx.wait(wake - now)?;
                }
            }
        }
        self.core.stats.errors.rx_ring_drops += self.rx.take_drops();
        let abandoned = self.core.in_flight();
        Ok(RunResult {
            measured: measure_end.saturating_duration_since(measure_start),
            cpu_user: cpu_end.0.saturating_sub(cpu_start.0),
            cpu_sys: cpu_end.1.saturating_sub(cpu_start.1),
            abandoned,
            verify_log: self.core.verify_log,
            error_log: self.core.error_log,
            stats: self.core.stats,
            interrupted,
        })
    }

    /// With `--spin-us`: polls the ring (no system call) until a frame is ready, the spin
    /// time is over or `wake`. Returns whether a frame is ready.
    fn spin_until(&self, now: Instant, wake: Instant) -> bool {
        let spin = self.core.cfg.spin;
        if spin.is_zero() || self.core.in_flight() == 0 {
            return false;
        }
        let until = (now + spin).min(wake);
        loop {
            for _ in 0..64 {
                if self.rx.ready() {
                    return true;
                }
                std::hint::spin_loop();
            }
            if Instant::now() >= until {
                return self.rx.ready();
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let core = &mut self.core;
        if core.outbox.is_empty() {
            return Ok(());
        }
        let slots = &core.slots;
        let frames = core
            .outbox
            .iter()
            .filter_map(|&i| slots.get(i).and_then(|s| s.frame.get(..s.frame_len)));
        let outcome = self.tx.send(frames)?;
        core.stats.errors.tx_drops += outcome.dropped as u64;
        core.stats.io.sends += 1;
        core.stats.io.frames_sent += outcome.sent as u64;
        core.outbox.clear();
        Ok(())
    }
}

fn progress_line(elapsed: Duration, phase: &str, i: &Interval, core: &Core) {
    let e = &core.stats.errors;
    let mb = i.bytes as f64 / 1e6;
    eprintln!(
        "[{:6.1}s] {phase:<7} {:>9} IOPS {:>8.2} MB/s  p50 {:>9} p99 {:>9}  in flight {:>3}  \
         retx {} timeouts {} errors {} verify failures {}",
        elapsed.as_secs_f64(),
        i.ops,
        mb,
        crate::report::format_ns(i.p50_ns),
        crate::report::format_ns(i.p99_ns),
        core.in_flight(),
        e.retransmits,
        e.timeouts,
        e.ata_errors + e.aoe_errors + e.bad_replies,
        e.verify_failures,
    );
}
