//! The closed loop: keep `queue_depth` requests in flight against one target, or spread
//! over several exports (each new request to the next export in turn, [`RoundRobin`]), one
//! thread.
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
use aoe_proto::Header;

use crate::exports::{export_seed, RoundRobin};
use crate::packet::{self, RxRing, Tx};
use crate::rng::mix64;
use crate::stats::{ErrorCounts, ExportStats, Interval, Kind, Stats};
use crate::verify::{VerifyFailure, VerifyTable};
use crate::workload::{Geometry, Pattern, Workload};

/// Bytes before the sector data of an (untagged) ATA frame.
const ATA_HEADER_BYTES: usize = 36;
/// Frames taken from the ring before timers are looked at again.
const RX_BATCH: usize = 4096;
/// Free blocks looked for per slot in verify mode before the slot waits for a later turn.
const VERIFY_PICKS: usize = 8;
/// With a pace (`--max-iops`): the most new requests one late turn may start at once
/// (a sleep that overran its wake-up is caught up on, a long stall is not). With 8, a
/// pace of 45k/s reached 43k alone but 36k with fio on the target's CPU (2026-12-03).
const PACE_BURST: u32 = 32;
/// Failures remembered for the report (the counters count them all).
pub const LOGGED_FAILURES: usize = 8;

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    /// Requests in flight over all exports together.
    pub queue_depth: usize,
    pub read_pct: u8,
    pub pattern: Pattern,
    /// Sectors per request (every export's [`EngineTarget::geometry`] has these).
    pub sectors: u8,
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
    /// At least this long between the starts of two new requests (`--max-iops`), or no
    /// limit.
    pub pace: Option<Duration>,
    /// A process (the target) whose CPU time is read from /proc/PID/stat at the start and
    /// the end of the measured window.
    pub target_pid: Option<u32>,
}

/// One export the load goes to.
#[derive(Debug)]
pub struct EngineTarget {
    pub peer: Peer,
    /// The span used on this export, cut into requests of [`EngineConfig::sectors`].
    pub geometry: Geometry,
    /// The table for `--verify` (allocated by the caller, up front), one per export: each
    /// export's data carries its own nonce.
    pub verify: Option<VerifyTable>,
}

/// One failed request, for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedRequest {
    /// Index of the export (in the order given to [`Engine::new`]).
    pub export: usize,
    pub write: bool,
    pub lba: u64,
    pub error: RequestError,
}

/// One verify failure and the export it was found on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportVerifyFailure {
    pub export: usize,
    pub failure: VerifyFailure,
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
    /// With [`EngineConfig::target_pid`]: that process's user + system time, in clock ticks,
    /// at the start and at the end of the measured window (None where /proc could not be
    /// read).
    pub target_ticks: Option<(Option<u64>, Option<u64>)>,
    /// Requests still unanswered when the final drain gave up.
    pub abandoned: usize,
    /// Each export's share (in the order given to [`Engine::new`]).
    pub exports: Vec<ExportStats>,
    /// The first verify failures.
    pub verify_log: Vec<ExportVerifyFailure>,
    /// The first failed requests.
    pub error_log: Vec<FailedRequest>,
    /// Stopped early by SIGINT/SIGTERM.
    pub interrupted: bool,
}

#[derive(Debug)]
struct Slot {
    live: bool,
    generation: u32,
    /// The export the slot's current (or last) request went to.
    export: usize,
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

/// One export's addresses, span, request sequence, verify table and numbers.
#[derive(Debug)]
struct Export {
    peer: Peer,
    geometry: Geometry,
    workload: Workload,
    verify: Option<VerifyTable>,
    stats: ExportStats,
}

/// Everything but the sockets, so the receive closure can borrow it while the ring is
/// borrowed too.
struct Core {
    cfg: EngineConfig,
    exports: Vec<Export>,
    /// Export index by (shelf, slot), for replies whose tag does not name a slot of theirs.
    by_address: std::collections::HashMap<(u16, u8), usize>,
    spread: RoundRobin,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Slots whose frame goes out with the next send.
    outbox: Vec<usize>,
    /// The run's totals (all exports).
    stats: Stats,
    /// Completions count toward the performance numbers (warm-up and measure phases).
    recording: bool,
    next_deadline: Instant,
    /// With a pace: when the next new request may start.
    next_start: Instant,
    verify_log: Vec<ExportVerifyFailure>,
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
    /// `targets` must not be empty (an empty list gets one export that is never answered).
    fn new(cfg: EngineConfig, targets: Vec<EngineTarget>, now: Instant) -> Core {
        let data_bytes = ata::data_len(cfg.sectors);
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
                    export: 0,
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
        let exports: Vec<Export> = targets
            .into_iter()
            .enumerate()
            .map(|(i, t)| Export {
                peer: t.peer,
                geometry: t.geometry,
                workload: Workload::new(
                    cfg.pattern,
                    t.geometry.blocks,
                    cfg.read_pct,
                    export_seed(cfg.seed, i),
                ),
                verify: t.verify,
                stats: ExportStats::new(),
            })
            .collect();
        let by_address = exports
            .iter()
            .enumerate()
            .map(|(i, e)| ((e.peer.shelf, e.peer.slot), i))
            .collect();
        Core {
            cfg,
            spread: RoundRobin::new(exports.len()),
            exports,
            by_address,
            slots,
            free: (0..cfg.queue_depth).rev().collect(),
            outbox: Vec::with_capacity(cfg.queue_depth),
            stats: Stats::new(),
            recording: true,
            next_deadline: now + cfg.timeout,
            next_start: now,
            verify_log: Vec::with_capacity(LOGGED_FAILURES),
            error_log: Vec::with_capacity(LOGGED_FAILURES),
        }
    }

    fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Puts a new request in every free slot, each to the next export in turn (in verify
    /// mode, as long as a block that is not in flight turns up on that export); with a
    /// pace, only as many as are due by `now`.
    fn fill(&mut self, now: Instant) {
        if let Some(pace) = self.cfg.pace {
            let earliest = now.checked_sub(pace * PACE_BURST).unwrap_or(now);
            self.next_start = self.next_start.max(earliest);
        }
        while let Some(&index) = self.free.last() {
            if self.cfg.pace.is_some() && self.next_start > now {
                return;
            }
            let export = self.spread.pick();
            let Some(next) = self.pick(export) else {
                return;
            };
            self.free.pop();
            self.start(index, export, next.read, next.block, now);
            if let Some(pace) = self.cfg.pace {
                self.next_start += pace;
            }
        }
    }

    /// When the loop must look again to start a paced request: a slot is free and waits
    /// for its turn. `None` without a pace or without a free slot.
    fn paced_wake(&self) -> Option<Instant> {
        (self.cfg.pace.is_some() && !self.free.is_empty()).then_some(self.next_start)
    }

    fn pick(&mut self, export: usize) -> Option<crate::workload::Next> {
        let e = self.exports.get_mut(export)?;
        let Some(table) = e.verify.as_mut() else {
            return Some(e.workload.next_request());
        };
        for _ in 0..VERIFY_PICKS {
            let next = e.workload.next_request();
            if table.try_begin(next.block) {
                return Some(next);
            }
        }
        None
    }

    fn start(&mut self, index: usize, export: usize, read: bool, block: u64, now: Instant) {
        let sectors = self.cfg.sectors;
        let (Some(slot), Some(e)) = (self.slots.get_mut(index), self.exports.get_mut(export))
        else {
            return;
        };
        let lba = e.geometry.lba(block);
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
        let header_len = wire::encode_ata_request(&mut slot.frame, &e.peer, tag, &header, &[])
            .unwrap_or(ATA_HEADER_BYTES);
        slot.frame_len = if read {
            header_len
        } else {
            header_len + ata::data_len(sectors)
        };
        slot.seq = 0;
        if let (false, Some(table)) = (read, e.verify.as_mut()) {
            slot.seq = table.next_generation();
            if let Some(data) = slot.frame.get_mut(header_len..slot.frame_len) {
                table.fill(block, slot.seq, data);
            }
        }
        slot.live = true;
        slot.export = export;
        slot.write = !read;
        slot.block = block;
        slot.attempts = 1;
        slot.submitted = now;
        slot.deadline = now + self.cfg.timeout;
        self.next_deadline = self.next_deadline.min(slot.deadline);
        self.outbox.push(index);
    }

    /// The export a received frame is judged against: with one export, that one; else the
    /// export of the slot its tag names when the frame comes from that export's address
    /// (the usual case, no lookup), else the export with the frame's address (a late reply
    /// to a slot that has moved on to another export), else export 0 (then it is a stray
    /// of another address).
    fn export_of(&self, frame: &[u8]) -> usize {
        if self.exports.len() == 1 {
            return 0;
        }
        let Ok(h) = Header::parse(frame) else {
            return 0;
        };
        let address = (h.major, h.minor);
        if let Some(export) = tag::decode(h.tag)
            .and_then(|(index, _)| self.slots.get(index))
            .map(|slot| slot.export)
        {
            if self
                .exports
                .get(export)
                .is_some_and(|e| (e.peer.shelf, e.peer.slot) == address)
            {
                return export;
            }
        }
        self.by_address.get(&address).copied().unwrap_or(0)
    }

    /// Judges one received frame and completes the request it answers. A reply from
    /// another export than the one its slot's request went to is a stray (stale).
    fn on_frame(&mut self, frame: &[u8]) {
        let sectors = self.cfg.sectors;
        let export = self.export_of(frame);
        let Some(peer) = self.exports.get(export).map(|e| &e.peer) else {
            return;
        };
        let slots = &self.slots;
        let verdict = wire::classify(frame, peer, |index, generation| {
            let slot = slots.get(index)?;
            (slot.live && slot.generation == generation && slot.export == export).then_some(
                if slot.write {
                    Expect::NoData
                } else {
                    Expect::Data { sectors }
                },
            )
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
        let (export, write, block, seq) = (slot.export, slot.write, slot.block, slot.seq);
        let latency = now.saturating_duration_since(slot.submitted);
        self.free.push(index);
        let Some(e) = self.exports.get_mut(export) else {
            return;
        };
        let errors = &mut self.stats.errors;
        match result {
            Ok(data) => {
                if let Some(table) = e.verify.as_mut() {
                    if write {
                        table.write_done(block, seq);
                    } else if let Err(failure) = table.check(block, data) {
                        count(errors, &mut e.stats.errors, |c| c.verify_failures += 1);
                        if self.verify_log.len() < LOGGED_FAILURES {
                            self.verify_log
                                .push(ExportVerifyFailure { export, failure });
                        }
                    }
                }
                if self.recording {
                    let kind = if write { Kind::Write } else { Kind::Read };
                    let bytes = ata::data_len(self.cfg.sectors) as u64;
                    let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
                    self.stats.record(kind, ns, bytes);
                    e.stats.record(kind, ns, bytes);
                }
            }
            Err(error) => {
                count(errors, &mut e.stats.errors, |c| match error {
                    RequestError::Ata { .. } => c.ata_errors += 1,
                    RequestError::Aoe { .. } => c.aoe_errors += 1,
                    RequestError::Timeout { .. } => c.timeouts += 1,
                    _ => c.bad_replies += 1,
                });
                if let (true, Some(table)) = (write, e.verify.as_mut()) {
                    table.write_uncertain(block, seq);
                }
                if self.error_log.len() < LOGGED_FAILURES {
                    self.error_log.push(FailedRequest {
                        export,
                        write,
                        lba: e.geometry.lba(block),
                        error,
                    });
                }
            }
        }
        if let Some(table) = e.verify.as_mut() {
            table.end(block);
        }
    }

    /// Forgets the performance numbers of the run and of every export (end of warm-up).
    fn reset_performance(&mut self) {
        self.stats.reset_performance();
        for e in &mut self.exports {
            e.stats.reset_performance();
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
                let export = slot.export;
                self.stats.errors.retransmits += 1;
                if let Some(e) = self.exports.get_mut(export) {
                    e.stats.errors.retransmits += 1;
                }
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

/// Counts one failure in the run's totals and in its export's.
fn count(total: &mut ErrorCounts, export: &mut ErrorCounts, add: impl Fn(&mut ErrorCounts)) {
    add(total);
    add(export);
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
    /// Load over `targets` (at least one; all on the interface of `rx` and `tx`).
    pub fn new(cfg: EngineConfig, targets: Vec<EngineTarget>, rx: RxRing, tx: Tx) -> Engine {
        Engine {
            rx,
            tx,
            core: Core::new(cfg, targets, Instant::now()),
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
        let mut target_start = None;
        let mut target_end = None;
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
                self.core.reset_performance();
                measure_start = now;
                cpu_start = packet::cpu_time();
                target_start = cfg.target_pid.and_then(packet::process_ticks);
            }
            if phase == Phase::Measure && now >= end {
                phase = Phase::Drain;
                self.core.recording = false;
                measure_end = now;
                cpu_end = packet::cpu_time();
                target_end = cfg.target_pid.and_then(packet::process_ticks);
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
                let mut wake = self.core.next_deadline.min(next_tick).min(match phase {
                    Phase::Warmup => warm_end,
                    Phase::Measure => end,
                    Phase::Drain => drain_deadline,
                });
                if phase != Phase::Drain {
                    wake = wake.min(self.core.paced_wake().unwrap_or(wake));
                }
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
            target_ticks: cfg.target_pid.map(|_| (target_start, target_end)),
            abandoned,
            exports: self.core.exports.into_iter().map(|e| e.stats).collect(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::responder::{Replier, ResponderConfig};
    use aoe_proto::Mac;

    const OWN: Mac = Mac([2, 0, 0, 0, 0, 1]);
    const TARGET: Mac = Mac([2, 0, 0, 0, 0, 2]);
    const SHELF: u16 = 7;
    /// Offset of the minor (slot) byte in an untagged AoE frame.
    const MINOR_AT: usize = 18;

    fn config(queue_depth: usize, read_pct: u8, pattern: Pattern) -> EngineConfig {
        EngineConfig {
            queue_depth,
            read_pct,
            pattern,
            sectors: 2,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
            timeout: Duration::from_secs(60),
            retries: 1,
            seed: 3,
            progress: false,
            spin: Duration::ZERO,
            pace: None,
            target_pid: None,
        }
    }

    /// `n` exports e7.0 .. e7.(n-1) of `blocks` blocks of 2 sectors each.
    fn core(cfg: EngineConfig, n: usize, blocks: u64, verify: bool) -> Core {
        core_at(cfg, n, blocks, verify, Instant::now())
    }

    /// [`core`] made at `now`.
    fn core_at(cfg: EngineConfig, n: usize, blocks: u64, verify: bool, now: Instant) -> Core {
        let targets = (0..n)
            .map(|i| EngineTarget {
                peer: Peer {
                    own_mac: OWN,
                    target_mac: TARGET,
                    shelf: SHELF,
                    slot: i as u8,
                },
                geometry: Geometry::new(blocks * 2, 2).unwrap(),
                verify: verify.then(|| VerifyTable::new(blocks, 2, mix64(i as u64 + 1)).unwrap()),
            })
            .collect();
        Core::new(cfg, targets, now)
    }

    /// One RAM responder per export.
    fn repliers(n: usize, blocks: u64) -> Vec<Replier> {
        (0..n)
            .map(|i| {
                let mut cfg = ResponderConfig::new(SHELF, i as u8, blocks * 2);
                cfg.ram = true;
                Replier::new(cfg, TARGET, 2).unwrap()
            })
            .collect()
    }

    /// Sends what the core has in its outbox to the repliers (the request to export `e` is
    /// answered by replier `route(e)`, as if addressed to it) and hands the replies back in
    /// an order that varies per turn. Returns the exports of the requests sent.
    fn turn(
        core: &mut Core,
        repliers: &mut [Replier],
        turn: usize,
        route: impl Fn(usize) -> usize,
    ) -> Vec<usize> {
        core.fill(Instant::now());
        let mut sent = Vec::new();
        let mut replies = Vec::new();
        for &index in &core.outbox {
            let slot = &core.slots[index];
            sent.push(slot.export);
            let mut request = slot.frame[..slot.frame_len].to_vec();
            let to = route(slot.export);
            request[MINOR_AT] = to as u8;
            let mut out = vec![0u8; 2048];
            let len = repliers[to].answer(&request, &mut out).expect("answered");
            out.truncate(len);
            out[MINOR_AT] = slot.export as u8;
            replies.push(out);
        }
        core.outbox.clear();
        let k = replies.len().max(1);
        replies.rotate_left(turn % k);
        if turn % 2 == 1 {
            replies.reverse();
        }
        for reply in replies {
            core.on_frame(&reply);
        }
        sent
    }

    #[test]
    fn a_pace_starts_one_request_per_interval_and_catches_up_by_a_burst_at_most() {
        let pace = Duration::from_micros(10);
        let mut cfg = config(64, 100, Pattern::Random);
        cfg.pace = Some(pace);
        let t0 = Instant::now();
        let mut c = core_at(cfg, 1, 1000, false, t0);
        c.fill(t0);
        assert_eq!(c.in_flight(), 1, "one request is due at the start");
        c.fill(t0 + Duration::from_micros(5));
        assert_eq!(c.in_flight(), 1, "the next is not due before one interval");
        assert_eq!(c.paced_wake(), Some(t0 + pace));
        c.fill(t0 + pace);
        assert_eq!(c.in_flight(), 2);
        // A turn one second late: the burst, and the one due now, not 100k requests.
        c.fill(t0 + Duration::from_secs(1));
        assert_eq!(c.in_flight(), 2 + PACE_BURST as usize + 1);
        // Without a pace every free slot is filled at once.
        let mut c = core_at(config(64, 100, Pattern::Random), 1, 1000, false, t0);
        c.fill(t0);
        assert_eq!(c.in_flight(), 64);
        assert_eq!(c.paced_wake(), None);
    }

    #[test]
    fn requests_take_turns_over_the_exports_at_any_depth() {
        for (qd, n) in [(16usize, 64usize), (64, 8), (3, 4), (8, 1)] {
            let mut c = core(config(qd, 50, Pattern::Random), n, 1000, false);
            let mut r = repliers(n, 1000);
            // The first fill: slot after slot, export after export.
            let first = turn(&mut c, &mut r, 0, |e| e);
            let want: Vec<usize> = (0..qd).map(|i| i % n).collect();
            assert_eq!(first, want, "QD {qd} over {n}");
            for t in 1..200 {
                turn(&mut c, &mut r, t, |e| e);
            }
            let ops: Vec<u64> = c.exports.iter().map(|e| e.stats.all.ops).collect();
            let total: u64 = ops.iter().sum();
            assert_eq!(total, 200 * qd as u64, "every request answered: {ops:?}");
            let (lo, hi) = (ops.iter().min().unwrap(), ops.iter().max().unwrap());
            assert!(hi - lo <= 1, "QD {qd} over {n}: {ops:?}");
            assert_eq!(c.stats.combined().ops, total, "totals are the sum");
            assert!(c
                .exports
                .iter()
                .all(|e| e.stats.reads > 0 && e.stats.writes > 0));
            assert_eq!(c.stats.errors, ErrorCounts::default());
        }
    }

    #[test]
    fn verify_holds_on_every_export_of_its_own() {
        // Few blocks per export: requests meet the same blocks all the time.
        let (n, blocks) = (3, 16);
        let mut c = core(config(12, 50, Pattern::Random), n, blocks, true);
        let mut r = repliers(n, blocks);
        for t in 0..2000 {
            turn(&mut c, &mut r, t, |e| e);
        }
        assert_eq!(c.stats.errors.verify_failures, 0, "{:?}", c.verify_log);
        for e in &c.exports {
            assert!(
                e.stats.reads > 1000 && e.stats.writes > 1000,
                "{:?}",
                e.stats
            );
        }
    }

    #[test]
    fn data_of_another_export_fails_verify_on_the_right_export() {
        // Every request of export 1 is served by export 0's store: reads on export 1 then
        // return export 0's data (another nonce), which verify must refuse.
        let (n, blocks) = (2, 8);
        let mut c = core(config(4, 50, Pattern::Random), n, blocks, true);
        let mut r = repliers(n, blocks);
        for t in 0..500 {
            turn(&mut c, &mut r, t, |_| 0);
        }
        let on_1 = c.exports[1].stats.errors.verify_failures;
        assert!(on_1 > 0, "crosstalk detected on export 1");
        assert_eq!(
            c.stats.errors.verify_failures,
            on_1 + c.exports[0].stats.errors.verify_failures
        );
        assert!(c.verify_log.iter().any(|f| f.export == 1));
    }

    #[test]
    fn a_reply_from_another_export_does_not_complete_a_request() {
        let mut c = core(config(2, 100, Pattern::Random), 2, 100, false);
        let mut r = repliers(2, 100);
        c.fill(Instant::now());
        let index = c.outbox[0];
        assert_eq!(c.slots[index].export, 0);
        let mut out = vec![0u8; 2048];
        let len = r[0]
            .answer(&c.slots[index].frame[..c.slots[index].frame_len], &mut out)
            .unwrap();
        // The reply carries slot 0's tag but comes from e7.1.
        out[MINOR_AT] = 1;
        c.on_frame(&out[..len]);
        assert!(c.slots[index].live, "still waiting for e7.0");
        assert_eq!(c.stats.errors.stray_replies, 1);
        // From an address that is not one of ours at all.
        out[MINOR_AT] = 9;
        c.on_frame(&out[..len]);
        assert_eq!(c.stats.errors.stray_replies, 2);
        assert!(c.slots[index].live);
        // The right one completes it.
        out[MINOR_AT] = 0;
        c.on_frame(&out[..len]);
        assert!(!c.slots[index].live);
        assert_eq!(c.exports[0].stats.all.ops, 1);
        assert_eq!(c.exports[1].stats.all.ops, 0);
    }

    #[test]
    fn retransmits_and_timeouts_count_on_their_export() {
        let mut cfg = config(4, 100, Pattern::Random);
        cfg.timeout = Duration::from_millis(1);
        cfg.retries = 1;
        let mut c = core(cfg, 2, 100, false);
        let t0 = Instant::now();
        c.fill(t0);
        c.outbox.clear();
        c.expire(t0 + Duration::from_millis(2));
        assert_eq!(c.stats.errors.retransmits, 4);
        assert_eq!(c.exports[0].stats.errors.retransmits, 2);
        assert_eq!(c.exports[1].stats.errors.retransmits, 2);
        c.expire(t0 + Duration::from_millis(10));
        assert_eq!(c.stats.errors.timeouts, 4);
        assert_eq!(c.exports[1].stats.errors.timeouts, 2);
        assert_eq!(c.error_log.iter().filter(|f| f.export == 1).count(), 2);
    }
}
