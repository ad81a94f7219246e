//! State that initiators set (config string, mask list, reservation) survives a restart of
//! the daemon: set it over the wire, stop, start again on the same image, read it back.

mod common;

use std::time::Duration;

use aoe_initiator::Initiator;
use aoe_proto::config::{ConfigCommand, ConfigHeader};
use aoe_proto::mask::{self, dcmd, mcmd, Directive, MaskHeader};
use aoe_proto::reserve::{self, rcmd, ReserveHeader};
use aoe_proto::{Command, Header, Mac, AOE_VERSION};
use common::{initiator, Daemon, TempDir, SHELF, SLOT};
use xblade_lab::{Lab, LabOptions};

const TAG: u32 = 0x8000_4242;

fn request(client: &Initiator, target: Mac, command: Command, frame: &mut [u8]) -> usize {
    Header {
        dst: target,
        src: client.own_mac(),
        vlan_tci: None,
        version: AOE_VERSION,
        flags: 0,
        error: 0,
        major: SHELF,
        minor: SLOT,
        command: command as u8,
        tag: TAG,
    }
    .encode(frame)
    .expect("header")
}

fn exchange(client: &mut Initiator, frame: &[u8]) -> Vec<u8> {
    let reply = client
        .exchange_raw(frame, Some(TAG), 2000)
        .expect("exchange")
        .expect("a reply");
    let header = Header::parse(&reply).expect("reply header");
    assert_eq!(
        header.flags & aoe_proto::FLAG_ERROR,
        0,
        "AoE error {}",
        header.error
    );
    reply
}

fn config_string(client: &mut Initiator, target: Mac) -> Vec<u8> {
    let mut frame = [0u8; 60];
    let body = request(client, target, Command::QueryConfig, &mut frame);
    ConfigHeader {
        aoe_version: 1,
        ccmd: ConfigCommand::Read as u8,
        ..Default::default()
    }
    .encode(&mut frame, body)
    .unwrap();
    let reply = exchange(client, &frame[..body + 8]);
    let header = ConfigHeader::parse(&reply, body).unwrap();
    aoe_proto::config::string(&reply, body, header.string_len)
        .unwrap()
        .to_vec()
}

#[test]
fn config_string_mask_list_and_reservation_survive_a_restart() {
    require_root!();
    let lab = Lab::new("state", LabOptions::default()).expect("lab");
    let dir = TempDir::new("state");
    let image = dir.image("disk.img", 8 << 20);
    let other = Mac([0x02, 0x42, 0, 0, 0, 7]);

    let daemon = Daemon::start(&lab, &dir, &image, &[]);
    let mut client = initiator(&lab, 500, 2);
    let target = client.target().expect("discovered").mac;
    let me = client.own_mac();

    let mut frame = [0u8; 128];
    let body = request(&client, target, Command::QueryConfig, &mut frame);
    let wanted = b"owned-by-host-a";
    ConfigHeader {
        aoe_version: 1,
        ccmd: ConfigCommand::SetIfEmpty as u8,
        string_len: wanted.len() as u16,
        ..Default::default()
    }
    .encode(&mut frame, body)
    .unwrap();
    frame[body + 8..body + 8 + wanted.len()].copy_from_slice(wanted);
    exchange(&mut client, &frame[..body + 8 + wanted.len()]);

    let mut frame = [0u8; 128];
    let body = request(&client, target, Command::MacMaskList, &mut frame);
    MaskHeader {
        mcmd: mcmd::EDIT,
        merror: 0,
        directive_count: 2,
    }
    .encode(&mut frame, body)
    .unwrap();
    Directive {
        dcmd: dcmd::ADD,
        mac: me,
    }
    .encode(&mut frame, body, 0)
    .unwrap();
    Directive {
        dcmd: dcmd::ADD,
        mac: other,
    }
    .encode(&mut frame, body, 1)
    .unwrap();
    exchange(&mut client, &frame[..mask::frame_len(body, 2)]);

    let mut frame = [0u8; 128];
    let body = request(&client, target, Command::ReserveRelease, &mut frame);
    ReserveHeader {
        rcmd: rcmd::SET,
        nmacs: 1,
    }
    .encode(&mut frame, body)
    .unwrap();
    reserve::write_mac(&mut frame, body, 0, me).unwrap();
    exchange(&mut client, &frame[..reserve::frame_len(body, 1)]);
    assert!(daemon.terminate(Duration::from_secs(10)).status.success());

    let state_file = common::read(&image.with_file_name("disk.img.xblade-state"));
    assert!(state_file.starts_with("xblade-state 1"), "{state_file}");

    let daemon = Daemon::start(&lab, &dir, &image, &[]);
    let mut client = initiator(&lab, 500, 2);
    assert_eq!(config_string(&mut client, target), wanted);

    let mut frame = [0u8; 60];
    let body = request(&client, target, Command::MacMaskList, &mut frame);
    MaskHeader {
        mcmd: mcmd::READ,
        merror: 0,
        directive_count: 0,
    }
    .encode(&mut frame, body)
    .unwrap();
    let reply = exchange(&mut client, &frame[..body + 4]);
    let list = MaskHeader::parse(&reply, body).unwrap();
    let macs: Vec<Mac> = (0..usize::from(list.directive_count))
        .map(|i| Directive::parse(&reply, body, i).unwrap().mac)
        .collect();
    assert_eq!(macs, vec![me, other]);

    let mut frame = [0u8; 60];
    let body = request(&client, target, Command::ReserveRelease, &mut frame);
    ReserveHeader {
        rcmd: rcmd::READ,
        nmacs: 0,
    }
    .encode(&mut frame, body)
    .unwrap();
    let reply = exchange(&mut client, &frame[..body + 2]);
    assert_eq!(ReserveHeader::parse(&reply, body).unwrap().nmacs, 1);
    assert_eq!(reserve::mac(&reply, body, 0).unwrap(), me);

    // The holder can still do I/O; release, and a restart with --no-state starts empty.
    client
        .write(0, &[7u8; 512])
        .expect("reservation holder writes");
    let mut frame = [0u8; 60];
    let body = request(&client, target, Command::ReserveRelease, &mut frame);
    ReserveHeader {
        rcmd: rcmd::SET,
        nmacs: 0,
    }
    .encode(&mut frame, body)
    .unwrap();
    exchange(&mut client, &frame[..body + 2]);
    assert!(daemon.terminate(Duration::from_secs(10)).status.success());

    let daemon = Daemon::start(&lab, &dir, &image, &["--no-state"]);
    let mut client = initiator(&lab, 500, 2);
    assert_eq!(config_string(&mut client, target), b"");
    assert!(daemon.terminate(Duration::from_secs(10)).status.success());

    // A corrupt state file is a clear start-up error, not silently ignored.
    std::fs::write(image.with_file_name("disk.img.xblade-state"), "garbage\n").unwrap();
    let exit = Daemon::try_start(&lab, &dir, &image, &[])
        .err()
        .expect("refuses to start");
    assert!(
        exit.stderr.contains("state file") && exit.stderr.contains("line 1"),
        "{}",
        exit.stderr
    );
}
