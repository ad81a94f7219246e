//! `xblade-stalls`: how often the machine stops a CPU for longer than a request takes (see
//! `--help`; the counting is in `xblade_bench::stalls`).

use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;

use xblade_bench::stalls::{self, CpuStalls, GAP_CLASSES_NS};

/// Counts the stalls of each given CPU that no program on it can see.
///
/// One thread per CPU, pinned there, reads CLOCK_MONOTONIC back to back for --duration-s
/// and counts every gap of at least 2 µs between two reads, by length. On a VM such gaps
/// are the host not running the vCPU (the guest may not count them as steal time); on bare
/// metal, interrupts and SMIs. At queue depth 1 every stall on the CPU that holds the
/// request in flight delays that request by its length, so stalls of at least 10 µs per
/// second, next to a target's requests per second, bound the tail any target can show on
/// this machine: scripts/bench.sh runs this before each repetition of its QD 1 cases.
///
/// Run it with the CPUs otherwise idle: it keeps each of them 100 % busy.
#[derive(Debug, Parser)]
#[command(
    name = "xblade-stalls",
    version,
    after_help = "Exit status: 0 ok; 1 error (a CPU that does not exist or is not allowed, \
                  the JSON file not writable); 2 bad command line.\n\n\
                  Example: xblade-stalls --cpus 0,1 --duration-s 2 --json stalls.json"
)]
struct Cli {
    /// CPUs to measure, comma-separated (all at once, one thread each).
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "0")]
    cpus: Vec<usize>,

    /// Seconds to measure, 0.01 to 600.
    #[arg(long, value_name = "S", default_value_t = 2.0)]
    duration_s: f64,

    /// Also write the counts as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xblade-stalls: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<()> {
    if !(0.01..=600.0).contains(&cli.duration_s) {
        bail!(
            "--duration-s {} is out of range: give 0.01 to 600 seconds",
            cli.duration_s
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for &cpu in &cli.cpus {
        if !seen.insert(cpu) {
            bail!("--cpus lists CPU {cpu} twice: give each CPU once");
        }
        if cpu >= libc::CPU_SETSIZE as usize {
            bail!(
                "--cpus: CPU {cpu} is beyond the {} this tool can pin to",
                libc::CPU_SETSIZE
            );
        }
    }
    let duration_ns = (cli.duration_s * 1e9) as u64;
    let start = Arc::new(Barrier::new(cli.cpus.len()));
    let threads: Vec<_> = cli
        .cpus
        .iter()
        .map(|&cpu| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || -> Result<CpuStalls> {
                // Pin first; a CPU that cannot be had fails the whole run after every
                // thread has passed the barrier (a thread that returned early would leave
                // the others waiting forever).
                let pinned = pin_to_cpu(cpu);
                start.wait();
                pinned.with_context(|| {
                    format!(
                        "pinning to CPU {cpu}: is it online and allowed to this process? \
                         (nproc; taskset -p $$)"
                    )
                })?;
                let epoch = Instant::now();
                let counts = stalls::measure(duration_ns, || {
                    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
                });
                Ok(counts.summary(cpu))
            })
        })
        .collect();
    let mut report = Vec::with_capacity(threads.len());
    for thread in threads {
        match thread.join() {
            Ok(result) => report.push(result?),
            Err(_) => bail!("a measuring thread panicked"),
        }
    }
    for cpu in &report {
        let classes: Vec<String> = GAP_CLASSES_NS
            .iter()
            .zip(&cpu.gaps_per_s)
            .map(|(low_ns, class)| format!(">={} us {:.0}", low_ns / 1000, class.per_s))
            .collect();
        println!(
            "CPU {}: {:.1} s, stalls >= 10 us: {:.0}/s, time lost to gaps >= 2 us: {:.2} %, \
             longest {:.1} us; gaps per second: {}",
            cpu.cpu,
            cpu.seconds,
            cpu.stalls_at_least_10us_per_s,
            cpu.lost_frac * 100.0,
            cpu.longest_gap_ns as f64 / 1000.0,
            classes.join(", ")
        );
    }
    if let Some(path) = &cli.json {
        let json = serde_json::json!({
            "tool": "xblade-stalls",
            "duration_s": cli.duration_s,
            "cpus": report,
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// sched_setaffinity(2) of the calling thread to `cpu` alone.
fn pin_to_cpu(cpu: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is a plain bit array for which all zeros is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit inside `set`; run() refused cpu >= CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
