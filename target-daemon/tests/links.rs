//! Interface events while xblade serves (`--config`, one export on two veth links): a link
//! going down and up keeps serving; an MTU change is picked up and the new sector count
//! advertised; a link that disappears is detached while the other goes on, and is attached
//! again when it comes back. Needs root; skips with a printed reason otherwise.

mod common;

use std::time::Duration;

use common::{initiator_for, pattern, wait_for, ConfigFile, Daemon, ExportSpec, TempDir};
use xblade_lab::{Lab, LabOptions, Side};

const SHELF: u16 = 3;
const SLOT: u8 = 7;
/// How long the daemon gets to notice a link change and act on it.
const NOTICE: Duration = Duration::from_secs(10);

/// Writes a pattern of three frames through a fresh initiator on `client_if` and reads it
/// back; returns the sectors per frame the link carries.
fn write_and_verify(lab: &Lab, client_if: &str, lba: u64, generation: u64) -> u8 {
    let mut initiator = initiator_for(lab, client_if, SHELF, SLOT, 500, 10);
    let sectors = usize::from(initiator.sectors_per_frame()) * 3;
    let data = pattern(lba, generation, sectors);
    initiator.write(lba, &data).expect("write");
    let mut back = vec![0u8; data.len()];
    initiator.read(lba, &mut back).expect("read");
    assert!(
        back == data,
        "read back what was written through {client_if}"
    );
    assert_eq!(
        initiator.stats().retransmits,
        0,
        "no retransmits through {client_if}"
    );
    initiator.sectors_per_frame()
}

#[test]
fn interfaces_come_and_go_and_change_their_mtu() {
    require_root!();
    let mut lab = Lab::new("links", LabOptions::with_rx_queues(1)).expect("lab");
    let a = lab.links().remove(0);
    let b = lab
        .add_link(LabOptions::with_rx_queues(1))
        .expect("second link");
    let dir = TempDir::new("links");
    let image = dir.image("disk.img", 8 << 20);
    let mut config = ConfigFile::new(&dir);
    config.exports.push(ExportSpec::new(
        SHELF,
        SLOT,
        &image,
        &[a.target_if.as_str(), b.target_if.as_str()],
    ));
    config.write();
    let daemon = Daemon::start_config(&lab, &dir, &config.path, &[]);
    assert_eq!(write_and_verify(&lab, &a.client_if, 0, 1), 2);
    assert_eq!(write_and_verify(&lab, &b.client_if, 8, 1), 2);

    // Down and up: nothing to re-attach, and it keeps serving.
    lab.set_link_state(Side::Target, &a.target_if, false)
        .unwrap();
    lab.set_link_state(Side::Target, &a.target_if, true)
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    write_and_verify(&lab, &a.client_if, 16, 2);
    assert!(
        !daemon.log().contains("interface changed"),
        "down/up is not a change: {}",
        daemon.log()
    );

    // MTU 9000 on link A (both ends): the export is announced with 17 sectors per frame.
    for (side, ifname) in [(Side::Target, &a.target_if), (Side::Client, &a.client_if)] {
        lab.ip(side, &["link", "set", "dev", ifname, "mtu", "9000"])
            .expect("set MTU 9000");
    }
    assert!(
        wait_for(NOTICE, || daemon.log().contains("interface changed")),
        "the MTU change was not noticed: {}",
        daemon.log()
    );
    assert!(wait_for(NOTICE, || {
        let log = daemon.log();
        log.matches("exporting").count() >= 3 && log.contains("sectors_per_frame=17")
    }));
    assert_eq!(write_and_verify(&lab, &a.client_if, 32, 3), 17);
    assert_eq!(
        write_and_verify(&lab, &b.client_if, 100, 3),
        2,
        "link B keeps its own sector count"
    );

    // Link B disappears: detached with a log line; link A goes on.
    lab.ip(Side::Target, &["link", "del", "dev", &b.target_if])
        .expect("delete link B");
    assert!(
        wait_for(NOTICE, || daemon.log().contains("interface disappeared")),
        "the deletion was not noticed: {}",
        daemon.log()
    );
    write_and_verify(&lab, &a.client_if, 200, 4);

    // It comes back (a new veth pair with the same names): attached again.
    let client_ns = lab.client_ns().to_owned();
    lab.ip(
        Side::Target,
        &[
            "link",
            "add",
            "name",
            &b.target_if,
            "numrxqueues",
            "1",
            "numtxqueues",
            "1",
            "type",
            "veth",
            "peer",
            "name",
            &b.client_if,
            "numrxqueues",
            "1",
            "numtxqueues",
            "1",
            "netns",
            &client_ns,
        ],
    )
    .expect("re-create link B");
    lab.set_link_state(Side::Target, &b.target_if, true)
        .unwrap();
    lab.set_link_state(Side::Client, &b.client_if, true)
        .unwrap();
    assert!(
        wait_for(NOTICE, || daemon.log().contains("interface attached")),
        "the returning link was not attached: {}",
        daemon.log()
    );
    write_and_verify(&lab, &b.client_if, 300, 5);

    let exit = daemon.terminate(Duration::from_secs(15));
    assert!(exit.status.success(), "clean exit: {exit:?}");
    // Every write landed in the one image, whichever link carried it.
    let bytes = std::fs::read(&image).unwrap();
    for (lba, generation, sectors) in [
        (0, 1, 6),
        (8, 1, 6),
        (16, 2, 6),
        (32, 3, 51),
        (100, 3, 6),
        (200, 4, 51),
        (300, 5, 6),
    ] {
        let at = lba as usize * 512;
        assert!(
            bytes[at..at + sectors * 512] == pattern(lba, generation, sectors)[..],
            "LBA {lba} holds generation {generation}"
        );
    }
}
