//! The real-initiator tests: run `scripts/vm-test.sh`, in which the Linux kernel's AoE driver,
//! in a qemu (TCG) guest, formats, fills, fsck's and verifies an ext4 filesystem on an xblade
//! export over a tap device in a throwaway network namespace; and `scripts/vm-test.sh
//! --multipath`, the same over two taps and two guest NICs (AoE multipath: xblade serves the
//! export on both from a config file), one of which the host takes down in the middle of the
//! writes. The two run one after the other (one TCG guest at a time).
//!
//! Needs root (namespaces, XDP, AF_XDP). Skipped, with the reason printed, when not root or when
//! `XBLADE_SKIP_VM=1`. Builds nothing: the daemon is `XBLADE_BIN` (default
//! `target/release/xblade`; a relative path is taken from the workspace root). The guest's
//! kernel and initramfs are cached by the script (`XBLADE_VM_CACHE`, default target/vm-cache).

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{mpsc, Mutex},
    thread,
    time::Instant,
};

/// The guest's verdict line on its serial console, which the script echoes.
const GUEST_PASS: &str = "XBLADE-VM-RESULT: PASS";
/// The script's own last line when every check passed.
const SCRIPT_PASS: &str = "vm-test: PASS";

/// One guest at a time: TCG is slow, and two guests sharing the CPUs would stretch the
/// multipath run's failover timing for nothing.
static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("target-daemon lives inside the workspace")
        .to_path_buf()
}

fn skip_reason() -> Option<String> {
    if std::env::var("XBLADE_SKIP_VM").is_ok_and(|v| v == "1") {
        return Some("XBLADE_SKIP_VM=1".to_owned());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Some(format!(
            "needs root (network namespace, tap, XDP, AF_XDP); running as uid {euid}"
        ));
    }
    None
}

/// Forwards each line of `pipe` to `sink` (tagged with which stream it came from).
fn forward(pipe: impl Read + Send + 'static, stderr: bool, sink: mpsc::Sender<(bool, String)>) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if sink.send((stderr, line)).is_err() {
                break;
            }
        }
    });
}

/// Runs `scripts/vm-test.sh ARGS` and checks its verdict; returns its output (stdout and
/// stderr, line by line), or `None` when the test is skipped. `what` names the run in messages.
fn run_vm_test(what: &str, args: &[&str]) -> Option<String> {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped {what} (real Linux AoE initiator in a VM): {reason}");
        return None;
    }
    let _one_vm = ONE_VM_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let root = workspace_root();
    let bin = std::env::var_os("XBLADE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/xblade"));
    let bin = if bin.is_absolute() {
        bin
    } else {
        root.join(bin)
    };
    assert!(
        bin.is_file(),
        "xblade binary {} is missing: build it first (cargo build --release -p xblade) or point \
         XBLADE_BIN at it; this test builds nothing",
        bin.display()
    );
    let script = root.join("scripts/vm-test.sh");
    assert!(script.is_file(), "{} is missing", script.display());

    let started = Instant::now();
    let mut child = Command::new("bash")
        .arg(&script)
        .args(args)
        .current_dir(&root)
        .env("XBLADE_BIN", &bin)
        // The arguments alone say which variant runs.
        .env_remove("XBLADE_VM_MULTIPATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let (tx, rx) = mpsc::channel();
    forward(
        child.stdout.take().expect("piped stdout"),
        false,
        tx.clone(),
    );
    forward(child.stderr.take().expect("piped stderr"), true, tx);
    let mut output = String::new();
    for (is_stderr, line) in rx {
        if is_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
        output.push_str(&line);
        output.push('\n');
    }
    let status = child.wait().expect("wait for vm-test.sh");
    let took = started.elapsed().as_secs_f64();

    let command = format!("scripts/vm-test.sh {}", args.join(" "));
    let command = command.trim_end();
    assert!(
        status.success(),
        "{command} failed ({status}) after {took:.0} s; its output is above"
    );
    assert!(
        output
            .lines()
            .any(|l| l.trim_start_matches("  guest| ").trim() == GUEST_PASS),
        "{command} exited 0 but its output has no '{GUEST_PASS}' line from the guest"
    );
    assert!(
        output.lines().any(|l| l.starts_with(SCRIPT_PASS)),
        "{command} exited 0 but did not print '{SCRIPT_PASS}'"
    );
    eprintln!("{what}: PASS in {took:.0} s");
    Some(output)
}

#[test]
fn linux_kernel_aoe_initiator_runs_ext4_on_xblade() {
    run_vm_test("linux_initiator", &[]);
}

/// AoE multipath: the guest's aoe.ko must see e1.0 through both NICs (sysfs netif lists both),
/// both paths carry writes, and when the host takes one tap down mid-write the driver moves
/// its frames to the other path; the filesystem and every checksum must still be right.
#[test]
fn linux_kernel_aoe_initiator_multipath_survives_a_link_going_down() {
    let Some(output) = run_vm_test("linux_initiator multipath", &["--multipath"]) else {
        return;
    };
    assert!(
        output
            .lines()
            .any(|l| l.starts_with("vm-test: PASS (Linux aoe initiator, multipath")),
        "vm-test.sh --multipath passed, but not as the multipath variant"
    );
}
