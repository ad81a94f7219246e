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

/// The xblade binary under test: `XBLADE_BIN` when set (scripts/test.sh sets it to the
/// release build, the one users run, with `panic = "abort"`), else the one cargo built for
/// these tests.
pub fn xblade_bin() -> PathBuf {
    match std::env::var_os("XBLADE_BIN") {
        Some(bin) if !bin.is_empty() => {
            let bin = PathBuf::from(bin);
            assert!(bin.is_file(), "XBLADE_BIN={}: no such file", bin.display());
            bin
        }
        _ => PathBuf::from(env!("CARGO_BIN_EXE_xblade")),
    }
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
        let mut command = lab.command_in_target(xblade_bin());
        command
            .args(args)
            .arg(SHELF.to_string())
            .arg(SLOT.to_string())
            .arg(lab.target_if())
            .arg(image);
        Self::spawn_until(command, dir, Duration::from_secs(20), |log| {
            log.contains("exporting")
        })
    }

    /// Starts `xblade --config CONFIG EXTRA_ARGS` in the target namespace and waits until it
    /// logs `ready` (every export opened, every interface attached), or fails.
    pub fn start_config(lab: &Lab, dir: &TempDir, config: &Path, extra_args: &[&str]) -> Daemon {
        Self::try_start_config(lab, dir, config, extra_args, Duration::from_secs(30))
            .unwrap_or_else(|exit| panic!("xblade --config did not start: {exit:?}"))
    }

    /// As [`Daemon::start_config`], waiting at most `limit` for `ready`; returns how it
    /// exited (killed at the deadline) if it did not come up.
    pub fn try_start_config(
        lab: &Lab,
        dir: &TempDir,
        config: &Path,
        extra_args: &[&str],
        limit: Duration,
    ) -> Result<Daemon, Exit> {
        let mut command = lab.command_in_target(xblade_bin());
        command.arg("--config").arg(config).args(extra_args);
        Self::spawn_until(command, dir, limit, logged_ready)
    }

    /// Spawns `command` with its stdout and stderr in fresh files of `dir`, and polls its
    /// stderr until `up` accepts it (`Ok`), the process exits, or `limit` passes (both `Err`,
    /// after the process is reaped).
    pub fn spawn_until(
        mut command: std::process::Command,
        dir: &TempDir,
        limit: Duration,
        up: impl Fn(&str) -> bool,
    ) -> Result<Daemon, Exit> {
        let n = fs::read_dir(&dir.0).map_or(0, |d| d.count());
        let stdout = dir.0.join(format!("xblade-{n}.out"));
        let stderr = dir.0.join(format!("xblade-{n}.err"));
        let child = command
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
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if up(&read(&daemon.stderr)) {
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

    /// What the daemon has logged so far.
    pub fn log(&self) -> String {
        read(&self.stderr)
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

// ---- Multi-export mode: config files, xbladectl, raw wildcard queries (exports.rs, scale.rs) ----

/// True when a log line says `ready` (as a word): `xblade --config` has opened every export
/// and attached every interface.
pub fn logged_ready(log: &str) -> bool {
    log.lines()
        .any(|line| line.split_whitespace().any(|word| word == "ready"))
}

/// The xbladectl binary under test: `XBLADECTL_BIN` when set, else the `xbladectl` next
/// to `XBLADE_BIN` when that is set (the same build), else the one cargo built next to
/// xblade.
pub fn xbladectl_bin() -> PathBuf {
    let bin = match (
        std::env::var_os("XBLADECTL_BIN").filter(|b| !b.is_empty()),
        std::env::var_os("XBLADE_BIN").filter(|b| !b.is_empty()),
    ) {
        (Some(bin), _) => PathBuf::from(bin),
        (None, Some(xblade)) => PathBuf::from(xblade).with_file_name("xbladectl"),
        (None, None) => return PathBuf::from(env!("CARGO_BIN_EXE_xbladectl")),
    };
    assert!(
        bin.is_file(),
        "{}: no such file (set XBLADECTL_BIN, or build xbladectl next to XBLADE_BIN)",
        bin.display()
    );
    bin
}

/// Runs `xbladectl --socket SOCKET ARGS` in the lab's target namespace; returns its exit
/// status, stdout and stderr.
pub fn xbladectl(lab: &Lab, socket: &Path, args: &[&str]) -> (ExitStatus, String, String) {
    let out = lab
        .command_in_target(xbladectl_bin())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run xbladectl");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `xbladectl --json COMMAND`: its exit status and the reply parsed as JSON (panics, showing
/// what was printed, when stdout is not one JSON object).
pub fn xbladectl_json(lab: &Lab, socket: &Path, command: &str) -> (ExitStatus, serde_json::Value) {
    let (status, stdout, stderr) = xbladectl(lab, socket, &["--json", command]);
    let reply = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("xbladectl --json {command}: {e} ({status}); stdout {stdout:?}, stderr {stderr:?}")
    });
    (status, reply)
}

/// The members of a JSON array of strings (empty when `value` is not one).
pub fn json_strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A TOML basic string: `text` quoted, with `\` and `"` escaped.
pub fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One `[[export]]` of a config file.
#[derive(Clone, Debug)]
pub struct ExportSpec {
    pub shelf: u16,
    pub slot: u8,
    /// An image path or `null:SIZE`.
    pub file: String,
    pub interfaces: Vec<String>,
    pub read_only: bool,
    /// `None`: no `mask` key.
    pub mask: Option<Vec<String>>,
}

impl ExportSpec {
    pub fn new(shelf: u16, slot: u8, file: impl AsRef<Path>, interfaces: &[&str]) -> ExportSpec {
        ExportSpec {
            shelf,
            slot,
            file: file.as_ref().to_string_lossy().into_owned(),
            interfaces: interfaces.iter().map(|&i| i.to_owned()).collect(),
            read_only: false,
            mask: None,
        }
    }

    pub fn read_only(mut self, read_only: bool) -> ExportSpec {
        self.read_only = read_only;
        self
    }

    pub fn mask(mut self, macs: &[&str]) -> ExportSpec {
        self.mask = Some(macs.iter().map(|&m| m.to_owned()).collect());
        self
    }

    /// The AoE name, `e<shelf>.<slot>`.
    pub fn name(&self) -> String {
        format!("e{}.{}", self.shelf, self.slot)
    }

    /// The `[[export]]` table as TOML.
    pub fn toml(&self) -> String {
        let list = |items: &[String]| {
            items
                .iter()
                .map(|i| toml_string(i))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = format!(
            "[[export]]\nshelf = {}\nslot = {}\nfile = {}\ninterfaces = [{}]\nread_only = {}\n",
            self.shelf,
            self.slot,
            toml_string(&self.file),
            list(&self.interfaces),
            self.read_only
        );
        if let Some(mask) = &self.mask {
            out.push_str(&format!("mask = [{}]\n", list(mask)));
        }
        out
    }
}

/// A whole config file for `xblade --config`: `[defaults]` pointing the control socket and the
/// state directory into the test's temp dir, then the exports.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub control: PathBuf,
    pub state_dir: PathBuf,
    /// UMEM frames per queue.
    pub frames: u32,
    pub exports: Vec<ExportSpec>,
}

impl ConfigFile {
    /// `DIR/xblade.toml` with the socket `DIR/control.sock`, state in `DIR/state`, 1024 frames
    /// per queue and no exports yet.
    pub fn new(dir: &TempDir) -> ConfigFile {
        let state_dir = dir.0.join("state");
        fs::create_dir_all(&state_dir).expect("create state dir");
        ConfigFile {
            path: dir.0.join("xblade.toml"),
            control: dir.0.join("control.sock"),
            state_dir,
            frames: 1024,
            exports: Vec::new(),
        }
    }

    pub fn toml(&self) -> String {
        let mut out = format!(
            "[defaults]\ncontrol = {}\nstate_dir = {}\nframes = {}\n",
            toml_string(&self.control.to_string_lossy()),
            toml_string(&self.state_dir.to_string_lossy()),
            self.frames
        );
        for export in &self.exports {
            out.push('\n');
            out.push_str(&export.toml());
        }
        out
    }

    /// Writes the file (atomically: a temporary file renamed over it, so a reload never sees
    /// half a file).
    pub fn write(&self) {
        write_atomically(&self.path, &self.toml());
    }
}

/// Replaces `path` with `text` by writing a temporary file beside it and renaming it over.
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).expect("write config");
    fs::rename(&tmp, path).expect("rename config");
}

/// The 1-based line numbers of the lines of `text` for which `pick` is true.
pub fn lines_where(text: &str, pick: impl Fn(usize, &str) -> bool) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|&(i, line)| pick(i + 1, line))
        .map(|(i, _)| i + 1)
        .collect()
}

/// An initiator on `ifname` in the lab's client namespace for `shelf.slot`, after discovery;
/// the error when discovery fails.
pub fn try_initiator_for(
    lab: &Lab,
    ifname: &str,
    shelf: u16,
    slot: u8,
    timeout_ms: u64,
    retries: u32,
) -> Result<Initiator, aoe_initiator::InitiatorError> {
    let _in_client = lab.enter_client_thread().expect("enter client namespace");
    let config = InitiatorConfig {
        shelf,
        slot,
        timeout_ms,
        retries,
    };
    let mut initiator = Initiator::open(ifname, config)?;
    initiator.discover()?;
    Ok(initiator)
}

/// As [`try_initiator_for`], panicking when the target is not found.
pub fn initiator_for(
    lab: &Lab,
    ifname: &str,
    shelf: u16,
    slot: u8,
    timeout_ms: u64,
    retries: u32,
) -> Initiator {
    try_initiator_for(lab, ifname, shelf, slot, timeout_ms, retries)
        .unwrap_or_else(|e| panic!("e{shelf}.{slot} on {ifname}: {e}"))
}

/// The value (in kB) of the `/proc/PID/status` line `KEY:  1234 kB`, e.g. `VmRSS`.
pub fn proc_status_kib(pid: i32, key: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// An AF_PACKET socket for AoE frames (ethertype 0x88A2) on one interface of a namespace,
/// with a large receive buffer, for counting many replies (e.g. to a wildcard query)
/// without the kernel dropping any for lack of room. Frames the socket sends itself are not
/// received.
pub struct RawSocket {
    fd: std::os::fd::OwnedFd,
    pub mac: aoe_proto::Mac,
}

impl RawSocket {
    /// Opens the socket on `ifname` in the lab's client namespace, with a receive buffer of
    /// `rcvbuf` bytes (forced past the sysctl limit: we are root).
    pub fn open_in_client(lab: &Lab, ifname: &str, rcvbuf: usize) -> RawSocket {
        use std::os::fd::{AsRawFd, FromRawFd};
        let _in_client = lab.enter_client_thread().expect("enter client namespace");
        let protocol = aoe_proto::ETHERTYPE_AOE.to_be();
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                i32::from(protocol),
            )
        };
        assert!(
            raw >= 0,
            "socket(AF_PACKET): {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let name = std::ffi::CString::new(ifname).expect("interface name");
        // SAFETY: `name` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert_ne!(ifindex, 0, "no interface {ifname} in the client namespace");
        let set = |level: i32, option: i32, value: i32| {
            // SAFETY: `value` outlives the call and its size is passed.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    level,
                    option,
                    (&value as *const i32).cast(),
                    std::mem::size_of::<i32>() as libc::socklen_t,
                )
            };
            assert_eq!(
                rc,
                0,
                "setsockopt({option}): {}",
                std::io::Error::last_os_error()
            );
        };
        set(
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            i32::try_from(rcvbuf).expect("rcvbuf fits i32"),
        );
        set(libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1);
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = protocol;
        addr.sll_ifindex = i32::try_from(ifindex).expect("ifindex fits i32");
        // SAFETY: `addr` is a valid sockaddr_ll and its size is passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        assert_eq!(
            rc,
            0,
            "bind(AF_PACKET, {ifname}): {}",
            std::io::Error::last_os_error()
        );
        let mac = read_mac_of(lab, ifname);
        RawSocket { fd, mac }
    }

    /// Sends one whole Ethernet frame.
    pub fn send(&self, frame: &[u8]) {
        use std::os::fd::AsRawFd;
        // SAFETY: `frame` is valid for `frame.len()` bytes during the call.
        let sent =
            unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            sent,
            frame.len() as isize,
            "send: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Receives the next frame into `buf`, waiting until `deadline`; `None` once it passed.
    pub fn recv_until(&self, buf: &mut [u8], deadline: Instant) -> Option<usize> {
        use std::os::fd::AsRawFd;
        loop {
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes during the call.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_TRUNC,
                )
            };
            if n >= 0 {
                return Some((n as usize).min(buf.len()));
            }
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => {}
                _ => panic!("recv(AF_PACKET): {err}"),
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, ms) };
        }
    }

    /// Broadcasts a Query Config (CCmd read) to `major.minor` (wildcards allowed) with `tag`
    /// and collects every reply with that tag until `limit` passes, or until `done` accepts
    /// the list so far and then `linger` more has passed (to catch surplus replies).
    /// Returns the replies' headers and when the last one came (from sending).
    pub fn wildcard_query(
        &self,
        major: u16,
        minor: u8,
        tag: u32,
        limit: Duration,
        linger: Duration,
        done: impl Fn(&[aoe_proto::Header]) -> bool,
    ) -> (Vec<aoe_proto::Header>, Duration) {
        let mut header = request_header(aoe_proto::Mac::BROADCAST, self.mac, 1, tag);
        (header.major, header.minor) = (major, minor);
        let mut frame = config_frame(&header, 0, b"");
        frame.resize(frame.len().max(aoe_proto::MIN_FRAME_LEN), 0);
        let mut replies = Vec::new();
        let mut last = Duration::ZERO;
        let mut buf = vec![0u8; 9216];
        let sent = Instant::now();
        self.send(&frame);
        let mut deadline = sent + limit;
        let mut lingering = false;
        loop {
            if !lingering && done(&replies) {
                lingering = true;
                deadline = Instant::now() + linger;
            }
            let Some(len) = self.recv_until(&mut buf, deadline) else {
                break;
            };
            let Ok(h) = aoe_proto::Header::parse(&buf[..len]) else {
                continue;
            };
            if h.is_response() && h.command == 1 && h.tag == tag {
                last = sent.elapsed();
                replies.push(h);
            }
        }
        (replies, last)
    }
}

/// The MAC of `ifname` in the lab's client namespace.
fn read_mac_of(lab: &Lab, ifname: &str) -> aoe_proto::Mac {
    lab.links()
        .into_iter()
        .find(|l| l.client_if == ifname)
        .map(|l| aoe_proto::Mac(l.client_mac))
        .unwrap_or_else(|| panic!("{ifname} is not a client end of the lab"))
}

// ---- Running the daemon under a wrapper, and what /proc says about it (faults.rs) ----

impl Daemon {
    /// As [`Daemon::start`], but runs `WRAPPER... xblade ARGS SHELF SLOT IFACE IMAGE` (for
    /// example `strace -f -o FILE`); `pid()` is then the wrapper's.
    pub fn start_wrapped(
        lab: &Lab,
        dir: &TempDir,
        wrapper: &[&str],
        image: &Path,
        args: &[&str],
    ) -> Daemon {
        let (program, rest) = wrapper.split_first().expect("a wrapper program");
        let mut command = lab.command_in_target(program);
        command
            .args(rest)
            .arg(xblade_bin())
            .args(args)
            .arg(SHELF.to_string())
            .arg(SLOT.to_string())
            .arg(lab.target_if())
            .arg(image);
        Self::spawn_until(command, dir, Duration::from_secs(20), |log| {
            log.contains("exporting")
        })
        .unwrap_or_else(|exit| panic!("wrapped xblade did not start: {exit:?}"))
    }

    /// Waits up to `timeout` for the process to exit on its own (after a signal sent some
    /// other way).
    pub fn wait_exit(mut self, timeout: Duration) -> Exit {
        self.wait(timeout)
    }
}

/// The children of process `pid` (of its main thread).
pub fn child_pids(pid: i32) -> Vec<i32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The open flags (the octal `flags:` of `/proc/PID/fdinfo/FD`) of every descriptor of
/// process `pid` open on `path`.
pub fn open_flags_of(pid: i32, path: &Path) -> Vec<i32> {
    let want = fs::canonicalize(path).expect("canonical image path");
    let mut flags = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd")).expect("read /proc/PID/fd") {
        let entry = entry.expect("fd entry");
        if fs::read_link(entry.path()).ok().as_deref() != Some(want.as_path()) {
            continue;
        }
        let info = fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            entry.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        if let Some(octal) = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(str::trim)
        {
            flags.push(i32::from_str_radix(octal, 8).expect("octal flags"));
        }
    }
    flags
}

// ---- The Prometheus endpoint (stats.rs, privilege.rs) ----

/// The address of the daemon's `/metrics` endpoint, from `xbladectl --json status`
/// (`metrics_listen`: the bound address, the port chosen when it was 0).
pub fn metrics_addr(lab: &Lab, socket: &Path) -> std::net::SocketAddr {
    let (status, reply) = xbladectl_json(lab, socket, "status");
    assert!(status.success(), "xbladectl status: {reply}");
    reply["metrics_listen"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no metrics_listen address in {reply}"))
}

/// `GET /metrics` from inside the lab's target namespace: the body of the `200 OK`.
pub fn scrape_metrics(lab: &Lab, addr: std::net::SocketAddr) -> String {
    use std::io::Write;
    let limit = Duration::from_secs(10);
    let mut stream = {
        let _in_target = lab.enter_target_thread().expect("enter target namespace");
        std::net::TcpStream::connect_timeout(&addr, limit).expect("connect to /metrics")
    };
    stream.set_read_timeout(Some(limit)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: xblade\r\n\r\n")
        .expect("send the request");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read the response");
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {raw:?}"));
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    body.to_owned()
}

/// The value of the sample `name{labels}` in a text exposition, whatever the order of its
/// labels (`labels` must be all of them); `None` when there is no such sample.
pub fn metric(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    want.sort();
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (found, mut labels) = match series.split_once('{') {
                Some((found, rest)) => (found, parse_labels(rest.strip_suffix('}')?)?),
                None => (series, Vec::new()),
            };
            labels.sort();
            if found != name || labels != want {
                return None;
            }
            value.parse().ok()
        })
}

/// `k="v",k2="v2"` (values with `\\`, `\"` and `\n` escapes) as pairs; `None` if malformed.
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        pairs.push((key.to_owned(), value));
        rest = after[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&after[end + 1..]);
    }
    Some(pairs)
}

/// A mounted file system at a directory, unmounted on drop (lazily if still busy).
pub struct Mount(pub PathBuf);

impl Mount {
    pub fn new(args: &[&str], source: &Path, at: &Path) -> Mount {
        fs::create_dir_all(at).expect("mount point");
        let out = std::process::Command::new("mount")
            .args(args)
            .arg(source)
            .arg(at)
            .output()
            .expect("run mount");
        assert!(out.status.success(), "mount {args:?} {source:?}: {out:?}");
        Mount(at.to_owned())
    }

    /// Unmounts now (and not again on drop).
    pub fn unmount(mut self) {
        self.umount();
        self.0 = PathBuf::new();
    }

    fn umount(&self) {
        if self.0.as_os_str().is_empty() {
            return;
        }
        let ok = std::process::Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.umount();
    }
}
