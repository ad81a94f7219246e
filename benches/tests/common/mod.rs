//! Shared fixtures of the bench's integration tests: a lab with vblade, the crate's AoE
//! responder ([`xblade_bench::responder`]: answers at once, from RAM or with zeros,
//! optionally corrupting or dropping frames) on a thread in the target namespace, and
//! running the bench binary in the client namespace.
#![allow(dead_code)] // each test file uses a part

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use xblade_bench::responder::Server;
pub use xblade_bench::responder::{ResponderConfig, ResponderStats};
use xblade_lab::Lab;

pub const BENCH: &str = env!("CARGO_BIN_EXE_xblade-bench");

/// Runs one of the crate's binaries without a namespace, stdin closed, and returns its
/// (status, stdout + stderr).
pub fn run_binary(path: &str, args: &[&str]) -> (std::process::ExitStatus, String) {
    let out = std::process::Command::new(path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {path}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

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

/// [`xblade_bench::responder`] on the lab's target end, on its own thread (in the target
/// namespace).
pub struct Responder {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<io::Result<ResponderStats>>>,
}

impl Responder {
    pub fn start(lab: &Lab, cfg: ResponderConfig) -> Responder {
        let stop = Arc::new(AtomicBool::new(false));
        let ns = lab.target_ns().to_owned();
        let ifname = lab.target_if().to_owned();
        let flag = Arc::clone(&stop);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            let _guard = xblade_lab::enter_ns(&ns).map_err(io::Error::other)?;
            let mut server = Server::open(&ifname, cfg)?;
            let _ = ready_tx.send(());
            server.run(&flag)
        });
        // The sender is dropped without a message when the thread fails to start.
        if let Err(e) = ready_rx.recv_timeout(Duration::from_secs(10)) {
            stop.store(true, Ordering::Relaxed);
            let why = handle.join().map(|r| r.err());
            panic!("responder did not start ({e}): {why:?}");
        }
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
            .map(|h| {
                h.join()
                    .expect("responder thread panicked")
                    .expect("responder failed")
            })
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
