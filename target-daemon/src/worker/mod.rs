//! The per-queue worker: one AF_XDP socket, one UMEM, one io_uring, one thread.
//!
//! Every UMEM frame cycles: fill ring → (kernel receives into it) → RX ring → the target
//! decides → either straight to the TX ring, or disk I/O from/into the frame itself and then
//! the TX ring → completion ring → fill ring. Sector data is never copied in userspace,
//! except through a bounce buffer where O_DIRECT alignment forces it (counted).
//!
//! Packets larger than a frame (jumbo frames, AF_XDP multi-buffer) arrive as chains of
//! descriptors linked by XDP_PKT_CONTD; read replies larger than a frame leave as chains too,
//! their tail in spare frames that never go to the fill ring.
//!
//! One worker serves every export on its interface: it routes each frame by shelf.slot
//! ([`exports`]); a wildcard Query Config and the start-up announcements get one reply per
//! export ([`fanout`]). The control plane adds, replaces and retires exports with
//! [`WorkerCommand`]s; the data path never takes a lock shared with it.
//!
//! One wait covers everything: a one-shot poll on the XSK socket (RX readiness), a multishot
//! poll on the command eventfd and the disk completions all arrive on the same io_uring.
//!
//! Counting: the worker alone writes its [`WorkerCounters`] (frames, drops by reason,
//! busy and idle time, measured with one clock read per wake-up) and, for each export it
//! serves, the [`ExportCounters`](crate::stats::ExportCounters) block the control plane
//! handed it with the `Serve` command (requests by kind, bytes, errors, refusals, requests
//! in flight, latency from RX ring to TX ring). Plain loads and stores on atomics: the
//! control plane reads them at any moment, nothing is locked or allocated per frame.
//!
//! The latency of a request that goes to the disk is split in two: the disk's part, from
//! submission to completion as the worker sees them, and xblade's, the rest (RX ring to
//! submission, completion to TX ring). Submission is stamped with one clock read per
//! `io_uring_enter` that submits disk I/O (just before it: every SQE of the RX batch is
//! handed to the kernel by that call), completion with one clock read per batch of reaped
//! CQEs holding a disk completion (at the batch's first disk completion, before any of its
//! replies is built; only a control command reaped ahead of it in the same batch can come
//! between the reap and the read). Resolution: against the worker's view, none to speak of
//! (every request of a batch is handed over, or picked up, by the same call, and the stamp
//! is read next to that call, tens of ns away); what they cannot see is inside the kernel:
//! the SQEs of one `io_uring_enter` are issued one after the other (the later ones' wait
//! counts as the disk's; not measured), and a completion the kernel has while the worker is
//! busy elsewhere (e.g. in a TX `sendto`; with DEFER_TASKRUN it is not even posted until
//! the worker next enters io_uring) counts as the disk's until it is reaped. The
//! synchronous engine reads the clock before and after each call. Added per disk request
//! (io_uring): a push on a preallocated list and a store at submission, a subtraction at
//! completion, two more histogram records (a bucket index and three load/store pairs each)
//! at transmission: roughly 50 instructions by reading the code (not counted with a tool),
//! and no clock read of its own beyond the two per batch; synchronous engine: two clock
//! reads (vDSO, tens of ns each) per request. An A/B against the binary before (bench.sh
//! tmpfs and disk groups, QD16) shows no resolvable change in CPU per request
//! (docs/PERFORMANCE.md, "Where a disk request's time goes").

mod clock;
mod exports;
mod fanout;
mod fill_depth;
mod frames;
mod geometry;
mod io;
mod known_zero;
mod plan;

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aoe_proto::Header;
use tracing::{debug, info, warn};
use xblade_target::{DropReason, ExportKey, Route};

use crate::config::TuningFlags;
use crate::stats::WorkerCounters;
use crate::target::{Action, Received, StateChange};
use crate::uring::{Completion, Ring, UringError};
use crate::xsk::{BindMode, Kick, UmemConfig, UmemRegion, XskError, XskSocket, XskStatistics};

use clock::PassClock;
use exports::{Exports, StatsTag};
pub use exports::{ServedExport, MAX_EXPORT_SLOTS};
use fanout::{FanOuts, Step};
use frames::{Anomaly, FrameMap, FramePool};
pub use geometry::{Geometry, FRAME_HEADROOM, FRAME_SIZE};
use io::{InFlight, Mergeable};
use known_zero::KnownZero;

/// user_data of the one-shot poll on the XSK socket, armed only before the worker sleeps.
const USER_DATA_XSK_POLL: u64 = u64::MAX;
/// user_data of the multishot poll on the command eventfd.
const USER_DATA_COMMAND: u64 = u64::MAX - 1;
/// How long a stopping worker waits for in-flight I/O and transmissions.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping worker whose disk I/O is done waits for transmissions that make no
/// progress (a link that is down keeps them queued).
const TX_STALL_AT_SHUTDOWN: Duration = Duration::from_millis(500);
/// Largest RX batch (the stack buffer of descriptors).
pub const MAX_BATCH: u32 = 1024;
/// How long an idle worker with transmissions outstanding waits before kicking again.
const TX_RETRY_WAIT_NS: u32 = 50_000;
/// While disk I/O is in flight, the spin window is this many times `--spin-us`: a
/// completion is due within the device's latency (tens to hundreds of µs on flash), and
/// sleeping for it costs a wake-up per completion. Measured on the virtio disk at QD16:
/// 64.9k IOPS with the plain 50 µs window, 75.0k with busy-poll.
const IN_FLIGHT_SPIN_FACTOR: u64 = 20;
/// Most descriptors one packet may span, received or sent.
pub const MAX_FRAGS: usize = 4;
/// How many RX descriptors ahead of the one being handled the worker prefetches the
/// frame's first cache line (the Ethernet, AoE and ATA headers: 36 bytes).
const PREFETCH_AHEAD: usize = 4;
/// Most requests merged into one disk operation.
pub const MAX_MERGE: usize = 8;
/// A worker that stays awake (spinning or busy-polling) adds its busy time to its counters
/// at least this often, so that readers see it grow.
const BUSY_FLUSH_NS: u64 = 10_000_000;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("queue {queue_id}: {source}")]
    Uring { queue_id: u32, source: UringError },
    #[error("queue {queue_id}: {source}")]
    Xsk { queue_id: u32, source: XskError },
    #[error("queue {queue_id}: worker thread panicked")]
    Panicked { queue_id: u32 },
    #[error("queue {queue_id}: {key}: {source}")]
    Serve {
        queue_id: u32,
        key: ExportKey,
        source: exports::ServeError,
    },
}

/// Where workers report the state changes initiators make, by export: a channel, and an
/// eventfd the control plane polls so that it persists each change at once.
#[derive(Clone, Debug)]
pub struct ChangeSender {
    pub sender: Sender<(ExportKey, StateChange)>,
    /// Kept open by the control plane for as long as any worker runs.
    pub wake_fd: RawFd,
}

impl ChangeSender {
    pub fn send(&self, key: ExportKey, change: StateChange) {
        if self.sender.send((key, change)).is_ok() {
            crate::eventfd::signal(self.wake_fd);
        }
    }
}

/// What the control plane tells a worker. Commands are applied in order; `Applied(n)` then
/// publishes `n` through [`WorkerSetup::applied`], so the sender knows every command before
/// it has taken effect.
#[derive(Debug)]
pub enum WorkerCommand {
    /// Serve this export (new, or a new version of a served one: the old version finishes
    /// its disk I/O in flight and is dropped).
    Serve(ServedExport),
    /// Stop routing requests to this export; its I/O in flight still completes and is
    /// answered.
    Retire(ExportKey),
    /// Send this export's unsolicited config reply (it was just added).
    Announce(ExportKey),
    Applied(u64),
    /// Finish in-flight I/O, answer it, and return.
    Stop,
}

/// Everything a worker thread needs; built by the main thread, moved into the worker.
pub struct WorkerSetup {
    pub queue_id: u32,
    /// The exports served from the start.
    pub exports: Vec<ServedExport>,
    pub socket: XskSocket,
    pub umem: UmemRegion,
    pub umem_config: UmemConfig,
    /// Bytes per bounce buffer slot in the region after the UMEM (see
    /// [`Geometry::bounce_len`]); there are [`Geometry::bounce_slots`] of them.
    pub bounce_len: usize,
    pub batch: u32,
    /// Spin on the rings instead of sleeping in io_uring_enter when idle.
    pub busy_poll: bool,
    /// Keep polling this many µs after the last work before sleeping.
    pub spin_us: u32,
    pub cpu: Option<usize>,
    /// Send the exports' announcements (one worker per interface does).
    pub announce: bool,
    /// An eventfd, readable when commands wait on `commands`.
    pub command_fd: RawFd,
    pub commands: Receiver<WorkerCommand>,
    /// The last [`WorkerCommand::Applied`] value taken up.
    pub applied: Arc<AtomicU64>,
    pub counters: Arc<WorkerCounters>,
    /// State changes initiators made (config string, mask list, reservation), by export.
    pub changes: ChangeSender,
    /// Which fast-path mechanisms are on (all, unless measuring what each buys).
    pub tuning: TuningFlags,
}

/// What a worker hands back when it stops.
#[derive(Debug)]
pub struct WorkerReport {
    pub queue_id: u32,
    pub bind_mode: BindMode,
    pub xsk_statistics: Option<XskStatistics>,
}

/// A reply waiting for the TX ring.
#[derive(Clone, Copy, Debug)]
struct PendingTx {
    desc: libc::xdp_desc,
    /// The request it answers, timed from when it came off the RX ring; `None` for
    /// fan-out replies and for the fragments after the first.
    request: Option<Answered>,
}

/// The request a reply answers: when it arrived, and its export's counters.
#[derive(Clone, Copy, Debug)]
struct Answered {
    started_ns: u64,
    export: StatsTag,
    /// Submission to completion, for a request that went to the disk.
    disk_ns: Option<u64>,
}

/// A packet being received: descriptors up to the one without XDP_PKT_CONTD.
struct RxChain {
    descs: [libc::xdp_desc; MAX_FRAGS],
    len: usize,
    /// More than MAX_FRAGS descriptors: the packet is dropped when it ends.
    overflow: bool,
}

struct Worker {
    queue_id: u32,
    socket: XskSocket,
    ring: Ring,
    /// Every frame and who holds it.
    frames: FramePool,
    /// Which bytes of each RX frame are zero (for the null backend's reads).
    known_zero: KnownZero,
    exports: Exports,
    fanouts: FanOuts,
    batch: u32,
    busy_poll: bool,
    /// Keep polling this long after the last work before sleeping (0: sleep at once).
    spin_ns: u64,
    last_activity_ns: u64,
    /// Kick TX only when the kernel asks (XDP_USE_NEED_WAKEUP), else after every batch.
    kick_on_need_only: bool,
    /// Preferred busy polling is set on the socket: the worker itself drives the NAPI
    /// context, with a `recvfrom` on every pass of its loop and a `sendto` after every TX
    /// batch whatever the need_wakeup flags say (af_xdp.rst, "Busy polling"; the xdpsock
    /// sample's `-B`). Interrupts and softirqs stay deferred while it does.
    drive_napi: bool,
    /// Most kicks per TX batch (the frame count over the kernel's smallest budget).
    tx_kick_limit: u32,
    command_fd: RawFd,
    commands: Receiver<WorkerCommand>,
    applied: Arc<AtomicU64>,
    /// A one-shot poll for RX readiness is queued or armed in the ring. It is armed only
    /// before a wait: a worker that is awake reads the RX ring itself, and a poll armed
    /// all the time would post a completion (and cost an io_uring_enter to run it) for
    /// every burst of frames.
    xsk_poll_armed: bool,
    counters: Arc<WorkerCounters>,
    changes: ChangeSender,
    clock: PassClock,
    /// When the worker last woke up (or last added its busy time to the counters).
    busy_since_ns: u64,
    /// In-flight disk I/O by head frame index; `None` for frames not waiting on the disk.
    in_flight: Vec<Option<InFlight>>,
    in_flight_count: u32,
    /// Head frames of the disk I/O queued on the ring since the last submission, whose
    /// `submitted_ns` the next submission stamps (capacity: every frame, never grows).
    unstamped: Vec<u32>,
    rx_chain: RxChain,
    /// Merge adjacent requests of an RX batch into one disk operation.
    merge: bool,
    /// Requests of the current RX batch held back for merging (capacity MAX_BATCH).
    merge_batch: Vec<Mergeable>,
    /// Descriptors taken off the RX ring in one batch (capacity MAX_BATCH, never grows).
    rx_descs: Vec<libc::xdp_desc>,
    /// Addresses taken off the completion ring in one batch (capacity MAX_BATCH).
    comp_addrs: Vec<u64>,
    /// Longest reply `decide` may plan for.
    reply_capacity: usize,
    /// Replies ready for the TX ring.
    tx_pending: Vec<PendingTx>,
    /// Frames on the TX ring whose completion has not come back.
    tx_outstanding: u32,
    completions: Vec<Completion>,
    draining_since: Option<Instant>,
    /// Frames are taken off the RX ring: until the loop pass in which draining began.
    rx_open: bool,
    /// While draining: the transmissions outstanding and since when that count has not
    /// changed.
    drain_tx_watch: Option<(u32, Instant)>,
}

/// Runs a worker until shutdown. `ready` hears `Ok` once the worker serves, or the
/// set-up error.
pub fn run(
    setup: WorkerSetup,
    ready: Sender<Result<(), String>>,
) -> Result<WorkerReport, WorkerError> {
    let queue_id = setup.queue_id;
    let mut worker = match Worker::new(setup) {
        Ok(worker) => worker,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return Err(e);
        }
    };
    let _ = ready.send(Ok(()));
    let result = worker.serve();
    let xsk_statistics = worker.socket.statistics().ok();
    result.map(|()| WorkerReport {
        queue_id,
        bind_mode: worker.socket.bind_mode(),
        xsk_statistics,
    })
}

impl Worker {
    fn new(setup: WorkerSetup) -> Result<Worker, WorkerError> {
        let queue_id = setup.queue_id;
        let uring = |source| WorkerError::Uring { queue_id, source };
        if let Some(cpu) = setup.cpu {
            pin_to_cpu(cpu);
        }
        let frame_count = setup.umem_config.frame_count;
        // Every frame can be in flight at once, plus the two polls.
        let tuning = setup.tuning;
        let mut ring = Ring::new((frame_count + 2).next_power_of_two(), tuning.defer_taskrun)
            .map_err(uring)?;
        if !tuning.fixed {
            ring.disable_fixed();
        }
        ring.register_file_table(MAX_EXPORT_SLOTS).map_err(uring)?;
        // SAFETY: the region is owned by `frames`, which the worker drops after the ring
        // (field order: `ring` before `frames`), and it is never remapped.
        unsafe { ring.register_buffer(setup.umem.as_ptr(), setup.umem.len()) }.map_err(uring)?;
        debug!(queue_id, flavour = ?ring.flavour(), "io_uring ready");

        let geometry = Geometry {
            frame_count,
            multi_buffer: setup.socket.multi_buffer(),
        };
        let slots = Geometry::bounce_slots(frame_count);
        let map = FrameMap::new(setup.umem, &setup.umem_config, setup.bounce_len, slots);
        let frames = FramePool::new(map, geometry, slots, tuning.fill_cap);
        let known_zero = KnownZero::new(
            geometry.rx_frames(),
            setup.umem_config.frame_size,
            tuning.zero_skip,
        );
        debug!(
            queue_id,
            rx_frames = geometry.rx_frames(),
            fill_depth = frames.fill_depth(),
            "frame pool ready"
        );
        let empty = libc::xdp_desc {
            addr: 0,
            len: 0,
            options: 0,
        };
        let drive_napi = setup.socket.napi_busy_poll().is_some();
        let mut worker = Worker {
            queue_id,
            socket: setup.socket,
            ring,
            frames,
            known_zero,
            exports: Exports::new(),
            fanouts: FanOuts::new(),
            batch: setup.batch.min(MAX_BATCH),
            busy_poll: setup.busy_poll,
            spin_ns: u64::from(setup.spin_us) * 1000,
            last_activity_ns: 0,
            kick_on_need_only: tuning.need_wakeup,
            drive_napi,
            tx_kick_limit: frame_count / 8 + 1,
            command_fd: setup.command_fd,
            commands: setup.commands,
            applied: setup.applied,
            xsk_poll_armed: false,
            counters: setup.counters,
            changes: setup.changes,
            clock: PassClock::new(),
            busy_since_ns: 0,
            in_flight: vec![None; frame_count as usize],
            in_flight_count: 0,
            unstamped: Vec::with_capacity(frame_count as usize),
            rx_chain: RxChain {
                descs: [empty; MAX_FRAGS],
                len: 0,
                overflow: false,
            },
            rx_descs: Vec::with_capacity(MAX_BATCH as usize),
            merge: tuning.merge,
            merge_batch: Vec::with_capacity(MAX_BATCH as usize),
            comp_addrs: Vec::with_capacity(MAX_BATCH as usize),
            reply_capacity: geometry.reply_capacity(),
            tx_pending: Vec::with_capacity(frame_count as usize),
            tx_outstanding: 0,
            completions: vec![
                Completion {
                    user_data: 0,
                    result: 0,
                    more: false
                };
                2 * frame_count as usize + 4
            ],
            draining_since: None,
            rx_open: true,
            drain_tx_watch: None,
        };
        for served in setup.exports {
            worker.serve_export(served)?;
        }
        if setup.announce {
            worker.fanouts.push_announce_all();
        }
        worker.counters.set_fill_depth(worker.frames.fill_depth());
        worker.refill()?;
        worker.run_fanouts();
        worker.transmit()?;
        Ok(worker)
    }

    fn serve_export(&mut self, served: ServedExport) -> Result<(), WorkerError> {
        let key = served.target.key();
        self.exports
            .serve(&mut self.ring, served)
            .map(|_| ())
            .map_err(|source| WorkerError::Serve {
                queue_id: self.queue_id,
                key,
                source,
            })
    }

    /// Takes up every command waiting (the command eventfd was readable).
    fn take_commands(&mut self) -> Result<(), WorkerError> {
        crate::eventfd::reset(self.command_fd);
        while let Ok(command) = self.commands.try_recv() {
            match command {
                WorkerCommand::Serve(served) => self.serve_export(served)?,
                WorkerCommand::Retire(key) => {
                    self.exports.retire(&mut self.ring, key);
                }
                WorkerCommand::Announce(key) => {
                    if !self.fanouts.push_announce(key.major(), key.minor()) {
                        warn!(queue_id = self.queue_id, %key, "announcement queue full; {key} not announced");
                    }
                }
                WorkerCommand::Applied(generation) => {
                    self.applied.store(generation, Ordering::Release);
                }
                WorkerCommand::Stop => self.start_draining(),
            }
        }
        Ok(())
    }

    fn start_draining(&mut self) {
        if self.draining_since.is_none() {
            debug!(
                queue_id = self.queue_id,
                in_flight = self.in_flight_count,
                "draining"
            );
            self.draining_since = Some(Instant::now());
        }
    }

    /// Builds fan-out replies (wildcard config queries, announcements) in spare frames while
    /// there are spare frames and replies to build. Returns whether it queued any.
    fn run_fanouts(&mut self) -> bool {
        let mut sent = false;
        while !self.fanouts.is_empty() {
            let Some(index) = self.frames.pop_spare() else {
                break;
            };
            let addr = self.frames.map.chunk_addr(index) + self.frames.map.packet_offset();
            let frame = self.frames.map.frame_mut(addr);
            match self.fanouts.step(&self.exports, frame) {
                Step::Reply {
                    len,
                    key,
                    slot,
                    kind,
                    change,
                } => {
                    if let Some(kind) = kind {
                        self.counters.count_reply(kind);
                        self.exports.get(slot).stats.count_reply(kind);
                    }
                    if let Some(change) = change {
                        self.changes.send(key, change);
                    }
                    self.queue_tx(addr, len, 0, None);
                    sent = true;
                }
                Step::Silent { reason, slot } => {
                    self.counters.count_drop(reason);
                    if let (DropReason::Masked, Some(slot)) = (reason, slot) {
                        self.exports.get(slot).stats.add(|c| &c.refused_masked, 1);
                    }
                    self.frames.push_spare(index);
                }
                Step::Idle => {
                    self.frames.push_spare(index);
                    break;
                }
            }
        }
        sent
    }

    fn serve(&mut self) -> Result<(), WorkerError> {
        self.ring
            .push_poll_multishot(self.command_fd, libc::POLLIN as u32, USER_DATA_COMMAND);
        self.submit()?;
        loop {
            let mut progressed = self.reap_ring()?;
            progressed |= self.reap_tx_completions();
            // Draining, one more batch is taken off the RX ring (the pass right after the
            // stop command): requests sent before the stop are answered; later ones wait
            // for the initiator's retransmission elsewhere.
            if self.rx_open && self.receive() {
                progressed = true;
                // Start the batch's disk I/O before transmitting: with veth, the `sendto`
                // below also runs the initiator's receive and can take tens of µs.
                self.stamp_submissions();
                self.submit()?;
            }
            if self.draining_since.is_some() {
                self.rx_open = false;
            }
            self.refill()?;
            progressed |= self.run_fanouts();
            progressed |= self.transmit()?;
            if let Some(since) = self.draining_since {
                if self.in_flight_count == 0 && self.tx_outstanding == 0 {
                    return Ok(());
                }
                if self.in_flight_count == 0 && self.transmit_stalled() {
                    // Every disk I/O is done; what is left are replies a link that is down
                    // will not send (the initiator retransmits them elsewhere or later).
                    info!(
                        queue_id = self.queue_id,
                        tx_outstanding = self.tx_outstanding,
                        "the link sends nothing; stopping with replies unsent"
                    );
                    return Ok(());
                }
                if since.elapsed() > DRAIN_TIMEOUT {
                    warn!(
                        queue_id = self.queue_id,
                        in_flight = self.in_flight_count,
                        tx_outstanding = self.tx_outstanding,
                        "gave up waiting for in-flight work at shutdown"
                    );
                    return Ok(());
                }
            }
            // Draining or not, the waits below end: in-flight I/O completes on the ring,
            // and outstanding transmissions are re-kicked every TX_RETRY_WAIT_NS. The spin
            // window and the busy time need only about now: a reading of this pass serves.
            let now_ns = self.clock.recent_ns();
            if progressed {
                self.last_activity_ns = now_ns;
            }
            if now_ns.saturating_sub(self.busy_since_ns) >= BUSY_FLUSH_NS {
                self.count_busy_until(now_ns);
            }
            // Busy-poll always; otherwise keep polling for a while after the last work, so
            // a closed-loop initiator's next request (tens of µs later) or a disk
            // completion finds the worker awake instead of paying a wake-up from idle.
            let spin_ns = if self.in_flight_count > 0 {
                self.spin_ns.saturating_mul(IN_FLIGHT_SPIN_FACTOR)
            } else {
                self.spin_ns
            };
            let spinning = now_ns.saturating_sub(self.last_activity_ns) < spin_ns;
            if progressed || self.busy_poll || spinning {
                self.submit()?;
                self.clock.next_pass();
            } else if self.tx_outstanding > 0 {
                // Transmitted frames come back on the completion ring without a wake-up
                // of their own, and a congested device (ENOBUFS) leaves descriptors on the
                // TX ring: kick again, then wait briefly rather than spin.
                self.kick_pending_tx()?;
                self.sleep(now_ns, Some(TX_RETRY_WAIT_NS))?;
            } else {
                self.sleep(now_ns, None)?;
            }
        }
    }

    /// While draining: true when transmissions are outstanding and none has completed for
    /// [`TX_STALL_AT_SHUTDOWN`] (a healthy link completes them in microseconds).
    fn transmit_stalled(&mut self) -> bool {
        let outstanding = self.tx_outstanding;
        match self.drain_tx_watch {
            Some((count, since)) if count == outstanding => since.elapsed() > TX_STALL_AT_SHUTDOWN,
            _ => {
                self.drain_tx_watch = Some((outstanding, Instant::now()));
                false
            }
        }
    }

    /// Adds the time awake since the last wake-up (or the last such call) to the busy time.
    fn count_busy_until(&mut self, now_ns: u64) {
        self.counters
            .add(|c| &c.busy_ns, now_ns.saturating_sub(self.busy_since_ns));
        self.busy_since_ns = now_ns;
    }

    /// [`Worker::wait`], counting the time before it (read at `now_ns`) as busy and the
    /// wait itself as idle: one clock read per wake-up, which also serves the pass that
    /// the wake-up begins.
    fn sleep(&mut self, now_ns: u64, timeout_ns: Option<u32>) -> Result<(), WorkerError> {
        self.count_busy_until(now_ns);
        let result = self.wait(timeout_ns);
        let woke_ns = self.clock.now_ns();
        self.counters
            .add(|c| &c.idle_ns, woke_ns.saturating_sub(now_ns));
        self.busy_since_ns = woke_ns;
        result
    }

    /// Submits and waits for a completion (socket readiness, disk I/O, shutdown), or at
    /// most `timeout_ns`.
    fn wait(&mut self, timeout_ns: Option<u32>) -> Result<(), WorkerError> {
        if !self.xsk_poll_armed {
            // Armed with this very submission; the kernel checks readiness as it arms the
            // poll, so a frame that arrived since the last look at the RX ring completes it
            // at once instead of being missed.
            let fd = self.socket.fd().as_raw_fd();
            self.ring
                .push_poll_oneshot(fd, libc::POLLIN as u32, USER_DATA_XSK_POLL);
            self.xsk_poll_armed = true;
        }
        let result = match timeout_ns {
            Some(ns) => self.ring.submit_and_wait_timeout(ns),
            None => self.ring.submit_and_wait(),
        };
        result.map_err(|source| WorkerError::Uring {
            queue_id: self.queue_id,
            source,
        })
    }

    /// Submits what is queued without waiting.
    fn submit(&mut self) -> Result<(), WorkerError> {
        let result = self.ring.submit();
        result.map_err(|source| WorkerError::Uring {
            queue_id: self.queue_id,
            source,
        })
    }

    /// Handles every io_uring completion: disk I/O, socket readiness, commands.
    fn reap_ring(&mut self) -> Result<bool, WorkerError> {
        let n = self.ring.reap(&mut self.completions);
        // Read once, at the first disk completion of the batch.
        let mut completed_ns = None;
        for i in 0..n {
            let c = self.completions[i];
            match c.user_data {
                USER_DATA_XSK_POLL => self.xsk_poll_armed = false,
                USER_DATA_COMMAND => {
                    if !c.more {
                        // The multishot poll ended (the kernel may end one at any time).
                        self.ring.push_poll_multishot(
                            self.command_fd,
                            libc::POLLIN as u32,
                            USER_DATA_COMMAND,
                        );
                    }
                    self.take_commands()?;
                }
                index => {
                    let at_ns = *completed_ns.get_or_insert_with(|| self.clock.now_ns());
                    self.complete_io(index as u32, c.result, at_ns);
                }
            }
        }
        Ok(n > 0)
    }

    /// Takes up to a batch of descriptors off the RX ring and acts on each whole packet.
    fn receive(&mut self) -> bool {
        let rx = self.socket.rx();
        let n = rx.peek(self.batch);
        if n == 0 {
            return false;
        }
        // A full batch: more may wait behind it; a backlog near the fill depth raises it.
        if n == self.batch {
            if let Some(depth) = self.frames.rx_backlog(rx.waiting()) {
                self.counters.set_fill_depth(depth);
                info!(
                    queue_id = self.queue_id,
                    fill_depth = depth,
                    "the RX ring backed up to near the fill depth: the kernel now gets up to {depth} frames for reception"
                );
            }
        }
        self.rx_descs.clear();
        self.rx_descs.extend((0..n).map(|i| rx.desc(i)));
        rx.release(n);
        self.frames.received(n);
        self.counters.add(|c| &c.rx_frames, u64::from(n));
        // The latency's start: the pass's reading (on waking, or at a completion reaped
        // just before) is no later than the worker's first sight of these frames.
        let now_ns = self.clock.recent_ns();
        // The kernel wrote these frames on another CPU: start loading the headers of the
        // next few while the current one is handled.
        for desc in self.rx_descs.iter().take(PREFETCH_AHEAD) {
            self.frames.map.prefetch(desc.addr);
        }
        for i in 0..n as usize {
            if let Some(ahead) = self.rx_descs.get(i + PREFETCH_AHEAD) {
                self.frames.map.prefetch(ahead.addr);
            }
            self.receive_desc(self.rx_descs[i], now_ns);
        }
        self.flush_merge_batch();
        true
    }

    /// Adds one descriptor to the packet being received; handles the packet when it ends.
    fn receive_desc(&mut self, desc: libc::xdp_desc, now_ns: u64) {
        let Some(index) = self.take_from_kernel(desc.addr) else {
            return;
        };
        let offset = self.frames.map.offset_in_frame(desc.addr) as usize;
        self.known_zero.received(index, offset, desc.len as usize);
        let chain = &mut self.rx_chain;
        if chain.len < MAX_FRAGS {
            chain.descs[chain.len] = desc;
            chain.len += 1;
        } else {
            chain.overflow = true;
            self.frames.recycle(desc.addr);
        }
        if desc.options & libc::XDP_PKT_CONTD != 0 {
            return;
        }
        let (descs, len, overflow) = (chain.descs, chain.len, chain.overflow);
        chain.len = 0;
        chain.overflow = false;
        if overflow {
            self.counters
                .count_drop(crate::target::DropReason::Malformed);
            for d in &descs[..len] {
                self.frames.recycle(d.addr);
            }
            return;
        }
        self.handle_packet(&descs[..len], now_ns);
    }

    fn handle_packet(&mut self, descs: &[libc::xdp_desc], now_ns: u64) {
        let head = descs[0];
        let extras = &descs[1..];
        let Some(index) = self.frames.map.index_of(head.addr) else {
            warn!(
                queue_id = self.queue_id,
                addr = head.addr,
                "RX descriptor outside the UMEM; ignored"
            );
            return;
        };
        let total_len = descs.iter().map(|d| d.len as usize).sum();
        let rx = Received {
            len: head.len as usize,
            total_len,
            reply_capacity: self.reply_capacity,
        };
        let frame = self.frames.map.frame_mut(head.addr);
        let slot = match frame.get(..rx.len).map(Header::parse) {
            Some(Ok(hdr)) if hdr.is_response() => Err(DropReason::Response),
            Some(Ok(hdr)) => match self.exports.route(hdr.major, hdr.minor, hdr.command) {
                Route::One(slot) => Ok((slot as u32, hdr)),
                Route::FanOut => {
                    // Every matching export answers, each from a frame of its own.
                    if !self
                        .fanouts
                        .push_request(&frame[..rx.len], hdr.major, hdr.minor)
                    {
                        self.counters.add(|c| &c.dropped_no_buffer, 1);
                    }
                    self.frames.recycle(head.addr);
                    self.recycle_extras(extras);
                    return;
                }
                Route::None => Err(DropReason::NotForUs),
                Route::Ambiguous => Err(DropReason::Ambiguous),
            },
            _ => Err(DropReason::Malformed),
        };
        let action = match &slot {
            Ok((slot, hdr)) => self.exports.get(*slot).target.decide_parsed(frame, rx, hdr),
            Err(reason) => Action::Drop(*reason),
        };
        let slot = slot.map(|(slot, _)| slot);
        match (action, slot) {
            (Action::Drop(reason), slot) => {
                self.counters.count_drop(reason);
                if let (DropReason::Masked, Ok(slot)) = (reason, slot) {
                    self.exports.get(slot).stats.add(|c| &c.refused_masked, 1);
                }
                self.frames.recycle(head.addr);
                self.recycle_extras(extras);
            }
            (Action::Reply { len, kind, change }, Ok(slot)) => {
                self.known_zero.written(index);
                self.counters.count_reply(kind);
                let export = self.exports.get(slot);
                export.stats.count_reply(kind);
                if let Some(change) = change {
                    self.changes.send(export.target.key(), change);
                }
                let answered = Answered {
                    started_ns: now_ns,
                    export: self.exports.stats_tag(slot),
                    disk_ns: None,
                };
                self.recycle_extras(extras);
                self.queue_tx(head.addr, len, 0, Some(answered));
            }
            (Action::Io(request), Ok(slot)) => {
                self.queue_or_start_io(slot, index, head, extras, request, now_ns);
            }
            // Only a routed request is decided: an unrouted one is always dropped above.
            (Action::Reply { .. } | Action::Io(_), Err(_)) => {
                self.frames.recycle(head.addr);
                self.recycle_extras(extras);
            }
        }
    }

    /// Gives a frame whose transmission completed (or that a request no longer needs) back
    /// where it belongs: the fill ring, or the spare pool.
    fn release_frame(&mut self, addr: u64) {
        if let Err(anomaly) = self.frames.release(addr) {
            self.frame_anomaly(anomaly);
        }
    }

    /// Marks the frame of `addr`, just returned by the kernel on the RX or completion ring,
    /// as this worker's, and returns its index. `None` (counted) when the kernel did not
    /// hold it, or it is outside the UMEM: the descriptor must then be ignored.
    fn take_from_kernel(&mut self, addr: u64) -> Option<u32> {
        match self.frames.take_from_kernel(addr) {
            Ok(index) => Some(index),
            Err(anomaly) => {
                self.frame_anomaly(anomaly);
                None
            }
        }
    }

    fn frame_anomaly(&self, anomaly: Anomaly) {
        self.counters.add(|c| &c.frame_anomalies, 1);
        warn!(
            queue_id = self.queue_id,
            ?anomaly,
            "frame ownership anomaly; the descriptor is ignored"
        );
    }

    fn queue_tx(&mut self, addr: u64, len: usize, options: u32, request: Option<Answered>) {
        let desc = libc::xdp_desc {
            addr,
            len: len as u32,
            options,
        };
        self.tx_pending.push(PendingTx { desc, request });
    }

    /// Posts every pending reply on the TX ring with one kick. Returns whether it sent any.
    fn transmit(&mut self) -> Result<bool, WorkerError> {
        let pending = self.tx_pending.len() as u32;
        if pending == 0 {
            return Ok(false);
        }
        let now_ns = self.clock.now_ns();
        let tx = self.socket.tx();
        // The TX ring holds as many entries as there are frames, so it always has room for
        // the frames this worker holds; should it not, the rest wait for the next turn.
        let reserved = tx.reserve(pending);
        for (i, pending) in self.tx_pending[..reserved as usize].iter().enumerate() {
            tx.write(i as u32, pending.desc);
            self.frames.hand_to_kernel(pending.desc.addr);
            if let Some(request) = pending.request {
                let latency_ns = now_ns.saturating_sub(request.started_ns);
                if let Some(stats) = self.exports.stats_of(request.export) {
                    stats.latency.record(latency_ns);
                    if let Some(disk_ns) = request.disk_ns {
                        stats.disk_latency.record(disk_ns);
                        stats
                            .xblade_latency
                            .record(latency_ns.saturating_sub(disk_ns));
                    }
                }
            }
        }
        tx.submit(reserved);
        let kick = self.drive_napi || !self.kick_on_need_only || tx.needs_wakeup();
        self.tx_pending.drain(..reserved as usize);
        self.tx_outstanding += reserved;
        self.counters.add(|c| &c.tx_frames, u64::from(reserved));
        if kick {
            self.kick_pending_tx()?;
        }
        Ok(true)
    }

    /// Kicks TX until the kernel has taken every descriptor: copy mode sends a budget per
    /// kick and says EAGAIN while more remain (bounded: the ring never holds more than the
    /// frame pool).
    fn kick_pending_tx(&mut self) -> Result<(), WorkerError> {
        for _ in 0..=self.tx_kick_limit {
            let kicked = self.socket.kick_tx().map_err(|source| WorkerError::Xsk {
                queue_id: self.queue_id,
                source,
            })?;
            if kicked == Kick::Done {
                break;
            }
        }
        Ok(())
    }

    /// Takes transmitted frames back from the completion ring.
    fn reap_tx_completions(&mut self) -> bool {
        let comp = self.socket.comp();
        let n = comp.peek(MAX_BATCH);
        if n == 0 {
            return false;
        }
        self.comp_addrs.clear();
        self.comp_addrs.extend((0..n).map(|i| comp.addr(i)));
        comp.release(n);
        for i in 0..n as usize {
            let addr = self.comp_addrs[i];
            if self.take_from_kernel(addr).is_some() {
                self.release_frame(addr);
            }
        }
        self.tx_outstanding = self.tx_outstanding.saturating_sub(n);
        true
    }

    /// Gives recycled frames back to the kernel on the fill ring.
    fn refill(&mut self) -> Result<(), WorkerError> {
        let fill = self.socket.fill();
        let twice = self.frames.fill(fill);
        // Busy polling: this recvfrom is what runs the NAPI poll (RX and TX completions).
        let wake = self.drive_napi || fill.needs_wakeup();
        if twice > 0 {
            self.counters.add(|c| &c.frame_anomalies, twice);
            warn!(
                queue_id = self.queue_id,
                frames = twice,
                "frames recycled twice; ignored"
            );
        }
        if wake {
            self.socket.wake_rx().map_err(|source| WorkerError::Xsk {
                queue_id: self.queue_id,
                source,
            })?;
        }
        Ok(())
    }
}

/// sched_setaffinity(2) for the calling thread; a failure is logged, not fatal.
fn pin_to_cpu(cpu: usize) {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit inside `set` (cpu is reduced below CPU_SETSIZE).
    unsafe { libc::CPU_SET(cpu % libc::CPU_SETSIZE as usize, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is valid for its size.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        info!(
            cpu,
            "could not pin worker to CPU: {}",
            std::io::Error::last_os_error()
        );
    }
}
