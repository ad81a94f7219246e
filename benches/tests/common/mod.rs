//! Shared fixtures of the bench's integration tests: a lab with vblade, an in-process AoE
//! responder that answers at once (from RAM or with zeros, optionally corrupting or
//! dropping frames), and running the bench binary in the client namespace.
#![allow(dead_code)] // each test file uses a part

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use aoe_proto::ata::{self, opcode, AtaHeader, IdentifyStrings};
use aoe_proto::config::ConfigHeader;
use aoe_proto::{pad_reply, Command as AoeCommand, Header, Mac, SECTOR_SIZE};
use xblade_bench::packet::{self, RxConfig, RxRing, RxVersion, Tx, TxMethod};
use xblade_lab::Lab;

pub const BENCH: &str = env!("CARGO_BIN_EXE_xblade-bench");

/// A file removed on drop.
pub struct TempFile(pub PathBuf);

impl TempFile {
    /// A sparse file of `bytes` in /dev/shm (tmpfs), or the temp dir when there is none.
    pub fn sparse(tag: &str, bytes: u64) -> TempFile {
        let dir = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let path = dir.join(format!("xblade-bench-{}-{tag}.img", std::process::id()));
        File::create(&path)
            .and_then(|f| f.set_len(bytes))
            .expect("create sparse image");
        TempFile(path)
    }

    pub fn path_in_tmp(tag: &str) -> TempFile {
        TempFile(std::env::temp_dir().join(format!("xblade-bench-{}-{tag}", std::process::id())))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// vblade serving `image` on the lab's target end; killed by its pid and reaped on drop.
pub struct Vblade {
    child: Child,
    log: TempFile,
}

impl Vblade {
    pub fn available() -> bool {
        let ok = Command::new("vblade").arg("-h").output().is_ok();
        if !ok {
            eprintln!("skipped: vblade is not installed (apt-get install vblade)");
        }
        ok
    }

    pub fn start(lab: &Lab, shelf: u16, slot: u8, image: &Path, tag: &str) -> Vblade {
        let log = TempFile::path_in_tmp(&format!("{tag}-vblade.log"));
        let out = File::create(&log.0).expect("create vblade log");
        let err = out.try_clone().expect("dup log");
        let child = lab
            .command_in_target("vblade")
            .arg(shelf.to_string())
            .arg(slot.to_string())
            .arg(lab.target_if())
            .arg(image)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn vblade");
        let mut v = Vblade { child, log };
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(Some(status)) = v.child.try_wait() {
            panic!("vblade exited at once ({status}): {}", v.log_text());
        }
        v
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        let _ = File::open(&self.log.0).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Vblade {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("vblade log:\n{}", self.log_text());
        }
    }
}

/// Runs the bench in the lab's client namespace against `shelf.slot` with `args`, with a
/// JSON report; returns the process output and the parsed report (when written).
pub fn run_bench(
    lab: &Lab,
    shelf: u16,
    slot: u8,
    args: &[&str],
) -> (Output, Option<serde_json::Value>) {
    let json = TempFile::path_in_tmp(&format!("report-{}", unique()));
    let out = lab
        .command_in_client(BENCH)
        .args(["--iface", lab.client_if()])
        .args(["--shelf", &shelf.to_string(), "--slot", &slot.to_string()])
        .arg("--json")
        .arg(&json.0)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run xblade-bench");
    let report = fs::read_to_string(&json.0)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    (out, report)
}

fn unique() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

pub fn describe(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// How the in-process responder behaves.
#[derive(Clone, Copy, Debug)]
pub struct ResponderConfig {
    pub shelf: u16,
    pub slot: u8,
    pub capacity_sectors: u64,
    /// Keep written data and return it (else reads return zeros and writes are discarded).
    pub ram: bool,
    /// Flip one data byte in every Nth read reply (0: never).
    pub corrupt_read_every: u64,
    /// Ignore every Nth ATA request (0: never).
    pub drop_every: u64,
    pub buffer_count: u16,
}

impl ResponderConfig {
    pub fn new(shelf: u16, slot: u8, capacity_sectors: u64) -> ResponderConfig {
        ResponderConfig {
            shelf,
            slot,
            capacity_sectors,
            ram: false,
            corrupt_read_every: 0,
            drop_every: 0,
            buffer_count: 256,
        }
    }
}

/// What the responder saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResponderStats {
    pub reads: u64,
    pub writes: u64,
    pub dropped: u64,
    pub corrupted: u64,
}

/// A minimal AoE target on the lab's target end, on its own thread (in the target
/// namespace): TPACKET_V2 ring in, TX ring out, replies built at once.
pub struct Responder {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<ResponderStats>>,
}

impl Responder {
    pub fn start(lab: &Lab, cfg: ResponderConfig) -> Responder {
        let stop = Arc::new(AtomicBool::new(false));
        let ns = lab.target_ns().to_owned();
        let ifname = lab.target_if().to_owned();
        let flag = Arc::clone(&stop);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            let _guard = xblade_lab::enter_ns(&ns).expect("enter target namespace");
            serve(&ifname, cfg, &flag, ready_tx)
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("responder did not start");
        Responder {
            stop,
            handle: Some(handle),
        }
    }

    pub fn stop(mut self) -> ResponderStats {
        self.finish()
    }

    fn finish(&mut self) -> ResponderStats {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .map(|h| h.join().expect("responder thread panicked"))
            .unwrap_or_default()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if self.handle.is_some() {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(h) = self.handle.take() {
                let _ = h.join();
            }
        }
    }
}

const BATCH: usize = 256;

fn serve(
    ifname: &str,
    cfg: ResponderConfig,
    stop: &AtomicBool,
    ready: std::sync::mpsc::Sender<()>,
) -> ResponderStats {
    let link = packet::link_info(ifname).expect("link info");
    let mut rx = RxRing::open(
        &link,
        RxConfig::for_mtu(RxVersion::V2, link.mtu, 4096, 256, 0),
    )
    .expect("responder rx ring");
    let frame_cap = link.mtu as usize + 18;
    let mut tx = Tx::open(&link, TxMethod::Ring, frame_cap, BATCH).expect("responder tx");
    let mut bufs = vec![vec![0u8; frame_cap]; BATCH];
    let mut lens = [0usize; BATCH];
    let mut ram = if cfg.ram {
        vec![0u8; usize::try_from(cfg.capacity_sectors).expect("size") * SECTOR_SIZE]
    } else {
        Vec::new()
    };
    let spf = u8::try_from((link.mtu as usize - 36) / SECTOR_SIZE).unwrap_or(u8::MAX);
    let identify = ata::identify_data(
        cfg.capacity_sectors,
        IdentifyStrings {
            serial: "BENCH-RESPONDER",
            firmware: "1",
            model: "xblade-bench test responder",
        },
    );
    let mut stats = ResponderStats::default();
    let mut seen = 0u64;
    let _ = ready.send(());
    while !stop.load(Ordering::Relaxed) {
        let mut n = 0;
        rx.drain(BATCH, |frame| {
            let Some(out) = bufs.get_mut(n) else { return };
            let mut ctx = Ctx {
                cfg: &cfg,
                own: link.mac,
                spf,
                identify: &identify,
                ram: &mut ram,
                stats: &mut stats,
                seen: &mut seen,
            };
            if let Some(len) = answer(frame, out, &mut ctx) {
                lens[n] = len;
                n += 1;
            }
        });
        if n > 0 {
            let frames = bufs.iter().zip(lens.iter()).take(n).map(|(b, &l)| &b[..l]);
            tx.send(frames).expect("responder send");
        } else {
            let _ = rx.wait(Duration::from_millis(20));
        }
    }
    stats
}

struct Ctx<'a> {
    cfg: &'a ResponderConfig,
    own: Mac,
    spf: u8,
    identify: &'a [u8; SECTOR_SIZE],
    ram: &'a mut Vec<u8>,
    stats: &'a mut ResponderStats,
    seen: &'a mut u64,
}

/// Builds the reply to `frame` in `out`; `None` when there is none to send.
fn answer(frame: &[u8], out: &mut [u8], ctx: &mut Ctx<'_>) -> Option<usize> {
    let cfg = ctx.cfg;
    let h = Header::parse(frame).ok()?;
    if h.is_response() || !h.addresses(cfg.shelf, cfg.slot) {
        return None;
    }
    let body = h.reply(ctx.own, cfg.shelf, cfg.slot).encode(out).ok()?;
    if h.command == AoeCommand::QueryConfig as u8 {
        ConfigHeader {
            buffer_count: cfg.buffer_count,
            firmware_version: 1,
            sector_count: ctx.spf,
            aoe_version: 1,
            ccmd: 0,
            string_len: 0,
        }
        .encode(out, body)
        .ok()?;
        return pad_reply(out, body + 8);
    }
    if h.command != AoeCommand::Ata as u8 {
        return None;
    }
    let req = AtaHeader::parse(frame, h.body_offset()).ok()?;
    *ctx.seen += 1;
    if cfg.drop_every > 0 && (*ctx.seen).is_multiple_of(cfg.drop_every) {
        ctx.stats.dropped += 1;
        return None;
    }
    req.encode(out, body).ok()?;
    let data_in = ata::data_offset(h.body_offset());
    let data_out = ata::data_offset(body);
    let n = usize::from(req.sector_count);
    let lba = req.lba();
    let in_range = lba
        .checked_add(n as u64)
        .is_some_and(|end| end <= cfg.capacity_sectors);
    let byte = usize::try_from(lba)
        .unwrap_or(usize::MAX)
        .saturating_mul(SECTOR_SIZE);
    let (status, error, len) = match req.cmd_status {
        opcode::IDENTIFY_DEVICE => {
            out.get_mut(data_out..data_out + SECTOR_SIZE)?
                .copy_from_slice(ctx.identify);
            (0x40, 0, data_out + SECTOR_SIZE)
        }
        opcode::READ_SECTORS_EXT | opcode::READ_SECTORS if in_range => {
            ctx.stats.reads += 1;
            let dst = out.get_mut(data_out..data_out + n * SECTOR_SIZE)?;
            match ctx.ram.get(byte..byte + n * SECTOR_SIZE) {
                Some(src) => dst.copy_from_slice(src),
                None => dst.fill(0),
            }
            if cfg.corrupt_read_every > 0
                && (ctx.stats.reads).is_multiple_of(cfg.corrupt_read_every)
                && n > 0
            {
                dst[100] ^= 0x01;
                ctx.stats.corrupted += 1;
            }
            (0x40, 0, data_out + n * SECTOR_SIZE)
        }
        opcode::WRITE_SECTORS_EXT | opcode::WRITE_SECTORS if in_range => {
            ctx.stats.writes += 1;
            let src = frame.get(data_in..data_in + n * SECTOR_SIZE)?;
            if let Some(dst) = ctx.ram.get_mut(byte..byte + n * SECTOR_SIZE) {
                dst.copy_from_slice(src);
            }
            (0x40, 0, data_out)
        }
        opcode::READ_SECTORS_EXT
        | opcode::READ_SECTORS
        | opcode::WRITE_SECTORS_EXT
        | opcode::WRITE_SECTORS => (0x41, ata::error::IDNF, data_out),
        opcode::FLUSH_CACHE | opcode::FLUSH_CACHE_EXT => (0x40, 0, data_out),
        _ => (0x41, ata::error::ABRT, data_out),
    };
    AtaHeader::encode_reply(out, body, status, error, 0).ok()?;
    pad_reply(out, len)
}
