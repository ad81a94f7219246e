//! Scale of the multi-export mode: 1024 exports in one xblade process on one veth link
//! (one RX queue, 1024 UMEM frames): start-up time, memory, a wildcard Query Config that all
//! of them answer, and I/O on the first, a middle and the last export.
//! Needs root; skips with a printed reason otherwise.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aoe_proto::{Mac, MAJOR_ANY, MINOR_ANY};
use common::{
    initiator_for, pattern, proc_status_kib, xbladectl_json, ConfigFile, Daemon, ExportSpec,
    RawSocket, TempDir,
};
use xblade_lab::{Lab, LabOptions};

const EXPORTS: usize = 1024;
/// Slots 0-254 of each shelf (255 is the wildcard).
const SLOTS_PER_SHELF: usize = 255;
const NULL_SIZE: &str = "null:64M";
const NULL_SECTORS: u64 = (64 << 20) / 512;
/// The exports I/O is checked on are small sparse images instead of `null:`, so that a
/// read-back proves the data reached that export's own file.
const IMAGE_BYTES: u64 = 8 << 20;
const IMAGE_SECTORS: u64 = IMAGE_BYTES / 512;
const START_LIMIT: Duration = Duration::from_secs(30);
const QUERY_LIMIT: Duration = Duration::from_secs(10);

/// `(shelf, slot)` of the `i`-th export: shelves 1..=5, slots 0..=254.
fn address(i: usize) -> (u16, u8) {
    let shelf = 1 + i / SLOTS_PER_SHELF;
    let slot = i % SLOTS_PER_SHELF;
    (
        u16::try_from(shelf).expect("shelf"),
        u8::try_from(slot).expect("slot"),
    )
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "?".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0))
}

#[test]
fn a_thousand_and_twenty_four_exports_in_one_process() {
    require_root!();
    let lab = Lab::new("scale", LabOptions::with_rx_queues(1)).expect("lab");
    let dir = TempDir::new("scale");
    let iface = [lab.target_if()];
    let checked = [0, EXPORTS / 2, EXPORTS - 1];
    let mut images: Vec<(usize, PathBuf)> = Vec::new();
    let mut config = ConfigFile::new(&dir);
    config.frames = 1024;
    for i in 0..EXPORTS {
        let (shelf, slot) = address(i);
        let file = if checked.contains(&i) {
            let image = dir.image(&format!("e{shelf}.{slot}.img"), IMAGE_BYTES);
            images.push((i, image.clone()));
            image.to_string_lossy().into_owned()
        } else {
            NULL_SIZE.to_owned()
        };
        config
            .exports
            .push(ExportSpec::new(shelf, slot, &file, &iface));
    }
    assert_eq!(address(EXPORTS - 1), (5, 3));
    config.write();

    let spawned = Instant::now();
    let daemon = Daemon::try_start_config(&lab, &dir, &config.path, &[], START_LIMIT)
        .unwrap_or_else(|exit| {
            panic!("xblade with {EXPORTS} exports did not become ready within {START_LIMIT:?}: {exit:?}")
        });
    let start_up = spawned.elapsed();
    let pid = daemon.pid();
    let rss = proc_status_kib(pid, "VmRSS");
    let locked = proc_status_kib(pid, "VmLck");
    let pinned = proc_status_kib(pid, "VmPin");
    let log = daemon.log();
    let exporting = log.lines().filter(|l| l.contains("exporting ")).count();
    assert_eq!(exporting, EXPORTS, "one `exporting` line per export");

    // One wildcard query, answered by every export, each reply once.
    let sock = RawSocket::open_in_client(&lab, lab.client_if(), 64 << 20);
    let (replies, answered_in) = sock.wildcard_query(
        MAJOR_ANY,
        MINOR_ANY,
        0x8000_5ca1,
        QUERY_LIMIT,
        Duration::from_millis(500),
        |r| r.len() >= EXPORTS,
    );
    let distinct: BTreeSet<(u16, u8)> = replies.iter().map(|h| (h.major, h.minor)).collect();
    let expected: BTreeSet<(u16, u8)> = (0..EXPORTS).map(address).collect();

    eprintln!(
        "scale: {EXPORTS} exports: start-up {:.2} s, RSS {} MiB, locked {} MiB, pinned {} MiB, \
         wildcard query answered {}/{EXPORTS} in {} ms",
        start_up.as_secs_f64(),
        mib(rss),
        mib(locked),
        mib(pinned),
        distinct.len(),
        answered_in.as_millis()
    );

    assert!(start_up < START_LIMIT, "start-up took {start_up:?}");
    let missing: Vec<_> = expected.difference(&distinct).take(10).collect();
    assert!(
        missing.is_empty(),
        "{} of {EXPORTS} exports did not answer the wildcard query (first: {missing:?})",
        expected.len() - distinct.len()
    );
    assert_eq!(
        replies.len(),
        EXPORTS,
        "{} replies for {EXPORTS} exports: some answered twice",
        replies.len()
    );
    assert!(
        replies.iter().all(|h| h.src == Mac(lab.target_mac())),
        "every reply comes from the target's MAC"
    );
    // Live statistics of every export: each counted its one wildcard reply.
    let asked = Instant::now();
    let (exit, stats) = xbladectl_json(&lab, &config.control, "stats");
    let stats_in = asked.elapsed();
    assert!(exit.success(), "xbladectl stats: {exit}");
    let exports = stats["exports"]
        .as_array()
        .expect("exports in the stats reply");
    assert_eq!(exports.len(), EXPORTS);
    let not_one: Vec<&serde_json::Value> = exports
        .iter()
        .filter(|e| e["other"] != 1)
        .map(|e| &e["name"])
        .take(10)
        .collect();
    assert!(
        not_one.is_empty(),
        "exports that did not count exactly their one Query Config (first: {not_one:?})"
    );
    eprintln!(
        "scale: xbladectl stats of {EXPORTS} exports in {} ms",
        stats_in.as_millis()
    );

    // Partial wildcards: every slot of one shelf.
    for (shelf, tag, expect) in [(2u16, 0x8000_5ca2u32, SLOTS_PER_SHELF), (5, 0x8000_5ca3, 4)] {
        let (replies, _) = sock.wildcard_query(
            shelf,
            MINOR_ANY,
            tag,
            QUERY_LIMIT,
            Duration::from_millis(300),
            |r| r.len() >= expect,
        );
        assert_eq!(replies.len(), expect, "query {shelf}.{MINOR_ANY:#x}");
        assert!(replies.iter().all(|h| h.major == shelf));
    }
    drop(sock);

    // xbladectl status lists every export, serving.
    let asked = Instant::now();
    let (exit, reply) = xbladectl_json(&lab, &config.control, "status");
    let status_took = asked.elapsed();
    assert!(exit.success(), "{exit}: {reply}");
    let exports = reply["exports"].as_array().expect("exports");
    assert_eq!(exports.len(), EXPORTS);
    assert!(
        exports.iter().all(|e| e["state"] == "serving"),
        "every export serving"
    );
    assert_eq!(
        reply["interfaces"][0]["exports"], EXPORTS,
        "{}",
        reply["interfaces"]
    );
    eprintln!(
        "scale: xbladectl status with {EXPORTS} exports took {} ms",
        status_took.as_millis()
    );

    // I/O on the first, a middle and the last export; one on a null export.
    for (i, image) in &images {
        let (shelf, slot) = address(*i);
        let mut client = initiator_for(&lab, lab.client_if(), shelf, slot, 500, 4);
        assert_eq!(
            client.capacity_sectors().expect("identify"),
            IMAGE_SECTORS,
            "e{shelf}.{slot}"
        );
        for lba in [0, 1234, IMAGE_SECTORS - 4] {
            let data = pattern(lba, *i as u64, 4);
            client.write(lba, &data).expect("write");
            let mut back = vec![0u8; data.len()];
            client.read(lba, &mut back).expect("read");
            assert_eq!(back, data, "e{shelf}.{slot} lba {lba}");
        }
        let file = std::fs::read(image).expect("read image");
        let at = 1234 * 512;
        assert_eq!(
            &file[at..at + 2048],
            &pattern(1234, *i as u64, 4)[..],
            "{} holds its own data",
            image.display()
        );
    }
    let (shelf, slot) = address(EXPORTS / 3);
    let mut client = initiator_for(&lab, lab.client_if(), shelf, slot, 500, 4);
    assert_eq!(client.capacity_sectors().expect("identify"), NULL_SECTORS);
    client.write(10, &pattern(10, 1, 2)).expect("write null");
    let mut back = vec![0xAAu8; 1024];
    client.read(10, &mut back).expect("read null");
    assert!(back.iter().all(|&b| b == 0), "a null export reads zeros");
    drop(client);

    let exit = daemon.terminate(Duration::from_secs(30));
    assert!(exit.status.success(), "{exit:?}");
}
