//! Multi-export mode (`xblade --config FILE`, `xbladectl`) over veth pairs between two
//! throwaway network namespaces: many exports on two links, per-export mask lists, and a
//! reload (control socket and SIGHUP) while an untouched export is under a verified load.
//! Needs root; skips with a printed reason otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aoe_initiator::{Initiator, InitiatorError, RequestError};
use aoe_proto::ata;
use aoe_proto::mask::{dcmd, mcmd, Directive, MaskHeader};
use aoe_proto::{Header, Mac, MAJOR_ANY, MINOR_ANY};
use common::{
    initiator_for, json_strings, lines_where, mask_frame, pattern, request_header, summary_count,
    try_initiator_for, wait_for, write_atomically, xbladectl, xbladectl_json, ConfigFile, Daemon,
    ExportSpec, RawSocket, TempDir,
};
use rand::SeedableRng;
use xblade_lab::{Lab, LabOptions, Link};

const CMD_MASK: u8 = 2;
/// How long a raw wildcard query listens for replies that must (or must not) come.
const QUERY_WINDOW: Duration = Duration::from_millis(1000);
/// Receive buffer of the raw sockets that count replies.
const RCVBUF_BYTES: usize = 8 << 20;

/// `(shelf, slot)` of every reply, sorted.
fn addresses(replies: &[Header]) -> Vec<(u16, u8)> {
    let mut all: Vec<(u16, u8)> = replies.iter().map(|h| (h.major, h.minor)).collect();
    all.sort_unstable();
    all
}

/// Broadcasts a Query Config to `major.minor` on `link` and returns every reply, after
/// checking that each comes from the link's target end to the client.
fn query(lab: &Lab, link: &Link, major: u16, minor: u8, tag: u32) -> Vec<Header> {
    let sock = RawSocket::open_in_client(lab, &link.client_if, RCVBUF_BYTES);
    let (replies, _) =
        sock.wildcard_query(major, minor, tag, QUERY_WINDOW, Duration::ZERO, |_| false);
    for h in &replies {
        assert_eq!(
            h.src,
            Mac(link.target_mac),
            "a reply on {} comes from that link's target MAC: {h:?}",
            link.target_if
        );
        assert_eq!(h.dst, Mac(link.client_mac), "reply to the client: {h:?}");
        assert_eq!(h.flags & aoe_proto::FLAG_ERROR, 0, "no error: {h:?}");
    }
    replies
}

/// The exports of a `status` reply as comparable rows: name, file, interfaces, read-only,
/// state.
fn export_rows(status: &serde_json::Value) -> Vec<(String, String, Vec<String>, bool, String)> {
    status["exports"]
        .as_array()
        .unwrap_or_else(|| panic!("no exports array in {status}"))
        .iter()
        .map(|e| {
            let mut interfaces = json_strings(&e["interfaces"]);
            interfaces.sort();
            (
                e["name"].as_str().unwrap_or_default().to_owned(),
                e["file"].as_str().unwrap_or_default().to_owned(),
                interfaces,
                e["read_only"].as_bool().unwrap_or_default(),
                e["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn status(lab: &Lab, config: &ConfigFile) -> serde_json::Value {
    let (exit, reply) = xbladectl_json(lab, &config.control, "status");
    assert!(exit.success(), "xbladectl status: {exit}: {reply}");
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["cmd"], "status", "{reply}");
    reply
}

fn ata_error(e: &InitiatorError) -> Option<(u8, u8)> {
    match e.request_error() {
        Some(RequestError::Ata { status, error }) => Some((*status, *error)),
        _ => None,
    }
}

/// Sets the flag when dropped, also while unwinding: a load thread in a `thread::scope`
/// stops even when the test fails on the main thread.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------

const EIGHT_IMAGE_BYTES: u64 = 8 << 20;
const EIGHT_SECTORS: u64 = EIGHT_IMAGE_BYTES / 512;

/// The extents (first LBA, 2 sectors each) that export `slot` gets through link `link`:
/// disjoint between links and, for the middle one, between slots.
fn extents(link: usize, slot: u8) -> [u64; 4] {
    let base = link as u64 * 4096;
    [
        base,
        base + 37 + 3 * u64::from(slot),
        base + 2000,
        EIGHT_SECTORS - 2 - 2 * link as u64,
    ]
}

/// What export `slot` holds at `lba` after its write through `link`.
fn data_for(link: usize, slot: u8, lba: u64) -> Vec<u8> {
    pattern(lba, 1 + u64::from(slot) + 100 * link as u64, 2)
}

#[test]
fn eight_exports_two_links() {
    require_root!();
    let mut lab = Lab::new("eight", LabOptions::default()).expect("lab");
    lab.add_link(LabOptions::default()).expect("second link");
    let links = lab.links();
    let dir = TempDir::new("eight");
    let ifaces: Vec<&str> = links.iter().map(|l| l.target_if.as_str()).collect();
    let mut config = ConfigFile::new(&dir);
    let images: Vec<PathBuf> = (0..8u8)
        .map(|slot| dir.image(&format!("e1.{slot}.img"), EIGHT_IMAGE_BYTES))
        .collect();
    for (slot, image) in (0u8..).zip(&images) {
        config
            .exports
            .push(ExportSpec::new(1, slot, image, &ifaces));
    }
    config.write();
    let daemon = Daemon::start_config(&lab, &dir, &config.path, &[]);

    // One line per (export, interface).
    let log = daemon.log();
    for (slot, image) in (0u8..).zip(&images) {
        for iface in &ifaces {
            let what = format!("exporting {} as e1.{slot}", image.display());
            let field = format!("iface={iface}");
            assert!(
                log.lines().any(|l| l.contains(&what) && l.contains(&field)),
                "no `{what}` line with {field}:\n{log}"
            );
        }
    }

    // Through each link, each export: discovered with that link's MAC, written, read back.
    for (l, link) in links.iter().enumerate() {
        for slot in 0..8u8 {
            let mut client = initiator_for(&lab, &link.client_if, 1, slot, 500, 4);
            let target = client.target().expect("discovered").clone();
            assert_eq!(
                (target.mac, target.shelf, target.slot),
                (Mac(link.target_mac), 1, slot),
                "e1.{slot} on {}",
                link.client_if
            );
            assert_eq!(client.capacity_sectors().expect("identify"), EIGHT_SECTORS);
            for lba in extents(l, slot) {
                let data = data_for(l, slot, lba);
                client.write(lba, &data).expect("write");
                let mut back = vec![0u8; data.len()];
                client.read(lba, &mut back).expect("read");
                assert_eq!(back, data, "e1.{slot} lba {lba} via {}", link.client_if);
            }
            assert_eq!(
                client.stats().retransmits,
                0,
                "e1.{slot} via {}",
                link.client_if
            );
        }
    }
    // What was written through one link reads back through the other: one backend each.
    for (l, link) in links.iter().enumerate() {
        let other = 1 - l;
        for slot in 0..8u8 {
            let mut client = initiator_for(&lab, &link.client_if, 1, slot, 500, 4);
            for lba in extents(other, slot) {
                let mut back = vec![0u8; 1024];
                client.read(lba, &mut back).expect("read");
                assert_eq!(back, data_for(other, slot, lba), "e1.{slot} lba {lba}");
            }
        }
    }
    // Each image holds exactly its own writes, zeros everywhere else.
    for (slot, image) in (0u8..).zip(&images) {
        let mut expected = vec![0u8; EIGHT_IMAGE_BYTES as usize];
        for l in 0..links.len() {
            for lba in extents(l, slot) {
                let at = lba as usize * 512;
                expected[at..at + 1024].copy_from_slice(&data_for(l, slot, lba));
            }
        }
        let actual = std::fs::read(image).expect("read image");
        assert_eq!(actual.len(), expected.len(), "{} size", image.display());
        if let Some(at) = (0..actual.len()).find(|&i| actual[i] != expected[i]) {
            panic!(
                "{} differs first at byte {at} (sector {}): {:02x?} instead of {:02x?}",
                image.display(),
                at / 512,
                &actual[at..(at + 16).min(actual.len())],
                &expected[at..(at + 16).min(expected.len())]
            );
        }
    }

    // Wildcard and partial-wildcard Query Config: one reply per matching export per link.
    let all: Vec<(u16, u8)> = (0..8u8).map(|slot| (1, slot)).collect();
    let mut tag = 0x8000_1000u32;
    for link in &links {
        for (major, minor, expect) in [
            (MAJOR_ANY, MINOR_ANY, all.clone()),
            (1, MINOR_ANY, all.clone()),
            (MAJOR_ANY, 3, vec![(1, 3)]),
            (9, MINOR_ANY, vec![]),
            (1, 200, vec![]),
        ] {
            tag += 1;
            let replies = query(&lab, link, major, minor, tag);
            assert_eq!(
                addresses(&replies),
                expect,
                "query {major:#x}.{minor:#x} on {}: {replies:?}",
                link.client_if
            );
        }
    }

    // xbladectl status: 8 exports, both interfaces each, serving.
    let reply = status(&lab, &config);
    let rows = export_rows(&reply);
    let mut sorted_ifaces: Vec<String> = ifaces.iter().map(|&i| i.to_owned()).collect();
    sorted_ifaces.sort();
    let expected: Vec<_> = (0u8..)
        .zip(&images)
        .map(|(slot, image)| {
            (
                format!("e1.{slot}"),
                image.to_string_lossy().into_owned(),
                sorted_ifaces.clone(),
                false,
                "serving".to_owned(),
            )
        })
        .collect();
    assert_eq!(rows, expected, "{reply}");
    for e in reply["exports"].as_array().expect("exports") {
        assert_eq!(e["size_sectors"], EIGHT_SECTORS, "{e}");
        assert_eq!(e["shelf"], 1, "{e}");
    }
    let interfaces = reply["interfaces"].as_array().expect("interfaces");
    assert_eq!(interfaces.len(), 2, "{reply}");
    for i in interfaces {
        assert!(
            ifaces.contains(&i["name"].as_str().unwrap_or_default()),
            "{i}"
        );
        assert_eq!(i["state"], "up", "{i}");
        assert_eq!(i["exports"], 8, "{i}");
    }
    // The human-readable form names every export too.
    let (exit, text, stderr) = xbladectl(&lab, &config.control, &["status"]);
    assert!(exit.success(), "{exit}: {stderr}");
    for slot in 0..8 {
        assert!(text.contains(&format!("e1.{slot} ")), "{text}");
    }

    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
}

// ---------------------------------------------------------------------------------------

const MASK_IMAGE_BYTES: u64 = 8 << 20;
const OUTSIDER: &str = "02:00:00:00:00:99";
const OTHER: Mac = Mac([0x02, 0, 0, 0, 0, 0x77]);

/// Sends a MAC Mask List request to `shelf.slot` from `client` and returns the reply's MError
/// and list; panics when no reply comes.
fn mask_request(
    client: &mut Initiator,
    target: Mac,
    slot: u8,
    mcmd: u8,
    directives: &[(u8, Mac)],
    tag: u32,
) -> (u8, Vec<Mac>) {
    let mut h = request_header(target, client.own_mac(), CMD_MASK, tag);
    h.minor = slot;
    let frame = mask_frame(&h, mcmd, directives);
    let reply = client
        .exchange_raw(&frame, Some(tag), 1000)
        .expect("exchange")
        .unwrap_or_else(|| panic!("no reply to the mask request to e1.{slot}"));
    let h = Header::parse(&reply).expect("reply parses");
    assert_eq!((h.major, h.minor, h.src), (1, slot, target), "{h:?}");
    assert_eq!(h.flags & aoe_proto::FLAG_ERROR, 0, "{h:?}");
    let m = MaskHeader::parse(&reply, h.body_offset()).expect("mask header");
    let list = (0..usize::from(m.directive_count))
        .map(|i| {
            Directive::parse(&reply, h.body_offset(), i)
                .expect("entry")
                .mac
        })
        .collect();
    (m.merror, list)
}

#[test]
fn per_export_masks_are_independent() {
    require_root!();
    let lab = Lab::new("masks", LabOptions::default()).expect("lab");
    let link = &lab.links()[0];
    let dir = TempDir::new("masks");
    let me = Mac(lab.client_mac());
    let target = Mac(lab.target_mac());
    let iface = [lab.target_if()];
    let mut config = ConfigFile::new(&dir);
    let me_text = me.to_string();
    config.exports = vec![
        // A: the client is listed.
        ExportSpec::new(1, 0, dir.image("a.img", MASK_IMAGE_BYTES), &iface).mask(&[&me_text]),
        // B: only somebody else is.
        ExportSpec::new(1, 1, dir.image("b.img", MASK_IMAGE_BYTES), &iface).mask(&[OUTSIDER]),
        // C: no list, open to all until the client edits it.
        ExportSpec::new(1, 2, dir.image("c.img", MASK_IMAGE_BYTES), &iface),
    ];
    config.write();
    let daemon = Daemon::start_config(&lab, &dir, &config.path, &[]);

    let mut a = initiator_for(&lab, lab.client_if(), 1, 0, 300, 3);
    let data = pattern(5, 1, 2);
    a.write(5, &data).expect("A: listed, served");
    let mut back = vec![0u8; 1024];
    a.read(5, &mut back).expect("A read");
    assert_eq!(back, data);

    match try_initiator_for(&lab, lab.client_if(), 1, 1, 300, 2) {
        Err(InitiatorError::NoTarget { .. }) => {}
        Err(e) => panic!("B: expected no answer at all, got {e}"),
        Ok(_) => panic!("B answered a client that is not on its mask list"),
    }

    let mut c = initiator_for(&lab, lab.client_if(), 1, 2, 300, 3);
    c.write(9, &data).expect("C: no list, served");
    assert_eq!(
        addresses(&query(&lab, link, MAJOR_ANY, MINOR_ANY, 0x8000_2001)),
        vec![(1, 0), (1, 2)],
        "a wildcard query is answered by the exports that admit the client"
    );

    // Lists as the client sees them: A's is the configured one; B's is out of reach.
    let (merror, list) = mask_request(&mut a, target, 0, mcmd::READ, &[], 0x8000_2101);
    assert_eq!((merror, list), (0, vec![me]), "A's list");
    let (merror, list) = mask_request(&mut c, target, 2, mcmd::READ, &[], 0x8000_2102);
    assert_eq!((merror, list), (0, vec![]), "C's list");

    // The client puts somebody else on C's list: C shuts the client out, A does not.
    let (merror, list) = mask_request(
        &mut c,
        target,
        2,
        mcmd::EDIT,
        &[(dcmd::ADD, OTHER)],
        0x8000_2103,
    );
    assert_eq!((merror, list), (0, vec![OTHER]), "C's list after the edit");

    let mut sector = vec![0u8; 512];
    let c_read = c.read(9, &mut sector);
    assert!(
        matches!(
            c_read.as_ref().map_err(|e| e.request_error()),
            Err(Some(RequestError::Timeout { .. }))
        ),
        "C still serves a client it no longer lists (expected a timeout): {c_read:?}"
    );
    match try_initiator_for(&lab, lab.client_if(), 1, 2, 300, 2) {
        Err(InitiatorError::NoTarget { .. }) => {}
        Err(e) => panic!("C: expected no answer at all, got {e}"),
        Ok(_) => panic!("C answered discovery from a client it no longer lists"),
    }
    a.read(5, &mut back).expect("A is still served");
    assert_eq!(back, data);
    let (merror, list) = mask_request(&mut a, target, 0, mcmd::READ, &[], 0x8000_2104);
    assert_eq!(
        (merror, list),
        (0, vec![me]),
        "C's edit left A's list alone"
    );
    assert_eq!(
        addresses(&query(&lab, link, MAJOR_ANY, MINOR_ANY, 0x8000_2002)),
        vec![(1, 0)],
        "after the edit only A answers the client's wildcard query"
    );
    // The edit did not open B either.
    assert!(matches!(
        try_initiator_for(&lab, lab.client_if(), 1, 1, 300, 1),
        Err(InitiatorError::NoTarget { .. })
    ));

    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
    let acl = summary_count(&exit.stdout, "dropped by ACL").unwrap_or_else(|| {
        panic!(
            "no `dropped by ACL` counter in the summary:\n{}",
            exit.stdout
        )
    });
    eprintln!("masks: XDP dropped {acl} frames by ACL");
    assert!(acl > 0, "nothing dropped by the ACL:\n{}", exit.stdout);
}

// ---------------------------------------------------------------------------------------

const RELOAD_IMAGE_BYTES: u64 = 32 << 20;
/// How long the load on e1.0 runs at least.
const LOAD_FOR: Duration = Duration::from_secs(6);

/// What the load on e1.0 saw.
#[derive(Debug, Default)]
struct LoadReport {
    ops: u64,
    errors: Vec<String>,
    stats: aoe_initiator::InitiatorStats,
}

/// Random writes of 1-16 sectors on e1.0, each read back and compared, until `stop` is set
/// and at least [`LOAD_FOR`] has passed.
fn load(lab: &Lab, stop: &AtomicBool) -> LoadReport {
    let mut client = initiator_for(lab, lab.client_if(), 1, 0, 500, 4);
    let capacity = client.capacity_sectors().expect("identify e1.0");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x10ad);
    let mut report = LoadReport::default();
    let started = Instant::now();
    let mut round = 0;
    while !stop.load(Ordering::Relaxed) || started.elapsed() < LOAD_FOR {
        let (lba, data) = common::random_extent(&mut rng, round, capacity);
        round += 1;
        if let Err(e) = client.write(lba, &data) {
            report
                .errors
                .push(format!("write {lba}+{}: {e}", data.len() / 512));
            continue;
        }
        let mut back = vec![0u8; data.len()];
        match client.read(lba, &mut back) {
            Err(e) => report
                .errors
                .push(format!("read {lba}+{}: {e}", data.len() / 512)),
            Ok(()) if back != data => report
                .errors
                .push(format!("read {lba}+{}: data differs", data.len() / 512)),
            Ok(()) => {}
        }
        report.ops += 2;
        if report.errors.len() > 20 {
            break;
        }
    }
    report.stats = client.stats();
    report
}

/// Checks that `error` (a failed reload's message) points at one of `lines` of `path`.
fn names_a_line(error: &str, path: &Path, lines: &[usize]) -> bool {
    let file = path.display().to_string();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    lines.iter().any(|n| {
        error.contains(&format!("{file}:{n}:"))
            || error.contains(&format!("{name}:{n}:"))
            || error.contains(&format!("line {n}"))
    })
}

/// Runs `xbladectl --json reload` expecting a refusal: exit status 1, `ok:false`, an error
/// that names one of `lines`; returns the error.
fn failed_reload(lab: &Lab, config: &ConfigFile, lines: &[usize], what: &str) -> String {
    let (exit, reply) = xbladectl_json(lab, &config.control, "reload");
    assert_eq!(exit.code(), Some(1), "reload of {what}: {reply}");
    assert_eq!(reply["ok"], false, "reload of {what}: {reply}");
    let error = reply["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        names_a_line(&error, &config.path, lines),
        "reload of {what}: the error should name line {lines:?} of {}: {error:?}\n{}",
        config.path.display(),
        config.toml()
    );
    // The plain form exits 1 too and says why on stderr.
    let (exit, _, stderr) = xbladectl(lab, &config.control, &["reload"]);
    assert_eq!(exit.code(), Some(1), "plain reload of {what}: {stderr}");
    assert!(
        !stderr.trim().is_empty(),
        "plain reload of {what}: no message"
    );
    error
}

#[test]
fn reload_under_load() {
    require_root!();
    let lab = Lab::new("reload", LabOptions::default()).expect("lab");
    let dir = TempDir::new("reload");
    let iface = [lab.target_if()];
    let images: Vec<PathBuf> = (0..4)
        .map(|slot| dir.image(&format!("e1.{slot}.img"), RELOAD_IMAGE_BYTES))
        .collect();
    let spec = |slot: u8| ExportSpec::new(1, slot, &images[usize::from(slot)], &iface);
    let mut config = ConfigFile::new(&dir);
    config.exports = vec![spec(0), spec(1), spec(2)];
    config.write();
    let daemon = Daemon::start_config(&lab, &dir, &config.path, &[]);

    // Clients of the exports the reload will change and remove, found before it.
    let mut e11 = initiator_for(&lab, lab.client_if(), 1, 1, 300, 2);
    let data = pattern(100, 11, 2);
    e11.write(100, &data)
        .expect("e1.1 is writable before the reload");
    let mut e12 = initiator_for(&lab, lab.client_if(), 1, 2, 300, 2);
    let mut sector = vec![0u8; 512];
    e12.read(0, &mut sector)
        .expect("e1.2 is served before the reload");
    assert!(try_initiator_for(&lab, lab.client_if(), 1, 3, 200, 1).is_err());

    let stop = AtomicBool::new(false);
    let report = std::thread::scope(|s| {
        let load = s.spawn(|| load(&lab, &stop));
        let stop_guard = StopOnDrop(&stop);
        std::thread::sleep(Duration::from_secs(1));

        // 1. Add e1.3, remove e1.2, make e1.1 read-only: over the control socket.
        let before = status(&lab, &config);
        assert_eq!(export_rows(&before).len(), 3, "{before}");
        // Listens for e1.3's announcement from before the reload on.
        let listener = RawSocket::open_in_client(&lab, lab.client_if(), RCVBUF_BYTES);
        config.exports = vec![spec(0), spec(1).read_only(true), spec(3)];
        config.write();
        let (exit, reply) = xbladectl_json(&lab, &config.control, "reload");
        assert!(exit.success(), "reload: {exit}: {reply}");
        assert_eq!(reply["ok"], true, "{reply}");
        assert_eq!(reply["cmd"], "reload", "{reply}");
        assert_eq!(json_strings(&reply["added"]), ["e1.3"], "{reply}");
        assert_eq!(json_strings(&reply["removed"]), ["e1.2"], "{reply}");
        assert_eq!(json_strings(&reply["changed"]), ["e1.1"], "{reply}");
        assert_eq!(reply["unchanged"], 1, "{reply}");

        // e1.3 announces itself: an unsolicited Query Config reply (tag 0) to broadcast.
        let mut buf = vec![0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut announced = false;
        while let Some(len) = listener.recv_until(&mut buf, deadline) {
            let Ok(h) = Header::parse(&buf[..len]) else {
                continue;
            };
            if h.is_response() && h.command == 1 && h.tag == 0 && (h.major, h.minor) == (1, 3) {
                assert_eq!(h.dst, Mac::BROADCAST, "{h:?}");
                assert_eq!(h.src, Mac(lab.target_mac()), "{h:?}");
                announced = true;
                break;
            }
        }
        assert!(announced, "e1.3 did not announce itself after the reload");
        drop(listener);

        // e1.3 is usable at once.
        let mut e13 = initiator_for(&lab, lab.client_if(), 1, 3, 500, 2);
        let data13 = pattern(7, 13, 2);
        e13.write(7, &data13).expect("write e1.3");
        let mut back = vec![0u8; 1024];
        e13.read(7, &mut back).expect("read e1.3");
        assert_eq!(back, data13);
        // e1.2 is gone: its client's requests and a fresh discovery go unanswered.
        let gone = e12.read(0, &mut sector);
        assert!(gone.is_err(), "e1.2 still answers after its removal");
        assert!(
            try_initiator_for(&lab, lab.client_if(), 1, 2, 300, 1).is_err(),
            "e1.2 is still discoverable after its removal"
        );
        // e1.1 refuses writes with ATA ABRT, still serves reads.
        let refused = e11.write(100, &pattern(100, 12, 2));
        match &refused {
            Err(e) => assert_eq!(
                ata_error(e),
                Some((ata::status::FAILED, ata::error::ABRT)),
                "a write to read-only e1.1: {e}"
            ),
            Ok(()) => panic!("a write to e1.1 succeeded after it became read-only"),
        }
        e11.read(100, &mut back).expect("read e1.1");
        assert_eq!(back, data, "the refused write changed nothing");
        let good = status(&lab, &config);
        let rows = export_rows(&good);
        let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(names, ["e1.0", "e1.1", "e1.3"], "{good}");
        assert!(rows[1].3, "e1.1 is read-only: {good}");

        // 2. A syntax error: refused, nothing changes.
        let valid = config.toml();
        let broken_line = lines_where(&valid, |_, l| l.trim() == "read_only = true");
        assert_eq!(broken_line.len(), 1, "{valid}");
        let broken = valid.replace("read_only = true", "read_only = yes please");
        write_atomically(&config.path, &broken);
        let error = failed_reload(&lab, &config, &broken_line, "a syntax error");
        eprintln!("reload: syntax error refused: {error}");
        assert_eq!(export_rows(&status(&lab, &config)), rows, "nothing changed");

        // 3. Two exports with the same shelf.slot: refused, nothing changes.
        let duplicate = ExportSpec::new(1, 3, &images[2], &iface);
        let text = format!("{valid}\n{}", duplicate.toml());
        // The lines of either e1.3 table ([[export]], shelf, slot) may be the one named.
        let tables = lines_where(&text, |_, l| l.trim() == "[[export]]");
        let e13_tables: Vec<usize> = tables[2..].to_vec();
        let candidates: Vec<usize> = e13_tables.iter().flat_map(|&n| [n, n + 1, n + 2]).collect();
        write_atomically(&config.path, &text);
        let error = failed_reload(&lab, &config, &candidates, "a duplicate shelf.slot");
        eprintln!("reload: duplicate refused: {error}");
        let lower = error.to_lowercase();
        assert!(
            lower.contains("1.3") || lower.contains("duplicate"),
            "the error should say what is duplicated: {error:?}"
        );
        assert_eq!(export_rows(&status(&lab, &config)), rows, "nothing changed");
        // The refused files did not disturb anybody.
        e13.read(7, &mut back)
            .expect("read e1.3 after the refused reloads");
        assert_eq!(back, data13);

        // 4. SIGHUP with a valid file: e1.1 writable again, e1.3 masked to somebody else.
        config.exports = vec![spec(0), spec(1), spec(3).mask(&[OUTSIDER])];
        config.write();
        daemon.signal(libc::SIGHUP);
        let applied = wait_for(Duration::from_secs(5), || {
            export_rows(&status(&lab, &config))
                .iter()
                .any(|r| r.0 == "e1.1" && !r.3)
        });
        assert!(applied, "SIGHUP did not reload:\n{}", daemon.log());
        let data2 = pattern(100, 13, 2);
        e11.write(100, &data2)
            .expect("e1.1 is writable again after SIGHUP");
        e11.read(100, &mut back).expect("read e1.1");
        assert_eq!(back, data2);
        let masked_read = e13.read(7, &mut back);
        assert!(
            matches!(
                masked_read.as_ref().map_err(|e| e.request_error()),
                Err(Some(RequestError::Timeout { .. }))
            ),
            "e1.3 still serves the client after its mask list was set to {OUTSIDER} by SIGHUP \
             (expected a timeout): {masked_read:?}"
        );
        assert!(
            matches!(
                try_initiator_for(&lab, lab.client_if(), 1, 3, 300, 1),
                Err(InitiatorError::NoTarget { .. })
            ),
            "e1.3 still answers the client's discovery after its mask list was set"
        );

        // Let the load run its course.
        drop(stop_guard);
        load.join().expect("load thread")
    });

    eprintln!(
        "reload: load on e1.0: {} verified ops, {} errors, stats {:?}",
        report.ops,
        report.errors.len(),
        report.stats
    );
    assert!(
        report.errors.is_empty(),
        "load errors: {:#?}",
        report.errors
    );
    assert_eq!(report.stats.retransmits, 0, "{:?}", report.stats);
    assert_eq!(report.stats.timeouts, 0, "{:?}", report.stats);
    assert!(report.ops >= 100, "too little load: {report:?}");

    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
}

// ---------------------------------------------------------------------------------------

/// Starts xblade on `text` and expects it to refuse: a non-zero exit and exactly one line
/// `xblade: error: FILE:LINE: ...` naming one of `lines`.
fn refused_at_start(lab: &Lab, dir: &TempDir, config: &ConfigFile, text: &str, lines: &[usize]) {
    write_atomically(&config.path, text);
    let exit = match Daemon::try_start_config(lab, dir, &config.path, &[], Duration::from_secs(20))
    {
        Ok(daemon) => {
            let log = daemon.log();
            drop(daemon);
            panic!("xblade started on an invalid file:\n{text}\n{log}");
        }
        Err(exit) => exit,
    };
    assert!(!exit.status.success(), "{exit:?}");
    let errors: Vec<&str> = exit
        .stderr
        .lines()
        .filter(|l| l.starts_with("xblade: error: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line: {:?}", exit.stderr);
    let file = config.path.display().to_string();
    assert!(
        lines
            .iter()
            .any(|n| errors[0].starts_with(&format!("xblade: error: {file}:{n}: "))),
        "the error should name {file} and one of the lines {lines:?}: {:?}\n{text}",
        errors[0]
    );
}

#[test]
fn an_invalid_config_file_is_refused_at_start_with_its_line() {
    require_root!();
    let lab = Lab::new("badcfg", LabOptions::default()).expect("lab");
    let dir = TempDir::new("badcfg");
    let iface = [lab.target_if()];
    let mut config = ConfigFile::new(&dir);
    config.exports = vec![
        ExportSpec::new(1, 0, "null:16M", &iface),
        ExportSpec::new(1, 1, "null:16M", &iface).read_only(true),
    ];
    let valid = config.toml();

    // A syntax error.
    let line = lines_where(&valid, |_, l| l.trim() == "read_only = true");
    let text = valid.replace("read_only = true", "read_only = yes please");
    refused_at_start(&lab, &dir, &config, &text, &line);

    // The same shelf.slot twice.
    let text = format!(
        "{valid}\n{}",
        ExportSpec::new(1, 1, "null:8M", &iface).toml()
    );
    let tables = lines_where(&text, |_, l| l.trim() == "[[export]]");
    let candidates: Vec<usize> = tables[1..]
        .iter()
        .flat_map(|&n| [n, n + 1, n + 2])
        .collect();
    refused_at_start(&lab, &dir, &config, &text, &candidates);

    // The valid file serves, so the refusals were about the files.
    write_atomically(&config.path, &valid);
    let daemon = Daemon::start_config(&lab, &dir, &config.path, &[]);
    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
}

/// Sets (`Some`) or reads (`None`) `shelf.slot`'s config string through `initiator`;
/// returns the string the reply carries.
fn config_string(
    initiator: &mut Initiator,
    target: Mac,
    shelf: u16,
    slot: u8,
    set: Option<&[u8]>,
) -> Vec<u8> {
    const TAG: u32 = 0x8000_5151;
    let mut header = request_header(target, initiator.own_mac(), 1, TAG);
    (header.major, header.minor) = (shelf, slot);
    let (ccmd, string) = match set {
        Some(s) => (aoe_proto::config::ConfigCommand::ForceSet as u8, s),
        None => (aoe_proto::config::ConfigCommand::Read as u8, &[][..]),
    };
    let frame = common::config_frame(&header, ccmd, string);
    let reply = initiator
        .exchange_raw(&frame, Some(TAG), 2000)
        .expect("exchange")
        .expect("a config reply");
    let hdr = Header::parse(&reply).expect("reply header");
    assert_eq!(
        hdr.flags & aoe_proto::FLAG_ERROR,
        0,
        "no AoE error: {hdr:?}"
    );
    let body = hdr.body_offset();
    let config = aoe_proto::config::ConfigHeader::parse(&reply, body).expect("config header");
    aoe_proto::config::string(&reply, body, config.string_len)
        .expect("string")
        .to_vec()
}

#[test]
fn each_export_keeps_its_state_in_the_state_directory() {
    require_root!();
    let lab = Lab::new("xstate", LabOptions::with_rx_queues(1)).expect("lab");
    let link = lab.links().remove(0);
    let dir = TempDir::new("xstate");
    let mut config = ConfigFile::new(&dir);
    for slot in 0..2 {
        let image = dir.image(&format!("d{slot}.img"), 4 << 20);
        config
            .exports
            .push(ExportSpec::new(4, slot, &image, &[link.target_if.as_str()]));
    }
    config.write();
    let target = Mac(link.target_mac);

    let daemon = Daemon::start_config(&lab, &dir, &config.path, &[]);
    let mut client = common::open_client(&lab, &link.client_if, 500, 2);
    assert_eq!(
        config_string(&mut client, target, 4, 0, Some(b"host-a")),
        b"host-a"
    );
    assert_eq!(
        config_string(&mut client, target, 4, 1, None),
        b"",
        "e4.1 untouched"
    );
    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
    let state_file = config.state_dir.join("e4.0.state");
    let saved = std::fs::read_to_string(&state_file)
        .unwrap_or_else(|e| panic!("{}: {e}", state_file.display()));
    assert!(
        saved.contains(&format!("config {}", "686f73742d61")),
        "{saved}"
    );
    assert!(
        !config.state_dir.join("e4.1.state").exists(),
        "an export nobody changed writes no state"
    );

    let _daemon = Daemon::start_config(&lab, &dir, &config.path, &[]);
    let mut client = common::open_client(&lab, &link.client_if, 500, 2);
    assert_eq!(
        config_string(&mut client, target, 4, 0, None),
        b"host-a",
        "restored from the state directory"
    );
    assert_eq!(config_string(&mut client, target, 4, 1, None), b"");
}
