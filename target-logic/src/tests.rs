//! Every decision a target makes, without root: frames in, actions and reply bytes out.

use aoe_proto::ata::{self, opcode, AtaHeader};
use aoe_proto::config::{ConfigCommand, ConfigHeader};
use aoe_proto::mask::{self, dcmd, mcmd, merror, Directive, MaskHeader};
use aoe_proto::reserve::{self, rcmd, ReserveHeader};
use aoe_proto::{AoeError, Command, Header, Mac, FLAG_ERROR, FLAG_RESPONSE, MIN_FRAME_LEN};

use super::*;

const OWN: Mac = Mac([0x02, 0, 0, 0, 0, 0x01]);
const CLIENT: Mac = Mac([0x02, 0, 0, 0, 0, 0x02]);
const OTHER: Mac = Mac([0x02, 0, 0, 0, 0, 0x03]);
/// Frame capacity as the worker gives it: 4096-byte chunk less 256 + 220 headroom.
const CAPACITY: usize = 3620;
const SIZE_SECTORS: u64 = 1000;

fn config() -> TargetConfig {
    TargetConfig {
        major: 7,
        minor: 3,
        size_sectors: SIZE_SECTORS,
        offset_sectors: 10,
        read_only: false,
        max_sectors_per_frame: 2,
        buffer_count: 16,
        firmware_version: 0x4019,
        serial: "XB0007.3".into(),
        model: "xblade".into(),
    }
}

fn target() -> Target {
    target_with(config())
}

fn target_with(config: TargetConfig) -> Target {
    Target::new(config, OWN, TargetState::default())
}

fn header(src: Mac, command: Command) -> Header {
    Header {
        dst: OWN,
        src,
        vlan_tci: None,
        version: 1,
        flags: 0,
        error: 0,
        major: 7,
        minor: 3,
        command: command as u8,
        tag: 0x1234_5678,
    }
}

struct Frame {
    buf: Vec<u8>,
    len: usize,
}

impl Frame {
    fn new(hdr: Header) -> Frame {
        let mut buf = vec![0u8; CAPACITY];
        let len = hdr.encode(&mut buf).unwrap();
        Frame { buf, len }
    }

    fn ata(hdr: Header, command: u8, aflags: u8, lba: u64, count: u8, data: &[u8]) -> Frame {
        let mut f = Frame::new(hdr);
        AtaHeader {
            aflags,
            err_feature: 0,
            sector_count: count,
            cmd_status: command,
            lba_bytes: AtaHeader::lba_bytes_for(lba, aflags & ata::AFLAG_EXTENDED != 0),
        }
        .encode(&mut f.buf, 24)
        .unwrap();
        f.buf[36..36 + data.len()].copy_from_slice(data);
        f.len = 36 + data.len();
        f
    }

    /// READ SECTORS EXT from CLIENT.
    fn read(lba: u64, count: u8) -> Frame {
        Frame::ata(
            header(CLIENT, Command::Ata),
            opcode::READ_SECTORS_EXT,
            ata::AFLAG_EXTENDED,
            lba,
            count,
            &[],
        )
    }

    /// WRITE SECTORS EXT from CLIENT carrying `data`.
    fn write(lba: u64, count: u8, data: &[u8]) -> Frame {
        Frame::ata(
            header(CLIENT, Command::Ata),
            opcode::WRITE_SECTORS_EXT,
            ata::AFLAG_EXTENDED | ata::AFLAG_WRITE,
            lba,
            count,
            data,
        )
    }

    fn config(src: Mac, ccmd: u8, string: &[u8]) -> Frame {
        let mut f = Frame::new(header(src, Command::QueryConfig));
        ConfigHeader {
            ccmd,
            aoe_version: 1,
            string_len: string.len() as u16,
            ..Default::default()
        }
        .encode(&mut f.buf, 24)
        .unwrap();
        f.buf[32..32 + string.len()].copy_from_slice(string);
        f.len = 32 + string.len();
        f
    }

    fn mask(src: Mac, command: u8, directives: &[(u8, Mac)]) -> Frame {
        let mut f = Frame::new(header(src, Command::MacMaskList));
        MaskHeader {
            mcmd: command,
            merror: 0,
            directive_count: directives.len() as u8,
        }
        .encode(&mut f.buf, 24)
        .unwrap();
        for (i, (dcmd, mac)) in directives.iter().enumerate() {
            Directive {
                dcmd: *dcmd,
                mac: *mac,
            }
            .encode(&mut f.buf, 24, i)
            .unwrap();
        }
        f.len = mask::frame_len(24, directives.len());
        f
    }

    fn reserve(src: Mac, command: u8, macs: &[Mac]) -> Frame {
        let mut f = Frame::new(header(src, Command::ReserveRelease));
        ReserveHeader {
            rcmd: command,
            nmacs: macs.len() as u8,
        }
        .encode(&mut f.buf, 24)
        .unwrap();
        for (i, mac) in macs.iter().enumerate() {
            reserve::write_mac(&mut f.buf, 24, i, *mac).unwrap();
        }
        f.len = reserve::frame_len(24, macs.len());
        f
    }

    fn decide(&mut self, t: &Target) -> Action {
        t.decide(&mut self.buf, self.len)
    }

    fn reply_header(&self) -> Header {
        Header::parse(&self.buf).unwrap()
    }

    fn ata_reply(&self) -> AtaHeader {
        AtaHeader::parse(&self.buf, 24).unwrap()
    }
}

fn expect_reply(action: Action) -> (usize, ReplyKind, Option<StateChange>) {
    match action {
        Action::Reply { len, kind, change } => (len, kind, change),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn expect_io(action: Action) -> IoRequest {
    match action {
        Action::Io(io) => io,
        other => panic!("expected I/O, got {other:?}"),
    }
}

fn assert_reply_addressing(f: &Frame) {
    let h = f.reply_header();
    assert_eq!(h.dst, CLIENT);
    assert_eq!(h.src, OWN);
    assert_eq!((h.major, h.minor), (7, 3));
    assert_eq!(h.version, 1);
    assert_eq!(h.flags & FLAG_RESPONSE, FLAG_RESPONSE);
    assert_eq!(h.tag, 0x1234_5678);
}

#[test]
fn read_becomes_io_into_the_frame_with_window_offset() {
    let t = target();
    let mut f = Frame::read(998, 2);
    let io = expect_io(f.decide(&t));
    assert_eq!(io.kind, IoKind::Read);
    assert_eq!(io.offset_bytes, (10 + 998) * 512);
    assert_eq!(io.len_bytes, 1024);
    assert_eq!(io.data_offset, 36);
    assert_eq!(io.reply_len, 36 + 1024);
    assert_reply_addressing(&f);
    f.buf[36..36 + 1024].fill(0xab);
    let len = t.complete(&mut f.buf, &io, IoOutcome::Done);
    assert_eq!(len, 1060);
    let r = f.ata_reply();
    assert_eq!(
        (r.cmd_status, r.err_feature, r.sector_count),
        (ata::status::OK, 0, 0)
    );
    assert_eq!(r.lba(), 998, "LBA echoed");
}

#[test]
fn write_becomes_io_from_the_frame_and_replies_without_data() {
    let t = target();
    let data = [0x5a; 1024];
    let mut f = Frame::ata(
        header(CLIENT, Command::Ata),
        opcode::WRITE_SECTORS_EXT,
        ata::AFLAG_EXTENDED | ata::AFLAG_WRITE,
        0,
        2,
        &data,
    );
    let io = expect_io(f.decide(&t));
    assert_eq!(
        (io.kind, io.offset_bytes, io.len_bytes, io.data_offset),
        (IoKind::Write, 5120, 1024, 36)
    );
    assert_eq!(
        &f.buf[36..36 + 1024],
        &data[..],
        "payload untouched by the reply header"
    );
    assert_eq!(t.complete(&mut f.buf, &io, IoOutcome::Done), MIN_FRAME_LEN);
    assert_eq!(f.ata_reply().cmd_status, ata::status::OK);
}

#[test]
fn failed_io_maps_to_ata_errors_never_the_aoe_error_flag() {
    let t = target();
    let mut f = Frame::read(0, 1);
    let io = expect_io(f.decide(&t));
    assert_eq!(
        t.complete(&mut f.buf, &io, IoOutcome::Failed),
        MIN_FRAME_LEN,
        "no data on failure"
    );
    assert_eq!(
        (f.ata_reply().cmd_status, f.ata_reply().err_feature),
        (0x41, ata::error::UNC)
    );
    assert_eq!(f.reply_header().flags & FLAG_ERROR, 0);

    let mut f = Frame::write(0, 1, &[0; 512]);
    let io = expect_io(f.decide(&t));
    t.complete(&mut f.buf, &io, IoOutcome::Failed);
    assert_eq!(
        (f.ata_reply().cmd_status, f.ata_reply().err_feature),
        (0x41, ata::error::ABRT)
    );
    assert_eq!(f.reply_header().flags & FLAG_ERROR, 0);
}

#[test]
fn range_past_the_end_is_idnf_including_overflowing_lba() {
    let t = target();
    for (lba, count) in [(999u64, 2u8), (1000, 1), (0xFFFF_FFFF_FFFF, 2)] {
        let mut f = Frame::read(lba, count);
        let (len, kind, _) = expect_reply(f.decide(&t));
        assert_eq!(
            (len, kind),
            (MIN_FRAME_LEN, ReplyKind::AtaError),
            "lba {lba}"
        );
        assert_eq!(
            (f.ata_reply().cmd_status, f.ata_reply().err_feature),
            (0x41, ata::error::IDNF)
        );
    }
    // The last sector itself is fine.
    let mut f = Frame::read(999, 1);
    expect_io(f.decide(&t));
}

#[test]
fn lba28_masks_the_device_nibble() {
    let t = target();
    let mut f = Frame::ata(
        header(CLIENT, Command::Ata),
        opcode::READ_SECTORS,
        0,
        5,
        1,
        &[],
    );
    f.buf[31] = 0xe0; // device register nibble in LBA byte 3
    f.buf[32] = 0x77; // LBA bytes 4-5 are ignored for LBA28
    let io = expect_io(f.decide(&t));
    assert_eq!(io.offset_bytes, (10 + 5) * 512);
}

#[test]
fn count_above_maximum_and_short_write_are_aoe_bad_argument() {
    let t = target();
    let mut f = Frame::read(0, 3);
    let (len, kind, _) = expect_reply(f.decide(&t));
    assert_eq!(kind, ReplyKind::AoeError(AoeError::BadArgument));
    assert_eq!(len, MIN_FRAME_LEN);
    let h = f.reply_header();
    assert_eq!((h.flags & FLAG_ERROR, h.error), (FLAG_ERROR, 2));
    assert_eq!(
        f.buf[24 + 3],
        opcode::READ_SECTORS_EXT,
        "command header echoed"
    );

    let mut f = Frame::write(0, 2, &[1; 1023]);
    let (_, kind, _) = expect_reply(f.decide(&t));
    assert_eq!(kind, ReplyKind::AoeError(AoeError::BadArgument));
}

#[test]
fn read_only_export_aborts_writes_but_serves_reads() {
    let t = target_with(TargetConfig {
        read_only: true,
        ..config()
    });
    let mut f = Frame::write(0, 1, &[0; 512]);
    let (_, kind, _) = expect_reply(f.decide(&t));
    assert_eq!(kind, ReplyKind::AtaError);
    assert_eq!(
        (f.ata_reply().cmd_status, f.ata_reply().err_feature),
        (0x41, ata::error::ABRT)
    );
    let mut f = Frame::read(0, 1);
    expect_io(f.decide(&t));
}

#[test]
fn identify_copies_the_identify_sector() {
    let t = target();
    let mut f = Frame::ata(
        header(CLIENT, Command::Ata),
        opcode::IDENTIFY_DEVICE,
        0,
        0,
        1,
        &[],
    );
    let (len, kind, _) = expect_reply(f.decide(&t));
    assert_eq!((len, kind), (36 + 512, ReplyKind::Ata));
    let data: [u8; 512] = f.buf[36..548].try_into().unwrap();
    assert_eq!(ata::identify_capacity_sectors(&data), SIZE_SECTORS);
    assert_eq!(ata::identify_string(&data, 27..47), "xblade");
    assert_eq!(f.ata_reply().cmd_status, ata::status::OK);

    let mut f = Frame::ata(
        header(CLIENT, Command::Ata),
        opcode::IDENTIFY_DEVICE,
        0,
        0,
        2,
        &[],
    );
    let (_, kind, _) = expect_reply(f.decide(&t));
    assert_eq!(kind, ReplyKind::AoeError(AoeError::BadArgument));
}

#[test]
fn flush_power_mode_unknown_opcode_and_zero_count() {
    let t = target();
    let mut f = Frame::ata(
        header(CLIENT, Command::Ata),
        opcode::FLUSH_CACHE_EXT,
        ata::AFLAG_EXTENDED,
        0,
        0,
        &[],
    );
    assert_eq!(expect_io(f.decide(&t)).kind, IoKind::Flush);
    let mut f = Frame::ata(
        header(CLIENT, Command::Ata),
        opcode::FLUSH_CACHE,
        0,
        0,
        0,
        &[],
    );
    assert_eq!(expect_io(f.decide(&t)).kind, IoKind::Flush);

    let mut f = Frame::ata(
        header(CLIENT, Command::Ata),
        opcode::CHECK_POWER_MODE,
        0,
        0,
        0,
        &[],
    );
    expect_reply(f.decide(&t));
    assert_eq!(f.ata_reply().sector_count, ata::POWER_MODE_ACTIVE);
    assert_eq!(f.ata_reply().cmd_status, ata::status::OK);

    for op in [opcode::SMART, 0x00, 0xC8, 0xFF] {
        let mut f = Frame::ata(header(CLIENT, Command::Ata), op, 0, 0, 1, &[]);
        let (_, kind, _) = expect_reply(f.decide(&t));
        assert_eq!(kind, ReplyKind::AtaError, "opcode {op:#x}");
        assert_eq!(f.ata_reply().err_feature, ata::error::ABRT);
    }

    let mut f = Frame::read(3, 0);
    let (len, kind, _) = expect_reply(f.decide(&t));
    assert_eq!((len, kind), (MIN_FRAME_LEN, ReplyKind::Ata));
}

#[test]
fn drops_responses_foreign_addresses_and_short_frames() {
    let t = target();
    let mut h = header(CLIENT, Command::QueryConfig);
    h.flags = FLAG_RESPONSE;
    assert_eq!(
        Frame::config_with(h).decide(&t),
        Action::Drop(DropReason::Response)
    );
    let mut h = header(CLIENT, Command::QueryConfig);
    h.major = 8;
    assert_eq!(
        Frame::config_with(h).decide(&t),
        Action::Drop(DropReason::NotForUs)
    );
    let mut h = header(CLIENT, Command::QueryConfig);
    h.dst = OTHER;
    assert_eq!(
        Frame::config_with(h).decide(&t),
        Action::Drop(DropReason::NotForUs)
    );

    let mut f = Frame::read(0, 1);
    for len in 0..36 {
        f.len = len;
        assert!(
            matches!(f.decide(&t), Action::Drop(DropReason::Malformed)),
            "len {len}"
        );
    }
    let mut f = Frame::config(CLIENT, 0, b"");
    f.len = 31;
    assert_eq!(f.decide(&t), Action::Drop(DropReason::Malformed));
}

impl Frame {
    fn config_with(hdr: Header) -> Frame {
        let mut f = Frame::new(hdr);
        ConfigHeader::default().encode(&mut f.buf, 24).unwrap();
        f.len = 32;
        f
    }
}

#[test]
fn wildcards_are_answered_with_the_targets_own_address() {
    let t = target();
    let mut h = header(CLIENT, Command::QueryConfig);
    h.dst = Mac::BROADCAST;
    h.major = 0xFFFF;
    h.minor = 0xFF;
    let mut f = Frame::config_with(h);
    let (len, kind, _) = expect_reply(f.decide(&t));
    assert_eq!((len, kind), (MIN_FRAME_LEN, ReplyKind::Config));
    assert_reply_addressing(&f);
    let c = ConfigHeader::parse(&f.buf, 24).unwrap();
    assert_eq!(
        (
            c.buffer_count,
            c.firmware_version,
            c.sector_count,
            c.aoe_version
        ),
        (16, 0x4019, 2, 1)
    );
}

#[test]
fn other_versions_and_unknown_commands_get_aoe_errors() {
    let t = target();
    let mut h = header(CLIENT, Command::QueryConfig);
    h.version = 2;
    let mut f = Frame::config_with(h);
    let (_, kind, _) = expect_reply(f.decide(&t));
    assert_eq!(kind, ReplyKind::AoeError(AoeError::UnsupportedVersion));
    assert_eq!(
        f.reply_header().version,
        1,
        "we answer in the version we speak"
    );
    assert_eq!(f.reply_header().error, 5);

    for command in [4u8, 0x7f, 0xf0, 0xff] {
        let mut h = header(CLIENT, Command::Ata);
        h.command = command;
        let mut f = Frame::new(h);
        let (len, kind, _) = expect_reply(f.decide(&t));
        assert_eq!(
            (len, kind),
            (
                MIN_FRAME_LEN,
                ReplyKind::AoeError(AoeError::UnrecognizedCommand)
            )
        );
        assert_eq!(f.reply_header().command, command);
    }
}

#[test]
fn query_config_all_ccmds() {
    let t = target();
    let read = |t: &Target| {
        let mut f = Frame::config(CLIENT, ConfigCommand::Read as u8, b"");
        expect_reply(f.decide(t));
        let c = ConfigHeader::parse(&f.buf, 24).unwrap();
        f.buf[32..32 + usize::from(c.string_len)].to_vec()
    };
    assert_eq!(read(&t), b"");

    let mut f = Frame::config(CLIENT, ConfigCommand::SetIfEmpty as u8, b"host-a");
    let (_, kind, change) = expect_reply(f.decide(&t));
    assert_eq!(
        (kind, change),
        (ReplyKind::Config, Some(StateChange::ConfigString))
    );
    assert_eq!(read(&t), b"host-a");

    // Set-if-empty with the same string succeeds without a change; another is refused.
    let mut f = Frame::config(CLIENT, ConfigCommand::SetIfEmpty as u8, b"host-a");
    assert_eq!(expect_reply(f.decide(&t)).2, None);
    let mut f = Frame::config(CLIENT, ConfigCommand::SetIfEmpty as u8, b"host-b");
    let (_, kind, change) = expect_reply(f.decide(&t));
    assert_eq!(
        (kind, change),
        (ReplyKind::AoeError(AoeError::ConfigStringPresent), None)
    );
    assert_eq!(f.reply_header().error, 4);
    assert_eq!(
        &f.buf[32..38],
        b"host-a",
        "error 4 carries the current string"
    );

    assert!(matches!(
        Frame::config(CLIENT, 1, b"host-a").decide(&t),
        Action::Reply { .. }
    ));
    assert_eq!(
        Frame::config(CLIENT, 1, b"host").decide(&t),
        Action::Drop(DropReason::ConfigMismatch)
    );
    assert!(matches!(
        Frame::config(CLIENT, 2, b"host").decide(&t),
        Action::Reply { .. }
    ));
    assert_eq!(
        Frame::config(CLIENT, 2, b"hostx").decide(&t),
        Action::Drop(DropReason::ConfigMismatch)
    );

    let mut f = Frame::config(CLIENT, ConfigCommand::ForceSet as u8, &[b'z'; 1024]);
    assert_eq!(
        expect_reply(f.decide(&t)).2,
        Some(StateChange::ConfigString)
    );
    assert_eq!(read(&t), vec![b'z'; 1024]);

    for ccmd in [5u8, 15] {
        let (_, kind, _) = expect_reply(Frame::config(CLIENT, ccmd, b"").decide(&t));
        assert_eq!(kind, ReplyKind::AoeError(AoeError::BadArgument));
    }
    let mut f = Frame::config(CLIENT, 4, &[b'y'; 1024]);
    ConfigHeader {
        ccmd: 4,
        aoe_version: 1,
        string_len: 1025,
        ..Default::default()
    }
    .encode(&mut f.buf, 24)
    .unwrap();
    f.len = 32 + 1025;
    assert_eq!(
        expect_reply(f.decide(&t)).1,
        ReplyKind::AoeError(AoeError::BadArgument)
    );
    let mut f = Frame::config(CLIENT, 4, b"abc");
    f.len -= 1; // the length field says 3, the frame holds 2
    assert_eq!(
        expect_reply(f.decide(&t)).1,
        ReplyKind::AoeError(AoeError::BadArgument)
    );
    assert_eq!(read(&t), vec![b'z'; 1024], "failed sets change nothing");
}

#[test]
fn mask_list_edits_reads_and_enforces() {
    let t = target();
    let mut f = Frame::mask(
        CLIENT,
        mcmd::EDIT,
        &[
            (dcmd::ADD, CLIENT),
            (dcmd::ADD, OTHER),
            (dcmd::ADD, OWN),
            (dcmd::DELETE, OWN),
        ],
    );
    let (len, kind, change) = expect_reply(f.decide(&t));
    assert_eq!(
        (kind, change),
        (ReplyKind::MaskList, Some(StateChange::MaskList))
    );
    assert_eq!(len, mask::frame_len(24, 2).max(MIN_FRAME_LEN));
    let m = MaskHeader::parse(&f.buf, 24).unwrap();
    assert_eq!((m.merror, m.directive_count), (0, 2));
    assert_eq!(Directive::parse(&f.buf, 24, 0).unwrap().mac, CLIENT);
    assert_eq!(Directive::parse(&f.buf, 24, 1).unwrap().mac, OTHER);
    assert_eq!(t.state().mask.as_slice(), &[CLIENT, OTHER]);

    // A sender not on the list is ignored entirely.
    let stranger = Mac([2, 0, 0, 0, 0, 9]);
    assert_eq!(
        Frame::config(stranger, 0, b"").decide(&t),
        Action::Drop(DropReason::Masked)
    );
    let mut f = Frame::ata(
        header(stranger, Command::Ata),
        opcode::READ_SECTORS_EXT,
        ata::AFLAG_EXTENDED,
        0,
        1,
        &[],
    );
    assert_eq!(f.decide(&t), Action::Drop(DropReason::Masked));

    // A bad directive stops the edit at its index; the ones before it applied.
    let mut f = Frame::mask(
        CLIENT,
        mcmd::EDIT,
        &[(dcmd::DELETE, OTHER), (7, OWN), (dcmd::ADD, OWN)],
    );
    let (_, _, change) = expect_reply(f.decide(&t));
    let m = MaskHeader::parse(&f.buf, 24).unwrap();
    assert_eq!((m.merror, m.directive_count), (merror::BAD_DIRECTIVE, 1));
    assert_eq!(change, Some(StateChange::MaskList));
    assert_eq!(t.state().mask.as_slice(), &[CLIENT]);

    // Read.
    let mut f = Frame::mask(CLIENT, mcmd::READ, &[]);
    expect_reply(f.decide(&t));
    assert_eq!(MaskHeader::parse(&f.buf, 24).unwrap().directive_count, 1);

    // Truncated directive list and unknown MCmd: bad argument.
    let mut f = Frame::mask(CLIENT, mcmd::EDIT, &[(dcmd::ADD, OTHER)]);
    f.len -= 1;
    assert_eq!(
        expect_reply(f.decide(&t)).1,
        ReplyKind::AoeError(AoeError::BadArgument)
    );
    assert_eq!(
        expect_reply(Frame::mask(CLIENT, 2, &[]).decide(&t)).1,
        ReplyKind::AoeError(AoeError::BadArgument)
    );

    // Removing the last entry opens the target again.
    let mut f = Frame::mask(CLIENT, mcmd::EDIT, &[(dcmd::DELETE, CLIENT)]);
    expect_reply(f.decide(&t));
    assert!(matches!(
        Frame::config(stranger, 0, b"").decide(&t),
        Action::Reply { .. }
    ));
}

#[test]
fn mask_list_full_reports_the_failing_index() {
    let t = target();
    let macs: Vec<(u8, Mac)> = (0..=MAX_MASK_ENTRIES as u8)
        .map(|i| (dcmd::ADD, Mac([2, 1, 0, 0, 0, i])))
        .collect();
    let mut f = Frame::mask(macs[0].1, mcmd::EDIT, &macs);
    let (_, _, change) = expect_reply(f.decide(&t));
    let m = MaskHeader::parse(&f.buf, 24).unwrap();
    assert_eq!(
        (m.merror, usize::from(m.directive_count)),
        (merror::LIST_FULL, MAX_MASK_ENTRIES)
    );
    assert_eq!(change, Some(StateChange::MaskList));
    assert_eq!(t.state().mask.len(), MAX_MASK_ENTRIES);
}

#[test]
fn reservation_guards_ata_but_not_identify_or_config() {
    let t = target();
    let mut f = Frame::reserve(CLIENT, rcmd::SET, &[CLIENT]);
    let (len, kind, change) = expect_reply(f.decide(&t));
    assert_eq!(
        (kind, change),
        (ReplyKind::Reserve, Some(StateChange::Reservation))
    );
    assert_eq!(len, MIN_FRAME_LEN);
    assert_eq!(ReserveHeader::parse(&f.buf, 24).unwrap().nmacs, 1);
    assert_eq!(reserve::mac(&f.buf, 24, 0).unwrap(), CLIENT);

    let mut f = Frame::ata(
        header(OTHER, Command::Ata),
        opcode::READ_SECTORS_EXT,
        ata::AFLAG_EXTENDED,
        0,
        1,
        &[],
    );
    f.buf[0..6].copy_from_slice(&OWN.0);
    let (_, kind, _) = expect_reply(f.decide(&t));
    assert_eq!(kind, ReplyKind::AoeError(AoeError::TargetReserved));
    assert_eq!(f.reply_header().dst, OTHER);
    let mut f = Frame::ata(
        header(OTHER, Command::Ata),
        opcode::IDENTIFY_DEVICE,
        0,
        0,
        1,
        &[],
    );
    assert_eq!(expect_reply(f.decide(&t)).1, ReplyKind::Ata);
    assert_eq!(
        expect_reply(Frame::config(OTHER, 0, b"").decide(&t)).1,
        ReplyKind::Config
    );
    let mut f = Frame::read(0, 1);
    expect_io(f.decide(&t));

    // Set by a non-holder fails; force set succeeds; an empty set releases.
    let (_, kind, _) = expect_reply(Frame::reserve(OTHER, rcmd::SET, &[OTHER]).decide(&t));
    assert_eq!(kind, ReplyKind::AoeError(AoeError::TargetReserved));
    expect_reply(Frame::reserve(OTHER, rcmd::FORCE_SET, &[OTHER]).decide(&t));
    assert_eq!(t.state().reservation.as_slice(), &[OTHER]);
    expect_reply(Frame::reserve(OTHER, rcmd::SET, &[]).decide(&t));
    assert!(t.state().reservation.is_empty());
    let mut f = Frame::read(0, 1);
    expect_io(f.decide(&t));
}

#[test]
fn reserve_rejects_more_macs_than_the_frame_holds() {
    let t = target();
    let mut f = Frame::reserve(CLIENT, rcmd::SET, &[CLIENT, OTHER]);
    f.len -= 1;
    assert_eq!(
        expect_reply(f.decide(&t)).1,
        ReplyKind::AoeError(AoeError::BadArgument)
    );
    let mut f = Frame::reserve(CLIENT, rcmd::SET, &[CLIENT]);
    f.buf[25] = 255;
    assert_eq!(
        expect_reply(f.decide(&t)).1,
        ReplyKind::AoeError(AoeError::BadArgument)
    );
    assert_eq!(
        expect_reply(Frame::reserve(CLIENT, 3, &[]).decide(&t)).1,
        ReplyKind::AoeError(AoeError::BadArgument)
    );
    assert!(t.state().reservation.is_empty());
}

#[test]
fn vlan_tagged_requests_get_tagged_replies() {
    let t = target();
    let mut h = header(CLIENT, Command::Ata);
    h.vlan_tci = Some(42);
    let mut f = Frame::new(h);
    AtaHeader {
        aflags: ata::AFLAG_EXTENDED,
        sector_count: 1,
        cmd_status: opcode::READ_SECTORS_EXT,
        ..Default::default()
    }
    .encode(&mut f.buf, 28)
    .unwrap();
    f.len = 40;
    let io = expect_io(f.decide(&t));
    assert_eq!(
        (io.body_offset, io.data_offset, io.reply_len),
        (28, 40, 40 + 512)
    );
    assert_eq!(f.reply_header().vlan_tci, Some(42));
}

#[test]
fn announcement_is_a_broadcast_config_reply_with_tag_zero() {
    let t = target();
    let mut buf = [0u8; 128];
    let len = t.announcement(&mut buf).unwrap();
    assert_eq!(len, MIN_FRAME_LEN);
    let h = Header::parse(&buf).unwrap();
    assert_eq!(
        (h.dst, h.src, h.version, h.flags, h.tag),
        (Mac::BROADCAST, OWN, 1, FLAG_RESPONSE, 0)
    );
    assert_eq!(h.command, Command::QueryConfig as u8);
    assert_eq!(ConfigHeader::parse(&buf, 24).unwrap().sector_count, 2);
}

#[test]
fn replies_never_exceed_the_frame_capacity() {
    let t = target();
    // A tagged read of the maximum count into a buffer just too small for the data.
    let mut h = header(CLIENT, Command::Ata);
    h.vlan_tci = Some(1);
    let mut buf = vec![0u8; 40 + 1023];
    let end = h.encode(&mut buf).unwrap();
    AtaHeader {
        aflags: ata::AFLAG_EXTENDED,
        sector_count: 2,
        cmd_status: opcode::READ_SECTORS_EXT,
        ..Default::default()
    }
    .encode(&mut buf, end)
    .unwrap();
    let action = t.decide(&mut buf, 40);
    assert_eq!(
        expect_reply(action).1,
        ReplyKind::AoeError(AoeError::BadArgument)
    );
}

#[test]
fn chained_packets_count_every_fragment() {
    let t = target_with(TargetConfig {
        max_sectors_per_frame: 17,
        ..config()
    });
    // A 17-sector write whose first fragment holds 7 sectors: complete only with the rest.
    let mut f = Frame::write(0, 7, &[1; 3584]);
    f.buf[26] = 17;
    let rx = |total_len| Received {
        len: 36 + 3584,
        total_len,
        reply_capacity: CAPACITY,
    };
    let action = t.decide_chained(&mut f.buf, rx(36 + 17 * 512 - 1));
    assert_eq!(
        expect_reply(action).1,
        ReplyKind::AoeError(AoeError::BadArgument)
    );
    let mut f = Frame::write(0, 7, &[1; 3584]);
    f.buf[26] = 17;
    let io = expect_io(t.decide_chained(&mut f.buf, rx(36 + 17 * 512)));
    assert_eq!((io.kind, io.len_bytes), (IoKind::Write, 17 * 512));
    // A 17-sector read needs a reply capacity for all of it.
    let mut f = Frame::read(0, 17);
    let small = Received {
        len: 36,
        total_len: 36,
        reply_capacity: CAPACITY,
    };
    assert_eq!(
        expect_reply(t.decide_chained(&mut f.buf, small)).1,
        ReplyKind::AoeError(AoeError::BadArgument)
    );
    let mut f = Frame::read(0, 17);
    let big = Received {
        len: 36,
        total_len: 36,
        reply_capacity: 36 + 17 * 512,
    };
    let io = expect_io(t.decide_chained(&mut f.buf, big));
    assert_eq!((io.kind, io.reply_len), (IoKind::Read, 36 + 17 * 512));
}

/// Found by the fuzzer: a FLUSH in a 36-byte buffer was accepted, and its reply could not
/// be padded to 60 bytes.
#[test]
fn buffers_too_small_for_any_reply_are_dropped() {
    let t = target();
    let mut f = Frame::ata(
        header(CLIENT, Command::Ata),
        opcode::FLUSH_CACHE_EXT,
        ata::AFLAG_EXTENDED,
        0,
        0,
        &[],
    );
    assert_eq!(
        t.decide(&mut f.buf[..36], 36),
        Action::Drop(DropReason::Malformed)
    );
    assert_eq!(
        t.decide(&mut f.buf[..59], 36),
        Action::Drop(DropReason::Malformed)
    );
    assert!(matches!(t.decide(&mut f.buf[..60], 36), Action::Io(_)));
}

fn locked_target() -> Target {
    let t = target();
    t.set_locked(true);
    t
}

fn config_string_of(f: &Frame) -> Vec<u8> {
    let c = ConfigHeader::parse(&f.buf, 24).unwrap();
    f.buf[32..32 + usize::from(c.string_len)].to_vec()
}

#[test]
fn locked_refuses_mask_edits_that_change_the_list() {
    let t = locked_target();
    assert_eq!(t.edit_mask(MaskEdit::Set, &[CLIENT]), Ok(true));
    let before = t.state();

    // An add of an absent MAC: MError 1 at its index, the directives before it applied
    // nothing, the list is as it was.
    let mut f = Frame::mask(
        CLIENT,
        mcmd::EDIT,
        &[(dcmd::ADD, CLIENT), (dcmd::NONE, OTHER), (dcmd::ADD, OTHER)],
    );
    let (len, kind, change) = expect_reply(f.decide(&t));
    assert_eq!((kind, change), (ReplyKind::RefusedLocked, None));
    assert_eq!(len, MIN_FRAME_LEN);
    let h = f.reply_header();
    assert_eq!(h.flags & FLAG_ERROR, 0, "MError, not the AoE E flag");
    let m = MaskHeader::parse(&f.buf, 24).unwrap();
    assert_eq!((m.merror, m.directive_count), (merror::UNSPECIFIED, 2));
    assert_eq!(t.state(), before);

    // A delete of a listed MAC (the one that would open the export to everyone).
    let mut f = Frame::mask(CLIENT, mcmd::EDIT, &[(dcmd::DELETE, CLIENT)]);
    assert_eq!(expect_reply(f.decide(&t)).1, ReplyKind::RefusedLocked);
    let m = MaskHeader::parse(&f.buf, 24).unwrap();
    assert_eq!((m.merror, m.directive_count), (merror::UNSPECIFIED, 0));
    assert_eq!(t.state(), before);

    // Edits that change nothing, and reads, are answered as usual with the list.
    for directives in [&[(dcmd::ADD, CLIENT), (dcmd::DELETE, OTHER)][..], &[][..]] {
        let mut f = Frame::mask(CLIENT, mcmd::EDIT, directives);
        let (_, kind, change) = expect_reply(f.decide(&t));
        assert_eq!(
            (kind, change),
            (ReplyKind::MaskList, None),
            "{directives:?}"
        );
        let m = MaskHeader::parse(&f.buf, 24).unwrap();
        assert_eq!((m.merror, m.directive_count), (0, 1));
    }
    let mut f = Frame::mask(CLIENT, mcmd::READ, &[]);
    assert_eq!(expect_reply(f.decide(&t)).1, ReplyKind::MaskList);
    assert_eq!(Directive::parse(&f.buf, 24, 0).unwrap().mac, CLIENT);

    // A bad directive before any change is still reported as one.
    let mut f = Frame::mask(CLIENT, mcmd::EDIT, &[(7, OTHER), (dcmd::ADD, OTHER)]);
    assert_eq!(expect_reply(f.decide(&t)).1, ReplyKind::MaskList);
    let m = MaskHeader::parse(&f.buf, 24).unwrap();
    assert_eq!((m.merror, m.directive_count), (merror::BAD_DIRECTIVE, 0));
    assert_eq!(t.state(), before);

    // Unlocked again: the same edit goes through.
    t.set_locked(false);
    let mut f = Frame::mask(CLIENT, mcmd::EDIT, &[(dcmd::DELETE, CLIENT)]);
    let (_, kind, change) = expect_reply(f.decide(&t));
    assert_eq!(
        (kind, change),
        (ReplyKind::MaskList, Some(StateChange::MaskList))
    );
    assert!(t.state().mask.is_empty());
}

#[test]
fn locked_refuses_config_string_changes_with_error_4() {
    let t = locked_target();
    for ccmd in [ConfigCommand::SetIfEmpty, ConfigCommand::ForceSet] {
        let mut f = Frame::config(CLIENT, ccmd as u8, b"mine");
        let (len, kind, change) = expect_reply(f.decide(&t));
        assert_eq!((kind, change), (ReplyKind::RefusedLocked, None), "{ccmd:?}");
        let h = f.reply_header();
        assert_eq!(h.flags & FLAG_ERROR, FLAG_ERROR);
        assert_eq!(h.error, AoeError::ConfigStringPresent as u8);
        assert_eq!(config_string_of(&f), b"", "the current string");
        assert_eq!(len, MIN_FRAME_LEN);
        assert_eq!(t.state().config_string(), b"");
    }
    // The operator's string is kept and served.
    assert_eq!(t.set_config_string_by_operator(b"op"), Ok(true));
    assert_eq!(t.set_config_string_by_operator(b"op"), Ok(false));
    assert_eq!(
        t.set_config_string_by_operator(&[b'x'; aoe_proto::config::MAX_STRING_LEN + 1]),
        Err(StringTooLong)
    );
    let mut f = Frame::config(OTHER, ConfigCommand::ForceSet as u8, b"theirs");
    assert_eq!(expect_reply(f.decide(&t)).1, ReplyKind::RefusedLocked);
    assert_eq!(config_string_of(&f), b"op");
    // A set of the string already there changes nothing and succeeds; reads and tests work.
    let mut f = Frame::config(OTHER, ConfigCommand::SetIfEmpty as u8, b"op");
    assert_eq!(
        expect_reply(f.decide(&t)),
        (MIN_FRAME_LEN, ReplyKind::Config, None)
    );
    let mut f = Frame::config(OTHER, ConfigCommand::Read as u8, b"");
    assert_eq!(expect_reply(f.decide(&t)).1, ReplyKind::Config);
    assert_eq!(config_string_of(&f), b"op");
    let mut f = Frame::config(OTHER, ConfigCommand::Test as u8, b"op");
    assert_eq!(expect_reply(f.decide(&t)).1, ReplyKind::Config);
    assert_eq!(t.state().config_string(), b"op");
}

#[test]
fn locked_keeps_an_operator_reservation_and_leaves_initiators_theirs() {
    let t = locked_target();
    // Initiators' reservations work on a locked export as on any other.
    let (_, kind, change) = expect_reply(Frame::reserve(CLIENT, rcmd::SET, &[CLIENT]).decide(&t));
    assert_eq!(
        (kind, change),
        (ReplyKind::Reserve, Some(StateChange::Reservation))
    );
    expect_reply(Frame::reserve(OTHER, rcmd::FORCE_SET, &[OTHER]).decide(&t));
    assert_eq!(t.state().reservation.as_slice(), &[OTHER]);

    // The operator's reservation cannot be changed from the wire, not even by its holder
    // or by a force set; re-setting it as it is changes nothing and is answered.
    assert_eq!(t.reserve_by_operator(&[CLIENT]), Ok(true));
    let before = t.state();
    for (src, rcmd, macs) in [
        (OTHER, rcmd::FORCE_SET, &[OTHER][..]),
        (CLIENT, rcmd::SET, &[][..]),
        (CLIENT, rcmd::FORCE_SET, &[CLIENT, OTHER][..]),
    ] {
        let mut f = Frame::reserve(src, rcmd, macs);
        let (_, kind, change) = expect_reply(f.decide(&t));
        assert_eq!((kind, change), (ReplyKind::RefusedLocked, None));
        let h = f.reply_header();
        assert_eq!(h.error, AoeError::TargetReserved as u8);
        assert_eq!(t.state(), before);
    }
    let mut f = Frame::reserve(CLIENT, rcmd::SET, &[CLIENT]);
    let (_, kind, change) = expect_reply(f.decide(&t));
    assert_eq!((kind, change), (ReplyKind::Reserve, None));
    assert_eq!(t.state(), before, "still the operator's");

    // Cleared by the operator, the reservation is the initiators' again.
    assert_eq!(t.reserve_by_operator(&[]), Ok(true));
    expect_reply(Frame::reserve(OTHER, rcmd::SET, &[OTHER]).decide(&t));
    assert_eq!(t.state().reservation.as_slice(), &[OTHER]);
    assert!(!t.state().operator_reserved);
}

#[test]
fn unlocked_operator_reservation_is_an_ordinary_one() {
    let t = target();
    assert_eq!(t.reserve_by_operator(&[CLIENT]), Ok(true));
    let (_, kind, change) =
        expect_reply(Frame::reserve(OTHER, rcmd::FORCE_SET, &[OTHER]).decide(&t));
    assert_eq!(
        (kind, change),
        (ReplyKind::Reserve, Some(StateChange::Reservation))
    );
    let s = t.state();
    assert_eq!(s.reservation.as_slice(), &[OTHER]);
    assert!(!s.operator_reserved);
}

#[test]
fn operator_edits_take_effect_on_the_data_path_at_once() {
    let t = locked_target();
    assert_eq!(t.edit_mask(MaskEdit::Set, &[CLIENT]), Ok(true));
    let mut f = Frame::read(0, 1);
    f.buf[6..12].copy_from_slice(&OTHER.0);
    assert_eq!(f.decide(&t), Action::Drop(DropReason::Masked));
    assert_eq!(t.edit_mask(MaskEdit::Add, &[OTHER]), Ok(true));
    let mut f = Frame::read(0, 1);
    f.buf[6..12].copy_from_slice(&OTHER.0);
    expect_io(f.decide(&t));
    assert_eq!(t.edit_mask(MaskEdit::Remove, &[CLIENT, OTHER]), Ok(true));

    assert_eq!(t.reserve_by_operator(&[CLIENT]), Ok(true));
    let mut f = Frame::read(0, 1);
    f.buf[6..12].copy_from_slice(&OTHER.0);
    assert_eq!(
        expect_reply(f.decide(&t)).1,
        ReplyKind::AoeError(AoeError::TargetReserved)
    );
    assert_eq!(t.reserve_by_operator(&[]), Ok(true));
    let mut f = Frame::read(0, 1);
    f.buf[6..12].copy_from_slice(&OTHER.0);
    expect_io(f.decide(&t));

    // Shared by every link's view of the export.
    let other_link = t.on_link(OWN, 2);
    t.set_locked(false);
    assert!(!other_link.is_locked());
}
