//! systemd: the notify protocol through a real `NOTIFY_SOCKET`, the journal log format, and
//! the unit file (`packaging/xblade.service`) checked by `systemd-analyze verify`.

mod common;

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    initiator_for, try_initiator_for, wait_for, write_atomically, xblade_bin, xbladectl,
    xbladectl_bin, ConfigFile, Daemon, ExportSpec, TempDir,
};
use xblade_lab::{Lab, LabOptions};

/// The notify socket a test plays systemd on.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(dir: &TempDir) -> NotifySocket {
        let path = dir.0.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        NotifySocket { socket, path }
    }

    /// The next datagram, waiting at most `limit`.
    fn next(&self, limit: Duration) -> Option<String> {
        self.socket
            .set_read_timeout(Some(limit))
            .expect("set read timeout");
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Datagrams until one has `KEY=VALUE` `wanted`; all of them, that one last.
    fn until(&self, wanted: &str, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Some(message) = self.next(left) else {
                break;
            };
            let done = message.lines().any(|l| l == wanted);
            seen.push(message);
            if done {
                return seen;
            }
        }
        panic!("no {wanted} within {limit:?}; received {seen:?}");
    }
}

/// The value of `KEY=` in a notify message.
fn field<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    message
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}

#[test]
fn notify_ready_only_when_answering_status_reloading_stopping() {
    require_root!();
    let lab = Lab::new("notify", LabOptions::default()).expect("lab");
    let dir = TempDir::new("notify");
    let notify = NotifySocket::bind(&dir);
    let mut config = ConfigFile::new(&dir);
    config.exports.push(ExportSpec::new(
        1,
        0,
        dir.image("a.img", 8 << 20),
        &[lab.target_if()],
    ));
    config.write();

    let mut command = lab.command_in_target(xblade_bin());
    command
        .arg("--config")
        .arg(&config.path)
        .env("NOTIFY_SOCKET", &notify.path);
    let daemon = Daemon::spawn_until(command, &dir, Duration::from_secs(5), |_| true)
        .unwrap_or_else(|exit| panic!("xblade did not start: {exit:?}"));

    // READY=1 (with the status line), and at that moment the export answers at once: one
    // query, no retransmission.
    let ready = notify.until("READY=1", Duration::from_secs(30));
    let answered = try_initiator_for(&lab, lab.client_if(), 1, 0, 1000, 0);
    assert!(
        answered.is_ok(),
        "READY=1 arrived but e1.0 did not answer at once ({:?}); log:\n{}",
        answered.err(),
        daemon.log()
    );
    let last = ready.last().unwrap();
    assert_eq!(
        field(last, "STATUS"),
        Some("serving 1 export on 1 interface"),
        "{ready:?}"
    );

    // A reload adding an export: RELOADING=1 with the time it began, then READY=1 with the
    // new status.
    config.exports.push(ExportSpec::new(
        1,
        1,
        dir.image("b.img", 8 << 20),
        &[lab.target_if()],
    ));
    write_atomically(&config.path, &config.toml());
    let before_usec = monotonic_usec();
    let (status, out, err) = xbladectl(&lab, &config.control, &["reload"]);
    assert!(status.success(), "{out}{err}");
    let reloading = notify.next(Duration::from_secs(10)).expect("RELOADING=1");
    assert_eq!(field(&reloading, "RELOADING"), Some("1"), "{reloading:?}");
    let began: u64 = field(&reloading, "MONOTONIC_USEC")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"));
    assert!(
        (before_usec..=monotonic_usec()).contains(&began),
        "MONOTONIC_USEC={began} is not between the reload's start and now"
    );
    let after = notify
        .next(Duration::from_secs(10))
        .expect("READY=1 after the reload");
    assert_eq!(field(&after, "READY"), Some("1"), "{after:?}");
    assert_eq!(
        field(&after, "STATUS"),
        Some("serving 2 exports on 1 interface")
    );
    initiator_for(&lab, lab.client_if(), 1, 1, 1000, 2);

    // SIGTERM: STOPPING=1, then a clean exit.
    daemon.signal(libc::SIGTERM);
    notify.until("STOPPING=1", Duration::from_secs(30));
    let exit = daemon.terminate(Duration::from_secs(30));
    assert!(exit.status.success(), "{exit:?}");
}

/// A child killed and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts xblade with stderr in `log` and `JOURNAL_STREAM` naming `stream` (device:inode),
/// waits for `ready`, stops it, and returns the log.
fn log_with_journal_stream(lab: &Lab, config: &Path, log: &Path, stream: (u64, u64)) -> String {
    let mut command = lab.command_in_target(xblade_bin());
    let stderr = File::create(log).expect("log file");
    command
        .arg("--config")
        .arg(config)
        .env("JOURNAL_STREAM", format!("{}:{}", stream.0, stream.1))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let mut child = Reaped(command.spawn().expect("spawn xblade"));
    assert!(
        wait_for(Duration::from_secs(30), || fs::read_to_string(log)
            .is_ok_and(|t| common::logged_ready(&t))),
        "not ready: {}",
        fs::read_to_string(log).unwrap_or_default()
    );
    // SAFETY: kill(2) on our own unreaped child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let status = child.0.wait().expect("wait");
    assert!(status.success());
    fs::read_to_string(log).unwrap()
}

#[test]
fn journal_lines_carry_the_priority_and_no_timestamp() {
    require_root!();
    let lab = Lab::new("journal", LabOptions::default()).expect("lab");
    let dir = TempDir::new("journal");
    let mut config = ConfigFile::new(&dir);
    config.exports.push(ExportSpec::new(
        1,
        0,
        dir.image("a.img", 8 << 20),
        &[lab.target_if()],
    ));
    config.write();

    // stderr is the stream JOURNAL_STREAM names: `<N>` first, no timestamp.
    let log = dir.0.join("journal.log");
    File::create(&log).unwrap();
    let meta = fs::metadata(&log).unwrap();
    let text = log_with_journal_stream(&lab, &config.path, &log, (meta.dev(), meta.ino()));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 3, "{text}");
    for line in &lines {
        let priority = line
            .strip_prefix('<')
            .and_then(|l| l.split_once('>'))
            .map(|(p, _)| p);
        assert!(
            matches!(priority, Some("3" | "4" | "6" | "7")),
            "no <N> priority: {line:?}"
        );
        assert!(
            !line.contains("Z ") && !line.contains(" INFO "),
            "a timestamp or a level word: {line:?}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<6>") && l.contains("ready")),
        "{text}"
    );

    // JOURNAL_STREAM naming another file: the ordinary format.
    let other = dir.0.join("other.log");
    let text = log_with_journal_stream(&lab, &config.path, &other, (meta.dev(), meta.ino()));
    assert!(
        text.lines()
            .all(|l| !l.starts_with('<') && l.contains("Z ")),
        "{text}"
    );
}

#[test]
fn unit_file_verifies_clean() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/xblade.service");
    let text = fs::read_to_string(&unit).expect("packaging/xblade.service");
    let dir = TempDir::new("unit");
    // The unit as installed, pointing at the binaries under test.
    let text = text
        .replace(
            "ExecStart=/usr/sbin/xblade ",
            &format!("ExecStart={} ", xblade_bin().display()),
        )
        .replace(
            "ExecReload=/usr/sbin/xbladectl ",
            &format!("ExecReload={} ", xbladectl_bin().display()),
        );
    assert!(
        !text.contains("/usr/sbin/"),
        "ExecStart/ExecReload not rewritten"
    );
    let copy = dir.0.join("xblade.service");
    fs::write(&copy, text).unwrap();
    // `Documentation=man:` pages come with the package; verify runs man(1) on them.
    let man8 = dir.0.join("man/man8");
    fs::create_dir_all(&man8).unwrap();
    for page in ["xblade", "xbladectl"] {
        fs::write(
            man8.join(format!("{page}.8")),
            format!(".TH {page} 8\n.SH NAME\n{page} \\- placeholder\n"),
        )
        .unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .env("MANPATH", dir.0.join("man"))
        .output()
        .expect("run systemd-analyze (apt-get install systemd)");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && printed.trim().is_empty(),
        "systemd-analyze verify ({}):\n{printed}",
        out.status
    );

    // Informative: systemd's exposure score (0 best, 10 worst), which also fails the test
    // when the hardening is lost.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&copy)
        .output()
        .expect("run systemd-analyze security");
    let report = String::from_utf8_lossy(&out.stdout);
    let score: f64 = report
        .lines()
        .find_map(|l| l.split("exposure level for xblade.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    eprintln!("systemd-analyze security: exposure {score}");
    assert!(score <= 4.0, "exposure {score}:\n{report}");
}
