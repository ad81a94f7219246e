//! Start-up, the control loop, and shutdown: everything between the command line and the
//! workers.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::backend::{Backend, BackendError, BackendOptions, IoMode};
use crate::config::Cli;
use crate::config::TuningFlags as Tuning;
use crate::netdev::{self, Netdev, NetdevError};
use crate::persist::{PersistError, StateFile};
use crate::stats::{CounterSnapshot, LatencyHistogram, Summary, WorkerCounters};
use crate::target::{StateChange, Target, TargetConfig, TargetState};
use crate::worker::{self, ServedExport, WorkerCommand, WorkerError, WorkerReport, WorkerSetup};
use crate::xdp::{XdpError, XdpProgram};
use crate::xsk::{self, BindOptions, UmemConfig, UmemRegion, XskError, XskSocket};

/// UMEM frame size: one page (larger chunks are refused here).
const FRAME_SIZE: u32 = 4096;
/// Headroom after XDP_PACKET_HEADROOM so that sector data (packet byte 36) lands at frame
/// offset 512: 256 + 220 + 36 = 512.
const FRAME_HEADROOM: u32 = 220;
/// How often the control loop looks at signals, workers and state changes.
const TICK: Duration = Duration::from_millis(100);

/// A reason the daemon could not start or had to stop. One line each, naming the cause.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Netdev(#[from] NetdevError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Xdp(#[from] XdpError),
    #[error(transparent)]
    Xsk(#[from] XskError),
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error("interface {iface}: MTU {mtu} is too small to carry one 512-byte sector per AoE frame (need at least 548)")]
    MtuTooSmall { iface: String, mtu: u32 },
    #[error("direct I/O on {path} needs {mem_align}-byte aligned buffers, more than a {FRAME_SIZE}-byte frame provides")]
    AlignmentUnsupported { path: String, mem_align: u32 },
    #[error("{0}")]
    Setup(String),
}

/// Runs the daemon until SIGINT/SIGTERM; prints the summary. Errors are fatal set-up or
/// worker failures.
pub fn run(cli: Cli) -> Result<(), DaemonError> {
    let started = Instant::now();
    let netdev = Netdev::lookup(&cli.iface)?;
    let backend = open_backend(&cli)?;
    let state_file = state_file(&cli, &backend);
    let persisted = match &state_file {
        Some(file) => file.load()?,
        None => None,
    };
    if let (Some(file), Some(_)) = (&state_file, &persisted) {
        info!(path = %file.path().display(), "restored config string, mask list and reservation");
    }
    let umem_config = UmemConfig {
        frame_count: cli.frames,
        frame_size: FRAME_SIZE,
        frame_headroom: FRAME_HEADROOM,
        ring_size: cli.frames,
    };

    let mut xdp = XdpProgram::attach(&netdev.name, cli.xdp_mode)?;
    xdp.serve_target(cli.shelf, cli.slot)?;
    let sockets = bind_sockets(&cli, &netdev, &backend, &umem_config, &mut xdp)?;
    let target = Target::new(
        TargetConfig {
            major: cli.shelf,
            minor: cli.slot,
            size_sectors: backend.size_sectors,
            offset_sectors: backend.offset_sectors,
            read_only: cli.read_only,
            max_sectors_per_frame: sockets.max_sectors,
            buffer_count: cli.buffer_count,
            firmware_version: firmware_version(),
            serial: cli
                .serial
                .clone()
                .unwrap_or_else(|| format!("XB{}.{}", cli.shelf, cli.slot)),
            model: "xblade AoE target".to_owned(),
        },
        netdev.mac,
        initial_state(&cli, persisted.unwrap_or_default()),
    );
    sync_acl(&mut xdp, &target);

    let (tuning, sync_io) = tuning(&cli, &backend);
    let backend = Arc::new(backend);
    let shutdown = eventfd()?;
    let (changes_tx, changes_rx) = mpsc::channel();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let max_sectors = sockets.max_sectors;
    let queue_count = sockets.bound.len();
    let mut workers = Vec::new();
    for (queue_id, umem, socket) in sockets.bound {
        workers.push(spawn_worker(WorkerSetup {
            queue_id,
            socket,
            umem,
            umem_config,
            bounce_len: sockets.bounce_len,
            exports: vec![ServedExport {
                target: target.clone(),
                backend: Arc::clone(&backend),
                sync_io,
            }],
            batch: cli.batch,
            busy_poll: cli.busy_poll,
            spin_us: cli.spin_us,
            cpu: (!cli.no_pin).then_some(queue_id as usize % cpus),
            announce: queue_id == 0,
            command_fd: shutdown.as_raw_fd(),
            commands: {
                let (tx, rx) = mpsc::channel();
                tx.send(WorkerCommand::Stop).ok();
                std::mem::forget(tx);
                rx
            },
            applied: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            counters: Arc::new(WorkerCounters::default()),
            changes: changes_tx.clone(),
            tuning,
        })?);
    }
    info!(
        shelf = cli.shelf,
        slot = cli.slot,
        iface = %netdev.name,
        mac = %netdev.mac,
        mtu = netdev.mtu,
        xdp = %xdp.mode(),
        queues = queue_count,
        size_sectors = backend.size_sectors,
        sectors_per_frame = max_sectors,
        read_only = cli.read_only,
        "exporting {} as e{}.{}",
        backend.path.display(),
        cli.shelf,
        cli.slot
    );

    let outcome = control_loop(
        &cli,
        &mut xdp,
        &target,
        state_file.as_ref(),
        &workers,
        &changes_rx,
    );
    // Stop: every worker finishes its in-flight I/O, answers it, and returns.
    signal_eventfd(&shutdown);
    let (latency, worker_error) = join_workers(&mut workers);
    // Changes made while the workers drained.
    if let (true, Some(file)) = (changes_rx.try_iter().count() > 0, &state_file) {
        if let Err(e) = file.save(&target.state()) {
            warn!("{e}");
        }
    }
    let xdp_counters = xdp.counters();
    drop(xdp);
    print_summary(&workers, &latency, started, xdp_counters);
    outcome?;
    match worker_error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Opens the backing store and says how its I/O will go.
fn open_backend(cli: &Cli) -> Result<Backend, DaemonError> {
    let backend = Backend::open(&BackendOptions {
        path: cli.file.clone(),
        read_only: cli.read_only,
        sync_writes: cli.sync_writes,
        offset_sectors: cli.offset_sectors,
        length_sectors: cli.length_sectors,
    })?;
    match (backend.io_mode, &backend.buffered_reason) {
        (IoMode::Direct { mem_align }, _) if mem_align > FRAME_SIZE => {
            return Err(DaemonError::AlignmentUnsupported {
                path: backend.path.display().to_string(),
                mem_align,
            });
        }
        (IoMode::Direct { mem_align }, _) => info!(
            mem_align,
            "direct I/O (O_DIRECT{})",
            if cli.sync_writes { " | O_DSYNC" } else { "" }
        ),
        (IoMode::Buffered, Some(reason)) => warn!("buffered I/O: {reason}"),
        (IoMode::Buffered, None) => warn!("buffered I/O"),
        (IoMode::Null, _) => warn!("null backend: reads return zeros, writes are discarded"),
    }
    Ok(backend)
}

/// Where the state initiators set is kept, if anywhere.
fn state_file(cli: &Cli, backend: &Backend) -> Option<StateFile> {
    match (&cli.state_file, cli.no_state) {
        (_, true) => None,
        (Some(path), false) => Some(StateFile::new(path.clone())),
        (None, false) if backend.io_mode == IoMode::Null => None,
        (None, false) => Some(StateFile::default_for(
            &backend.path,
            backend.is_block_device,
        )),
    }
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
    cli: &Cli,
    netdev: &Netdev,
    backend: &Backend,
    umem_config: &UmemConfig,
    xdp: &mut XdpProgram,
) -> Result<BoundSockets, DaemonError> {
    let queue_count = match cli.queues {
        Some(n) => n,
        None => xsk::queue_count(&netdev.name)?,
    };
    let ifindex = xsk::ifindex(&netdev.name)?;
    let frame_capacity = worker::frame_capacity(umem_config);
    let want_multi_buffer = netdev.mtu + 18 > frame_capacity;
    let sectors_for = |multi_buffer| {
        netdev::max_sectors_per_frame(
            netdev.mtu,
            worker::reply_capacity(umem_config, multi_buffer) as u32,
        )
    };
    let bounce_len = worker::bounce_len(umem_config, sectors_for(want_multi_buffer));
    let options = BindOptions {
        multi_buffer: want_multi_buffer,
        need_wakeup: !cli.tune_no_need_wakeup,
    };
    let mut bound = Vec::new();
    for queue_id in 0..queue_count {
        let bounce_bytes = worker::bounce_slots(umem_config) as usize * bounce_len;
        let umem = UmemRegion::new(umem_config, bounce_bytes)?;
        let socket = XskSocket::with_options(ifindex, queue_id, &umem, umem_config, options)?;
        xdp.register_socket(queue_id, socket.fd())?;
        bound.push((queue_id, umem, socket));
    }
    let multi_buffer = want_multi_buffer && bound.iter().all(|(_, _, s)| s.multi_buffer());
    if want_multi_buffer && !multi_buffer {
        warn!(mtu = netdev.mtu, "AF_XDP multi-buffer (XDP_USE_SG) refused: frames are limited to {frame_capacity} bytes");
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

/// The fast-path switches: the defaults, less what the hidden tuning flags turn off, and
/// the I/O engine for this backing store.
fn tuning(cli: &Cli, backend: &Backend) -> (Tuning, bool) {
    let sync_io = match cli.io_engine.as_str() {
        "sync" => true,
        "uring" => false,
        _ => backend.memory_backed && backend.io_mode != IoMode::Null,
    };
    let tuning = Tuning {
        defer_taskrun: !cli.tune_no_defer_taskrun,
        fixed: !cli.tune_no_fixed,
        need_wakeup: !cli.tune_no_need_wakeup,
        merge: !cli.tune_no_merge,
    };
    info!(
        engine = if sync_io { "sync" } else { "io_uring" },
        memory_backed = backend.memory_backed,
        "disk I/O engine"
    );
    if Tuning::default() != tuning {
        warn!(
            ?tuning,
            "tuning experiment: fast-path mechanisms switched off"
        );
    }
    (tuning, sync_io)
}

/// Starts a worker thread and waits until it serves (or reports why it cannot).
fn spawn_worker(setup: WorkerSetup) -> Result<RunningWorker, DaemonError> {
    let queue_id = setup.queue_id;
    let bind_mode = setup.socket.bind_mode();
    let counters = Arc::clone(&setup.counters);
    let (ready_tx, ready_rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(format!("xblade-q{queue_id}"))
        .spawn(move || worker::run(setup, ready_tx))
        .map_err(|e| DaemonError::Setup(format!("cannot start worker thread: {e}")))?;
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(message)) => return Err(DaemonError::Setup(message)),
        Err(_) => {
            return Err(DaemonError::Setup(format!(
                "worker for queue {queue_id} died during set-up"
            )))
        }
    }
    info!(queue_id, %bind_mode, "worker serving");
    Ok(RunningWorker {
        queue_id,
        handle: Some(handle),
        counters,
    })
}

/// Waits for every worker; merges their latency histograms; returns the first failure.
fn join_workers(workers: &mut [RunningWorker]) -> (LatencyHistogram, Option<WorkerError>) {
    let mut latency = LatencyHistogram::new();
    let mut worker_error = None;
    for worker in workers {
        let Some(handle) = worker.handle.take() else {
            continue;
        };
        match handle.join() {
            Ok(Ok(report)) => merge_report(&mut latency, &report),
            Ok(Err(e)) => worker_error = Some(e),
            Err(_) => {
                worker_error = Some(WorkerError::Panicked {
                    queue_id: worker.queue_id,
                })
            }
        }
    }
    (latency, worker_error)
}

/// The exit summary on stdout.
fn print_summary(
    workers: &[RunningWorker],
    latency: &LatencyHistogram,
    started: Instant,
    xdp_counters: Result<crate::xdp::XdpCounters, XdpError>,
) {
    let per_queue: Vec<(u32, u64)> = workers
        .iter()
        .map(|w| (w.queue_id, w.counters.snapshot().requests()))
        .collect();
    let summary = Summary {
        counters: total_counters(workers),
        per_queue: &per_queue,
        latency,
        elapsed_s: started.elapsed().as_secs_f64(),
    };
    println!("{summary}");
    match xdp_counters {
        Ok(c) => println!(
            "  xdp      redirected {}, dropped by ACL {}, malformed {}; passed to the kernel: not AoE {}, responses {}, other targets {}, no socket {}",
            c.redirect, c.drop_acl, c.drop_malformed, c.pass_not_aoe, c.pass_response, c.pass_other_target, c.pass_no_socket
        ),
        Err(e) => warn!("could not read the XDP counters: {e}"),
    }
}

struct RunningWorker {
    queue_id: u32,
    handle: Option<JoinHandle<Result<WorkerReport, WorkerError>>>,
    counters: Arc<WorkerCounters>,
}

fn merge_report(latency: &mut LatencyHistogram, report: &WorkerReport) {
    latency.merge(&report.latency);
    if let Some(st) = report.xsk_statistics {
        if st.rx_dropped + st.rx_ring_full + st.rx_invalid_descs + st.tx_invalid_descs > 0 {
            warn!(
                queue_id = report.queue_id,
                ?st,
                "AF_XDP socket dropped frames"
            );
        }
    }
}

/// Waits for SIGINT/SIGTERM or a worker's death; mirrors state changes; prints rates.
fn control_loop(
    cli: &Cli,
    xdp: &mut XdpProgram,
    target: &Target,
    state_file: Option<&StateFile>,
    workers: &[RunningWorker],
    changes: &mpsc::Receiver<(crate::target::ExportKey, StateChange)>,
) -> Result<(), DaemonError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| DaemonError::Setup(format!("cannot install signal handler: {e}")))?;
    }
    let interval = Duration::from_secs(cli.stats_interval);
    let mut last_report = Instant::now();
    let mut last_counters = total_counters(workers);
    loop {
        // Wake at once for a state change (so it is persisted promptly), else every tick.
        let first_change = changes.recv_timeout(TICK).ok();
        let mut mask_changed = false;
        let mut any_change = false;
        for (_, change) in first_change.into_iter().chain(changes.try_iter()) {
            info!(?change, "initiator changed target state");
            mask_changed |= change == StateChange::MaskList;
            any_change = true;
        }
        if mask_changed {
            sync_acl(xdp, target);
        }
        if let (true, Some(file)) = (any_change, state_file) {
            if let Err(e) = file.save(&target.state()) {
                warn!("{e}; the change holds until xblade stops");
            }
        }
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            info!("stopping: finishing in-flight I/O");
            return Ok(());
        }
        if let Some(w) = workers
            .iter()
            .find(|w| w.handle.as_ref().is_some_and(|h| h.is_finished()))
        {
            warn!(
                queue_id = w.queue_id,
                "worker stopped unexpectedly; shutting down"
            );
            return Ok(());
        }
        if !interval.is_zero() && last_report.elapsed() >= interval {
            let now = total_counters(workers);
            let delta = now.since(&last_counters);
            let seconds = last_report.elapsed().as_secs_f64();
            info!(
                "{:.0} req/s ({:.0} reads/s, {:.0} writes/s), {:.1} MB/s in, {:.1} MB/s out, {} errors, {} dropped",
                delta.requests() as f64 / seconds,
                delta.reads as f64 / seconds,
                delta.writes as f64 / seconds,
                delta.written_bytes as f64 / seconds / 1e6,
                delta.read_bytes as f64 / seconds / 1e6,
                delta.ata_errors + delta.aoe_errors + delta.io_errors,
                delta.dropped
            );
            last_counters = now;
            last_report = Instant::now();
        }
    }
}

fn total_counters(workers: &[RunningWorker]) -> CounterSnapshot {
    let mut total = CounterSnapshot::default();
    for worker in workers {
        total.merge(&worker.counters.snapshot());
    }
    total
}

/// Mirrors the mask list into the XDP program's ACL map, so that frames from MACs not on a
/// non-empty list are dropped in the kernel.
fn sync_acl(xdp: &mut XdpProgram, target: &Target) {
    let macs: Vec<[u8; 6]> = target.state().mask.as_slice().iter().map(|m| m.0).collect();
    if let Err(e) = xdp.set_acl(&macs) {
        warn!(
            "could not update the XDP ACL map ({e}); the mask list is still enforced in userspace"
        );
    }
}

/// The persisted state with `-m`'s MACs added to the mask list.
fn initial_state(cli: &Cli, mut state: TargetState) -> TargetState {
    for mac in &cli.mask {
        if state.mask.add(*mac).is_err() {
            warn!(%mac, "mask list full; ignoring the rest of -m");
            break;
        }
    }
    state
}

/// The firmware version advertised in Query Config: major and minor of the crate version.
fn firmware_version() -> u16 {
    let mut parts = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse::<u16>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major << 8) | (minor & 0xff)
}

/// eventfd(2): the workers poll it; the control loop makes it readable to stop them.
fn eventfd() -> Result<OwnedFd, DaemonError> {
    // SAFETY: plain syscall; the result is checked and owned at once.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(DaemonError::Setup(format!(
            "eventfd: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn signal_eventfd(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64 to an open eventfd.
    let rc = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    if rc != 8 {
        warn!(
            "could not signal workers to stop: {}",
            std::io::Error::last_os_error()
        );
    }
}
