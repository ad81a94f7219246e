//! The control plane: start-up, the control loop, reloads, interface events and shutdown;
//! everything between the configuration and the workers.
//!
//! One thread runs it. It owns every export ([`export`]) and every interface
//! ([`interface`]), talks to the workers only by messages, and waits in one `poll(2)` for
//! signals, state changes initiators made, control-socket clients, metrics scrapers and
//! link events.

mod acl;
mod export;
mod interface;
mod reload;
mod stats;
mod status;
mod unprivileged;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tracing::{error, info, warn};
use xblade_target::{ExportKey, StateChange};

use crate::backend::BackendError;
use crate::config::{Cli, ConfigError, InterfaceConfig, ServeConfig};
use crate::control::{ControlError, ControlServer, LinkWatcher, Reply, Request};
use crate::eventfd::EventFd;
use crate::metrics::{self, MetricsError, MetricsServer};
use crate::netdev::{Netdev, NetdevError};
use crate::persist::PersistError;
use crate::privilege::{Account, PrivilegeError, UserError};
use crate::stats::{CounterSnapshot, StatsRegistry, Summary, WorkerCounters};
use crate::systemd::{Notification, Notifier};
use crate::worker::{ChangeSender, WorkerError, FRAME_SIZE};
use crate::xdp::{XdpCounters, XdpError};
use crate::xsk::XskError;

use export::RunningExport;
use interface::{RunningInterface, Stopped};

/// The longest the control loop sleeps: interfaces are re-checked, dead workers restarted
/// and rates printed at this pace even when no event arrives.
const TICK: Duration = Duration::from_secs(1);

/// A reason the daemon could not start, or a reload could not be applied. One line each,
/// naming the cause.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
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
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Privilege(#[from] PrivilegeError),
    #[error("restart xblade to attach {ifaces}: it runs as user {user}, without the CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_NET_RAW that attaching an interface needs")]
    NeedsPrivilege { ifaces: String, user: String },
    #[error("{export}: {source}")]
    Export {
        export: ExportKey,
        source: Box<DaemonError>,
    },
    #[error("interface {iface}: {source}")]
    Interface {
        iface: String,
        source: Box<DaemonError>,
    },
    #[error("interface {iface}: MTU {mtu} is too small to carry one 512-byte sector per AoE frame (need at least 548)")]
    MtuTooSmall { iface: String, mtu: u32 },
    #[error("direct I/O on {path} needs {mem_align}-byte aligned buffers, more than a {FRAME_SIZE}-byte frame provides")]
    AlignmentUnsupported { path: String, mem_align: u32 },
    #[error("{0}")]
    Setup(String),
}

impl DaemonError {
    fn in_export(self, export: ExportKey) -> DaemonError {
        DaemonError::Export {
            export,
            source: Box::new(self),
        }
    }

    fn in_interface(self, iface: &str) -> DaemonError {
        match self {
            // These already name the interface.
            e @ (DaemonError::MtuTooSmall { .. }
            | DaemonError::Netdev(_)
            | DaemonError::Interface { .. }) => e,
            e => DaemonError::Interface {
                iface: iface.to_owned(),
                source: Box::new(e),
            },
        }
    }
}

/// An interface the configuration names, served or not.
struct InterfaceSlot {
    config: InterfaceConfig,
    running: Option<RunningInterface>,
    /// Why it is not served (absent, attach failed), as last logged.
    problem: Option<String>,
}

/// Everything the control plane owns.
struct Daemon {
    /// The command line, to read the config file again the same way on reload.
    cli: Cli,
    config: ServeConfig,
    started: Instant,
    /// The same moment on the wall clock (`xblade_start_time_seconds`).
    started_wall: SystemTime,
    /// Where the metrics endpoint listens (with the port the kernel chose for port 0).
    metrics_listen: Option<SocketAddr>,
    exports: BTreeMap<ExportKey, RunningExport>,
    interfaces: BTreeMap<String, InterfaceSlot>,
    changes: ChangeSender,
    changes_rx: Receiver<(ExportKey, StateChange)>,
    changes_fd: EventFd,
    /// What workers of interfaces stopped since start-up did, for the summary.
    retired: Retired,
    /// Every export's counters on every worker, for `stats`.
    stats: StatsRegistry,
    /// The user the daemon switched to at the drop point; `None`: it still runs as root.
    unprivileged: Option<Account>,
    /// systemd's notify socket (does nothing outside systemd).
    notifier: Notifier,
    /// The last `STATUS=` line sent.
    status_sent: String,
}

impl From<UserError> for DaemonError {
    fn from(e: UserError) -> DaemonError {
        DaemonError::Privilege(e.into())
    }
}

#[derive(Default)]
struct Retired {
    counters: Vec<(String, u32, Arc<WorkerCounters>)>,
    xdp: XdpCounters,
}

/// Runs the daemon until SIGINT/SIGTERM; prints the summary. Errors are fatal set-up
/// failures.
pub fn run(cli: Cli) -> Result<(), DaemonError> {
    let config = cli.serve_config()?;
    let account = config.user.as_deref().map(Account::lookup).transpose()?;
    if account.is_some() {
        // Before the first thread: every thread inherits these sets.
        crate::privilege::before_threads()?;
    }
    // Before the drop point, like every socket: afterwards only sendto(2) is allowed.
    let notifier = Notifier::from_env();
    let signals = Signals::install()?;
    // Before any worker thread exists (binding sets the process umask for a moment), and
    // before anything is attached: a second xblade on the same socket stops here.
    let control = match &config.control {
        Some(path) => Some(ControlServer::bind(path)?),
        None => None,
    };
    // Like every socket, before anything could drop the privileges a port may need.
    let metrics = match config.metrics_listen {
        Some(addr) => Some(MetricsServer::bind(addr)?),
        None => None,
    };
    let mut daemon = Daemon::start(cli, config, notifier)?;
    if let Some(control) = &control {
        info!(path = %control.path().display(), "control socket listening");
    }
    if let Some(metrics) = &metrics {
        let addr = metrics.local_addr();
        daemon.metrics_listen = Some(addr);
        info!(%addr, "metrics listening on http://{addr}/metrics");
    }
    let links = match LinkWatcher::open() {
        Ok(watcher) => Some(watcher),
        Err(e) => {
            warn!("no link events ({e}); interfaces are re-checked every {TICK:?}");
            None
        }
    };
    // The drop point: everything that needs privilege is open and attached.
    if let Some(account) = account {
        if let Err(e) = daemon.drop_privileges(account) {
            daemon.detach_all();
            return Err(e);
        }
    }
    info!(
        exports = daemon.exports.len(),
        interfaces = daemon.interfaces.len(),
        "ready"
    );
    // Every worker runs and every XDP program steers to them: requests are answered.
    daemon.notify_ready();
    let outcome = daemon.control_loop(&signals, control, metrics, links);
    daemon.notifier.notify(&[Notification::Stopping]);
    daemon.stop();
    outcome
}

impl Daemon {
    /// Opens every export and attaches every interface; any failure stops the start-up
    /// (and undoes what was done).
    fn start(cli: Cli, config: ServeConfig, notifier: Notifier) -> Result<Daemon, DaemonError> {
        let changes_fd = EventFd::new().map_err(|e| DaemonError::Setup(format!("eventfd: {e}")))?;
        let (sender, changes_rx) = mpsc::channel();
        let mut daemon = Daemon {
            cli,
            started: Instant::now(),
            started_wall: SystemTime::now(),
            metrics_listen: None,
            exports: BTreeMap::new(),
            interfaces: BTreeMap::new(),
            changes: ChangeSender {
                sender,
                wake_fd: changes_fd.fd(),
            },
            changes_rx,
            changes_fd,
            retired: Retired::default(),
            stats: StatsRegistry::default(),
            config: config.clone(),
            unprivileged: None,
            notifier,
            status_sent: String::new(),
        };
        check_limits(&config)?;
        for (key, export_config) in &config.exports {
            let export = RunningExport::open(export_config, None).map_err(|e| e.in_export(*key))?;
            daemon.exports.insert(*key, export);
        }
        for (name, interface_config) in &config.interfaces {
            daemon.interfaces.insert(
                name.clone(),
                InterfaceSlot {
                    config: interface_config.clone(),
                    running: None,
                    problem: None,
                },
            );
            if let Err(e) = daemon.attach(name) {
                daemon.detach_all();
                return Err(e.in_interface(name));
            }
        }
        Ok(daemon)
    }

    /// Starts serving interface `name` with its exports.
    fn attach(&mut self, name: &str) -> Result<(), DaemonError> {
        let Some(slot) = self.interfaces.get(name) else {
            return Ok(());
        };
        self.require_privilege(&[name])?;
        let exports = exports_on(&self.exports, name);
        let running =
            RunningInterface::start(&slot.config, &exports, &self.changes, &mut self.stats)?;
        if let Some(slot) = self.interfaces.get_mut(name) {
            slot.running = Some(running);
            slot.problem = None;
        }
        Ok(())
    }

    /// Stops serving interface `name` (its workers answer what they have in flight).
    fn detach(&mut self, name: &str) {
        let Some(running) = self
            .interfaces
            .get_mut(name)
            .and_then(|slot| slot.running.take())
        else {
            return;
        };
        self.retire_interface(running);
    }

    fn retire_interface(&mut self, running: RunningInterface) {
        let name = running.netdev.name.clone();
        if let Ok(c) = running.xdp_counters() {
            add_xdp_counters(&mut self.retired.xdp, &c);
        }
        let Stopped { counters, error } = running.stop();
        self.retired.counters.extend(counters);
        if let Some(e) = error {
            warn!(iface = %name, "worker ended with an error: {e}");
        }
    }

    /// Stops everything: every worker finishes its in-flight I/O and answers it, state is
    /// saved, the XDP programs are detached, and the summary is printed.
    fn stop(&mut self) {
        self.detach_all();
        self.take_changes();
        self.print_summary();
    }

    fn detach_all(&mut self) {
        let names: Vec<String> = self.interfaces.keys().cloned().collect();
        for name in &names {
            self.detach(name);
        }
    }

    fn control_loop(
        &mut self,
        signals: &Signals,
        mut control: Option<ControlServer>,
        mut metrics: Option<MetricsServer>,
        mut links: Option<LinkWatcher>,
    ) -> Result<(), DaemonError> {
        let interval = Duration::from_secs(self.config.stats_interval_s);
        let mut rates = Rates::new(self.total_counters());
        let mut last_tick = Instant::now();
        loop {
            let mut fds = vec![signals.fd(), self.changes_fd.fd()];
            fds.extend(control.as_ref().map(ControlServer::fd));
            fds.extend(metrics.as_ref().map(MetricsServer::fd));
            fds.extend(links.as_ref().map(LinkWatcher::fd));
            poll_readable(&fds, TICK);
            signals.drain();
            if signals.stop.load(Ordering::Relaxed) {
                info!("stopping: finishing in-flight I/O");
                return Ok(());
            }
            self.take_changes();
            if signals.reload.swap(false, Ordering::Relaxed) {
                match self.reload_notified() {
                    Ok(summary) => info!("reload (SIGHUP): {}", reload::describe(&summary)),
                    Err(e) => error!("reload (SIGHUP) failed, nothing changed: {e}"),
                }
            }
            if let Some(server) = control.as_mut() {
                server.serve(&mut |request| self.handle(request));
            }
            // Every turn, not only when readable: it also closes clients past their
            // deadline (the poll above wakes at least every TICK).
            if let Some(server) = metrics.as_mut() {
                server.serve(&mut || self.render_metrics());
            }
            let link_event = links.as_mut().is_some_and(|l| !l.drain().is_empty());
            if link_event {
                self.reconcile_links();
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                self.restart_dead_interfaces();
                self.reconcile_links();
                if !interval.is_zero() {
                    rates.report_every(interval, self.total_counters());
                }
            }
            self.notify_status();
        }
    }

    /// Answers one control-socket request.
    fn handle(&mut self, request: Request) -> Reply {
        match request {
            Request::Status => Reply::Status(self.status()),
            Request::Stats { exports } => match stats::select(self.stats_reply(), &exports) {
                Ok(reply) => Reply::Stats(reply),
                Err(e) => Reply::error(e),
            },
            Request::Reload => match self.reload_notified() {
                Ok(summary) => {
                    info!("reload (control socket): {}", reload::describe(&summary));
                    Reply::Reload(summary)
                }
                Err(e) => {
                    error!("reload (control socket) failed, nothing changed: {e}");
                    Reply::error(format!("nothing changed: {e}"))
                }
            },
            Request::Acl { exports } => self.acl(&exports),
            Request::Mask { export, op, macs } => self.edit_mask(&export, op, &macs),
            Request::Reserve { export, op, macs } => self.reserve(&export, op, &macs),
            Request::ConfigString { export, op, value } => {
                self.set_config_string(&export, op, &value)
            }
        }
    }

    /// The `/metrics` text, from a snapshot of every counter taken now.
    fn render_metrics(&self) -> Result<String, String> {
        let process = metrics::Process {
            version: env!("CARGO_PKG_VERSION"),
            revision: metrics::REVISION,
            start_time_s: self
                .started_wall
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        };
        metrics::render(&self.stats_reply(), &process).map_err(|e| {
            warn!("{e}");
            e.to_string()
        })
    }

    /// Persists and mirrors the state changes initiators made.
    fn take_changes(&mut self) {
        self.changes_fd.reset();
        let mut changed: BTreeMap<ExportKey, bool> = BTreeMap::new();
        for (key, change) in self.changes_rx.try_iter() {
            info!(export = %key, ?change, "initiator changed export state");
            *changed.entry(key).or_default() |= change == StateChange::MaskList;
        }
        for (key, mask_changed) in changed {
            let change = match mask_changed {
                true => StateChange::MaskList,
                false => StateChange::Reservation,
            };
            self.publish_change(key, change);
        }
    }

    /// Makes a change of export `key`'s state (by an initiator or the operator) take effect
    /// everywhere: a mask list in the XDP ACL map of every interface serving the export;
    /// any change in its state file.
    fn publish_change(&mut self, key: ExportKey, change: StateChange) {
        let Some(export) = self.exports.get(&key) else {
            return;
        };
        if change == StateChange::MaskList {
            for slot in self.interfaces.values_mut() {
                if let Some(running) = slot.running.as_mut() {
                    if running.exports.contains(&key) {
                        running.update_mask(export);
                    }
                }
            }
        }
        export.save_state();
    }

    /// Follows the interfaces as they are now: one that disappeared is detached, one that
    /// came back (or changed its MTU or MAC, or is a new link with the same name) is
    /// attached again; the others are not touched.
    fn reconcile_links(&mut self) {
        let names: Vec<String> = self.interfaces.keys().cloned().collect();
        for name in names {
            let now = Netdev::lookup(&name)
                .ok()
                .and_then(|n| crate::xsk::ifindex(&name).ok().map(|i| (n, i)));
            let Some(slot) = self.interfaces.get(&name) else {
                continue;
            };
            match (&slot.running, now) {
                (Some(_), None) => {
                    warn!(iface = %name, "interface disappeared; detached (it is attached again if it comes back)");
                    self.detach(&name);
                    self.set_problem(&name, "absent".to_owned());
                }
                // Without privilege it cannot be attached again: it keeps serving as it
                // was attached (the same link: its XDP program is still in place).
                (Some(running), Some((netdev, ifindex)))
                    if self.unprivileged.is_some()
                        && running.ifindex == ifindex
                        && (running.netdev.mtu != netdev.mtu
                            || running.netdev.mac != netdev.mac) =>
                {
                    let refused = self.require_privilege(&[&name]).err();
                    let problem = format!(
                        "changed to MTU {} and MAC {}, still served as attached (MTU {}, MAC {}); {}",
                        netdev.mtu,
                        netdev.mac,
                        running.netdev.mtu,
                        running.netdev.mac,
                        refused.map(|e| e.to_string()).unwrap_or_default()
                    );
                    if let Some(slot) = self.interfaces.get_mut(&name) {
                        if slot.problem.as_ref() != Some(&problem) {
                            warn!(iface = %name, "{problem}");
                            slot.problem = Some(problem);
                        }
                    }
                }
                (Some(running), Some((netdev, ifindex)))
                    if running.netdev.mtu != netdev.mtu
                        || running.netdev.mac != netdev.mac
                        || running.ifindex != ifindex =>
                {
                    info!(iface = %name, mtu = netdev.mtu, mac = %netdev.mac, "interface changed; attaching again (exports announce the new sector count)");
                    self.detach(&name);
                    self.try_attach(&name);
                }
                (None, Some(_)) => self.try_attach(&name),
                _ => {}
            }
        }
    }

    fn try_attach(&mut self, name: &str) {
        match self.attach(name) {
            Ok(()) => info!(iface = %name, "interface attached"),
            Err(e) => self.set_problem(name, e.to_string()),
        }
    }

    /// Records (and logs, once per distinct problem) why an interface is not served.
    fn set_problem(&mut self, name: &str, problem: String) {
        if let Some(slot) = self.interfaces.get_mut(name) {
            if slot.problem.as_deref() != Some(problem.as_str()) {
                if problem != "absent" {
                    warn!(iface = %name, "not served: {problem}");
                }
                slot.problem = Some(problem);
            }
        }
    }

    /// An interface whose worker died is detached and attached again.
    fn restart_dead_interfaces(&mut self) {
        let dead: Vec<String> = self
            .interfaces
            .iter()
            .filter(|(_, s)| s.running.as_ref().is_some_and(|r| r.has_dead_worker()))
            .map(|(n, _)| n.clone())
            .collect();
        for name in dead {
            error!(iface = %name, "a worker stopped unexpectedly; attaching the interface again");
            self.detach(&name);
            self.try_attach(&name);
        }
    }

    fn total_counters(&self) -> CounterSnapshot {
        let mut total = CounterSnapshot::default();
        for (_, _, counters) in self.all_counters() {
            total.merge(&counters.snapshot());
        }
        total
    }

    /// (interface, queue id, counters) of every worker that ran.
    fn all_counters(&self) -> Vec<(String, u32, Arc<WorkerCounters>)> {
        let mut all = self.retired.counters.clone();
        for (name, slot) in &self.interfaces {
            if let Some(running) = &slot.running {
                all.extend(
                    running
                        .counters()
                        .map(|(q, c)| (name.clone(), q, Arc::clone(c))),
                );
            }
        }
        all
    }

    /// The exit summary on stdout.
    fn print_summary(&self) {
        let counters = self.all_counters();
        let per_queue: Vec<(String, u32, u64)> = counters
            .iter()
            .map(|(iface, q, c)| (iface.clone(), *q, c.snapshot().requests()))
            .collect();
        let served = self.stats.served_latency();
        let summary = Summary {
            counters: self.total_counters(),
            per_queue: &per_queue,
            latency: &served.latency,
            split: &served.split,
            elapsed_s: self.started.elapsed().as_secs_f64(),
        };
        println!("{summary}");
        let c = &self.retired.xdp;
        println!(
            "  xdp      redirected {}, dropped by ACL {}, malformed {}; passed to the kernel: not AoE {}, responses {}, other targets {}, no socket {}",
            c.redirect, c.drop_acl, c.drop_malformed, c.pass_not_aoe, c.pass_response, c.pass_other_target, c.pass_no_socket
        );
    }
}

/// What one interface can serve: its XDP maps and its workers' file tables are sized at
/// start.
fn check_limits(config: &ServeConfig) -> Result<(), DaemonError> {
    for name in config.interfaces.keys() {
        let count = config
            .exports
            .values()
            .filter(|e| e.interfaces.contains(name))
            .count();
        if count > crate::xdp::MAX_EXPORTS {
            return Err(DaemonError::Setup(format!(
                "interface {name}: {count} exports, more than the {} one interface serves; \
                 spread them over more interfaces",
                crate::xdp::MAX_EXPORTS
            )));
        }
    }
    Ok(())
}

/// The exports the configuration serves on `iface`.
fn exports_on<'a>(
    exports: &'a BTreeMap<ExportKey, RunningExport>,
    iface: &str,
) -> Vec<&'a RunningExport> {
    exports
        .values()
        .filter(|e| e.config.interfaces.iter().any(|i| i == iface))
        .collect()
}

fn add_xdp_counters(total: &mut XdpCounters, c: &XdpCounters) {
    total.pass_not_aoe += c.pass_not_aoe;
    total.pass_response += c.pass_response;
    total.pass_other_target += c.pass_other_target;
    total.drop_acl += c.drop_acl;
    total.redirect += c.redirect;
    total.pass_no_socket += c.pass_no_socket;
    total.drop_malformed += c.drop_malformed;
}

/// The periodic rate line (`--stats-interval`).
struct Rates {
    last: CounterSnapshot,
    at: Instant,
}

impl Rates {
    fn new(now: CounterSnapshot) -> Rates {
        Rates {
            last: now,
            at: Instant::now(),
        }
    }

    fn report_every(&mut self, interval: Duration, now: CounterSnapshot) {
        if self.at.elapsed() < interval {
            return;
        }
        let delta = now.since(&self.last);
        let seconds = self.at.elapsed().as_secs_f64();
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
        self.last = now;
        self.at = Instant::now();
    }
}

/// SIGINT/SIGTERM (stop) and SIGHUP (reload): flags, and a socket the control loop polls so
/// that a signal delivered to any thread wakes it.
struct Signals {
    stop: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
    wake: UnixStream,
}

impl Signals {
    fn install() -> Result<Signals, DaemonError> {
        let setup =
            |e: std::io::Error| DaemonError::Setup(format!("cannot install signal handlers: {e}"));
        let (wake, notify) = UnixStream::pair().map_err(setup)?;
        wake.set_nonblocking(true).map_err(setup)?;
        notify.set_nonblocking(true).map_err(setup)?;
        let stop = Arc::new(AtomicBool::new(false));
        let reload = Arc::new(AtomicBool::new(false));
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        for signal in [SIGINT, SIGTERM] {
            signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(setup)?;
        }
        signal_hook::flag::register(SIGHUP, Arc::clone(&reload)).map_err(setup)?;
        for signal in [SIGINT, SIGTERM, SIGHUP] {
            let notify = notify.try_clone().map_err(setup)?;
            signal_hook::low_level::pipe::register(signal, notify).map_err(setup)?;
        }
        Ok(Signals { stop, reload, wake })
    }

    fn fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Empties the wake-up socket (the flags say what happened).
    fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!(std::io::Read::read(&mut &self.wake, &mut buf), Ok(n) if n > 0) {}
    }
}

/// poll(2) for POLLIN on `fds`, at most `timeout`. Which ones are ready does not matter:
/// the caller looks at each source without blocking.
fn poll_readable(fds: &[RawFd], timeout: Duration) {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `pollfds` is a valid array of `pollfds.len()` entries for the call's duration.
    let rc = unsafe {
        libc::poll(
            pollfds.as_mut_ptr(),
            pollfds.len() as libc::nfds_t,
            timeout.as_millis() as libc::c_int,
        )
    };
    if rc < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
        warn!("poll: {}", std::io::Error::last_os_error());
        std::thread::sleep(Duration::from_millis(10));
    }
}
