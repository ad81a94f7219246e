//! The numbers are true: known counts of every kind of request, sent over a namespace veth
//! pair to two exports, come back exactly from `xbladectl stats --json` on the export (or
//! queue, or interface) they belong to, and zeros elsewhere; the human tables show them;
//! `xbladectl monitor` prints interval rates under a small load; the daemon's `/metrics`
//! endpoint reports exactly the same counts (each checked against the test's own, not only
//! against the JSON). Needs root; skips with a printed reason otherwise.
//!
//! Where each request is counted:
//! * per export: reads, writes and their bytes; other (flush, identify, Query Config, Mac
//!   Mask List, Reserve/Release); ATA errors (out-of-range LBA); AoE errors (unknown
//!   command, reservation conflict); refused by the mask list (a wildcard request the
//!   worker answers for each export) or by a reservation;
//! * per queue (no export): malformed frames with a whole AoE header;
//! * per interface (the XDP program, before any queue): frames too short for an AoE header,
//!   requests for a shelf.slot not served here, responses, and unicast requests from a
//!   sender the mask list does not list.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use aoe_proto::ata::{self, AtaHeader};
use aoe_proto::{Header, Mac, AOE_VERSION, MINOR_ANY};
use common::{
    ata_frame, config_frame, initiator_for, mask_frame, metric, metrics_addr, raw_frame,
    request_header, reserve_frame, scrape_metrics, wait_for, xbladectl, ConfigFile, Daemon,
    ExportSpec, RawSocket, TempDir,
};
use serde_json::Value;
use xblade_lab::{Lab, LabOptions};

const IMAGE_BYTES: u64 = 8 << 20;
const CAPACITY_SECTORS: u64 = IMAGE_BYTES / 512;
const CMD_ATA: u8 = 0;
const CMD_CONFIG: u8 = 1;
const CMD_MASK: u8 = 2;
const CMD_RESERVE: u8 = 3;
/// A sender the mask list of e1.0 does not list.
const STRANGER: Mac = Mac([0x02, 0x5e, 0x00, 0x00, 0x00, 0x01]);
/// A host that reserves e1.1.
const HOLDER: Mac = Mac([0x02, 0x5e, 0x00, 0x00, 0x00, 0x02]);
/// Initiator replies time out after this; long enough that nothing is retransmitted (a
/// retransmission would be a second request).
const REPLY_MS: u64 = 5000;
const WAIT: Duration = Duration::from_secs(20);

// The raw frames that end per queue or per interface (see the module doc), and where.
/// ATA requests cut short after the AoE header: the worker drops them as malformed.
const MALFORMED_IN_WORKER: u64 = 3;
/// The stranger's wildcard query: the worker drops it for e1.0's mask list.
const MASKED_IN_WORKER: u64 = 1;
/// The stranger's unicast reads to e1.0: the XDP program drops them (ACL).
const XDP_DROP_ACL: u64 = 2;
/// Frames too short for an AoE header: the XDP program drops them.
const XDP_DROP_MALFORMED: u64 = 2;
/// A request for a shelf.slot not served here: passed to the kernel.
const XDP_PASS_OTHER_TARGET: u64 = 1;
/// A response: passed to the kernel.
const XDP_PASS_RESPONSE: u64 = 1;

fn stats(lab: &Lab, config: &ConfigFile, exports: &[&str]) -> Value {
    let mut args = vec!["--json", "stats"];
    args.extend_from_slice(exports);
    let (status, stdout, stderr) = xbladectl(lab, &config.control, &args);
    assert!(status.success(), "xbladectl {args:?}: {status}: {stderr}");
    let reply: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("xbladectl {args:?}: {e}: {stdout:?}"));
    assert_eq!(
        (&reply["ok"], &reply["cmd"]),
        (&Value::from(true), &Value::from("stats"))
    );
    reply
}

fn export<'a>(reply: &'a Value, name: &str) -> &'a Value {
    reply["exports"]
        .as_array()
        .and_then(|all| all.iter().find(|e| e["name"] == name))
        .unwrap_or_else(|| panic!("no export {name} in {reply}"))
}

/// The per-export counters the test checks, in this order.
const EXPORT_FIELDS: [&str; 12] = [
    "reads",
    "writes",
    "other",
    "read_bytes",
    "written_bytes",
    "ata_errors",
    "aoe_errors",
    "disk_errors",
    "refused_masked",
    "refused_reserved",
    "in_flight",
    "latency.count",
];

fn export_counts(reply: &Value, name: &str) -> Vec<(&'static str, u64)> {
    let e = export(reply, name);
    EXPORT_FIELDS
        .iter()
        .map(|&field| {
            let value = match field.split_once('.') {
                Some((outer, inner)) => &e[outer][inner],
                None => &e[field],
            };
            let n = value
                .as_u64()
                .unwrap_or_else(|| panic!("{name}.{field} is not a number in {e}"));
            (field, n)
        })
        .collect()
}

fn expect(counts: [u64; 12]) -> Vec<(&'static str, u64)> {
    EXPORT_FIELDS.iter().copied().zip(counts).collect()
}

/// Where `/metrics` shows each of [`EXPORT_FIELDS`], in the same order: the family and the
/// label beside `export` (none for the gauge and the histogram's count).
const EXPORT_SERIES: [(&str, Option<(&str, &str)>); 12] = [
    ("xblade_requests_total", Some(("op", "read"))),
    ("xblade_requests_total", Some(("op", "write"))),
    ("xblade_requests_total", Some(("op", "other"))),
    ("xblade_bytes_total", Some(("direction", "read"))),
    ("xblade_bytes_total", Some(("direction", "write"))),
    ("xblade_errors_total", Some(("kind", "ata"))),
    ("xblade_errors_total", Some(("kind", "aoe"))),
    ("xblade_errors_total", Some(("kind", "disk"))),
    ("xblade_refused_total", Some(("reason", "masked"))),
    ("xblade_refused_total", Some(("reason", "reserved"))),
    ("xblade_in_flight", None),
    ("xblade_request_duration_seconds_count", None),
];

/// The sample `family{labels}` of a scrape as a count (a whole number, exactly).
fn metric_count(body: &str, family: &str, labels: &[(&str, &str)]) -> u64 {
    let value =
        metric(body, family, labels).unwrap_or_else(|| panic!("no {family}{labels:?} in\n{body}"));
    assert!(
        value >= 0.0 && value.fract() == 0.0 && value < 2f64.powi(53),
        "{family}{labels:?} = {value} is not a count"
    );
    value as u64
}

/// The [`EXPORT_FIELDS`] of export `name` as a scrape shows them.
fn metric_counts(body: &str, name: &str) -> Vec<(&'static str, u64)> {
    EXPORT_FIELDS
        .iter()
        .zip(EXPORT_SERIES)
        .map(|(&field, (family, label))| {
            let mut labels = vec![("export", name)];
            labels.extend(label);
            (field, metric_count(body, family, &labels))
        })
        .collect()
}

/// The sum over every queue (as the JSON lists them) of the per-queue sample
/// `family{interface,queue,label}`.
fn metric_queue_sum(body: &str, reply: &Value, family: &str, label: (&str, &str)) -> u64 {
    reply["queues"]
        .as_array()
        .unwrap_or_else(|| panic!("no queues in {reply}"))
        .iter()
        .map(|q| {
            let iface = q["interface"].as_str().expect("queue interface");
            let queue = q["queue"].as_u64().expect("queue id").to_string();
            metric_count(
                body,
                family,
                &[("interface", iface), ("queue", &queue), label],
            )
        })
        .sum()
}

/// `xblade_xdp_frames_total{interface,verdict}`.
fn metric_xdp(body: &str, iface: &str, verdict: &str) -> u64 {
    metric_count(
        body,
        "xblade_xdp_frames_total",
        &[("interface", iface), ("verdict", verdict)],
    )
}

/// The sum of a queue counter over every queue (`xsk.rx_dropped` for a nested one).
fn queue_sum(reply: &Value, field: &str) -> u64 {
    reply["queues"]
        .as_array()
        .unwrap_or_else(|| panic!("no queues in {reply}"))
        .iter()
        .map(|q| {
            let value = match field.split_once('.') {
                Some((outer, inner)) => &q[outer][inner],
                None => &q[field],
            };
            value.as_u64().unwrap_or_else(|| panic!("{field} in {q}"))
        })
        .sum()
}

fn interface_count(reply: &Value, iface: &str, field: &str) -> u64 {
    reply["interfaces"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["name"] == iface))
        .and_then(|i| i[field].as_u64())
        .unwrap_or_else(|| panic!("no {field} for {iface} in {reply}"))
}

/// The whitespace-separated cells of the first line of `text` that starts with `first`.
fn row<'a>(text: &'a str, first: &str) -> Vec<&'a str> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&first))
        .unwrap_or_else(|| panic!("no row {first} in:\n{text}"))
}

#[test]
fn every_request_is_counted_where_it_belongs() {
    require_root!();
    let lab = Lab::new("stats", LabOptions::default()).expect("lab");
    let dir = TempDir::new("stats");
    let iface = lab.target_if().to_owned();
    let me = Mac(lab.client_mac());
    let target = Mac(lab.target_mac());
    let mut config = ConfigFile::new(&dir);
    config.exports = vec![
        ExportSpec::new(1, 0, dir.image("a.img", IMAGE_BYTES), &[&iface]).mask(&[&me.to_string()]),
        ExportSpec::new(1, 1, dir.image("b.img", IMAGE_BYTES), &[&iface]),
    ];
    config.write();
    let daemon = Daemon::start_config(
        &lab,
        &dir,
        &config.path,
        &["--stats-interval", "1", "--metrics-listen", "127.0.0.1:0"],
    );
    let metrics = metrics_addr(&lab, &config.control);

    // Before any request: every export counter is zero, in both views.
    let zero = stats(&lab, &config, &[]);
    assert_eq!(export_counts(&zero, "e1.0"), expect([0; 12]));
    assert_eq!(export_counts(&zero, "e1.1"), expect([0; 12]));
    let body = scrape_metrics(&lab, metrics);
    assert_eq!(metric_counts(&body, "e1.0"), expect([0; 12]), "{body}");
    assert_eq!(metric_counts(&body, "e1.1"), expect([0; 12]), "{body}");
    let generation = export(&zero, "e1.0")["generation"].clone();

    // ---- e1.0, through the initiator (one frame per request at MTU 1500) ----
    // Discovery: 1 Query Config.
    let mut a = initiator_for(&lab, lab.client_if(), 1, 0, REPLY_MS, 0);
    let two = vec![0xa5u8; 1024];
    for i in 0..4 {
        a.write(100 + 2 * i, &two).expect("write");
    }
    let mut back = vec![0u8; 512];
    for i in 0..7 {
        a.read(100 + i, &mut back).expect("read");
    }
    a.flush().expect("flush");
    a.flush().expect("flush");
    a.identify().expect("identify");
    let ata_error = a.read(CAPACITY_SECTORS, &mut back);
    assert!(ata_error.is_err(), "a read past the end must fail");
    // Query Config read, Mac Mask List read, Reserve/Release read, an unknown command.
    let mut tag = 0x4000_0001;
    let mut exchange = |frame: Vec<u8>, what: &str| {
        let header = Header::parse(&frame).expect("own frame parses");
        let reply = a
            .exchange_raw(&frame, Some(header.tag), REPLY_MS)
            .expect("exchange")
            .unwrap_or_else(|| panic!("no reply to the {what}"));
        Header::parse(&reply).expect("reply parses")
    };
    let h = |command: u8, tag: u32| request_header(target, me, command, tag);
    let r = exchange(config_frame(&h(CMD_CONFIG, tag), 0, b""), "Query Config");
    assert_eq!(r.error, 0, "{r:?}");
    tag += 1;
    let r = exchange(mask_frame(&h(CMD_MASK, tag), 0, &[]), "Mac Mask List read");
    assert_eq!(r.error, 0, "{r:?}");
    tag += 1;
    let r = exchange(reserve_frame(&h(CMD_RESERVE, tag), 0, &[]), "reserve read");
    assert_eq!(r.error, 0, "{r:?}");
    tag += 1;
    let r = exchange(raw_frame(&h(9, tag), &[0u8; 24]), "unknown command");
    assert_eq!(r.error, 1, "unrecognized command: {r:?}");
    let a_stats = a.stats();
    assert_eq!(
        a_stats.retransmits, 0,
        "the initiator retransmitted: the daemon saw more requests than the test counts"
    );

    // ---- e1.1, through another initiator: discovery and 3 reads ----
    let mut b = initiator_for(&lab, lab.client_if(), 1, 1, REPLY_MS, 0);
    for i in 0..3 {
        b.read(i, &mut back).expect("read e1.1");
    }

    // ---- Raw frames: nobody waits for replies, so wait for the counts instead ----
    let raw = RawSocket::open_in_client(&lab, lab.client_if(), 1 << 20);
    // A wildcard Query Config from a stranger: e1.0's mask list refuses it (in the worker),
    // e1.1 answers it.
    let mut wildcard = request_header(Mac::BROADCAST, STRANGER, CMD_CONFIG, 0x4000_1000);
    wildcard.minor = MINOR_ANY;
    raw.send(&config_frame(&wildcard, 0, b""));
    // HOLDER reserves e1.1.
    let mut reserve = request_header(target, HOLDER, CMD_RESERVE, 0x4000_1001);
    reserve.minor = 1;
    raw.send(&reserve_frame(&reserve, 1, &[HOLDER]));
    assert!(
        wait_for(WAIT, || export(&stats(&lab, &config, &[]), "e1.1")["other"]
            == 3),
        "e1.1 never counted the wildcard query and the reservation: {}",
        stats(&lab, &config, &["e1.1"])
    );
    // Now e1.1 refuses the initiator's read: AoE error 6.
    let refused = b.read(0, &mut back);
    assert!(refused.is_err(), "a reserved export served another host");
    // Three ATA requests cut short after the AoE header (malformed: counted per queue).
    let short = raw_frame(&request_header(target, me, CMD_ATA, 0x4000_2000), &[0u8; 4]);
    for _ in 0..MALFORMED_IN_WORKER {
        raw.send(&short);
    }
    // Two unicast reads from the stranger to e1.0: dropped by the XDP ACL.
    let read_header = AtaHeader {
        aflags: 0,
        err_feature: 0,
        sector_count: 1,
        cmd_status: ata::opcode::READ_SECTORS,
        lba_bytes: [1, 0, 0, 0xe0, 0, 0],
    };
    for t in 0..XDP_DROP_ACL as u32 {
        raw.send(&ata_frame(
            &request_header(target, STRANGER, CMD_ATA, 0x4000_3000 + t),
            &read_header,
            &[],
        ));
    }
    // Two frames too short for an AoE header, a request for a shelf.slot not served, a
    // response: the XDP program's.
    let mut too_short = vec![0u8; 18];
    too_short[..6].copy_from_slice(&target.0);
    too_short[6..12].copy_from_slice(&me.0);
    too_short[12..14].copy_from_slice(&aoe_proto::ETHERTYPE_AOE.to_be_bytes());
    too_short[14] = AOE_VERSION << 4;
    for _ in 0..XDP_DROP_MALFORMED {
        raw.send(&too_short);
    }
    let mut elsewhere = request_header(target, me, CMD_CONFIG, 0x4000_4000);
    elsewhere.minor = 5;
    raw.send(&config_frame(&elsewhere, 0, b""));
    let mut response = request_header(target, me, CMD_CONFIG, 0x4000_4001);
    response.flags = aoe_proto::FLAG_RESPONSE;
    raw.send(&config_frame(&response, 0, b""));

    let counted = |reply: &Value| {
        queue_sum(reply, "dropped_malformed") == MALFORMED_IN_WORKER
            && interface_count(reply, &iface, "xdp_drop_acl") == XDP_DROP_ACL
            && interface_count(reply, &iface, "xdp_drop_malformed") == XDP_DROP_MALFORMED
            && interface_count(reply, &iface, "xdp_pass_other_target") == XDP_PASS_OTHER_TARGET
            && interface_count(reply, &iface, "xdp_pass_response") == XDP_PASS_RESPONSE
    };
    assert!(
        wait_for(WAIT, || counted(&stats(&lab, &config, &[]))),
        "the raw frames were never all counted: {}",
        stats(&lab, &config, &[])
    );

    // ---- Every count, exactly (nothing is sent until the scrape below) ----
    let reply = stats(&lab, &config, &[]);
    // e1.0: 7 reads of 512 bytes, 4 writes of 1024; other = discovery, 2 flushes,
    // identify, Query Config, mask read, reserve read; 1 ATA error (past the end), 1 AoE
    // error (unknown command); 1 refused by the mask list (the stranger's wildcard query);
    // every answered request timed (the refused one is not answered).
    let e10_counts = expect([7, 4, 7, 3584, 4096, 1, 1, 0, 1, 0, 0, 20]);
    assert_eq!(
        export_counts(&reply, "e1.0"),
        e10_counts,
        "{}",
        export(&reply, "e1.0")
    );
    // e1.1: 3 reads; other = discovery, the stranger's wildcard query, HOLDER's
    // reservation; the refused read is an AoE error and refused by the reservation; the
    // wildcard reply is not timed (a fan-out reply).
    let e11_counts = expect([3, 0, 3, 1536, 0, 0, 1, 0, 0, 1, 0, 6]);
    assert_eq!(
        export_counts(&reply, "e1.1"),
        e11_counts,
        "{}",
        export(&reply, "e1.1")
    );
    assert_eq!(export(&reply, "e1.0")["generation"], generation);
    let latency = &export(&reply, "e1.0")["latency"];
    let buckets = latency["buckets"].as_array().expect("buckets");
    let in_buckets: u64 = buckets.iter().map(|b| b[1].as_u64().unwrap_or(0)).sum();
    assert_eq!(in_buckets, 20, "{latency}");
    let max_ns = latency["max_ns"].as_u64().unwrap_or(0);
    let p50_ns = latency["p50_ns"].as_u64().unwrap_or(0);
    assert!(
        0 < p50_ns && p50_ns <= max_ns && max_ns < 5_000_000_000,
        "{latency}"
    );
    // Per queue: the worker's drops; every frame the XDP program redirected reached a
    // worker, and the kernel dropped none.
    assert_eq!(queue_sum(&reply, "dropped_masked"), MASKED_IN_WORKER);
    assert_eq!(
        queue_sum(&reply, "rx_frames"),
        interface_count(&reply, &iface, "xdp_redirect"),
        "{reply}"
    );
    assert_eq!(queue_sum(&reply, "xsk.rx_dropped"), 0);
    assert!(queue_sum(&reply, "busy_ns") > 0 && queue_sum(&reply, "idle_ns") > 0);

    // ---- /metrics reports the same counts ----
    let body = scrape_metrics(&lab, metrics);
    assert_eq!(metric_counts(&body, "e1.0"), e10_counts, "{body}");
    assert_eq!(metric_counts(&body, "e1.1"), e11_counts, "{body}");
    for name in ["e1.0", "e1.1"] {
        let labels = [("export", name), ("reason", "locked")];
        assert_eq!(metric_count(&body, "xblade_refused_total", &labels), 0);
        assert_eq!(export(&reply, name)["refused_locked"], 0);
        // The +Inf bucket holds every timed request.
        let labels = [("export", name), ("le", "+Inf")];
        assert_eq!(
            metric_count(&body, "xblade_request_duration_seconds_bucket", &labels),
            export(&reply, name)["latency"]["count"].as_u64().unwrap(),
            "{body}"
        );
    }
    let worker_drops = |reason| {
        metric_queue_sum(
            &body,
            &reply,
            "xblade_worker_drops_total",
            ("reason", reason),
        )
    };
    assert_eq!(worker_drops("malformed"), MALFORMED_IN_WORKER, "{body}");
    assert_eq!(worker_drops("masked"), MASKED_IN_WORKER, "{body}");
    assert_eq!(
        [
            metric_xdp(&body, &iface, "drop_acl"),
            metric_xdp(&body, &iface, "drop_malformed"),
            metric_xdp(&body, &iface, "pass_other_target"),
            metric_xdp(&body, &iface, "pass_response"),
        ],
        [
            XDP_DROP_ACL,
            XDP_DROP_MALFORMED,
            XDP_PASS_OTHER_TARGET,
            XDP_PASS_RESPONSE
        ],
        "{body}"
    );
    let redirected = metric_xdp(&body, &iface, "redirect");
    assert_eq!(
        redirected,
        interface_count(&reply, &iface, "xdp_redirect"),
        "{body}"
    );
    assert_eq!(
        metric_queue_sum(
            &body,
            &reply,
            "xblade_queue_frames_total",
            ("direction", "rx")
        ),
        redirected,
        "{body}"
    );
    assert_eq!(
        metric_queue_sum(
            &body,
            &reply,
            "xblade_xsk_drops_total",
            ("reason", "rx_dropped")
        ),
        0,
        "{body}"
    );

    // One export only, and an unknown one.
    let only = stats(&lab, &config, &["e1.1"]);
    let names: Vec<&Value> = only["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["name"])
        .collect();
    assert_eq!(names, [&Value::from("e1.1")]);
    let (status, _, stderr) = xbladectl(&lab, &config.control, &["stats", "e9.9"]);
    assert!(!status.success(), "an unknown export must fail");
    assert!(stderr.contains("no export named 'e9.9'"), "{stderr}");

    // ---- The human tables show the same numbers ----
    let (status, text, stderr) = xbladectl(&lab, &config.control, &["stats"]);
    assert!(status.success(), "{stderr}");
    assert_eq!(
        row(&text, "e1.0")[..],
        ["e1.0", "7", "4", "7", "3.5", "KiB", "4.0", "KiB", "1", "1", "0", "1", "0", "0", "0"],
        "{text}"
    );
    assert_eq!(
        row(&text, "e1.1")[..],
        ["e1.1", "3", "0", "3", "1.5", "KiB", "0", "B", "0", "1", "0", "0", "1", "0", "0"],
        "{text}"
    );
    eprintln!("{text}");

    // ---- monitor: interval rates under a small load on e1.0 ----
    let stop = AtomicBool::new(false);
    let reads_done = AtomicU64::new(0);
    let monitor = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut buf = vec![0u8; 512];
            while !stop.load(Ordering::Relaxed) {
                a.read(200, &mut buf).expect("load read");
                reads_done.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let out = xbladectl(&lab, &config.control, &["monitor", "1", "--count", "2"]);
        stop.store(true, Ordering::Relaxed);
        out
    });
    let (status, text, stderr) = monitor;
    assert!(status.success(), "monitor: {stderr}");
    eprintln!("{text}");
    let refreshes = text.matches("over the last").count();
    assert_eq!(refreshes, 2, "--count 2 prints two refreshes:\n{text}");
    for line in text.lines() {
        assert!(
            line.chars().count() <= 80,
            "wider than 80 columns: {line:?}"
        );
    }
    let done = reads_done.load(Ordering::Relaxed) as f64;
    let mut e10_rows = 0;
    for line in text.lines().filter(|l| l.starts_with("e1.0 ")) {
        e10_rows += 1;
        let cells: Vec<&str> = line.split_whitespace().collect();
        let reads_per_s: f64 = cells[1].parse().unwrap_or_else(|_| panic!("r/s in {line}"));
        assert!(
            reads_per_s > 0.0 && reads_per_s <= done,
            "e1.0 r/s {reads_per_s} with {done} reads in all:\n{text}"
        );
        assert_eq!(cells[2], "0", "w/s: {line}");
        assert_ne!(cells[6], "-", "p50 of an interval with reads: {line}");
    }
    assert_eq!(e10_rows, 2, "{text}");
    for line in text.lines().filter(|l| l.starts_with("e1.1 ")) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[1..3], ["0", "0"], "e1.1 is idle: {line}");
        assert_eq!(
            cells[6..8],
            ["-", "-"],
            "no latency without requests: {line}"
        );
    }

    // The periodic log line (--stats-interval) still comes, with the load's reads.
    assert!(
        wait_for(WAIT, || daemon
            .log()
            .lines()
            .any(|l| l.contains("req/s") && !l.contains("(0 reads/s"))),
        "no --stats-interval line with reads in the log:\n{}",
        daemon.log()
    );

    // ---- A reload that replaces e1.1 (read-only now): its counters restart under a new
    // generation; e1.0, untouched, keeps counting ----
    let before = stats(&lab, &config, &[]);
    config.exports[1] = config.exports[1].clone().read_only(true);
    config.write();
    let (status, _, stderr) = xbladectl(&lab, &config.control, &["reload"]);
    assert!(status.success(), "reload: {stderr}");
    let after = stats(&lab, &config, &[]);
    assert_ne!(
        export(&after, "e1.1")["generation"],
        export(&before, "e1.1")["generation"],
        "a replaced export gets a new generation"
    );
    assert_eq!(export_counts(&after, "e1.1"), expect([0; 12]), "{after}");
    let body = scrape_metrics(&lab, metrics);
    assert_eq!(metric_counts(&body, "e1.1"), expect([0; 12]), "{body}");
    assert_eq!(export(&after, "e1.0")["generation"], generation);
    assert!(
        export(&after, "e1.0")["reads"].as_u64() >= export(&before, "e1.0")["reads"].as_u64(),
        "e1.0's counters went back: {after}"
    );

    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
    assert!(exit.stdout.contains("xblade summary"), "{}", exit.stdout);
}
