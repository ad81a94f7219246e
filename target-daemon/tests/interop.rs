//! Interoperability over a veth pair between two throwaway network namespaces: real AoE
//! clients (aoeping and aoecfg from Debian aoetools 36), the control commands (Query
//! Config, MAC Mask List, Reserve/Release) and odd requests as raw frames, a capture that
//! tshark must decode, and a differential run against vblade 25 on the same link.
//! Needs root; skips with a printed reason otherwise.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use aoe_initiator::{Initiator, InitiatorError, RequestError};
use aoe_proto::ata::{self, opcode, AtaHeader, AFLAG_EXTENDED, AFLAG_WRITE};
use aoe_proto::config::{self, ConfigCommand, ConfigHeader};
use aoe_proto::mask::{dcmd, mcmd, merror, Directive, MaskHeader};
use aoe_proto::reserve::{self, rcmd, ReserveHeader};
use aoe_proto::{Header, Mac, FLAG_ERROR, FLAG_RESPONSE, MIN_FRAME_LEN};
use common::{
    ata_frame, config_frame, have_program, initiator, mask_frame, open_client, pattern, raw_frame,
    request_header, reserve_frame, summary_count, wait_for, Daemon, TempDir, SHELF, SLOT,
};
use rand::{Rng, SeedableRng};
use xblade_lab::{Lab, LabOptions, Vblade};

const IMAGE_BYTES: u64 = 64 << 20;
const CAPACITY_SECTORS: u64 = IMAGE_BYTES / 512;
/// How long a raw exchange waits for a reply that must come.
const REPLY_MS: u64 = 1000;
/// How long a raw exchange waits to show that no reply comes.
const SILENCE_MS: u64 = 1000;
/// The second client's MAC (a macvlan on the client's veth end).
const MAC_B: Mac = Mac([0x02, 0xb0, 0x0b, 0x00, 0x00, 0x0b]);

const CMD_ATA: u8 = 0;
const CMD_CONFIG: u8 = 1;
const CMD_MASK: u8 = 2;
const CMD_RESERVE: u8 = 3;

fn shelf_arg() -> String {
    SHELF.to_string()
}

fn slot_arg() -> String {
    SLOT.to_string()
}

/// A client socket plus the addresses and a tag counter, for raw request/reply exchanges
/// whose replies are checked against what AoE r11 requires of every reply.
struct Wire {
    client: Initiator,
    own: Mac,
    target: Mac,
    next_tag: u32,
}

impl Wire {
    fn new(client: Initiator, target: Mac) -> Wire {
        let own = client.own_mac();
        Wire {
            client,
            own,
            target,
            // A tag space of its own: a client's socket may also see frames addressed to
            // another client on the link (they are delivered to packet sockets).
            next_tag: 0x8000_0000 | (rand::random::<u32>() & 0x7fff_0000),
        }
    }

    /// A request header (version 1, no flags) to the target with a fresh tag.
    fn header(&mut self, command: u8) -> Header {
        self.next_tag += 1;
        request_header(self.target, self.own, command, self.next_tag)
    }

    /// Sends `frame` and returns the reply with its tag; panics when none comes. Checks the
    /// reply's addressing, version, tag, command and minimum length.
    fn exchange(&mut self, frame: &[u8]) -> Vec<u8> {
        let request = Header::parse(frame).expect("request parses");
        let reply = self
            .client
            .exchange_raw(frame, Some(request.tag), REPLY_MS)
            .expect("exchange_raw")
            .unwrap_or_else(|| panic!("no reply to {:02x?}", &frame[..frame.len().min(64)]));
        check_reply(&request, &reply, self.target);
        reply
    }

    /// Sends `frame` and asserts that no reply with its tag comes within [`SILENCE_MS`].
    fn expect_silence(&mut self, frame: &[u8], why: &str) {
        let tag = Header::parse(frame).expect("request parses").tag;
        let reply = self
            .client
            .exchange_raw(frame, Some(tag), SILENCE_MS)
            .expect("exchange_raw");
        assert!(reply.is_none(), "{why}: got a reply {reply:02x?}");
    }

    /// Query Config with `ccmd` and `string`.
    fn config(&mut self, ccmd: ConfigCommand, string: &[u8]) -> Vec<u8> {
        let h = self.header(CMD_CONFIG);
        self.exchange(&config_frame(&h, ccmd as u8, string))
    }

    /// MAC Mask List request; returns the reply's header and listed MACs.
    fn mask(&mut self, cmd: u8, directives: &[(u8, Mac)]) -> (Header, MaskHeader, Vec<Mac>) {
        let h = self.header(CMD_MASK);
        let reply = self.exchange(&mask_frame(&h, cmd, directives));
        parse_mask_reply(&reply)
    }

    /// Reserve/Release request; returns the reply's header and listed MACs.
    fn reserve(&mut self, cmd: u8, macs: &[Mac]) -> (Header, ReserveHeader, Vec<Mac>) {
        let h = self.header(CMD_RESERVE);
        let reply = self.exchange(&reserve_frame(&h, cmd, macs));
        parse_reserve_reply(&reply)
    }

    /// An ATA request; returns the reply's header, ATA registers and the data after them.
    fn ata(&mut self, ata_header: &AtaHeader, data: &[u8]) -> (Header, AtaHeader, Vec<u8>) {
        let h = self.header(CMD_ATA);
        let reply = self.exchange(&ata_frame(&h, ata_header, data));
        let header = Header::parse(&reply).expect("reply parses");
        let regs = AtaHeader::parse(&reply, header.body_offset()).expect("ATA reply header");
        let data = reply[ata::data_offset(header.body_offset())..].to_vec();
        (header, regs, data)
    }
}

/// What AoE r11 requires of every reply: at least 60 bytes, version 1, R set, from the
/// target to the requester, the target's own shelf.slot, the request's tag and command.
fn check_reply(request: &Header, reply: &[u8], target: Mac) {
    assert!(
        reply.len() >= MIN_FRAME_LEN,
        "reply of {} bytes is shorter than 60: {reply:02x?}",
        reply.len()
    );
    let h = Header::parse(reply).expect("reply parses");
    assert_eq!(h.version, 1, "reply version: {reply:02x?}");
    assert!(h.is_response(), "R flag: {reply:02x?}");
    assert_eq!(h.flags & 0x03, 0, "reserved flag bits: {reply:02x?}");
    assert_eq!(h.dst, request.src, "reply goes to the requester");
    assert_eq!(h.src, target, "reply comes from the target's MAC");
    assert_eq!((h.major, h.minor), (SHELF, SLOT), "target's own address");
    assert_eq!(h.tag, request.tag, "tag echoed");
    assert_eq!(h.command, request.command, "command echoed");
}

fn parse_mask_reply(reply: &[u8]) -> (Header, MaskHeader, Vec<Mac>) {
    let h = Header::parse(reply).expect("reply parses");
    let m = MaskHeader::parse(reply, h.body_offset()).expect("mask reply header");
    let listed = if h.flags & FLAG_ERROR == 0 && m.merror == 0 {
        (0..usize::from(m.directive_count))
            .map(|i| {
                let d = Directive::parse(reply, h.body_offset(), i).expect("listed entry");
                d.mac
            })
            .collect()
    } else {
        Vec::new()
    };
    (h, m, listed)
}

fn parse_reserve_reply(reply: &[u8]) -> (Header, ReserveHeader, Vec<Mac>) {
    let h = Header::parse(reply).expect("reply parses");
    let r = ReserveHeader::parse(reply, h.body_offset()).expect("reserve reply header");
    let listed = if h.flags & FLAG_ERROR == 0 {
        (0..usize::from(r.nmacs))
            .map(|i| reserve::mac(reply, h.body_offset(), i).expect("listed MAC"))
            .collect()
    } else {
        Vec::new()
    };
    (h, r, listed)
}

fn aoe_error_of(h: &Header) -> Option<u8> {
    (h.flags & FLAG_ERROR != 0).then_some(h.error)
}

fn read_ext(lba: u64, sectors: u8) -> AtaHeader {
    AtaHeader {
        aflags: AFLAG_EXTENDED,
        err_feature: 0,
        sector_count: sectors,
        cmd_status: opcode::READ_SECTORS_EXT,
        lba_bytes: AtaHeader::lba_bytes_for(lba, true),
    }
}

fn identify_request() -> AtaHeader {
    AtaHeader {
        sector_count: 1,
        cmd_status: opcode::IDENTIFY_DEVICE,
        lba_bytes: [0, 0, 0, 0xa0, 0, 0],
        ..AtaHeader::default()
    }
}

fn target_mac(lab: &Lab) -> Mac {
    Mac(lab.target_mac())
}

/// Adds a macvlan `name` with `mac` on the client's veth end (a second client on the same
/// link; it goes away with the client namespace).
fn add_macvlan(lab: &Lab, name: &str, mac: Mac) {
    let mac = mac.to_string();
    for args in [
        vec![
            "link",
            "add",
            "link",
            lab.client_if(),
            "name",
            name,
            "address",
            &mac,
            "type",
            "macvlan",
            "mode",
            "bridge",
        ],
        vec!["link", "set", "dev", name, "up"],
    ] {
        let out = lab
            .command_in_client("ip")
            .args(&args)
            .output()
            .expect("run ip");
        assert!(out.status.success(), "ip {args:?}: {out:?}");
    }
}

// ---------------------------------------------------------------------------------------
// aoeping

fn aoeping(lab: &Lab, timeout_s: u32, shelf: &str, args: &[&str]) -> Output {
    lab.command_in_client("aoeping")
        .args(["-s", &timeout_s.to_string()])
        .args(args)
        .args([shelf, &slot_arg(), lab.client_if()])
        .output()
        .expect("run aoeping (apt-get install aoetools)")
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The bytes of aoeping's hex dump that follows the line containing `title`.
fn hex_dump_after(text: &str, title: &str) -> Vec<u8> {
    text.lines()
        .skip_while(|l| !l.contains(title))
        .skip(1)
        .take_while(|l| {
            !l.trim().is_empty()
                && l.split_whitespace()
                    .all(|w| w.len() == 2 && u8::from_str_radix(w, 16).is_ok())
        })
        .flat_map(|l| {
            l.split_whitespace()
                .map(|h| u8::from_str_radix(h, 16).expect("hex byte"))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn aoeping_finds_identifies_and_is_told_smart_is_unsupported() {
    require_root!();
    let lab = Lab::new("aoeping", LabOptions::default()).expect("lab");
    let dir = TempDir::new("aoeping");
    let image = dir.image("disk.img", IMAGE_BYTES);
    let daemon = Daemon::start(&lab, &dir, &image, &[]);
    let target = target_mac(&lab);

    // -v: finds e1.0 and dumps the Query Config reply, which must be a padded AoE reply.
    let out = aoeping(&lab, 5, &shelf_arg(), &["-v"]);
    assert!(out.status.success(), "aoeping -v: {out:?}");
    let text = stdout_of(&out);
    let hex_mac: String = target.0.iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        text.contains(&format!("found e{SHELF}.{SLOT} with mac {hex_mac}")),
        "{text}"
    );
    let config_reply = hex_dump_after(&text, "config query response:");
    assert!(config_reply.len() >= MIN_FRAME_LEN, "{text}");
    assert_eq!(&config_reply[12..14], &[0x88, 0xa2], "{text}");
    assert_eq!(config_reply[14], 0x18, "version 1, R set, no error: {text}");
    assert_eq!(config_reply[19], CMD_CONFIG, "{text}");

    // -i: the IDENTIFY sector as hex; capacity and the SMART-supported bit (word 82 bit 0).
    let out = aoeping(&lab, 5, &shelf_arg(), &["-i"]);
    assert!(out.status.success(), "aoeping -i: {out:?}");
    let text = stdout_of(&out);
    let identify: [u8; 512] = hex_dump_after(&text, "device identify response")
        .get(..512)
        .and_then(|s| s.try_into().ok())
        .unwrap_or_else(|| panic!("short identify dump:\n{text}"));
    assert_eq!(ata::identify_capacity_sectors(&identify), CAPACITY_SECTORS);
    assert_eq!(
        ata::identify_word(&identify, 82) & 1,
        0,
        "xblade does not claim SMART support"
    );

    // -I: the text fields.
    let out = aoeping(&lab, 5, &shelf_arg(), &["-I"]);
    assert!(out.status.success(), "aoeping -I: {out:?}");
    let text = stdout_of(&out);
    assert!(text.contains("model: xblade AoE target"), "{text}");
    assert!(
        text.contains(&format!("serial_number: XB{SHELF}.{SLOT}")),
        "{text}"
    );
    assert!(text.contains("firmware_rev: "), "{text}");

    // -S: aoeping reads IDENTIFY first and, since word 82 says no SMART, reports an error and
    // exits 1 without sending the command.
    let out = aoeping(&lab, 5, &shelf_arg(), &["-S", "return_status"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "aoeping -S return_status: {out:?}"
    );
    assert!(
        stderr_of(&out).contains(&format!("e{SHELF}.{SLOT} does not support SMART")),
        "{out:?}"
    );
    // The SMART command as aoeping would send it (features = subcommand, LBA mid/high =
    // 0x4f/0xc2) is refused with ATA ABRT, in the ATA status, never with the AoE E flag.
    let mut wire = Wire::new(open_client(&lab, lab.client_if(), 500, 2), target);
    for (feature, count) in [(0xdau8, 0u8), (0xd0, 1), (0xd8, 0)] {
        let smart = AtaHeader {
            err_feature: feature,
            sector_count: count,
            cmd_status: opcode::SMART,
            lba_bytes: [0, 0x4f, 0xc2, 0xa0, 0, 0],
            ..AtaHeader::default()
        };
        let (h, regs, _) = wire.ata(&smart, &[]);
        assert_eq!(aoe_error_of(&h), None, "SMART {feature:#x}: no AoE error");
        assert_eq!(
            (regs.cmd_status, regs.err_feature),
            (ata::status::FAILED, ata::error::ABRT),
            "SMART {feature:#x}: ATA ABRT"
        );
    }

    // A shelf nobody serves: aoeping waits for its timeout and fails (killed by SIGALRM).
    let started = Instant::now();
    let out = aoeping(&lab, 1, "7", &["-v"]);
    assert!(!out.status.success(), "aoeping to e7.0 succeeded: {out:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));

    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
    assert_eq!(
        summary_count(&exit.stdout, "ata"),
        Some(3),
        "{}",
        exit.stdout
    );
    assert_eq!(
        summary_count(&exit.stdout, "aoe"),
        Some(0),
        "{}",
        exit.stdout
    );
}

// ---------------------------------------------------------------------------------------
// aoecfg

/// Runs `aoecfg -t TIMEOUT ARGS SHELF SLOT IF` (or without shelf and slot, the wildcards)
/// and returns its output and run time.
fn aoecfg(lab: &Lab, timeout_s: u32, args: &[&str], addressed: bool) -> (Output, Duration) {
    let mut cmd = lab.command_in_client("aoecfg");
    cmd.args(["-t", &timeout_s.to_string()]).args(args);
    if addressed {
        cmd.args([shelf_arg(), slot_arg()]);
    }
    cmd.arg(lab.client_if());
    let started = Instant::now();
    let out = cmd.output().expect("run aoecfg (apt-get install aoetools)");
    (out, started.elapsed())
}

/// aoecfg that must answer at once with `expect` on stdout and exit 0.
fn aoecfg_answers(lab: &Lab, args: &[&str], expect: &str) {
    let (out, took) = aoecfg(lab, 5, args, true);
    assert!(out.status.success(), "aoecfg {args:?}: {out:?}");
    assert_eq!(stdout_of(&out), format!("{expect}\n"), "aoecfg {args:?}");
    assert!(
        took < Duration::from_secs(4),
        "aoecfg {args:?} answered only after {took:?}"
    );
}

/// aoecfg that must hear nothing: prints nothing, exits 0 when its timeout expires.
fn aoecfg_times_out(lab: &Lab, args: &[&str]) {
    let (out, took) = aoecfg(lab, 1, args, true);
    assert!(out.status.success(), "aoecfg {args:?}: {out:?}");
    assert_eq!(stdout_of(&out), "", "aoecfg {args:?} got an answer");
    assert!(
        took >= Duration::from_millis(900),
        "aoecfg {args:?} returned after {took:?}, before its timeout"
    );
}

#[test]
fn aoecfg_reads_sets_tests_and_force_sets_the_config_string() {
    require_root!();
    let lab = Lab::new("aoecfg", LabOptions::default()).expect("lab");
    let dir = TempDir::new("aoecfg");
    let image = dir.image("disk.img", IMAGE_BYTES);
    let daemon = Daemon::start(&lab, &dir, &image, &[]);
    let mut wire = Wire::new(open_client(&lab, lab.client_if(), 500, 2), target_mac(&lab));

    aoecfg_answers(&lab, &[], "");
    aoecfg_answers(&lab, &["-c", "set", "-s", "rack7/xblade"], "rack7/xblade");
    aoecfg_answers(&lab, &["-c", "read"], "rack7/xblade");
    // Wildcard query: aoecfg prints "shelf.slot<TAB>string" and stops at the first answer.
    let (out, _) = aoecfg(&lab, 5, &[], false);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout_of(&out), format!("{SHELF}.{SLOT}\track7/xblade\n"));

    // Test: exact match answers, anything else is silent.
    aoecfg_answers(&lab, &["-c", "test", "-s", "rack7/xblade"], "rack7/xblade");
    aoecfg_times_out(&lab, &["-c", "test", "-s", "rack7"]);
    aoecfg_times_out(&lab, &["-c", "test", "-s", "rack7/xblade2"]);
    // Prefix test: the request's string must be a prefix of the target's.
    aoecfg_answers(&lab, &["-c", "prefix", "-s", "rack7/"], "rack7/xblade");
    aoecfg_answers(
        &lab,
        &["-c", "prefix", "-s", "rack7/xblade"],
        "rack7/xblade",
    );
    aoecfg_times_out(&lab, &["-c", "prefix", "-s", "rack8"]);
    aoecfg_times_out(&lab, &["-c", "prefix", "-s", "rack7/xblade/more"]);

    // Set-if-empty with the same string succeeds; with another one aoecfg prints the error.
    aoecfg_answers(&lab, &["-c", "set", "-s", "rack7/xblade"], "rack7/xblade");
    aoecfg_answers(&lab, &["-c", "set", "-s", "other"], "*badcfg*");
    // What aoecfg cannot show: error 4 carries the current string.
    let reply = wire.config(ConfigCommand::SetIfEmpty, b"other");
    let h = Header::parse(&reply).expect("reply");
    assert_eq!(aoe_error_of(&h), Some(4), "config string present");
    let cfg = ConfigHeader::parse(&reply, h.body_offset()).expect("config header");
    assert_eq!(cfg.ccmd, ConfigCommand::SetIfEmpty as u8);
    assert_eq!(
        config::string(&reply, h.body_offset(), cfg.string_len),
        Ok(&b"rack7/xblade"[..]),
        "the current string"
    );
    aoecfg_answers(&lab, &["-c", "read"], "rack7/xblade");

    // Force set replaces it.
    aoecfg_answers(&lab, &["-c", "fset", "-s", "other"], "other");
    aoecfg_answers(&lab, &[], "other");
    let reply = wire.config(ConfigCommand::Read, b"");
    let h = Header::parse(&reply).expect("reply");
    let cfg = ConfigHeader::parse(&reply, h.body_offset()).expect("config header");
    assert_eq!(aoe_error_of(&h), None);
    assert_eq!((cfg.aoe_version, cfg.ccmd), (1, 0));
    assert_eq!(cfg.sector_count, 2, "(1500 - 36) / 512 sectors per frame");
    assert_eq!(cfg.buffer_count, 128, "default buffer count");
    assert_eq!(
        config::string(&reply, h.body_offset(), cfg.string_len),
        Ok(&b"other"[..])
    );
    // A string longer than 1024 bytes: error 2, and the string stays.
    let reply = wire.config(ConfigCommand::ForceSet, &[b'y'; 1025]);
    assert_eq!(
        aoe_error_of(&Header::parse(&reply).expect("reply")),
        Some(2)
    );
    aoecfg_answers(&lab, &[], "other");
    // A CCmd AoE r11 does not define: error 2.
    let head = wire.header(CMD_CONFIG);
    let reply = wire.exchange(&config_frame(&head, 5, b""));
    assert_eq!(
        aoe_error_of(&Header::parse(&reply).expect("reply")),
        Some(2)
    );

    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
}

// ---------------------------------------------------------------------------------------
// MAC Mask List

#[test]
fn mac_mask_list_edits_over_the_wire() {
    require_root!();
    let lab = Lab::new("mask", LabOptions::default()).expect("lab");
    let dir = TempDir::new("mask");
    let image = dir.image("disk.img", IMAGE_BYTES);
    let daemon = Daemon::start(&lab, &dir, &image, &[]);
    let mut wire = Wire::new(initiator(&lab, 500, 2), target_mac(&lab));
    let me = wire.own;
    let other = Mac([0x02, 0, 0, 0, 0x0e, 0x01]);

    let (h, m, list) = wire.mask(mcmd::READ, &[]);
    assert_eq!((aoe_error_of(&h), m.merror, list), (None, 0, vec![]));

    // Add the client and another MAC: the reply carries the whole list.
    let (h, m, list) = wire.mask(mcmd::EDIT, &[(dcmd::ADD, me), (dcmd::ADD, other)]);
    assert_eq!((aoe_error_of(&h), m.mcmd, m.merror), (None, mcmd::EDIT, 0));
    assert_eq!(list, vec![me, other]);
    let (_, _, list) = wire.mask(mcmd::READ, &[]);
    assert_eq!(list, vec![me, other], "read back");
    // Adding a listed MAC again changes nothing; the client, being listed, is served.
    let (_, _, list) = wire.mask(mcmd::EDIT, &[(dcmd::ADD, me)]);
    assert_eq!(list, vec![me, other]);
    let mut sector = vec![0u8; 512];
    wire.client
        .read(0, &mut sector)
        .expect("a listed client is served");

    // Delete.
    let (_, m, list) = wire.mask(mcmd::EDIT, &[(dcmd::DELETE, other)]);
    assert_eq!((m.merror, list.clone()), (0, vec![me]));

    // Fill to 64 entries: of 64 adds the last one (index 63) finds the list full.
    let fill: Vec<Mac> = (0..64u8).map(|i| Mac([0x02, 0, 0, 0, 0x0f, i])).collect();
    let directives: Vec<(u8, Mac)> = fill.iter().map(|&mac| (dcmd::ADD, mac)).collect();
    let (h, m, _) = wire.mask(mcmd::EDIT, &directives);
    assert_eq!(aoe_error_of(&h), None, "MError, not the AoE error flag");
    assert_eq!(
        (m.merror, m.directive_count),
        (merror::LIST_FULL, 63),
        "list full at directive 63"
    );
    let (_, m, list) = wire.mask(mcmd::READ, &[]);
    assert_eq!(m.directive_count, 64);
    let mut want = vec![me];
    want.extend_from_slice(&fill[..63]);
    assert_eq!(
        list, want,
        "the directives before the failing one stay applied"
    );
    let (_, m, _) = wire.mask(mcmd::EDIT, &[(dcmd::ADD, other)]);
    assert_eq!((m.merror, m.directive_count), (merror::LIST_FULL, 0));

    // A bad DCmd: MError 2 and its index.
    let (h, m, _) = wire.mask(
        mcmd::EDIT,
        &[(dcmd::NONE, other), (dcmd::DELETE, fill[0]), (7, other)],
    );
    assert_eq!(aoe_error_of(&h), None);
    assert_eq!((m.merror, m.directive_count), (merror::BAD_DIRECTIVE, 2));

    // Empty the list again (the client last), then the list reads back empty.
    let directives: Vec<(u8, Mac)> = fill.iter().map(|&mac| (dcmd::DELETE, mac)).collect();
    let (_, m, list) = wire.mask(mcmd::EDIT, &directives);
    assert_eq!((m.merror, list), (0, vec![me]));
    let (_, m, list) = wire.mask(mcmd::EDIT, &[(dcmd::DELETE, me)]);
    assert_eq!((m.merror, list), (0, vec![]));
    // A directive count larger than the frame holds, and an undefined MCmd, are refused
    // (AoE error 2, or an MError naming the first directive that is not there).
    let head = wire.header(CMD_MASK);
    let mut frame = mask_frame(&head, mcmd::EDIT, &[(dcmd::NONE, other)]);
    frame[27] = 5;
    let (h, m, _) = parse_mask_reply(&wire.exchange(&frame));
    assert!(
        aoe_error_of(&h) == Some(2) || (m.merror != 0 && m.directive_count == 1),
        "directive count 5 in a frame holding 1: {h:?} {m:?}"
    );
    let head = wire.header(CMD_MASK);
    let (h, m, _) = parse_mask_reply(&wire.exchange(&mask_frame(&head, 9, &[])));
    assert!(
        aoe_error_of(&h) == Some(2) || m.merror != 0,
        "MCmd 9: {h:?} {m:?}"
    );
    let (_, _, list) = wire.mask(mcmd::READ, &[]);
    assert_eq!(list, vec![], "nothing was added by refused edits");

    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
}

/// Waits until the daemon has saved `mac` into the state file: it mirrors the mask list
/// into the XDP ACL map before it saves, so afterwards the kernel enforces the list.
fn wait_until_saved(state: &Path, line: &str) {
    let saved = wait_for(Duration::from_secs(5), || {
        common::read(state).lines().any(|l| l.trim() == line)
    });
    assert!(
        saved,
        "state file never got {line:?}: {}",
        common::read(state)
    );
}

#[test]
fn a_mask_list_without_the_client_drops_its_frames_in_xdp() {
    require_root!();
    let lab = Lab::new("acl", LabOptions::default()).expect("lab");
    let dir = TempDir::new("acl");
    let image = dir.image("disk.img", IMAGE_BYTES);
    let state = dir.0.join("state");
    let state_arg = state.to_string_lossy().into_owned();
    let daemon = Daemon::start(&lab, &dir, &image, &["--state-file", &state_arg]);
    let target = target_mac(&lab);
    let mut a = Wire::new(initiator(&lab, 300, 2), target);
    add_macvlan(&lab, "xbm0", MAC_B);
    let mut b_client = open_client(&lab, "xbm0", 300, 3);
    b_client.discover().expect("B finds the target");
    let mut b = Wire::new(b_client, target);

    // A puts only B on the list: from now on A does not exist for the target.
    let (_, m, list) = a.mask(mcmd::EDIT, &[(dcmd::ADD, MAC_B)]);
    assert_eq!((m.merror, list), (0, vec![MAC_B]));
    wait_until_saved(&state, &format!("mask {MAC_B}"));

    let mut sent = 0u64;
    for i in 0..60u64 {
        let frame = match i % 5 {
            0 => {
                let h = a.header(CMD_ATA);
                ata_frame(&h, &identify_request(), &[])
            }
            1 => {
                let h = a.header(CMD_ATA);
                ata_frame(&h, &read_ext(i, 1), &[])
            }
            2 => {
                let h = a.header(CMD_CONFIG);
                let mut h = h;
                h.dst = Mac::BROADCAST;
                config_frame(&h, 0, b"")
            }
            3 => {
                let h = a.header(CMD_MASK);
                mask_frame(&h, mcmd::EDIT, &[(dcmd::DELETE, MAC_B)])
            }
            _ => {
                let h = a.header(CMD_RESERVE);
                reserve_frame(&h, rcmd::READ, &[])
            }
        };
        a.client.send_raw(&frame).expect("send");
        sent += 1;
    }
    // Nothing comes back to A (A's socket may see frames for other MACs on the link: only
    // the target's frames to A count).
    let mut buf = vec![0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(1);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some(len) = a
            .client
            .recv_raw(&mut buf, left.as_millis() as u64 + 1)
            .expect("recv_raw")
        else {
            break;
        };
        let h = Header::parse(&buf[..len]);
        assert!(
            !h.is_ok_and(|h| h.src == target && h.dst == a.own),
            "a masked client got an answer: {:02x?}",
            &buf[..len]
        );
    }
    let mut sector = vec![0u8; 512];
    match a.client.read(0, &mut sector) {
        Err(e) if matches!(e.request_error(), Some(RequestError::Timeout { .. })) => {}
        other => panic!("a masked client's read must time out, got {other:?}"),
    }
    sent += 3; // the read: one transmission and two retransmissions

    // B is served, and B lifts the list.
    b.client.read(0, &mut sector).expect("B, listed, is served");
    let (_, m, list) = b.mask(mcmd::EDIT, &[(dcmd::DELETE, MAC_B)]);
    assert_eq!((m.merror, list), (0, vec![]));
    let saved = wait_for(Duration::from_secs(5), || {
        !common::read(&state).contains("mask ")
    });
    assert!(saved, "{}", common::read(&state));
    a.client.read(0, &mut sector).expect("A is served again");

    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
    let acl = summary_count(&exit.stdout, "dropped by ACL").expect("ACL counter");
    eprintln!("A sent {sent} frames while masked; XDP dropped {acl} by ACL");
    assert!(
        acl >= sent,
        "XDP dropped {acl} frames, A sent {sent} while masked:\n{}",
        exit.stdout
    );
    assert_eq!(
        summary_count(&exit.stdout, "masked"),
        Some(0),
        "no masked frame reached userspace:\n{}",
        exit.stdout
    );
}

#[test]
fn the_mask_option_seeds_the_list_at_start_up() {
    require_root!();
    let lab = Lab::new("seed", LabOptions::default()).expect("lab");
    let dir = TempDir::new("seed");
    let image = dir.image("disk.img", IMAGE_BYTES);
    add_macvlan(&lab, "xbm0", MAC_B);
    let client_a = Mac(lab.client_mac());

    // Only B listed: A's discovery goes unanswered, B is served.
    let b_arg = MAC_B.to_string();
    let daemon = Daemon::start(&lab, &dir, &image, &["--no-state", "-m", &b_arg]);
    let mut a = open_client(&lab, lab.client_if(), 300, 2);
    match a.discover() {
        Err(InitiatorError::NoTarget { .. }) => {}
        other => panic!("an unlisted client is ignored: expected no target, got {other:?}"),
    }
    let mut b = open_client(&lab, "xbm0", 300, 2);
    b.discover().expect("a listed client is answered");
    assert_eq!(b.capacity_sectors().expect("identify"), CAPACITY_SECTORS);
    let mut wire = Wire::new(b, target_mac(&lab));
    let (_, _, list) = wire.mask(mcmd::READ, &[]);
    assert_eq!(list, vec![MAC_B], "-m is the mask list");
    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
    let acl = summary_count(&exit.stdout, "dropped by ACL").expect("ACL counter");
    assert!(acl >= 3, "A's 3 queries dropped in XDP:\n{}", exit.stdout);

    // Both listed (vblade's comma form, with a MAC in the unseparated form too).
    let both = format!(
        "{},{}",
        client_a,
        MAC_B
            .0
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let daemon = Daemon::start(&lab, &dir, &image, &["--no-state", "-m", &both]);
    let mut a = initiator(&lab, 300, 2);
    assert_eq!(a.capacity_sectors().expect("identify"), CAPACITY_SECTORS);
    let mut wire = Wire::new(a, target_mac(&lab));
    let (_, _, list) = wire.mask(mcmd::READ, &[]);
    assert_eq!(list, vec![client_a, MAC_B]);
    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
}

// ---------------------------------------------------------------------------------------
// Reserve/Release

fn aoe_code(err: &aoe_initiator::InitiatorError) -> Option<u8> {
    match err.request_error() {
        Some(RequestError::Aoe { code }) => Some(*code),
        _ => None,
    }
}

#[test]
fn a_reservation_guards_ata_commands_but_not_identify_or_config() {
    require_root!();
    let lab = Lab::new("resv", LabOptions::default()).expect("lab");
    let dir = TempDir::new("resv");
    let image = dir.image("disk.img", IMAGE_BYTES);
    let daemon = Daemon::start(&lab, &dir, &image, &["--no-state"]);
    let target = target_mac(&lab);
    let mut a = Wire::new(initiator(&lab, 300, 2), target);
    let me = a.own;
    add_macvlan(&lab, "xbm0", MAC_B);
    let mut b_client = open_client(&lab, "xbm0", 300, 2);
    b_client.discover().expect("B finds the target");
    let mut b = Wire::new(b_client, target);

    let (h, r, list) = a.reserve(rcmd::READ, &[]);
    assert_eq!((aoe_error_of(&h), r.nmacs, list), (None, 0, vec![]));
    let (h, r, list) = a.reserve(rcmd::SET, &[me]);
    assert_eq!((aoe_error_of(&h), r.rcmd), (None, rcmd::SET));
    assert_eq!(list, vec![me]);

    // The holder reads and writes.
    let data = pattern(10, 1, 2);
    a.client.write(10, &data).expect("holder writes");
    let mut back = vec![0u8; 1024];
    a.client.read(10, &mut back).expect("holder reads");
    assert_eq!(back, data);

    // B: ATA commands get error 6; IDENTIFY and Query Config are answered.
    let err = b.client.read(10, &mut back).expect_err("B's read");
    assert_eq!(aoe_code(&err), Some(6), "{err}");
    let err = b.client.write(20, &data).expect_err("B's write");
    assert_eq!(aoe_code(&err), Some(6), "{err}");
    let err = b.client.flush().expect_err("B's flush");
    assert_eq!(aoe_code(&err), Some(6), "{err}");
    assert_eq!(
        b.client.capacity_sectors().expect("B's IDENTIFY"),
        CAPACITY_SECTORS
    );
    b.client.discover().expect("B's Query Config");
    let reply = b.config(ConfigCommand::Read, b"");
    assert_eq!(aoe_error_of(&Header::parse(&reply).expect("reply")), None);
    // B cannot take the reservation with a plain set, but can read it.
    let (h, _, _) = b.reserve(rcmd::SET, &[MAC_B]);
    assert_eq!(aoe_error_of(&h), Some(6));
    let (h, _, list) = b.reserve(rcmd::READ, &[]);
    assert_eq!((aoe_error_of(&h), list), (None, vec![me]));

    // NMacs larger than the frame holds: error 2, reservation unchanged.
    let head = a.header(CMD_RESERVE);
    let mut frame = reserve_frame(&head, rcmd::SET, &[me, MAC_B]);
    frame.resize(MIN_FRAME_LEN, 0); // holds (60 - 26) / 6 = 5 MACs
    frame[25] = 6;
    let reply = a.exchange(&frame);
    assert_eq!(
        aoe_error_of(&Header::parse(&reply).expect("reply")),
        Some(2)
    );
    let head = a.header(CMD_RESERVE);
    let mut frame = raw_frame(&head, &[rcmd::FORCE_SET, 255]);
    frame.extend_from_slice(&me.0);
    let reply = a.exchange(&frame);
    assert_eq!(
        aoe_error_of(&Header::parse(&reply).expect("reply")),
        Some(2)
    );
    let (_, _, list) = a.reserve(rcmd::READ, &[]);
    assert_eq!(list, vec![me]);

    // Release (a set with no MACs): B is served again and sees A's data.
    let (h, r, list) = a.reserve(rcmd::SET, &[]);
    assert_eq!((aoe_error_of(&h), r.nmacs, list), (None, 0, vec![]));
    b.client
        .read(10, &mut back)
        .expect("B reads after the release");
    assert_eq!(back, data);

    // Force set takes a reservation from its holder.
    a.reserve(rcmd::SET, &[me]);
    let (h, _, list) = b.reserve(rcmd::FORCE_SET, &[MAC_B]);
    assert_eq!((aoe_error_of(&h), list), (None, vec![MAC_B]));
    let err = a.client.read(10, &mut back).expect_err("A lost it");
    assert_eq!(aoe_code(&err), Some(6), "{err}");
    b.reserve(rcmd::SET, &[]);
    a.client.read(10, &mut back).expect("released");

    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
}

// ---------------------------------------------------------------------------------------
// Odd requests, framing

#[test]
fn versions_unknown_commands_responses_and_lba28_device_bits() {
    require_root!();
    let lab = Lab::new("odd", LabOptions::default()).expect("lab");
    let dir = TempDir::new("odd");
    // Larger than 2^24 sectors (sparse), so LBA28 bits 24-27 (the low nibble of LBA byte 3)
    // matter.
    let sectors: u64 = (1 << 24) + 4096;
    let image = dir.image("big.img", sectors * 512);
    let daemon = Daemon::start(&lab, &dir, &image, &["--no-state"]);
    let mut wire = Wire::new(initiator(&lab, 500, 2), target_mac(&lab));

    // Version 2 (and 0, 15): error 5 in a version 1 reply, the request's command echoed.
    for version in [2u8, 0, 15] {
        for command in [CMD_CONFIG, CMD_ATA] {
            let mut h = wire.header(command);
            h.version = version;
            let frame = match command {
                CMD_CONFIG => config_frame(&h, 0, b""),
                _ => ata_frame(&h, &read_ext(0, 1), &[]),
            };
            let reply = wire.exchange(&frame);
            let r = Header::parse(&reply).expect("reply");
            assert_eq!(
                (r.version, aoe_error_of(&r)),
                (1, Some(5)),
                "version {version} command {command}"
            );
        }
    }
    // Wildcard shelf and slot: answered with the target's own address (check_reply).
    let mut h = wire.header(CMD_CONFIG);
    (h.major, h.minor) = (aoe_proto::MAJOR_ANY, aoe_proto::MINOR_ANY);
    h.dst = Mac::BROADCAST;
    let reply = wire.exchange(&config_frame(&h, 0, b""));
    assert_eq!(aoe_error_of(&Header::parse(&reply).expect("reply")), None);
    // Unknown commands: error 1.
    for command in [0x55u8, 0x04, 0xf0] {
        let h = wire.header(command);
        let reply = wire.exchange(&raw_frame(&h, &[0u8; 16]));
        let r = Header::parse(&reply).expect("reply");
        assert_eq!(aoe_error_of(&r), Some(1), "command {command:#x}");
    }
    // A frame with R set is never answered.
    for command in [CMD_CONFIG, CMD_ATA, CMD_MASK, 0x55] {
        let mut h = wire.header(command);
        h.flags = FLAG_RESPONSE;
        let frame = match command {
            CMD_CONFIG => config_frame(&h, 0, b""),
            CMD_ATA => ata_frame(&h, &identify_request(), &[]),
            CMD_MASK => mask_frame(&h, mcmd::READ, &[]),
            _ => raw_frame(&h, &[0u8; 16]),
        };
        wire.expect_silence(&frame, "a response");
    }

    // LBA28 (no E flag): lba3 carries the device register nibble 0xE and LBA bits 24-27.
    let high = (1u64 << 24) + 5;
    let low = 5u64;
    wire.client
        .write(high, &pattern(high, 3, 1))
        .expect("write EXT");
    wire.client
        .write(low, &pattern(low, 3, 1))
        .expect("write EXT");
    for lba in [high, low] {
        let req = AtaHeader {
            aflags: 0,
            sector_count: 1,
            cmd_status: opcode::READ_SECTORS,
            lba_bytes: [
                lba as u8,
                (lba >> 8) as u8,
                (lba >> 16) as u8,
                0xe0 | ((lba >> 24) as u8 & 0x0f),
                0,
                0,
            ],
            ..AtaHeader::default()
        };
        let (h, regs, data) = wire.ata(&req, &[]);
        assert_eq!(aoe_error_of(&h), None);
        assert_eq!(regs.cmd_status, ata::status::OK, "LBA28 read at {lba}");
        assert_eq!(data, pattern(lba, 3, 1), "LBA28 read at {lba}");
    }
    // LBA28 WRITE SECTORS (0x30) the same way; read back with READ EXT.
    let lba = (1u64 << 24) + 77;
    let req = AtaHeader {
        aflags: AFLAG_WRITE,
        sector_count: 2,
        cmd_status: opcode::WRITE_SECTORS,
        lba_bytes: AtaHeader::lba_bytes_for(lba, false),
        ..AtaHeader::default()
    };
    assert_eq!(req.lba_bytes[3], 0xe1);
    let (h, regs, _) = wire.ata(&req, &pattern(lba, 4, 2));
    assert_eq!((aoe_error_of(&h), regs.cmd_status), (None, ata::status::OK));
    let mut back = vec![0u8; 1024];
    wire.client.read(lba, &mut back).expect("read EXT");
    assert_eq!(back, pattern(lba, 4, 2));

    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
    // The silence above could miss a late reply; the counters cannot: XDP handed all four
    // R-flagged frames to the kernel, so no worker saw (and answered) any of them.
    assert_eq!(
        summary_count(&exit.stdout, "responses"),
        Some(4),
        "the four frames with R set never reach a worker:\n{}",
        exit.stdout
    );
}

#[test]
fn every_reply_is_padded_to_sixty_bytes() {
    require_root!();
    let lab = Lab::new("pad", LabOptions::default()).expect("lab");
    let dir = TempDir::new("pad");
    let image = dir.image("disk.img", IMAGE_BYTES);
    // The client listens before the daemon starts, to hear its announcement.
    let mut wire = Wire::new(open_client(&lab, lab.client_if(), 500, 2), target_mac(&lab));
    let daemon = Daemon::start(&lab, &dir, &image, &["--no-state"]);
    let mut buf = vec![0u8; 2048];
    let len = wire
        .client
        .recv_raw(&mut buf, 5000)
        .expect("recv_raw")
        .expect("the start-up announcement");
    let announcement = &buf[..len];
    let h = Header::parse(announcement).expect("announcement parses");
    assert!(len >= MIN_FRAME_LEN, "{announcement:02x?}");
    assert_eq!(
        (h.dst, h.src, h.version, h.flags, h.tag, h.command),
        (Mac::BROADCAST, wire.target, 1, FLAG_RESPONSE, 0, CMD_CONFIG),
        "an unsolicited Query Config reply to the broadcast address"
    );
    assert_eq!((h.major, h.minor), (SHELF, SLOT));
    let cfg = ConfigHeader::parse(announcement, h.body_offset()).expect("config header");
    assert_eq!((cfg.aoe_version, cfg.sector_count), (1, 2));

    // One request of every reply kind, each as the Linux driver sends it (no padding on the
    // request either), with the exact length its reply must have on the wire: the reply's
    // own content, padded with zeros to 60 bytes when shorter. Checked on the raw frames as
    // received.
    struct Case {
        name: &'static str,
        frame: Vec<u8>,
        /// The reply's length before padding.
        content: usize,
        /// The AoE error the reply must carry (E flag), if any.
        aoe_error: Option<u8>,
        /// An ATA reply whose status must report failure (`status & 0xA9 != 0`).
        ata_failure: bool,
    }
    let me = wire.own;
    let others: Vec<Mac> = (1..=5u8).map(|i| Mac([0x02, 0, 0, 0, 0x5e, i])).collect();
    let ok = |name, frame, content| Case {
        name,
        frame,
        content,
        aoe_error: None,
        ata_failure: false,
    };
    let mut cases: Vec<Case> = Vec::new();
    let mut h = wire.header(CMD_CONFIG);
    h.dst = Mac::BROADCAST;
    cases.push(ok("config query, no string", config_frame(&h, 0, b""), 32));
    let h = wire.header(CMD_CONFIG);
    let short = b"ten bytes!";
    let set = config_frame(&h, ConfigCommand::SetIfEmpty as u8, short);
    cases.push(ok("config set, 10-byte string", set, 32 + 10));
    let long = [b'L'; 40];
    let h = wire.header(CMD_CONFIG);
    let force = config_frame(&h, ConfigCommand::ForceSet as u8, &long);
    cases.push(ok("config force set, 40-byte string", force, 32 + 40));
    let h = wire.header(CMD_CONFIG);
    cases.push(ok(
        "config read, 40-byte string",
        config_frame(&h, 0, b""),
        72,
    ));
    let h = wire.header(CMD_CONFIG);
    cases.push(Case {
        aoe_error: Some(4),
        ..ok(
            "config set refused: string present",
            config_frame(&h, ConfigCommand::SetIfEmpty as u8, short),
            32 + 40,
        )
    });
    let h = wire.header(CMD_CONFIG);
    let clear = config_frame(&h, ConfigCommand::ForceSet as u8, b"");
    cases.push(ok("config force set, empty string", clear, 32));

    let h = wire.header(CMD_MASK);
    cases.push(ok(
        "mask read, empty list",
        mask_frame(&h, mcmd::READ, &[]),
        28,
    ));
    let h = wire.header(CMD_MASK);
    let add_me = mask_frame(&h, mcmd::EDIT, &[(dcmd::ADD, me)]);
    cases.push(ok("mask edit, 1 entry", add_me, 28 + 8));
    let adds: Vec<(u8, Mac)> = others.iter().map(|&m| (dcmd::ADD, m)).collect();
    let h = wire.header(CMD_MASK);
    let add_all = mask_frame(&h, mcmd::EDIT, &adds);
    cases.push(ok("mask edit, 6 entries", add_all, 28 + 6 * 8));
    let h = wire.header(CMD_MASK);
    cases.push(ok(
        "mask read, 6 entries",
        mask_frame(&h, mcmd::READ, &[]),
        76,
    ));
    let mut deletes: Vec<(u8, Mac)> = others.iter().map(|&m| (dcmd::DELETE, m)).collect();
    deletes.push((dcmd::DELETE, me));
    let h = wire.header(CMD_MASK);
    let delete_all = mask_frame(&h, mcmd::EDIT, &deletes);
    cases.push(ok("mask edit, back to empty", delete_all, 28));

    let h = wire.header(CMD_RESERVE);
    cases.push(ok(
        "reserve read, none",
        reserve_frame(&h, rcmd::READ, &[]),
        26,
    ));
    let h = wire.header(CMD_RESERVE);
    let set_me = reserve_frame(&h, rcmd::SET, &[me]);
    cases.push(ok("reserve set, 1 MAC", set_me, 26 + 6));
    let mut six = vec![me];
    six.extend(&others);
    let h = wire.header(CMD_RESERVE);
    let set_six = reserve_frame(&h, rcmd::SET, &six);
    cases.push(ok("reserve set, 6 MACs", set_six, 26 + 36));
    let h = wire.header(CMD_RESERVE);
    cases.push(ok(
        "reserve read, 6 MACs",
        reserve_frame(&h, rcmd::READ, &[]),
        62,
    ));
    let h = wire.header(CMD_RESERVE);
    let force_other = reserve_frame(&h, rcmd::FORCE_SET, &others[..1]);
    cases.push(ok("reserve force set, 1 other MAC", force_other, 32));
    let h = wire.header(CMD_ATA);
    cases.push(Case {
        aoe_error: Some(6),
        ..ok(
            "ATA read refused: target reserved",
            ata_frame(&h, &read_ext(0, 1), &[]),
            36,
        )
    });
    let h = wire.header(CMD_RESERVE);
    let release = reserve_frame(&h, rcmd::FORCE_SET, &[]);
    cases.push(ok("reserve force set, released", release, 26));

    let h = wire.header(CMD_ATA);
    let write = AtaHeader {
        aflags: AFLAG_EXTENDED | AFLAG_WRITE,
        sector_count: 1,
        cmd_status: opcode::WRITE_SECTORS_EXT,
        lba_bytes: AtaHeader::lba_bytes_for(1, true),
        ..AtaHeader::default()
    };
    cases.push(ok("ATA write", ata_frame(&h, &write, &[0xa5; 512]), 36));
    for (name, cmd, failure) in [
        ("ATA flush ext", opcode::FLUSH_CACHE_EXT, false),
        ("ATA flush", opcode::FLUSH_CACHE, false),
        ("ATA check power mode", opcode::CHECK_POWER_MODE, false),
        ("ATA unknown opcode", 0x99, true),
    ] {
        let h = wire.header(CMD_ATA);
        let req = AtaHeader {
            aflags: if cmd == opcode::FLUSH_CACHE_EXT {
                AFLAG_EXTENDED
            } else {
                0
            },
            cmd_status: cmd,
            ..AtaHeader::default()
        };
        cases.push(Case {
            ata_failure: failure,
            ..ok(name, ata_frame(&h, &req, &[]), 36)
        });
    }
    let h = wire.header(CMD_ATA);
    let identify = ata_frame(&h, &identify_request(), &[]);
    cases.push(ok("ATA identify", identify, 36 + 512));
    let h = wire.header(CMD_ATA);
    cases.push(ok(
        "ATA read, 1 sector",
        ata_frame(&h, &read_ext(1, 1), &[]),
        548,
    ));
    let h = wire.header(CMD_ATA);
    cases.push(ok(
        "ATA read, 2 sectors",
        ata_frame(&h, &read_ext(0, 2), &[]),
        1060,
    ));
    let h = wire.header(CMD_ATA);
    cases.push(Case {
        ata_failure: true,
        ..ok(
            "ATA read past the end",
            ata_frame(&h, &read_ext(CAPACITY_SECTORS, 1), &[]),
            36,
        )
    });
    let h = wire.header(CMD_ATA);
    cases.push(Case {
        aoe_error: Some(2),
        ..ok(
            "AoE error: ATA count above maximum",
            ata_frame(&h, &read_ext(0, 3), &[]),
            36,
        )
    });
    let mut h = wire.header(CMD_CONFIG);
    h.version = 2;
    cases.push(Case {
        aoe_error: Some(5),
        ..ok("AoE error: version 2", config_frame(&h, 0, b""), 32)
    });
    let h = wire.header(0x55);
    cases.push(Case {
        aoe_error: Some(1),
        ..ok("AoE error: unknown command", raw_frame(&h, &[]), 24)
    });

    for case in &cases {
        let name = case.name;
        let reply = wire.exchange(&case.frame); // checks >= 60 bytes and the addressing
        let h = Header::parse(&reply).expect("reply");
        eprintln!("{name}: {} byte reply", reply.len());
        assert_eq!(
            aoe_error_of(&h),
            case.aoe_error,
            "{name}: AoE error: {reply:02x?}"
        );
        assert_eq!(
            reply.len(),
            case.content.max(MIN_FRAME_LEN),
            "{name}: reply length ({} bytes of content): {reply:02x?}",
            case.content
        );
        if h.command == CMD_ATA && case.aoe_error.is_none() {
            let regs = AtaHeader::parse(&reply, h.body_offset()).expect("ATA registers");
            assert_eq!(
                regs.cmd_status & 0xa9 != 0,
                case.ata_failure,
                "{name}: ATA status {:#04x}",
                regs.cmd_status
            );
        }
        // Everything past the reply's own content is zero padding: no stale frame data.
        if case.content < MIN_FRAME_LEN {
            assert!(
                reply[case.content..].iter().all(|&b| b == 0),
                "{name}: padding after {} bytes is not zero: {reply:02x?}",
                case.content
            );
        }
    }

    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
}

// ---------------------------------------------------------------------------------------
// tshark

/// A child process killed and reaped on drop if still running.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn pid(&self) -> i32 {
        self.0.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Sends `signal` and waits up to `timeout`; kills it if it does not exit by then.
    fn stop(&mut self, signal: i32, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.0.take()?;
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends a Query Config test with `marker` as its string (a mismatch: the target stays
/// silent) until the bytes show up in the capture file `pcap`.
fn capture_marker(wire: &mut Wire, pcap: &Path, marker: &[u8]) {
    let contains = || {
        fs::read(pcap)
            .map(|bytes| bytes.windows(marker.len()).any(|w| w == marker))
            .unwrap_or(false)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let h = wire.header(CMD_CONFIG);
        wire.client
            .send_raw(&config_frame(&h, ConfigCommand::Test as u8, marker))
            .expect("send marker");
        if wait_for(Duration::from_millis(500), contains) {
            return;
        }
    }
    panic!(
        "marker {:?} never reached the capture",
        String::from_utf8_lossy(marker)
    );
}

#[test]
fn tshark_decodes_every_reply_as_aoe() {
    require_root!();
    if !have_program("tshark") {
        eprintln!("skipped: tshark is not installed (apt-get install tshark)");
        return;
    }
    let lab = Lab::new("tshark", LabOptions::default()).expect("lab");
    let dir = TempDir::new("tshark");
    let image = dir.image("disk.img", IMAGE_BYTES);
    let daemon = Daemon::start(&lab, &dir, &image, &["--no-state"]);
    let target = target_mac(&lab);

    let pcap = dir.0.join("capture.pcapng");
    let tshark_err = dir.0.join("tshark.err");
    let mut capture = ChildGuard(Some(
        lab.command_in_client("tshark")
            .args(["-n", "-q", "-i", lab.client_if(), "-w"])
            .arg(&pcap)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&tshark_err).expect("tshark stderr"))
            .spawn()
            .expect("start tshark"),
    ));
    let mut marker_client = Wire::new(open_client(&lab, lab.client_if(), 500, 2), target);
    let started = wait_for(Duration::from_secs(30), || {
        common::read(&tshark_err).contains("Capture started")
    });
    assert!(
        started,
        "tshark did not start: {}",
        common::read(&tshark_err)
    );
    assert!(capture.pid() > 0);
    // The capture is live once a marker frame shows up in the file (dumpcap writes as it
    // goes).
    capture_marker(&mut marker_client, &pcap, b"xblade-capture-start");

    // A mixed run: discovery, IDENTIFY, writes and reads, flushes, control commands, errors.
    let mut client = initiator(&lab, 500, 2);
    client.capacity_sectors().expect("identify");
    let mut replies = 2u64;
    for i in 0..40u64 {
        let lba = i * 37;
        let data = pattern(lba, 9, 2);
        client.write(lba, &data).expect("write");
        let mut back = vec![0u8; 1024];
        client.read(lba, &mut back).expect("read");
        assert_eq!(back, data);
        replies += 2;
    }
    client.flush().expect("flush ext");
    client.flush_cache().expect("flush");
    client.check_power_mode().expect("power mode");
    let mut sector = vec![0u8; 512];
    assert!(client.read(CAPACITY_SECTORS, &mut sector).is_err());
    replies += 4;
    let mut wire = Wire::new(client, target);
    wire.config(ConfigCommand::SetIfEmpty, b"captured");
    wire.config(ConfigCommand::SetIfEmpty, b"other"); // error 4
    wire.config(ConfigCommand::Read, b"");
    wire.mask(mcmd::READ, &[]);
    wire.reserve(rcmd::READ, &[]);
    let mut h = wire.header(CMD_ATA);
    h.version = 2;
    wire.exchange(&ata_frame(&h, &read_ext(0, 1), &[]));
    let h = wire.header(0x55);
    wire.exchange(&raw_frame(&h, &[]));
    let h = wire.header(CMD_ATA);
    wire.exchange(&ata_frame(&h, &read_ext(0, 200), &[])); // error 2
    replies += 8;

    // Stop the capture once everything is in the file (SIGINT makes tshark stop at once,
    // dropping what dumpcap has not read yet), then decode it.
    capture_marker(&mut marker_client, &pcap, b"xblade-capture-end");
    let status = capture.stop(libc::SIGINT, Duration::from_secs(15));
    assert!(
        status.is_some(),
        "tshark did not stop: {}",
        common::read(&tshark_err)
    );
    let decoded = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&pcap)
        .arg("-V")
        .output()
        .expect("tshark -r");
    assert!(decoded.status.success(), "{decoded:?}");
    let text = stdout_of(&decoded);
    for marker in ["Malformed", "Expert Info (Error", "[Expert Info (Warning"] {
        if let Some(at) = text.find(marker) {
            let start = text[..at].rfind("\nFrame ").unwrap_or(0);
            panic!(
                "tshark flags a frame with {marker:?}:\n{}",
                &text[start..(at + 200).min(text.len())]
            );
        }
    }
    // Every frame from the target is an AoE response.
    let count = |filter: &str| -> u64 {
        let out = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&pcap)
            .args(["-Y", filter, "-T", "fields", "-e", "frame.number"])
            .output()
            .expect("tshark -Y");
        assert!(out.status.success(), "{out:?}");
        stdout_of(&out).lines().count() as u64
    };
    let from_target = count(&format!("eth.src == {target}"));
    let aoe_replies = count(&format!(
        "eth.src == {target} && aoe.response == 1 && aoe.version == 1 && frame.len >= 60"
    ));
    assert_eq!(
        from_target, aoe_replies,
        "every frame from the target decodes as a padded AoE v1 response"
    );
    assert!(
        aoe_replies >= replies,
        "{aoe_replies} AoE replies captured, the client got {replies}"
    );
    assert_eq!(
        count(&format!("eth.src == {target} && aoe.flags_error == 1")),
        4,
        "the four AoE error replies"
    );
    eprintln!("tshark decoded {aoe_replies} AoE replies");

    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
}

// ---------------------------------------------------------------------------------------
// vblade

/// One step of the differential sequence.
enum Step {
    Write(u64, Vec<u8>),
    Read(u64, usize),
}

/// What a target answered to the sequence.
#[derive(Debug, PartialEq)]
struct Transcript {
    capacity: u64,
    reads: Vec<(u64, Vec<u8>)>,
    past_end_read_failed: bool,
}

fn differential_steps() -> Vec<Step> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xb1ade);
    let mut steps = Vec::new();
    for round in 0..120u64 {
        let (lba, data) = common::random_extent(&mut rng, round, CAPACITY_SECTORS);
        steps.push(Step::Write(lba, data));
        if round % 3 == 0 {
            let sectors = rng.gen_range(1..=16usize);
            steps.push(Step::Read(
                rng.gen_range(0..=CAPACITY_SECTORS - sectors as u64),
                sectors,
            ));
        }
    }
    // Read back every write (later ones overwrite earlier ones on both targets alike), the
    // seeded region at the start and the last sector.
    let writes: Vec<(u64, usize)> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Write(lba, data) => Some((*lba, data.len() / 512)),
            Step::Read(..) => None,
        })
        .collect();
    for (lba, sectors) in writes {
        steps.push(Step::Read(lba, sectors));
    }
    steps.push(Step::Read(0, 64));
    steps.push(Step::Read(CAPACITY_SECTORS - 1, 1));
    steps
}

fn run_differential(client: &mut Initiator, steps: &[Step]) -> Transcript {
    let capacity = client.capacity_sectors().expect("identify");
    let mut reads = Vec::new();
    for step in steps {
        match step {
            Step::Write(lba, data) => client.write(*lba, data).expect("write"),
            Step::Read(lba, sectors) => {
                let mut buf = vec![0u8; sectors * 512];
                client.read(*lba, &mut buf).expect("read");
                reads.push((*lba, buf));
            }
        }
    }
    let mut sector = vec![0u8; 512];
    let past_end_read_failed = client.read(capacity, &mut sector).is_err();
    Transcript {
        capacity,
        reads,
        past_end_read_failed,
    }
}

#[test]
fn same_answers_as_vblade_on_the_same_link() {
    require_root!();
    if !Vblade::available() {
        return;
    }
    let lab = Lab::new("vblade", LabOptions::default()).expect("lab");
    let dir = TempDir::new("vblade");
    // The same starting image for both: random data in the first 64 sectors.
    let seed_image = dir.image("seed.img", IMAGE_BYTES);
    {
        use std::os::unix::fs::FileExt;
        let mut seed = vec![0u8; 64 * 512];
        rand::rngs::StdRng::seed_from_u64(7).fill(&mut seed[..]);
        let f = fs::OpenOptions::new()
            .write(true)
            .open(&seed_image)
            .expect("open seed image");
        f.write_all_at(&seed, 0).expect("seed");
    }
    let vblade_image = dir.0.join("vblade.img");
    let xblade_image = dir.0.join("xblade.img");
    fs::copy(&seed_image, &vblade_image).expect("copy");
    fs::copy(&seed_image, &xblade_image).expect("copy");
    let steps = differential_steps();

    // vblade first.
    let vblade_log = dir.0.join("vblade.log");
    let vblade = Vblade::start(&lab, SHELF, SLOT, &vblade_image, vblade_log).expect("start vblade");
    // vblade says nothing when it is ready: discovery retries until it answers.
    let mut client = open_client(&lab, lab.client_if(), 300, 20);
    client.discover().expect("vblade answers Query Config");
    let from_vblade = run_differential(&mut client, &steps);
    drop(client);
    drop(vblade);

    // Then xblade on its copy of the same image.
    let daemon = Daemon::start(&lab, &dir, &xblade_image, &["--no-state"]);
    let mut client = initiator(&lab, 500, 2);
    let from_xblade = run_differential(&mut client, &steps);
    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");

    assert_eq!(from_vblade.capacity, CAPACITY_SECTORS, "vblade's capacity");
    assert_eq!(from_xblade.capacity, from_vblade.capacity, "capacity");
    assert!(from_vblade.past_end_read_failed && from_xblade.past_end_read_failed);
    assert_eq!(from_xblade.reads.len(), from_vblade.reads.len());
    for ((lba, x), (_, v)) in from_xblade.reads.iter().zip(&from_vblade.reads) {
        assert!(
            x == v,
            "read at lba {lba} ({} sectors) differs",
            x.len() / 512
        );
    }
    // And the images themselves end up identical.
    let v = fs::read(&vblade_image).expect("read vblade image");
    let x = fs::read(&xblade_image).expect("read xblade image");
    assert_eq!(v.len(), x.len());
    if let Some(at) = v.iter().zip(&x).position(|(a, b)| a != b) {
        panic!("images differ first at byte {at} (sector {})", at / 512);
    }
}
