//! One interface being served: its XDP program (a bpf_link: it detaches when dropped, or
//! when the process dies), one AF_XDP socket, UMEM and worker thread per RX queue, and the
//! commands that tell the workers which exports to serve.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{info, warn};
use xblade_target::ExportKey;

use crate::config::InterfaceConfig;
use crate::control::{InterfaceStats, QueueStats, XskStats};
use crate::eventfd::EventFd;
use crate::netdev::Netdev;
use crate::stats::{StatsRegistry, WorkerCounters};
use crate::worker::{
    self, ChangeSender, Geometry, WorkerCommand, WorkerError, WorkerReport, WorkerSetup,
};
use crate::xdp::{AttachedMode, XdpProgram};
use crate::xsk::{
    self, BindOptions, NapiBusyPollState, UmemConfig, UmemRegion, XskSocket, XskStatisticsReader,
};

use super::export::RunningExport;
use super::DaemonError;

/// How long the control plane waits for every worker to take up a batch of commands.
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A worker thread and the ends of its channels.
struct WorkerHandle {
    queue_id: u32,
    commands: Sender<WorkerCommand>,
    command_fd: EventFd,
    applied: Arc<AtomicU64>,
    handle: Option<JoinHandle<Result<WorkerReport, WorkerError>>>,
    counters: Arc<WorkerCounters>,
    /// The socket's `XDP_STATISTICS`, read by the control plane; `None` if its descriptor
    /// could not be duplicated (logged).
    xsk_statistics: Option<XskStatisticsReader>,
    /// Set once reading `XDP_STATISTICS` failed and was logged (the numbers then read 0).
    xsk_statistics_failed: Cell<bool>,
    /// The socket's preferred busy-polling options as read back at start; `None`: off.
    napi_busy_poll: Option<NapiBusyPollState>,
}

/// What is left of an interface's workers once they stopped.
pub(super) struct Stopped {
    /// (interface, queue id, counters) of each worker.
    pub counters: Vec<(String, u32, Arc<WorkerCounters>)>,
    pub error: Option<WorkerError>,
}

pub(super) struct RunningInterface {
    pub netdev: Netdev,
    pub ifindex: u32,
    pub xdp_mode: AttachedMode,
    /// Sectors per AoE frame on this link: the MTU's and the frames' limit.
    pub max_sectors: u8,
    /// The exports served here.
    pub exports: BTreeSet<ExportKey>,
    xdp: XdpProgram,
    workers: Vec<WorkerHandle>,
    generation: u64,
}

impl RunningInterface {
    /// Attaches the XDP program to `config.name`, binds a socket per RX queue, starts a
    /// worker for each serving `exports`, and steers their requests to them. Each export
    /// announces itself.
    pub fn start(
        config: &InterfaceConfig,
        exports: &[&RunningExport],
        changes: &ChangeSender,
        stats: &mut StatsRegistry,
    ) -> Result<RunningInterface, DaemonError> {
        let netdev = Netdev::lookup(&config.name)?;
        let ifindex = xsk::ifindex(&netdev.name)?;
        let umem_config = Geometry::umem_config(config.frames);
        let mut xdp = XdpProgram::attach(&netdev.name, config.xdp_mode)?;
        if config.napi_busy_poll.is_some() && xdp.mode() == AttachedMode::Generic {
            warn!(
                iface = %netdev.name,
                "napi_busy_poll_us has no effect with generic (skb) XDP: AF_XDP sockets get \
                 no NAPI context to poll; use xdp_mode = \"native\""
            );
        }
        let sockets = bind_sockets(config, &netdev, ifindex, &umem_config, &mut xdp)?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let max_sectors = sockets.max_sectors;
        let mut running = RunningInterface {
            xdp_mode: xdp.mode(),
            netdev,
            ifindex,
            max_sectors,
            exports: exports.iter().map(|e| e.key()).collect(),
            xdp,
            workers: Vec::new(),
            generation: 0,
        };
        for (queue_id, umem, socket) in sockets.bound {
            let served = exports
                .iter()
                .map(|e| {
                    let counters =
                        stats.counters_for(e.key(), e.generation, &running.netdev.name, queue_id);
                    e.on_link(running.netdev.mac, max_sectors, counters)
                })
                .collect();
            let handle = spawn_worker(
                WorkerSetup {
                    queue_id,
                    exports: served,
                    socket,
                    umem,
                    umem_config,
                    bounce_len: sockets.bounce_len,
                    batch: config.batch,
                    busy_poll: config.busy_poll,
                    spin_us: config.spin_us,
                    cpu: config.pin.then_some(queue_id as usize % cpus),
                    announce: queue_id == 0,
                    command_fd: -1,
                    commands: mpsc::channel().1,
                    applied: Arc::new(AtomicU64::new(0)),
                    counters: Arc::new(WorkerCounters::default()),
                    changes: changes.clone(),
                    tuning: config.tuning,
                },
                &running.netdev.name,
            );
            match handle {
                Ok(handle) => running.workers.push(handle),
                Err(e) => {
                    running.stop();
                    return Err(e);
                }
            }
        }
        let xdp_exports: Vec<_> = exports.iter().map(|e| e.xdp_export()).collect();
        if let Err(e) = running.xdp.set_exports(&xdp_exports) {
            running.stop();
            return Err(e.into());
        }
        for export in exports {
            running.log_serving(export);
        }
        Ok(running)
    }

    /// The line a test or an operator waits for: this export is served on this link.
    pub fn log_serving(&self, export: &RunningExport) {
        let key = export.key();
        info!(
            shelf = key.major(),
            slot = key.minor(),
            iface = %self.netdev.name,
            mac = %self.netdev.mac,
            mtu = self.netdev.mtu,
            xdp = %self.xdp_mode,
            queues = self.workers.len(),
            size_sectors = export.backend.size_sectors,
            sectors_per_frame = self.max_sectors,
            read_only = export.config.read_only,
            io = %export.io_description(),
            "exporting {} as {key}",
            export.backend.path.display(),
        );
    }

    pub fn queue_count(&self) -> usize {
        self.workers.len()
    }

    /// Preferred busy polling as the first queue's socket holds it (every socket gets the
    /// same settings), and how many sockets have a NAPI context to poll; `None`: off.
    pub fn napi_busy_poll(&self) -> Option<(NapiBusyPollState, u32)> {
        let first = self.workers.first()?.napi_busy_poll?;
        let with_napi = self
            .workers
            .iter()
            .filter(|w| w.napi_busy_poll.is_some_and(|st| st.napi_id != 0))
            .count() as u32;
        Some((first, with_napi))
    }

    /// Serves `exports` (new ones, or new versions of served ones) from now on, and announces
    /// the ones in `announce`. Returns when every worker has taken them up.
    pub fn serve(
        &mut self,
        exports: &[&RunningExport],
        announce: &[ExportKey],
        stats: &mut StatsRegistry,
    ) {
        let (mac, max_sectors) = (self.netdev.mac, self.max_sectors);
        let name = self.netdev.name.clone();
        self.exports.extend(exports.iter().map(|e| e.key()));
        self.command(|queue_id| {
            let mut commands: Vec<WorkerCommand> = exports
                .iter()
                .map(|e| {
                    let counters = stats.counters_for(e.key(), e.generation, &name, queue_id);
                    WorkerCommand::Serve(e.on_link(mac, max_sectors, counters))
                })
                .collect();
            if queue_id == 0 {
                commands.extend(announce.iter().map(|k| WorkerCommand::Announce(*k)));
            }
            commands
        });
    }

    /// Stops routing requests to `keys`; what they have in flight completes.
    pub fn retire(&mut self, keys: &[ExportKey]) {
        for key in keys {
            self.exports.remove(key);
        }
        self.command(|_| keys.iter().map(|k| WorkerCommand::Retire(*k)).collect());
    }

    /// Makes the XDP program steer exactly the requests of `exports` here, each with its
    /// mask list as ACL.
    pub fn steer(&mut self, exports: &[&RunningExport]) -> Result<(), DaemonError> {
        let xdp_exports: Vec<_> = exports.iter().map(|e| e.xdp_export()).collect();
        self.xdp.set_exports(&xdp_exports).map_err(Into::into)
    }

    /// An initiator changed `export`'s mask list: mirror it into the ACL.
    pub fn update_mask(&mut self, export: &RunningExport) {
        let key = export.key();
        if let Err(e) = self
            .xdp
            .set_export_mask(key.major(), key.minor(), &export.mask())
        {
            warn!(iface = %self.netdev.name, export = %key, "could not update the XDP ACL map ({e}); the mask list is still enforced in userspace");
        }
    }

    /// Sends each worker the commands `make(queue_id)` gives, and waits until all have
    /// taken them up (a worker that died is skipped: the control loop restarts it).
    fn command(&mut self, mut make: impl FnMut(u32) -> Vec<WorkerCommand>) {
        self.generation += 1;
        let generation = self.generation;
        for worker in &self.workers {
            for command in make(worker.queue_id) {
                let _ = worker.commands.send(command);
            }
            let _ = worker.commands.send(WorkerCommand::Applied(generation));
            worker.command_fd.signal();
        }
        let deadline = Instant::now() + APPLY_TIMEOUT;
        for worker in &self.workers {
            while worker.applied.load(Ordering::Acquire) < generation {
                if worker.handle.as_ref().is_none_or(|h| h.is_finished()) {
                    break;
                }
                if Instant::now() > deadline {
                    warn!(iface = %self.netdev.name, queue_id = worker.queue_id, "worker did not take up commands within {APPLY_TIMEOUT:?}");
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }

    /// A worker that ended without being told to (its error is in [`Stopped`]).
    pub fn has_dead_worker(&self) -> bool {
        self.workers
            .iter()
            .any(|w| w.handle.as_ref().is_some_and(|h| h.is_finished()))
    }

    pub fn counters(&self) -> impl Iterator<Item = (u32, &Arc<WorkerCounters>)> {
        self.workers.iter().map(|w| (w.queue_id, &w.counters))
    }

    pub fn xdp_counters(&self) -> Result<crate::xdp::XdpCounters, crate::xdp::XdpError> {
        self.xdp.counters()
    }

    /// Each worker's counters and its socket's `XDP_STATISTICS`, as they are now.
    pub fn queue_stats(&self) -> Vec<QueueStats> {
        self.workers
            .iter()
            .map(|w| {
                let c = w.counters.snapshot();
                let xsk = w
                    .xsk_statistics
                    .as_ref()
                    .and_then(|r| match r.read() {
                        Ok(st) => Some(st),
                        Err(e) => {
                            if !w.xsk_statistics_failed.replace(true) {
                                warn!(
                                    iface = %self.netdev.name,
                                    queue = w.queue_id,
                                    "cannot read the socket's drop counters, they read 0: {e}"
                                );
                            }
                            None
                        }
                    })
                    .map(|st| XskStats {
                        rx_dropped: st.rx_dropped,
                        rx_invalid_descs: st.rx_invalid_descs,
                        tx_invalid_descs: st.tx_invalid_descs,
                        rx_ring_full: st.rx_ring_full,
                        rx_fill_ring_empty_descs: st.rx_fill_ring_empty_descs,
                        tx_ring_empty_descs: st.tx_ring_empty_descs,
                    })
                    .unwrap_or_default();
                QueueStats {
                    interface: self.netdev.name.clone(),
                    queue: w.queue_id,
                    rx_frames: c.rx_frames,
                    tx_frames: c.tx_frames,
                    bounced: c.bounced,
                    merged: c.merged,
                    dropped_malformed: c.dropped_malformed,
                    dropped_not_for_us: c.dropped_not_for_us,
                    dropped_response: c.dropped_response,
                    dropped_config_mismatch: c.dropped_config_mismatch,
                    dropped_no_buffer: c.dropped_no_buffer,
                    dropped_masked: c.dropped_masked,
                    busy_ns: c.busy_ns,
                    idle_ns: c.idle_ns,
                    fill_depth_frames: w.counters.fill_depth(),
                    xsk,
                }
            })
            .collect()
    }

    /// The XDP program's verdicts on this interface (zeros if the map cannot be read).
    pub fn interface_stats(&self) -> InterfaceStats {
        let c = self.xdp.counters().unwrap_or_default();
        InterfaceStats {
            name: self.netdev.name.clone(),
            xdp_redirect: c.redirect,
            xdp_pass_not_aoe: c.pass_not_aoe,
            xdp_pass_response: c.pass_response,
            xdp_pass_other_target: c.pass_other_target,
            xdp_pass_no_socket: c.pass_no_socket,
            xdp_drop_acl: c.drop_acl,
            xdp_drop_malformed: c.drop_malformed,
        }
    }

    /// Stops every worker (each finishes and answers its in-flight I/O) and then detaches
    /// the XDP program.
    pub fn stop(mut self) -> Stopped {
        for worker in &self.workers {
            let _ = worker.commands.send(WorkerCommand::Stop);
            worker.command_fd.signal();
        }
        let mut stopped = Stopped {
            counters: Vec::new(),
            error: None,
        };
        for worker in &mut self.workers {
            stopped.counters.push((
                self.netdev.name.clone(),
                worker.queue_id,
                Arc::clone(&worker.counters),
            ));
            let Some(handle) = worker.handle.take() else {
                continue;
            };
            match handle.join() {
                Ok(Ok(report)) => {
                    warn_on_drops(&self.netdev.name, &report);
                }
                Ok(Err(e)) => stopped.error = Some(e),
                Err(_) => {
                    stopped.error = Some(WorkerError::Panicked {
                        queue_id: worker.queue_id,
                    })
                }
            }
        }
        // Dropping `self.xdp` now closes the bpf_link: the program detaches.
        stopped
    }
}

fn warn_on_drops(ifname: &str, report: &WorkerReport) {
    if let Some(st) = report.xsk_statistics {
        if st.rx_dropped + st.rx_ring_full + st.rx_invalid_descs + st.tx_invalid_descs > 0 {
            warn!(
                iface = ifname,
                queue_id = report.queue_id,
                ?st,
                "AF_XDP socket dropped frames"
            );
        }
    }
}

/// Starts a worker thread and waits until it serves (or reports why it cannot).
fn spawn_worker(mut setup: WorkerSetup, ifname: &str) -> Result<WorkerHandle, DaemonError> {
    let queue_id = setup.queue_id;
    let bind_mode = setup.socket.bind_mode();
    let napi_busy_poll = setup.socket.napi_busy_poll();
    let xsk_statistics = match setup.socket.statistics_reader() {
        Ok(reader) => Some(reader),
        Err(e) => {
            warn!(
                iface = ifname,
                queue_id, "{e}; `xbladectl stats` shows zeros for this socket"
            );
            None
        }
    };
    let counters = Arc::clone(&setup.counters);
    let applied = Arc::clone(&setup.applied);
    let command_fd = EventFd::new().map_err(|e| DaemonError::Setup(format!("eventfd: {e}")))?;
    let (commands, receiver) = mpsc::channel();
    setup.command_fd = command_fd.fd();
    setup.commands = receiver;
    let (ready_tx, ready_rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(format!("xblade-{ifname}-q{queue_id}"))
        .spawn(move || worker::run(setup, ready_tx))
        .map_err(|e| DaemonError::Setup(format!("cannot start worker thread: {e}")))?;
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(message)) => {
            let _ = handle.join();
            return Err(DaemonError::Setup(message));
        }
        Err(_) => {
            let _ = handle.join();
            return Err(DaemonError::Setup(format!(
                "{ifname}: worker for queue {queue_id} died during set-up"
            )));
        }
    }
    match napi_busy_poll {
        // Read back from the kernel (getsockopt) after setting.
        Some(st) => {
            info!(
                iface = ifname,
                queue_id,
                %bind_mode,
                napi_prefer_busy_poll = st.prefer,
                napi_busy_poll_us = st.busy_poll_us,
                napi_busy_poll_budget = st.budget,
                napi_id = st.napi_id,
                "worker serving"
            );
            if st.napi_id == 0 {
                warn!(
                    iface = ifname,
                    queue_id,
                    %bind_mode,
                    "napi busy polling has no NAPI context to poll on this socket \
                     (SO_INCOMING_NAPI_ID 0): since Linux 6.13 only zero-copy sockets get \
                     one, so in copy mode (veth, generic XDP, drivers without zero-copy) \
                     the worker's busy-poll calls poll nothing; unset napi_busy_poll_us"
                );
            }
        }
        None => info!(iface = ifname, queue_id, %bind_mode, "worker serving"),
    }
    Ok(WorkerHandle {
        queue_id,
        commands,
        command_fd,
        applied,
        handle: Some(handle),
        counters,
        xsk_statistics,
        xsk_statistics_failed: Cell::new(false),
        napi_busy_poll,
    })
}

/// One bound AF_XDP socket per served RX queue, and what their binding allows.
struct BoundSockets {
    bound: Vec<(u32, UmemRegion, XskSocket)>,
    bounce_len: usize,
    /// Sectors per AoE frame the MTU and the frames allow.
    max_sectors: u8,
}

/// Creates a UMEM and a socket per RX queue and puts each socket in the XSKMAP. Frames
/// longer than a UMEM frame (jumbo MTU) need AF_XDP multi-buffer (XDP_USE_SG): asked for
/// when the MTU needs it, and the sectors per frame follow what was granted.
fn bind_sockets(
    config: &InterfaceConfig,
    netdev: &Netdev,
    ifindex: u32,
    umem_config: &UmemConfig,
    xdp: &mut XdpProgram,
) -> Result<BoundSockets, DaemonError> {
    let queue_count = match config.queues {
        Some(n) => n,
        None => xsk::queue_count(&netdev.name)?,
    };
    let want_multi_buffer = Geometry::needs_multi_buffer(netdev.mtu);
    let sectors_for = |multi_buffer| {
        Geometry {
            frame_count: umem_config.frame_count,
            multi_buffer,
        }
        .max_sectors(netdev.mtu)
    };
    let bounce_len = Geometry::bounce_len(sectors_for(want_multi_buffer));
    let options = BindOptions {
        multi_buffer: want_multi_buffer,
        need_wakeup: config.tuning.need_wakeup,
        napi_busy_poll: config.napi_busy_poll,
    };
    let mut bound = Vec::new();
    for queue_id in 0..queue_count {
        let bounce_bytes = Geometry::bounce_slots(umem_config.frame_count) as usize * bounce_len;
        let umem = UmemRegion::new(umem_config, bounce_bytes)?;
        let socket = XskSocket::with_options(ifindex, queue_id, &umem, umem_config, options)?;
        xdp.register_socket(queue_id, socket.fd())?;
        bound.push((queue_id, umem, socket));
    }
    let multi_buffer = want_multi_buffer && bound.iter().all(|(_, _, s)| s.multi_buffer());
    if want_multi_buffer && !multi_buffer {
        warn!(iface = %netdev.name, mtu = netdev.mtu, "AF_XDP multi-buffer (XDP_USE_SG) refused: frames are limited to {} bytes", Geometry::frame_capacity());
    }
    let max_sectors = sectors_for(multi_buffer);
    if max_sectors == 0 {
        return Err(DaemonError::MtuTooSmall {
            iface: netdev.name.clone(),
            mtu: netdev.mtu,
        });
    }
    Ok(BoundSockets {
        bound,
        bounce_len,
        max_sectors,
    })
}
