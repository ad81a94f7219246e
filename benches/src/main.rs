//! `xblade-bench`: closed-loop AoE load generator (see `--help`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;

use aoe_initiator::wire::Peer;
use aoe_initiator::{Initiator, InitiatorConfig, MAX_QUEUE_DEPTH};
use aoe_proto::SECTOR_SIZE;
use xblade_bench::engine::{Engine, EngineConfig, EngineTarget};
use xblade_bench::exports;
use xblade_bench::packet::{
    self, clock_ticks_per_second, RxConfig, RxRing, RxVersion, Tx, TxMethod,
};
use xblade_bench::report::{ConfigReport, ExportReport, Report, TargetCpuReport, TargetReport};
use xblade_bench::rng::mix64;
use xblade_bench::verify::VerifyTable;
use xblade_bench::workload::{Geometry, Pattern};

/// Exit status when a read returned data that was never written to its LBA.
const EXIT_VERIFY_FAILED: u8 = 3;
/// Exit status when no request completed in the measured window.
const EXIT_NOTHING_COMPLETED: u8 = 4;
/// Progress lines are printed for runs at least this long (warm-up included), in seconds.
const PROGRESS_MIN_S: f64 = 3.0;

/// Closed-loop load generator for one ATA over Ethernet (AoE r11) target.
///
/// Finds the target (Query Config) and its capacity (IDENTIFY DEVICE), then keeps
/// --queue-depth requests in flight, one AoE frame each, for --duration-s seconds after
/// --warmup-s seconds of warm-up. With --exports N or --targets LIST the same total queue
/// depth is spread over several exports: each new request goes to the next export in turn,
/// and the report has each export's numbers next to the total. Every request's submit-to-reply latency goes into an
/// HdrHistogram. Prints IOPS, MB/s (10^6 bytes of sector data) and latency percentiles on
/// stdout, a progress line every second on stderr for runs of 3 s or more, and the same
/// report as JSON with --json.
///
/// Writes (--read-pct below 100) overwrite the target's data. Needs root (raw AF_PACKET
/// sockets); run it in the network namespace of the client end of the link.
#[derive(Debug, Parser)]
#[command(
    name = "xblade-bench",
    version,
    after_help = "Exit status: 0 success; 1 error (no target, socket failure, ...); 2 bad \
                  command line; 3 verify failures; 4 no request completed in the measured window.\n\n\
                  Example: xblade-bench --iface eth1 --shelf 1 --slot 0 --queue-depth 64 \
                  --read-pct 70 --duration-s 30 --verify --json run.json"
)]
struct Cli {
    /// Network interface the target is reachable on.
    #[arg(long, value_name = "IFNAME")]
    iface: String,

    /// Shelf (AoE major address) of the target.
    #[arg(long, required_unless_present = "targets")]
    shelf: Option<u16>,

    /// Slot (AoE minor address) of the target; with --exports, the first of them.
    #[arg(long, required_unless_present = "targets")]
    slot: Option<u8>,

    /// Spread the load over N exports: slots --slot .. --slot+N-1 of --shelf, all found by
    /// discovery. --queue-depth stays the total: each new request goes to the next export in
    /// turn (so with QD >= N each has about QD/N in flight), and --span-sectors and --verify
    /// apply to each export.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=255))]
    exports: u16,

    /// The exports to spread the load over, as a list: SHELF.SLOT,... (e.g. 1.0,1.1,2.0),
    /// instead of --shelf, --slot and --exports.
    #[arg(long, value_name = "LIST", conflicts_with_all = ["shelf", "slot", "exports"])]
    targets: Option<String>,

    /// Requests kept in flight (closed loop), 1 to 256. Above the target's advertised buffer
    /// count the target may drop requests (they are then retransmitted).
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..=MAX_QUEUE_DEPTH as i64))]
    queue_depth: u16,

    /// At most this many new requests per second (0: no limit). The loop still keeps at
    /// most --queue-depth in flight; a slot that frees up waits for its turn in the pace
    /// (1 s / N apart, with a burst of at most 32 after a late turn). Retransmissions are
    /// not paced. For a background load of a known rate, e.g. the network traffic a
    /// disk-backed target carried, without the disk.
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_iops: u64,

    /// Percentage of requests that are reads; the rest are writes.
    #[arg(long, value_name = "PCT", default_value_t = 100,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    read_pct: u8,

    /// Sectors per request, one AoE frame each [default: the target's advertised sectors
    /// per frame, capped by the interface MTU].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..))]
    sectors: Option<u8>,

    /// Where requests go. Requests are aligned to their own size.
    #[arg(long, value_enum, default_value_t = Pattern::Random)]
    pattern: Pattern,

    /// Sectors of the target used, from LBA 0 [default: the whole capacity from IDENTIFY].
    /// With several exports: of each export.
    #[arg(long, value_name = "SECTORS")]
    span_sectors: Option<u64>,

    /// Seconds of load before measuring (its numbers are discarded, its errors are not).
    #[arg(long, value_name = "S", default_value_t = 1.0, value_parser = seconds)]
    warmup_s: f64,

    /// Seconds measured.
    #[arg(long, value_name = "S", default_value_t = 10.0, value_parser = positive_seconds)]
    duration_s: f64,

    /// Verify data: every write carries data derived from (LBA, write sequence), and every
    /// read must return, for each sector, data that was written to that LBA (the latest
    /// acknowledged write, or a failed one that may have landed). Keeps 8 bytes per
    /// request-sized block of the span in memory.
    #[arg(long)]
    verify: bool,

    /// Milliseconds to wait for a reply before retransmitting (with a new tag).
    #[arg(long, value_name = "MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,

    /// Retransmissions before a request counts as a timeout.
    #[arg(long, value_name = "N", default_value_t = 5)]
    retries: u32,

    /// Write the report as JSON to FILE ("-" for stdout, replacing the table).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Seed of the read/write mix and LBA sequence (the same seed repeats a run's requests).
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,

    /// How frames are sent: a PACKET_TX_RING (on veth here: about 1.4x the IOPS of sendmmsg
    /// at depth 16 and 64 for two thirds of the CPU per request), or sendmmsg batches.
    #[arg(long, value_enum, default_value_t = TxMethod::Ring, help_heading = "Transport")]
    tx: TxMethod,

    /// Receive ring kind: TPACKET_V2 hands over every frame at once; TPACKET_V3 hands over
    /// blocks, when full or after --rx-block-timeout-ms (which adds latency at low depth).
    #[arg(long, value_enum, default_value_t = RxVersion::V2, help_heading = "Transport")]
    rx_ring: RxVersion,

    /// Block size of the receive ring in KiB.
    #[arg(
        long,
        value_name = "KIB",
        default_value_t = 64,
        help_heading = "Transport"
    )]
    rx_block_kib: u32,

    /// TPACKET_V3 block retire timeout in milliseconds.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 1,
        help_heading = "Transport"
    )]
    rx_block_timeout_ms: u32,

    /// Busy-poll the receive ring for up to this many microseconds before sleeping. Saves
    /// the wake-up per reply when a core can be spared for the generator; on a busy
    /// machine it takes CPU from the target.
    #[arg(
        long,
        value_name = "US",
        default_value_t = 0,
        help_heading = "Transport"
    )]
    spin_us: u64,

    /// Process ID of the target (in any namespace of this PID namespace): its CPU time
    /// (all threads, /proc/PID/stat) is read at the start and the end of the measured window
    /// and reported as target_cpu (seconds, microseconds per request). Fails the run if it
    /// cannot be read at both points.
    #[arg(long, value_name = "PID")]
    target_pid: Option<u32>,
}

fn seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && (0.0..=1e6).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0 and 1000000 seconds".into())
    }
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    let v = seconds(s)?;
    if v > 0.0 {
        Ok(v)
    } else {
        Err("must be more than 0 seconds".into())
    }
}

/// The pace of `--max-iops N`: 1 s / N between new requests, or none for 0.
fn pace_interval(max_iops: u64) -> Option<Duration> {
    (max_iops > 0).then(|| Duration::from_nanos((1_000_000_000 / max_iops).max(1)))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xblade-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }

    let addresses = match (&cli.targets, cli.shelf, cli.slot) {
        (Some(list), _, _) => exports::parse_targets(list),
        (None, Some(shelf), Some(slot)) => {
            exports::consecutive(shelf, slot, usize::from(cli.exports))
        }
        _ => Err("--shelf and --slot, or --targets, are needed".to_owned()),
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;

    // Discovery and IDENTIFY of each export with the project's initiator; each closed again
    // before the next opens and before the rings open, so no socket of it receives a copy
    // of every reply.
    let mut found = Vec::with_capacity(addresses.len());
    let mut own_mac = None;
    for &(shelf, slot) in &addresses {
        let mut init = Initiator::open(
            &cli.iface,
            InitiatorConfig {
                shelf,
                slot,
                timeout_ms: cli.timeout_ms,
                retries: cli.retries,
            },
        )?;
        let info = init
            .discover()
            .with_context(|| format!("export e{shelf}.{slot}"))?;
        let capacity = init
            .capacity_sectors()
            .with_context(|| format!("IDENTIFY of e{shelf}.{slot}"))?;
        own_mac = Some(init.own_mac());
        found.push((info, capacity, init.sectors_per_frame()));
    }
    let Some(own_mac) = own_mac else {
        bail!("no export to load");
    };
    let link = packet::link_info(&cli.iface).with_context(|| format!("interface {}", cli.iface))?;
    if found.len() > 1 {
        let macs: std::collections::BTreeSet<_> = found.iter().map(|(i, _, _)| i.mac).collect();
        if macs.len() > 1 {
            eprintln!(
                "xblade-bench: note: the {} exports answer from {} MACs",
                found.len(),
                macs.len()
            );
        }
    }

    // One request size for all: the smallest frame any export takes.
    let frame_sectors = found.iter().map(|&(_, _, s)| s).min().unwrap_or(1);
    let sectors = cli.sectors.unwrap_or(frame_sectors);
    if sectors > frame_sectors {
        bail!(
            "--sectors {sectors}: one frame holds at most {frame_sectors} (target advertises {}, \
             MTU {} allows {})",
            found
                .iter()
                .map(|(i, _, _)| i.sectors_per_frame)
                .min()
                .unwrap_or(0),
            link.mtu,
            (link.mtu as usize).saturating_sub(36) / SECTOR_SIZE
        );
    }
    let queue_depth = usize::from(cli.queue_depth);
    let (_, per_export_depth) = exports::depth_per_export(queue_depth, found.len());
    let nonce = mix64(
        cli.seed
            ^ SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()) << 40,
    );
    if cli.verify && cli.read_pct == 100 {
        eprintln!(
            "xblade-bench: note: --verify with --read-pct 100 only checks that no read \
             returns data this run wrote elsewhere"
        );
    }
    let mut targets = Vec::with_capacity(found.len());
    let mut verify_bytes = 0u64;
    for (i, (info, capacity, _)) in found.iter().enumerate() {
        let (name, capacity) = (format!("e{}.{}", info.shelf, info.slot), *capacity);
        let span = cli.span_sectors.unwrap_or(capacity);
        if span > capacity {
            bail!("--span-sectors {span} is beyond {name}'s capacity of {capacity} sectors");
        }
        let Some(geometry) = Geometry::new(span, sectors) else {
            bail!("the span of {span} sectors of {name} holds no request of {sectors} sectors");
        };
        if per_export_depth > usize::from(info.buffer_count) {
            eprintln!(
                "xblade-bench: warning: {per_export_depth} requests in flight on {name} are above \
                 its buffer count {}; it may drop requests (they are retransmitted after {} ms)",
                info.buffer_count, cli.timeout_ms
            );
        }
        let verify = if cli.verify {
            verify_bytes = verify_bytes.saturating_add(VerifyTable::bytes_for(geometry.blocks));
            // Each export's data carries its own nonce: data of one export read from another
            // is not this export's (a misrouted request).
            let table = VerifyTable::new(geometry.blocks, sectors, exports::export_seed(nonce, i))
                .map_err(|e| {
                    anyhow::anyhow!(
                        "--verify needs {} MiB for {} blocks of {name}; limit --span-sectors",
                        VerifyTable::bytes_for(e.blocks) >> 20,
                        e.blocks
                    )
                })?;
            Some(table)
        } else {
            None
        };
        targets.push(EngineTarget {
            peer: Peer {
                own_mac,
                target_mac: info.mac,
                shelf: info.shelf,
                slot: info.slot,
            },
            geometry,
            verify,
        });
    }
    if verify_bytes > 1 << 30 {
        eprintln!(
            "xblade-bench: note: the verify tables take {} MiB",
            verify_bytes >> 20
        );
    }
    let spans: Vec<u64> = targets
        .iter()
        .map(|t| t.geometry.blocks * u64::from(sectors))
        .collect();
    let span = cli
        .span_sectors
        .unwrap_or_else(|| spans.first().copied().unwrap_or(0));

    let rx_cfg = RxConfig::for_mtu(
        cli.rx_ring,
        link.mtu,
        (4 * queue_depth as u32).max(1024),
        cli.rx_block_kib,
        cli.rx_block_timeout_ms,
    );
    let rx = RxRing::open(&link, rx_cfg).context("opening the AF_PACKET receive ring")?;
    let request_bytes = 36 + usize::from(sectors) * SECTOR_SIZE;
    let tx = Tx::open(&link, cli.tx, request_bytes, queue_depth)
        .context("opening the AF_PACKET sender")?;

    let cfg = EngineConfig {
        queue_depth,
        read_pct: cli.read_pct,
        pattern: cli.pattern,
        sectors,
        warmup: Duration::from_secs_f64(cli.warmup_s),
        duration: Duration::from_secs_f64(cli.duration_s),
        timeout: Duration::from_millis(cli.timeout_ms),
        retries: cli.retries,
        seed: cli.seed,
        progress: !cli.quiet && cli.warmup_s + cli.duration_s >= PROGRESS_MIN_S,
        spin: Duration::from_micros(cli.spin_us),
        pace: pace_interval(cli.max_iops),
        target_pid: cli.target_pid,
    };
    let result = Engine::new(cfg, targets, rx, tx).run(&stop)?;

    let target_reports: Vec<TargetReport> = found
        .iter()
        .map(|(info, capacity, _)| TargetReport {
            iface: cli.iface.clone(),
            shelf: info.shelf,
            slot: info.slot,
            mac: info.mac.to_string(),
            capacity_sectors: *capacity,
            advertised_sectors: info.sectors_per_frame,
            buffer_count: info.buffer_count,
            firmware_version: info.firmware_version,
            mtu: link.mtu,
        })
        .collect();
    let config = ConfigReport {
        queue_depth,
        exports: target_reports.len(),
        read_pct: cli.read_pct,
        sectors,
        request_bytes: usize::from(sectors) * SECTOR_SIZE,
        pattern: cli.pattern,
        span_sectors: span,
        warmup_s: cli.warmup_s,
        duration_s: cli.duration_s,
        verify: cli.verify,
        timeout_ms: cli.timeout_ms,
        retries: cli.retries,
        seed: cli.seed,
        tx: cli.tx,
        rx_ring: cli.rx_ring,
        rx_ring_bytes: rx_cfg.bytes(),
        rx_block_bytes: rx_cfg.block_size,
        rx_block_timeout_ms: cli.rx_block_timeout_ms,
        spin_us: cli.spin_us,
        max_iops: cli.max_iops,
    };
    let seconds = result.measured.as_secs_f64();
    let Some(first) = target_reports.first() else {
        bail!("no export to report");
    };
    let mut report = Report::new(
        first.clone(),
        config,
        &result.stats,
        seconds,
        (result.cpu_user.as_secs_f64(), result.cpu_sys.as_secs_f64()),
    );
    let total_ops = report.results.all.ops;
    report.set_exports(
        target_reports
            .iter()
            .zip(&result.exports)
            .zip(&spans)
            .map(|((t, stats), &span)| ExportReport::new(t, span, stats, seconds, total_ops))
            .collect(),
    );
    if let (Some(pid), Some(ticks)) = (cli.target_pid, result.target_ticks) {
        let (Some(start), Some(end)) = ticks else {
            bail!(
                "--target-pid {pid}: /proc/{pid}/stat could not be read at the {} of the measured window",
                if ticks.0.is_none() { "start" } else { "end" }
            );
        };
        report.target_cpu = Some(TargetCpuReport::new(
            pid,
            (start, end),
            clock_ticks_per_second(),
            report.results.all.ops,
        ));
    }
    report.abandoned = result.abandoned;
    report.interrupted = result.interrupted;
    // With several exports every failure names its export.
    let several = target_reports.len() > 1;
    let on = |export: usize| match target_reports.get(export) {
        Some(t) if several => format!("e{}.{} ", t.shelf, t.slot),
        _ => String::new(),
    };
    report.failures = result
        .verify_log
        .iter()
        .map(|f| format!("verify: {}{}", on(f.export), f.failure))
        .chain(result.error_log.iter().map(|f| {
            let op = if f.write { "write" } else { "read" };
            format!("{op} at {}lba {}: {}", on(f.export), f.lba, f.error)
        }))
        .collect();

    match cli.json.as_deref() {
        Some(path) if path.as_os_str() == "-" => {
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Some(path) => {
            print!("{}", report.table());
            let text = serde_json::to_string_pretty(&report)?;
            std::fs::write(path, text + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => print!("{}", report.table()),
    }

    if report.errors.verify_failures > 0 {
        eprintln!(
            "xblade-bench: {} verify failures: the target returned data that was not written",
            report.errors.verify_failures
        );
        return Ok(ExitCode::from(EXIT_VERIFY_FAILED));
    }
    if report.results.all.ops == 0 {
        eprintln!("xblade-bench: no request completed in the measured window");
        return Ok(ExitCode::from(EXIT_NOTHING_COMPLETED));
    }
    Ok(ExitCode::SUCCESS)
}
