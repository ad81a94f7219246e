//! Harness for the namespace tests: a temp dir, a sparse image, an xblade process in the
//! lab's target namespace (killed on drop), and an initiator in the client namespace.

#![allow(dead_code)]

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use aoe_initiator::{Initiator, InitiatorConfig};
use xblade_lab::Lab;

pub const SHELF: u16 = 1;
pub const SLOT: u8 = 0;

/// Skips the calling test (returns from it) with a reason when not root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !xblade_lab::require_root() {
            eprintln!("skipped: needs root (network namespaces, XDP, AF_XDP)");
            return;
        }
    };
}

/// The xblade binary cargo built for these tests.
pub fn xblade_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_xblade"))
}

pub use xblade_lab::TempDir;

/// A running xblade; SIGKILLed and reaped on drop if still running.
pub struct Daemon {
    child: Option<Child>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

/// How a daemon ended.
#[derive(Debug)]
pub struct Exit {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Daemon {
    /// Starts `xblade ARGS SHELF SLOT IFACE IMAGE` in the target namespace and waits until it
    /// logs that it is exporting (or fails).
    pub fn start(lab: &Lab, dir: &TempDir, image: &Path, args: &[&str]) -> Daemon {
        Self::try_start(lab, dir, image, args)
            .unwrap_or_else(|exit| panic!("xblade did not start: {exit:?}"))
    }

    /// As [`Daemon::start`], but returns how it exited if it did not come up.
    pub fn try_start(
        lab: &Lab,
        dir: &TempDir,
        image: &Path,
        args: &[&str],
    ) -> Result<Daemon, Exit> {
        let n = fs::read_dir(&dir.0).map_or(0, |d| d.count());
        let stdout = dir.0.join(format!("xblade-{n}.out"));
        let stderr = dir.0.join(format!("xblade-{n}.err"));
        let child = lab
            .command_in_target(xblade_bin())
            .args(args)
            .arg(SHELF.to_string())
            .arg(SLOT.to_string())
            .arg(lab.target_if())
            .arg(image)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("stdout file"))
            .stderr(File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn xblade");
        let mut daemon = Daemon {
            child: Some(child),
            stdout,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if read(&daemon.stderr).contains("exporting") {
                return Ok(daemon);
            }
            if let Some(child) = daemon.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return Err(daemon.wait(Duration::from_secs(1)));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(daemon.kill())
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid; the child is not reaped yet, so the pid
        // cannot have been reused.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// SIGTERM, then waits up to `timeout` for the exit.
    pub fn terminate(mut self, timeout: Duration) -> Exit {
        self.signal(libc::SIGTERM);
        self.wait(timeout)
    }

    /// SIGKILL and reap.
    pub fn kill(mut self) -> Exit {
        self.signal(libc::SIGKILL);
        self.wait(Duration::from_secs(10))
    }

    fn wait(&mut self, timeout: Duration) -> Exit {
        let mut child = self.child.take().expect("daemon already reaped");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for xblade") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let status = child.wait().expect("reap xblade");
                panic!(
                    "xblade did not exit within {timeout:?} ({status}); stderr:\n{}",
                    read(&self.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Exit {
            status,
            stdout: read(&self.stdout),
            stderr: read(&self.stderr),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("xblade stderr:\n{}", read(&self.stderr));
            }
        }
    }
}

pub fn read(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// An initiator in the lab's client namespace (the calling thread goes back to its own
/// namespace before this returns; the socket stays in the client's).
pub fn initiator(lab: &Lab, timeout_ms: u64, retries: u32) -> Initiator {
    let _in_client = lab.enter_client_thread().expect("enter client namespace");
    let config = InitiatorConfig {
        shelf: SHELF,
        slot: SLOT,
        timeout_ms,
        retries,
    };
    let mut initiator = Initiator::open(lab.client_if(), config).expect("open initiator");
    initiator.discover().expect("discover xblade");
    initiator
}

/// Deterministic per-(lba, generation) sector contents, so a read-back proves which write
/// landed.
pub fn pattern(lba: u64, generation: u64, sectors: usize) -> Vec<u8> {
    let mut data = vec![0u8; sectors * 512];
    for (i, chunk) in data.chunks_mut(8).enumerate() {
        let word = (lba + (i / 64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ generation.rotate_left(17)
            ^ i as u64;
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    data
}

// ---- Raw AoE frames and summary parsing (interop.rs, faults.rs) ----

/// The common header of a request from `src` to `dst` for this harness's SHELF.SLOT:
/// version 1, no flags.
pub fn request_header(
    dst: aoe_proto::Mac,
    src: aoe_proto::Mac,
    command: u8,
    tag: u32,
) -> aoe_proto::Header {
    aoe_proto::Header {
        dst,
        src,
        vlan_tci: None,
        version: aoe_proto::AOE_VERSION,
        flags: 0,
        error: 0,
        major: SHELF,
        minor: SLOT,
        command,
        tag,
    }
}

/// `header` encoded, followed by `body` (the command's own header and payload), unpadded.
pub fn raw_frame(header: &aoe_proto::Header, body: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; header.body_offset()];
    header.encode(&mut frame).expect("header fits");
    frame.extend_from_slice(body);
    frame
}

/// An ATA request: `header` (command 0 expected), the 12-byte ATA header, then `data`.
pub fn ata_frame(
    header: &aoe_proto::Header,
    ata: &aoe_proto::ata::AtaHeader,
    data: &[u8],
) -> Vec<u8> {
    let mut body = vec![0u8; aoe_proto::ata::HEADER_LEN];
    ata.encode(&mut body, 0).expect("ATA header fits");
    body.extend_from_slice(data);
    raw_frame(header, &body)
}

/// A Query Config request with `ccmd` and `string` (length field = the string's length).
pub fn config_frame(header: &aoe_proto::Header, ccmd: u8, string: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8; aoe_proto::config::HEADER_LEN];
    aoe_proto::config::ConfigHeader {
        aoe_version: aoe_proto::AOE_VERSION,
        ccmd,
        string_len: u16::try_from(string.len()).expect("string length fits u16"),
        ..Default::default()
    }
    .encode(&mut body, 0)
    .expect("config header fits");
    body.extend_from_slice(string);
    raw_frame(header, &body)
}

/// A MAC Mask List request: `mcmd`, then one directive per `(dcmd, mac)`; the directive
/// count field says how many.
pub fn mask_frame(
    header: &aoe_proto::Header,
    mcmd: u8,
    directives: &[(u8, aoe_proto::Mac)],
) -> Vec<u8> {
    use aoe_proto::mask;
    let mut body = vec![0u8; mask::frame_len(0, directives.len())];
    mask::MaskHeader {
        mcmd,
        merror: 0,
        directive_count: u8::try_from(directives.len()).expect("at most 255 directives"),
    }
    .encode(&mut body, 0)
    .expect("mask header fits");
    for (index, &(dcmd, mac)) in directives.iter().enumerate() {
        mask::Directive { dcmd, mac }
            .encode(&mut body, 0, index)
            .expect("directive fits");
    }
    raw_frame(header, &body)
}

/// A Reserve/Release request: `rcmd`, NMacs = `macs.len()`, then the MACs.
pub fn reserve_frame(header: &aoe_proto::Header, rcmd: u8, macs: &[aoe_proto::Mac]) -> Vec<u8> {
    use aoe_proto::reserve;
    let mut body = vec![0u8; reserve::frame_len(0, macs.len())];
    reserve::ReserveHeader {
        rcmd,
        nmacs: u8::try_from(macs.len()).expect("at most 255 MACs"),
    }
    .encode(&mut body, 0)
    .expect("reserve header fits");
    for (index, &mac) in macs.iter().enumerate() {
        reserve::write_mac(&mut body, 0, index, mac).expect("MAC fits");
    }
    raw_frame(header, &body)
}

/// An initiator socket on `ifname` in the lab's client namespace that has not discovered
/// anything (for raw frames, or for a client the target is expected to ignore).
pub fn open_client(lab: &Lab, ifname: &str, timeout_ms: u64, retries: u32) -> Initiator {
    let _in_client = lab.enter_client_thread().expect("enter client namespace");
    let config = InitiatorConfig {
        shelf: SHELF,
        slot: SLOT,
        timeout_ms,
        retries,
    };
    Initiator::open(ifname, config).expect("open initiator")
}

/// The number after `label` in the daemon's summary (`"dropped by ACL"`, `"flushes"`,
/// `"disk i/o"`, ...): the first occurrence of `label` followed by a space and digits that
/// starts a word.
pub fn summary_count(stdout: &str, label: &str) -> Option<u64> {
    let mut from = 0;
    while let Some(pos) = stdout[from..].find(label) {
        let start = from + pos;
        from = start + label.len();
        let word_start = start == 0
            || !stdout[..start]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric());
        let rest = &stdout[from..];
        let digits: String = rest
            .strip_prefix(' ')
            .unwrap_or("")
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if word_start && !digits.is_empty() {
            return digits.parse().ok();
        }
    }
    None
}

/// True when `name` is a program on PATH.
pub fn have_program(name: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v '{name}'")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Polls `f` every 20 ms until it returns true or `limit` passes; returns whether it did.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `count` pipelined requests with at most `depth` in flight: `submit(client, i)`
/// sends request `i`, `check` sees every completion (which must succeed). Returns how many
/// completed.
pub fn pipelined(
    client: &mut Initiator,
    depth: usize,
    count: u64,
    mut submit: impl FnMut(&mut Initiator, u64),
    mut check: impl FnMut(&aoe_initiator::Completion<'_>),
) -> u64 {
    client.set_queue_depth(depth).expect("queue depth");
    let mut completed = 0;
    let mut on_completion = |c: aoe_initiator::Completion<'_>| {
        assert!(c.result.is_ok(), "lba {}: {:?}", c.lba, c.result);
        check(&c);
        completed += 1;
    };
    for i in 0..count {
        submit(client, i);
        while client.in_flight() >= depth {
            client.poll(100, &mut on_completion).expect("poll");
        }
    }
    while client.in_flight() > 0 {
        client.poll(100, &mut on_completion).expect("poll");
    }
    completed
}

/// The `round`-th random write of a test: 1 to 16 sectors of random data at a random LBA
/// of a `capacity_sectors` device; round 0 writes the last sector alone, round 1 ends at
/// the last sector.
pub fn random_extent(
    rng: &mut impl rand::Rng,
    round: u64,
    capacity_sectors: u64,
) -> (u64, Vec<u8>) {
    let sectors = if round == 0 {
        1
    } else {
        rng.gen_range(1..=16usize)
    };
    let lba = match round {
        0 => capacity_sectors - 1,
        1 => capacity_sectors - sectors as u64,
        _ => rng.gen_range(0..=capacity_sectors - sectors as u64),
    };
    let mut data = vec![0u8; sectors * 512];
    rng.fill(&mut data[..]);
    (lba, data)
}
