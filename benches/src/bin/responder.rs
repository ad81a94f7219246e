//! `xblade-responder`: zero-work AoE responder for measuring the load generator (see `--help`).

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;

use xblade_bench::responder::{ResponderConfig, Server};

/// Zero-work AoE r11 responder: answers every request at once. NOT a storage target.
///
/// Exports shelf.slot on IFACE and answers Query Config, IDENTIFY DEVICE and every ATA read
/// and write the moment it arrives: reads return zeros (or, with --ram, what was written),
/// writes are acknowledged and discarded (or kept in RAM). No disk, no queueing, almost no
/// work per request, so a load generator run against it measures the generator's own
/// ceiling (and the link's); scripts/bench.sh uses it that way, next to the real targets.
///
/// Sectors per frame follow the interface MTU. Runs until SIGTERM or SIGINT, then prints
/// the counts of reads and writes answered on stderr. Needs root (raw AF_PACKET sockets);
/// run it in the network namespace of the target end of the link.
#[derive(Debug, Parser)]
#[command(
    name = "xblade-responder",
    version,
    after_help = "Exit status: 0 stopped by a signal; 1 error (no such interface, socket \
                  failure, ...); 2 bad command line.\n\n\
                  Example: ip netns exec NS xblade-responder --shelf 1 --slot 0 veth0"
)]
struct Cli {
    /// Shelf (AoE major address) to answer as, 0 to 65534 (65535 is the wildcard).
    #[arg(long, default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(0..0xffff))]
    shelf: u16,

    /// Slot (AoE minor address) to answer as, 0 to 254 (255 is the wildcard).
    #[arg(long, default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..0xff))]
    slot: u8,

    /// Capacity reported by IDENTIFY, in 512-byte sectors; requests beyond it fail (IDNF).
    #[arg(long, value_name = "N", default_value_t = 2_097_152,
          value_parser = clap::value_parser!(u64).range(1..=1 << 48))]
    size_sectors: u64,

    /// Keep written data in RAM and return it on reads (so --verify passes with writes);
    /// at most 4 GiB (8388608 sectors). Without it reads return zeros.
    #[arg(long)]
    ram: bool,

    /// With --ram: touch every page of the image at start, so that reads copy from memory
    /// of their own, as a target serving a real image does, instead of the kernel's one
    /// shared zero page (a cache-hot copy). The bound for targets that serve data.
    #[arg(long, requires = "ram")]
    populate: bool,

    /// Buffer count advertised in the Query Config reply (requests an initiator may keep
    /// in flight).
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u16).range(1..))]
    buffer_count: u16,

    /// Keep polling for this many microseconds after the last request before sleeping
    /// (like xblade's --spin-us), so a closed-loop load does not pay a wake-up per request.
    #[arg(long, value_name = "US", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    spin_us: u64,

    /// Network interface to answer on.
    #[arg(value_name = "IFACE")]
    iface: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xblade-responder: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<()> {
    let mut cfg = ResponderConfig::new(cli.shelf, cli.slot, cli.size_sectors);
    cfg.ram = cli.ram;
    cfg.populate_ram = cli.populate;
    cfg.buffer_count = cli.buffer_count;
    cfg.spin = std::time::Duration::from_micros(cli.spin_us);
    // Before any socket: a bad size is a usage error, whatever the privileges.
    cfg.ram_bytes().context("--size-sectors with --ram")?;

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }

    let mut server = Server::open(&cli.iface, cfg)?;
    let link = server.link();
    eprintln!(
        "xblade-responder: exporting e{}.{} on {} (mac {}, mtu {}, {} sectors per frame, {} \
         sectors, {}; instant replies, no storage)",
        cli.shelf,
        cli.slot,
        cli.iface,
        link.mac,
        link.mtu,
        server.sectors_per_frame(),
        cli.size_sectors,
        if cli.ram {
            "data kept in RAM"
        } else {
            "reads return zeros"
        },
    );
    let stats = server
        .run(&stop)
        .with_context(|| format!("serving on {}", cli.iface))?;
    eprintln!(
        "xblade-responder: stopped: {} reads, {} writes answered",
        stats.reads, stats.writes
    );
    Ok(())
}
