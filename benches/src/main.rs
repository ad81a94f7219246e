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
use xblade_bench::engine::{Engine, EngineConfig};
use xblade_bench::packet::{self, RxConfig, RxRing, RxVersion, Tx, TxMethod};
use xblade_bench::report::{ConfigReport, Report, TargetReport};
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
/// --warmup-s seconds of warm-up. Every request's submit-to-reply latency goes into an
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
    #[arg(long)]
    shelf: u16,

    /// Slot (AoE minor address) of the target.
    #[arg(long)]
    slot: u8,

    /// Requests kept in flight (closed loop), 1 to 256. Above the target's advertised buffer
    /// count the target may drop requests (they are then retransmitted).
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..=MAX_QUEUE_DEPTH as i64))]
    queue_depth: u16,

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

    // Discovery and IDENTIFY with the project's initiator; closed again before the rings
    // open, so its socket does not receive a copy of every reply.
    let (info, capacity, frame_sectors, own_mac) = {
        let mut init = Initiator::open(
            &cli.iface,
            InitiatorConfig {
                shelf: cli.shelf,
                slot: cli.slot,
                timeout_ms: cli.timeout_ms,
                retries: cli.retries,
            },
        )?;
        let info = init.discover()?;
        let capacity = init.capacity_sectors()?;
        (info, capacity, init.sectors_per_frame(), init.own_mac())
    };
    let link = packet::link_info(&cli.iface).with_context(|| format!("interface {}", cli.iface))?;

    let sectors = cli.sectors.unwrap_or(frame_sectors);
    if sectors > frame_sectors {
        bail!(
            "--sectors {sectors}: one frame holds at most {frame_sectors} (target advertises {}, \
             MTU {} allows {})",
            info.sectors_per_frame,
            link.mtu,
            (link.mtu as usize).saturating_sub(36) / SECTOR_SIZE
        );
    }
    let span = cli.span_sectors.unwrap_or(capacity);
    if span > capacity {
        bail!("--span-sectors {span} is beyond the target's capacity of {capacity} sectors");
    }
    let Some(geometry) = Geometry::new(span, sectors) else {
        bail!("the span of {span} sectors holds no request of {sectors} sectors");
    };
    let queue_depth = usize::from(cli.queue_depth);
    if queue_depth > usize::from(info.buffer_count) {
        eprintln!(
            "xblade-bench: warning: queue depth {queue_depth} is above the target's buffer count \
             {}; it may drop requests (they are retransmitted after {} ms)",
            info.buffer_count, cli.timeout_ms
        );
    }
    let verify = if cli.verify {
        if cli.read_pct == 100 {
            eprintln!(
                "xblade-bench: note: --verify with --read-pct 100 only checks that no read \
                 returns data this run wrote elsewhere"
            );
        }
        let nonce = mix64(
            cli.seed
                ^ SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64)
                ^ u64::from(std::process::id()) << 40,
        );
        let table = VerifyTable::new(geometry.blocks, sectors, nonce).map_err(|e| {
            anyhow::anyhow!(
                "--verify needs {} MiB for {} blocks; limit --span-sectors",
                VerifyTable::bytes_for(e.blocks) >> 20,
                e.blocks
            )
        })?;
        Some(table)
    } else {
        None
    };

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

    let peer = Peer {
        own_mac,
        target_mac: info.mac,
        shelf: info.shelf,
        slot: info.slot,
    };
    let cfg = EngineConfig {
        queue_depth,
        read_pct: cli.read_pct,
        pattern: cli.pattern,
        geometry,
        warmup: Duration::from_secs_f64(cli.warmup_s),
        duration: Duration::from_secs_f64(cli.duration_s),
        timeout: Duration::from_millis(cli.timeout_ms),
        retries: cli.retries,
        seed: cli.seed,
        progress: !cli.quiet && cli.warmup_s + cli.duration_s >= PROGRESS_MIN_S,
        spin: Duration::from_micros(cli.spin_us),
    };
    let result = Engine::new(cfg, peer, rx, tx, verify).run(&stop)?;

    let target = TargetReport {
        iface: cli.iface.clone(),
        shelf: info.shelf,
        slot: info.slot,
        mac: info.mac.to_string(),
        capacity_sectors: capacity,
        advertised_sectors: info.sectors_per_frame,
        buffer_count: info.buffer_count,
        firmware_version: info.firmware_version,
        mtu: link.mtu,
    };
    let config = ConfigReport {
        queue_depth,
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
    };
    let mut report = Report::new(
        target,
        config,
        &result.stats,
        result.measured.as_secs_f64(),
        (result.cpu_user.as_secs_f64(), result.cpu_sys.as_secs_f64()),
    );
    report.abandoned = result.abandoned;
    report.interrupted = result.interrupted;
    report.failures = result
        .verify_log
        .iter()
        .map(|f| format!("verify: {f}"))
        .chain(result.error_log.iter().map(|f| {
            let op = if f.write { "write" } else { "read" };
            format!("{op} at lba {}: {}", f.lba, f.error)
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
