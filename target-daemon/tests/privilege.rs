//! Least privilege (`user = "NAME"`, `--user NAME`): after the drop point every thread runs
//! as the user with no capability, no_new_privs and the seccomp filter, and the daemon
//! still does everything it should without privilege: serve, write state, answer
//! xbladectl (`stats` and `/metrics` counting exactly, an operator's mask list enforced by
//! the XDP program and persisted), reload an export onto an attached interface, refuse to
//! attach a new one with what to do, and drain on SIGTERM with the summary.

mod common;

use std::ffi::CString;
use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aoe_initiator::RequestError;
use aoe_proto::config::ConfigCommand;
use aoe_proto::{Command as AoeCommand, Header, Mac, AOE_VERSION};
use common::{
    config_frame, initiator_for, metric, metrics_addr, pattern, scrape_metrics, summary_count,
    wait_for, write_atomically, xbladectl, ConfigFile, Daemon, ExportSpec, TempDir,
};
use serde_json::Value;
use xblade::privilege::ThreadPrivileges;
use xblade_lab::{Lab, LabOptions};

/// One-sector reads and writes of the client whose requests `stats` and `/metrics` must
/// count exactly.
const COUNTED_READS: u64 = 5;
const COUNTED_WRITES: u64 = 3;
/// How long that client waits for a reply: long enough never to retransmit (a
/// retransmission would be a second request).
const PATIENT_MS: u64 = 5000;
/// How long a read waits to show that no reply comes.
const SILENCE_MS: u64 = 1000;
/// A host that is not the test's initiator, for the operator's mask list.
const OTHER_HOST: Mac = Mac([0x02, 0x0e, 0x0e, 0x00, 0x00, 0x0e]);

/// The counters the test moves on e1.0 and on the interface it is served on, as one view
/// (`xbladectl stats` or `/metrics`) shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Counts {
    reads: u64,
    writes: u64,
    other: u64,
    read_bytes: u64,
    written_bytes: u64,
    /// The XDP program's verdicts (per-CPU map reads after the drop).
    xdp_redirect: u64,
    xdp_drop_acl: u64,
    /// Frames the workers received, summed over the queues.
    rx_frames: u64,
}

impl Counts {
    /// What happened between `earlier` and `self`.
    fn since(self, earlier: Counts) -> Counts {
        Counts {
            reads: self.reads - earlier.reads,
            writes: self.writes - earlier.writes,
            other: self.other - earlier.other,
            read_bytes: self.read_bytes - earlier.read_bytes,
            written_bytes: self.written_bytes - earlier.written_bytes,
            xdp_redirect: self.xdp_redirect - earlier.xdp_redirect,
            xdp_drop_acl: self.xdp_drop_acl - earlier.xdp_drop_acl,
            rx_frames: self.rx_frames - earlier.rx_frames,
        }
    }
}

/// [`Counts`] from `xbladectl --json stats`, and the reply (for its list of queues).
fn ctl_counts(lab: &Lab, socket: &Path, iface: &str) -> (Counts, Value) {
    let (status, stdout, stderr) = xbladectl(lab, socket, &["--json", "stats"]);
    assert!(status.success(), "xbladectl stats: {status}: {stderr}");
    let reply: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("xbladectl stats: {e}: {stdout:?}"));
    let n = |value: &Value| {
        value
            .as_u64()
            .unwrap_or_else(|| panic!("not a count: {value} in {reply}"))
    };
    let list = |key: &str| reply[key].as_array().cloned().unwrap_or_default();
    let e = list("exports")
        .into_iter()
        .find(|e| e["name"] == "e1.0")
        .unwrap_or_else(|| panic!("no e1.0 in {reply}"));
    let i = list("interfaces")
        .into_iter()
        .find(|i| i["name"] == iface)
        .unwrap_or_else(|| panic!("no {iface} in {reply}"));
    let counts = Counts {
        reads: n(&e["reads"]),
        writes: n(&e["writes"]),
        other: n(&e["other"]),
        read_bytes: n(&e["read_bytes"]),
        written_bytes: n(&e["written_bytes"]),
        xdp_redirect: n(&i["xdp_redirect"]),
        xdp_drop_acl: n(&i["xdp_drop_acl"]),
        rx_frames: list("queues").iter().map(|q| n(&q["rx_frames"])).sum(),
    };
    (counts, reply)
}

/// [`Counts`] from a `/metrics` body, over the queues `reply` (from `xbladectl stats`)
/// lists.
fn metric_counts(body: &str, reply: &Value, iface: &str) -> Counts {
    let n = |family: &str, labels: &[(&str, &str)]| {
        let value = metric(body, family, labels)
            .unwrap_or_else(|| panic!("no {family}{labels:?} in\n{body}"));
        assert!(value >= 0.0 && value.fract() == 0.0, "{family} = {value}");
        value as u64
    };
    let e10 = |family: &str, label: (&str, &str)| n(family, &[("export", "e1.0"), label]);
    let xdp = |verdict: &str| {
        n(
            "xblade_xdp_frames_total",
            &[("interface", iface), ("verdict", verdict)],
        )
    };
    let queues = reply["queues"].as_array().cloned().unwrap_or_default();
    Counts {
        reads: e10("xblade_requests_total", ("op", "read")),
        writes: e10("xblade_requests_total", ("op", "write")),
        other: e10("xblade_requests_total", ("op", "other")),
        read_bytes: e10("xblade_bytes_total", ("direction", "read")),
        written_bytes: e10("xblade_bytes_total", ("direction", "write")),
        xdp_redirect: xdp("redirect"),
        xdp_drop_acl: xdp("drop_acl"),
        rx_frames: queues
            .iter()
            .map(|q| {
                let queue = q["queue"].to_string();
                n(
                    "xblade_queue_frames_total",
                    &[("interface", iface), ("queue", &queue), ("direction", "rx")],
                )
            })
            .sum(),
    }
}

/// [`Counts`] in both views, which must agree (nothing is sent meanwhile).
fn both_views(lab: &Lab, socket: &Path, metrics: std::net::SocketAddr, iface: &str) -> Counts {
    let (ctl, reply) = ctl_counts(lab, socket, iface);
    let body = scrape_metrics(lab, metrics);
    assert_eq!(
        metric_counts(&body, &reply, iface),
        ctl,
        "/metrics and xbladectl stats disagree:\n{body}\n{reply}"
    );
    ctl
}

/// A system user made for one test and removed after it, on every path.
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl TestUser {
    fn create() -> TestUser {
        let name = format!("xbt{}", std::process::id());
        let status = Command::new("useradd")
            .args(["--system", "--no-create-home", "--user-group"])
            .args(["--shell", "/usr/sbin/nologin", &name])
            .status()
            .expect("run useradd");
        assert!(status.success(), "useradd {name}: {status}");
        let c_name = CString::new(name.clone()).unwrap();
        // SAFETY: `c_name` is NUL-terminated; getpwnam's result is read at once, on this
        // thread, before any other call could overwrite its static buffer.
        let entry = unsafe { libc::getpwnam(c_name.as_ptr()) };
        assert!(!entry.is_null(), "{name} not found after useradd");
        // SAFETY: non-null pointer to getpwnam's static entry, read at once.
        let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
        TestUser { name, uid, gid }
    }

    fn owns(&self, path: &Path) {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).expect("chown");
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// Every thread of `pid`, parsed from `/proc/PID/task/TID/status`.
fn threads(pid: i32) -> Vec<(String, ThreadPrivileges)> {
    let mut all = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/task")).expect("list tasks") {
        let path = entry.expect("task").path();
        let Ok(text) = fs::read_to_string(path.join("status")) else {
            continue;
        };
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("Name:"))
            .unwrap_or("?")
            .trim()
            .to_owned();
        let parsed = ThreadPrivileges::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        all.push((name, parsed));
    }
    all
}

/// Writes and reads back a few extents of `e1.SLOT` through `client_if`.
fn verified_io(lab: &Lab, client_if: &str, slot: u8, generation: u64) {
    let mut client = initiator_for(lab, client_if, 1, slot, 500, 4);
    for lba in [0u64, 8, 1000, 16_000] {
        let data = pattern(lba, generation, 2);
        client.write(lba, &data).expect("write");
        let mut back = vec![0u8; data.len()];
        client.read(lba, &mut back).expect("read");
        assert_eq!(back, data, "e1.{slot} lba {lba}");
    }
    client.flush().expect("flush");
}

/// An image on tmpfs (served by the synchronous engine), removed on drop.
struct ShmImage(std::path::PathBuf);

impl ShmImage {
    fn new(bytes: u64) -> ShmImage {
        let path =
            std::path::PathBuf::from(format!("/dev/shm/xblade-priv-{}.img", std::process::id()));
        File::create(&path)
            .and_then(|f| f.set_len(bytes))
            .expect("create tmpfs image");
        ShmImage(path)
    }
}

impl Drop for ShmImage {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Sets e1.0's config string over the wire (which the daemon persists).
fn set_config_string(lab: &Lab, client_if: &str, text: &[u8]) {
    let mut client = initiator_for(lab, client_if, 1, 0, 500, 4);
    let target = client.target().expect("discovered").mac;
    let header = Header {
        dst: target,
        src: client.own_mac(),
        vlan_tci: None,
        version: AOE_VERSION,
        flags: 0,
        error: 0,
        major: 1,
        minor: 0,
        command: AoeCommand::QueryConfig as u8,
        tag: 0x8000_5151,
    };
    let frame = config_frame(&header, ConfigCommand::ForceSet as u8, text);
    let reply = client
        .exchange_raw(&frame, Some(0x8000_5151), 2000)
        .expect("exchange")
        .expect("a reply to the config set");
    let parsed = Header::parse(&reply).expect("reply header");
    assert_eq!(
        parsed.flags & aoe_proto::FLAG_ERROR,
        0,
        "AoE error {}",
        parsed.error
    );
}

#[test]
fn unprivileged_daemon_serves_reloads_refuses_attach_and_stops() {
    require_root!();
    let mut lab = Lab::new("priv", LabOptions::with_rx_queues(2)).expect("lab");
    let second = lab.add_link(LabOptions::default()).expect("second link");
    let dir = TempDir::new("priv");
    let user = TestUser::create();
    // Root's image (io_uring), opened before the drop; the one a reload adds must be the
    // user's (on tmpfs: the synchronous engine).
    let root_image = dir.image("root.img", 8 << 20);
    let shm = ShmImage::new(8 << 20);
    let user_image = shm.0.clone();
    user.owns(&user_image);

    let mut config = ConfigFile::new(&dir);
    config
        .exports
        .push(ExportSpec::new(1, 0, &root_image, &[lab.target_if()]));
    let with_user = |config: &ConfigFile| {
        config.toml().replacen(
            "[defaults]\n",
            &format!(
                "[defaults]\nuser = \"{}\"\nmetrics_listen = \"127.0.0.1:0\"\n",
                user.name
            ),
            1,
        )
    };
    write_atomically(&config.path, &with_user(&config));
    let daemon = Daemon::start_config(&lab, &dir, &config.path, &[]);
    assert!(
        daemon.log().contains("privileges dropped"),
        "{}",
        daemon.log()
    );

    // Every thread, the workers included: the user, nothing held, the filter on.
    let all = threads(daemon.pid());
    assert!(
        all.iter()
            .filter(|(name, _)| name.starts_with("xblade-"))
            .count()
            >= 2,
        "expected a worker per RX queue (2): {all:?}"
    );
    for (name, thread) in &all {
        assert_eq!(thread.problem(user.uid, user.gid), None, "thread {name}");
    }

    // The data path, root's file included.
    verified_io(&lab, lab.client_if(), 0, 1);

    // State written atomically into the handed-over state directory.
    set_config_string(&lab, lab.client_if(), b"owned-by-the-user");
    let state_file = config.state_dir.join("e1.0.state");
    assert!(
        wait_for(Duration::from_secs(10), || fs::read_to_string(&state_file)
            .is_ok_and(|t| t.contains(&hex(b"owned-by-the-user")))),
        "no state file with the config string: {}",
        daemon.log()
    );
    assert_eq!(fs::metadata(&state_file).unwrap().uid(), user.uid);

    // xbladectl (run by root) on the socket the daemon keeps listening on.
    let (status, out, err) = xbladectl(&lab, &config.control, &["status"]);
    assert!(status.success() && out.contains("e1.0"), "{out}{err}");

    // `stats` (XDP_STATISTICS, the XDP program's per-CPU counter map) and `/metrics`
    // (accept4 on the listener opened before the drop) count exactly one client's
    // requests: its discovery, and one frame per one-sector read and write.
    let socket = &config.control;
    let iface = lab.target_if();
    let metrics = metrics_addr(&lab, socket);
    let before = both_views(&lab, socket, metrics, iface);
    let mut counted = initiator_for(&lab, lab.client_if(), 1, 0, PATIENT_MS, 0);
    let mut sector = vec![0u8; 512];
    for lba in 0..COUNTED_READS {
        counted.read(lba, &mut sector).expect("counted read");
    }
    for lba in 0..COUNTED_WRITES {
        let data = pattern(100 + lba, 6, 1);
        counted.write(100 + lba, &data).expect("counted write");
    }
    assert_eq!(
        counted.stats().retransmits,
        0,
        "a retransmission is a request"
    );
    let requests = 1 + COUNTED_READS + COUNTED_WRITES;
    assert_eq!(
        both_views(&lab, socket, metrics, iface).since(before),
        Counts {
            reads: COUNTED_READS,
            writes: COUNTED_WRITES,
            other: 1,
            read_bytes: COUNTED_READS * 512,
            written_bytes: COUNTED_WRITES * 512,
            xdp_redirect: requests,
            xdp_drop_acl: 0,
            rx_frames: requests,
        }
    );

    // The operator's mask list (BPF map update, state file written as the user): the
    // initiator, not on it, gets no reply (the XDP program drops its one frame); cleared,
    // it is served again.
    let mut impatient = initiator_for(&lab, lab.client_if(), 1, 0, SILENCE_MS, 0);
    let before = both_views(&lab, socket, metrics, iface);
    let (status, out, err) = xbladectl(
        &lab,
        socket,
        &["mask", "e1.0", "set", &OTHER_HOST.to_string()],
    );
    assert!(
        status.success() && out.starts_with("e1.0: mask list changed\n"),
        "mask set: {status}: {out}{err}\n{}",
        daemon.log()
    );
    let mask_line = format!("mask {OTHER_HOST}\n");
    assert!(
        wait_for(Duration::from_secs(10), || fs::read_to_string(&state_file)
            .is_ok_and(|t| t.contains(&mask_line))),
        "the mask list is not in {}: {:?}",
        state_file.display(),
        fs::read_to_string(&state_file)
    );
    assert_eq!(fs::metadata(&state_file).unwrap().uid(), user.uid);
    match impatient.read(0, &mut sector) {
        Err(e) if matches!(e.request_error(), Some(RequestError::Timeout { .. })) => {}
        other => panic!("a host not on the mask list must get no reply, got {other:?}"),
    }
    // Dropped by the XDP program, not by a worker (which would mean the map update failed
    // and the list is enforced in userspace only).
    assert_eq!(
        both_views(&lab, socket, metrics, iface).since(before),
        Counts {
            xdp_drop_acl: 1,
            ..Counts::default()
        },
        "the masked read was not dropped by the XDP program:\n{}",
        daemon.log()
    );
    let (status, out, err) = xbladectl(&lab, socket, &["mask", "e1.0", "clear"]);
    assert!(
        status.success() && out.contains("mask         none: every host may use it"),
        "mask clear: {status}: {out}{err}"
    );
    assert!(
        wait_for(Duration::from_secs(10), || fs::read_to_string(&state_file)
            .is_ok_and(|t| !t.contains("\nmask "))),
        "the cleared mask list is still in {}",
        state_file.display()
    );
    counted
        .read(0, &mut sector)
        .expect("served again once the list is cleared");

    // A reload adding an export on the attached interface: the user's file.
    config
        .exports
        .push(ExportSpec::new(1, 1, &user_image, &[lab.target_if()]));
    write_atomically(&config.path, &with_user(&config));
    let (status, out, err) = xbladectl(&lab, &config.control, &["reload"]);
    assert!(
        status.success(),
        "reload adding e1.1: {out}{err}\n{}",
        daemon.log()
    );
    let log = daemon.log();
    assert!(
        log.lines()
            .any(|l| l.contains("as e1.1") && l.ends_with(", sync")),
        "e1.1 (tmpfs) is not served by the synchronous engine:\n{log}"
    );
    verified_io(&lab, lab.client_if(), 1, 2);

    // A reload attaching a new interface: refused, with what to do; all keeps serving.
    config
        .exports
        .push(ExportSpec::new(1, 2, &user_image, &[&second.target_if]));
    write_atomically(&config.path, &with_user(&config));
    let (status, out, err) = xbladectl(&lab, &config.control, &["reload"]);
    let expected = format!(
        "restart xblade to attach {}: it runs as user {}",
        second.target_if, user.name
    );
    assert!(
        !status.success() && err.contains(&expected),
        "reload attaching {}: {status}: {out}{err}",
        second.target_if
    );
    verified_io(&lab, lab.client_if(), 0, 3);
    verified_io(&lab, lab.client_if(), 1, 4);

    // SIGTERM: the drain and the summary, still under the filter.
    let exit = daemon.terminate(Duration::from_secs(30));
    assert!(exit.status.success(), "{exit:?}");
    // Four rounds of four writes, four reads and a flush, the counted client's reads and
    // writes and its read once the mask list was cleared, every one counted.
    assert_eq!(
        (
            summary_count(&exit.stdout, "reads"),
            summary_count(&exit.stdout, "writes"),
            summary_count(&exit.stdout, "flushes")
        ),
        (
            Some(16 + COUNTED_READS + 1),
            Some(16 + COUNTED_WRITES),
            Some(4)
        ),
        "summary: {}",
        exit.stdout
    );
}

#[test]
fn a_state_directory_the_user_cannot_write_is_refused() {
    require_root!();
    let lab = Lab::new("privst", LabOptions::default()).expect("lab");
    let dir = TempDir::new("privst");
    // vblade's form keeps the state beside the image: in root's directory (0755).
    let image = dir.image("disk.img", 8 << 20);
    // It logs `exporting` before the drop point, where it stops.
    let daemon = Daemon::start(&lab, &dir, &image, &["--user", "nobody"]);
    let expected = format!(
        "xblade: error: user nobody cannot create files in {0}, where an export keeps its \
         state: give the directory to nobody (chown nobody {0})",
        dir.0.display()
    );
    assert!(
        wait_for(Duration::from_secs(30), || daemon.log().contains(&expected)),
        "{}",
        daemon.log()
    );
    let exit = daemon.terminate(Duration::from_secs(30));
    assert!(!exit.status.success(), "{exit:?}");
    // With --no-state it serves.
    let daemon = Daemon::start(&lab, &dir, &image, &["--user", "nobody", "--no-state"]);
    assert!(
        wait_for(Duration::from_secs(30), || daemon
            .log()
            .contains("privileges dropped")),
        "{}",
        daemon.log()
    );
    verified_io(&lab, lab.client_if(), 0, 5);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn an_unknown_user_is_refused_with_the_line() {
    require_root!();
    let dir = TempDir::new("nouser");
    let path = dir.0.join("xblade.toml");
    fs::write(
        &path,
        "[defaults]\nstate_dir = \"/nonexistent\"\nuser = \"xblade-no-such-user\"\n",
    )
    .unwrap();
    let out = Command::new(common::xblade_bin())
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run xblade");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "{}:3: defaults: key 'user': no user 'xblade-no-such-user' in the user database",
            path.display()
        )),
        "{stderr}"
    );

    let out = Command::new(common::xblade_bin())
        .args(["--user", "xblade-no-such-user", "1", "0", "lo", "null:1M"])
        .output()
        .expect("run xblade");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("invalid value 'xblade-no-such-user' for '--user <NAME>': no user"),
        "{stderr}"
    );
}
