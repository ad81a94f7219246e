//! `xblade-client`: a command-line AoE initiator for testing AoE targets (xblade, vblade).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use aoe_initiator::{Initiator, InitiatorConfig, MAX_QUEUE_DEPTH};
use aoe_proto::ata::{identify_string, identify_word};
use aoe_proto::{MAJOR_ANY, MINOR_ANY, SECTOR_SIZE};
use clap::{Parser, Subcommand};

/// Sectors moved per call into the library by `read` and `write` (1 MiB): bounds memory
/// while keeping the pipeline full.
const CHUNK_SECTORS: u64 = 2048;
/// Exit status when `verify` read back different data.
const EXIT_MISMATCH: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "xblade-client",
    version,
    about = "ATA over Ethernet (AoE r11) initiator for testing AoE targets",
    long_about = "ATA over Ethernet (AoE r11) initiator for testing AoE targets.\n\n\
        Opens a raw AF_PACKET socket on IFACE (needs root), finds the target with a \
        broadcast Query Config, then talks to it alone. Every tag has bit 31 set, so the \
        Linux aoe driver on the same link ignores our replies.\n\n\
        Exit status: 0 success, 1 error, 2 bad command line, 3 verify found different data."
)]
struct Cli {
    /// Shelf (major) address of the target, or "any".
    #[arg(long, default_value = "any", value_parser = parse_shelf)]
    shelf: u16,
    /// Slot (minor) address of the target, or "any".
    #[arg(long, default_value = "any", value_parser = parse_slot)]
    slot: u8,
    /// How long to wait for each reply before retransmitting, in milliseconds.
    #[arg(long, default_value_t = 500)]
    timeout_ms: u64,
    /// Retransmissions (each with a new tag) before a request fails.
    #[arg(long, default_value_t = 4)]
    retries: u32,
    /// Requests in flight at most (default: the target's buffer count).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=MAX_QUEUE_DEPTH as i64))]
    queue_depth: Option<u16>,
    /// Network interface the target is reachable on, e.g. eth1.
    iface: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Find the target and print its MAC, shelf.slot, buffer count, sectors per frame,
    /// firmware version and config string.
    Discover,
    /// Print the model, serial number, firmware and capacity from IDENTIFY DEVICE.
    Identify,
    /// Read sectors and write the raw bytes to stdout or a file.
    Read {
        /// First sector (logical block address).
        #[arg(long)]
        lba: u64,
        /// Number of 512-byte sectors to read.
        #[arg(long)]
        sectors: u64,
        /// Write the data here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Write raw bytes from stdin or a file; the length must be a multiple of 512.
    Write {
        /// First sector (logical block address).
        #[arg(long)]
        lba: u64,
        /// Read the data from here instead of stdin.
        #[arg(long, short)]
        input: Option<PathBuf>,
    },
    /// Flush the target's write cache (FLUSH CACHE EXT; FLUSH CACHE if the target aborts it).
    Flush,
    /// Print the power mode from CHECK POWER MODE (0xFF: active or idle).
    Power,
    /// Write random data at random LBAs (the last sector included), read it back and
    /// compare. DESTROYS DATA on the target. Exits with status 3 on any difference.
    Verify {
        /// Write/read-back rounds.
        #[arg(long, default_value_t = 100)]
        count: u64,
        /// Seed of the pseudo-random generator (the same seed repeats the same run).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Largest transfer of one round, in sectors (split into frames as needed).
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65536))]
        max_sectors: u64,
    },
}

fn parse_shelf(s: &str) -> Result<u16, String> {
    if s.eq_ignore_ascii_case("any") {
        return Ok(MAJOR_ANY);
    }
    match s.parse::<u16>() {
        Ok(n) if n != MAJOR_ANY => Ok(n),
        _ => Err(format!("expected 0..=65534 or \"any\", got {s:?}")),
    }
}

fn parse_slot(s: &str) -> Result<u8, String> {
    if s.eq_ignore_ascii_case("any") {
        return Ok(MINOR_ANY);
    }
    match s.parse::<u8>() {
        Ok(n) if n != MINOR_ANY => Ok(n),
        _ => Err(format!("expected 0..=254 or \"any\", got {s:?}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xblade-client: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let config = InitiatorConfig {
        shelf: cli.shelf,
        slot: cli.slot,
        timeout_ms: cli.timeout_ms,
        retries: cli.retries,
    };
    let mut ini = Initiator::open(&cli.iface, config)?;
    if let Some(depth) = cli.queue_depth {
        ini.set_queue_depth(usize::from(depth))?;
    }
    let target = ini.discover()?;
    match cli.command {
        Cmd::Discover => {
            println!("target         {}", target.mac);
            println!("shelf.slot     {}.{}", target.shelf, target.slot);
            println!("buffer count   {}", target.buffer_count);
            println!(
                "sectors/frame  {} (using {} on {})",
                target.sectors_per_frame,
                ini.sectors_per_frame(),
                cli.iface
            );
            println!("firmware       {:#06x}", target.firmware_version);
            println!("AoE version    {}", target.aoe_version);
            println!("config string  {:?}", target.config_string_lossy());
            println!("our MAC        {}", ini.own_mac());
        }
        Cmd::Identify => {
            let id = ini.identify()?;
            let sectors = aoe_proto::ata::identify_capacity_sectors(&id);
            let lba48 = (identify_word(&id, 83) | identify_word(&id, 86)) & 0x0400 != 0;
            println!("model          {}", identify_string(&id, 27..47));
            println!("serial         {}", identify_string(&id, 10..20));
            println!("firmware       {}", identify_string(&id, 23..27));
            println!("capacity       {sectors} sectors ({:.3} GiB)", gib(sectors));
            println!("LBA48          {}", if lba48 { "yes" } else { "no" });
        }
        Cmd::Read {
            lba,
            sectors,
            output,
        } => {
            let mut out: Box<dyn Write> = match &output {
                Some(path) => Box::new(
                    File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                ),
                None => Box::new(io::stdout().lock()),
            };
            let mut buf = vec![0u8; chunk_bytes(sectors.min(CHUNK_SECTORS))];
            let mut done = 0u64;
            while done < sectors {
                let n = (sectors - done).min(CHUNK_SECTORS);
                let chunk = &mut buf[..chunk_bytes(n)];
                ini.read(lba + done, chunk)?;
                out.write_all(chunk).context("cannot write the data out")?;
                done += n;
            }
            out.flush().context("cannot write the data out")?;
        }
        Cmd::Write { lba, input } => {
            let mut data = Vec::new();
            match &input {
                Some(path) => File::open(path)
                    .and_then(|mut f| f.read_to_end(&mut data))
                    .with_context(|| format!("cannot read {}", path.display()))?,
                None => io::stdin()
                    .lock()
                    .read_to_end(&mut data)
                    .context("cannot read stdin")?,
            };
            if !data.len().is_multiple_of(SECTOR_SIZE) {
                bail!(
                    "input is {} bytes, not a whole number of 512-byte sectors (pad it, e.g. \
                     with `truncate -s %512`)",
                    data.len()
                );
            }
            let total = data.len() / SECTOR_SIZE;
            for (i, chunk) in data.chunks(chunk_bytes(CHUNK_SECTORS)).enumerate() {
                ini.write(lba + i as u64 * CHUNK_SECTORS, chunk)?;
            }
            eprintln!("wrote {total} sectors at lba {lba}");
        }
        Cmd::Flush => match ini.flush() {
            Ok(()) => println!("flushed (FLUSH CACHE EXT)"),
            Err(e) if e.request_error().is_some_and(|r| r.is_aborted()) => {
                ini.flush_cache()
                    .context("FLUSH CACHE EXT was aborted, and so was FLUSH CACHE")?;
                println!("flushed (FLUSH CACHE; the target aborted FLUSH CACHE EXT)");
            }
            Err(e) => return Err(e.into()),
        },
        Cmd::Power => {
            let mode = ini.check_power_mode()?;
            let text = match mode {
                0xFF => "active or idle",
                0x80 => "idle",
                0x00 => "standby",
                _ => "other",
            };
            println!("power mode     {mode:#04x} ({text})");
        }
        Cmd::Verify {
            count,
            seed,
            max_sectors,
        } => return verify(&mut ini, count, seed, max_sectors),
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(ini: &mut Initiator, count: u64, seed: u64, max_sectors: u64) -> Result<ExitCode> {
    let capacity = ini.capacity_sectors()?;
    if capacity == 0 {
        bail!("the target reports a capacity of 0 sectors");
    }
    let max_sectors = max_sectors.min(capacity);
    let mut rng = SplitMix64(seed);
    let mut written = vec![0u8; chunk_bytes(max_sectors)];
    let mut read_back = vec![0u8; chunk_bytes(max_sectors)];
    let (mut sectors_total, mut mismatches) = (0u64, 0u64);
    let start = Instant::now();
    for round in 0..count {
        let sectors = 1 + rng.next() % max_sectors;
        // Round 0 ends at the last sector; the others land anywhere.
        let lba = if round == 0 {
            capacity - sectors
        } else {
            rng.next() % (capacity - sectors + 1)
        };
        let len = chunk_bytes(sectors);
        rng.fill(&mut written[..len]);
        ini.write(lba, &written[..len])
            .with_context(|| format!("round {round}: write of {sectors} sectors at lba {lba}"))?;
        ini.read(lba, &mut read_back[..len])
            .with_context(|| format!("round {round}: read of {sectors} sectors at lba {lba}"))?;
        if written[..len] != read_back[..len] {
            let first = written[..len]
                .iter()
                .zip(&read_back[..len])
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            eprintln!(
                "MISMATCH round {round}: lba {lba} ({sectors} sectors): first difference at \
                 lba {} byte {}",
                lba + (first / SECTOR_SIZE) as u64,
                first % SECTOR_SIZE
            );
            mismatches += 1;
        }
        sectors_total += sectors;
    }
    let secs = start.elapsed().as_secs_f64();
    let stats = ini.stats();
    println!(
        "verify: {count} rounds, {sectors_total} sectors written and read back (last sector \
         {}), {mismatches} mismatches, {secs:.2} s, {:.1} MiB/s, {} retransmits, {} stray replies",
        if count > 0 { "included" } else { "not covered" },
        2.0 * chunk_bytes(sectors_total) as f64 / (1 << 20) as f64 / secs.max(1e-9),
        stats.retransmits,
        stats.stray_replies,
    );
    Ok(if mismatches == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_MISMATCH)
    })
}

fn chunk_bytes(sectors: u64) -> usize {
    usize::try_from(sectors)
        .unwrap_or(usize::MAX)
        .saturating_mul(SECTOR_SIZE)
}

fn gib(sectors: u64) -> f64 {
    sectors as f64 * SECTOR_SIZE as f64 / f64::from(1u32 << 30)
}

/// SplitMix64: a tiny, seedable, reproducible generator (not cryptographic).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn shelf_and_slot_accept_numbers_and_any() {
        assert_eq!(parse_shelf("any"), Ok(0xffff));
        assert_eq!(parse_shelf("7"), Ok(7));
        assert!(parse_shelf("65535").is_err());
        assert!(parse_shelf("x").is_err());
        assert_eq!(parse_slot("ANY"), Ok(0xff));
        assert_eq!(parse_slot("254"), Ok(254));
        assert!(parse_slot("255").is_err());
    }

    #[test]
    fn commands_parse() {
        let cli = Cli::try_parse_from([
            "xblade-client",
            "--shelf",
            "1",
            "--slot",
            "2",
            "veth0",
            "read",
            "--lba",
            "5",
            "--sectors",
            "3",
        ])
        .unwrap();
        assert_eq!((cli.shelf, cli.slot), (1, 2));
        assert!(matches!(
            cli.command,
            Cmd::Read {
                lba: 5,
                sectors: 3,
                output: None
            }
        ));
        let cli =
            Cli::try_parse_from(["xblade-client", "veth0", "verify", "--count", "3"]).unwrap();
        assert!(matches!(
            cli.command,
            Cmd::Verify {
                count: 3,
                seed: 1,
                max_sectors: 64
            }
        ));
        assert!(
            Cli::try_parse_from(["xblade-client", "veth0", "verify", "--max-sectors", "0"])
                .is_err()
        );
    }

    #[test]
    fn splitmix_is_reproducible() {
        let (mut a, mut b) = (SplitMix64(42), SplitMix64(42));
        let (mut x, mut y) = ([0u8; 13], [0u8; 13]);
        a.fill(&mut x);
        b.fill(&mut y);
        assert_eq!(x, y);
        assert_ne!(SplitMix64(1).next(), SplitMix64(2).next());
    }
}
