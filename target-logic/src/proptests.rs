//! Property tests of the request path: whatever bytes arrive, `decide` returns a drop, a
//! well-formed reply that fits the frame, or disk I/O inside the export window.

use aoe_proto::ata::{self, AtaHeader};
use aoe_proto::{Header, Mac, FLAG_RESPONSE, MIN_FRAME_LEN, SECTOR_SIZE};
use proptest::prelude::*;

use super::*;

const OWN: Mac = Mac([0x02, 0, 0, 0, 0, 0x01]);

fn target() -> Target {
    Target::new(
        TargetConfig {
            major: 1,
            minor: 0,
            size_sectors: 4096,
            offset_sectors: 8,
            read_only: false,
            max_sectors_per_frame: 7,
            buffer_count: 16,
            firmware_version: 1,
            serial: "S".into(),
            model: "M".into(),
        },
        OWN,
        TargetState::default(),
    )
}

/// Checks every promise `decide` makes about its result.
fn check(t: &Target, request: &[u8], capacity: usize) -> Result<(), TestCaseError> {
    let mut frame = vec![0u8; capacity.max(request.len())];
    frame[..request.len()].copy_from_slice(request);
    let original = Header::parse(request).ok();
    match t.decide(&mut frame, request.len()) {
        Action::Drop(_) => {}
        Action::Reply { len, .. } => {
            prop_assert!(
                len <= frame.len(),
                "reply {} > capacity {}",
                len,
                frame.len()
            );
            prop_assert!(len >= MIN_FRAME_LEN);
            let reply =
                Header::parse(&frame[..len]).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let request =
                original.ok_or_else(|| TestCaseError::fail("replied to an unparsable frame"))?;
            prop_assert_eq!(reply.flags & FLAG_RESPONSE, FLAG_RESPONSE);
            prop_assert_eq!(reply.dst, request.src);
            prop_assert_eq!(reply.src, OWN);
            prop_assert_eq!(reply.tag, request.tag);
            prop_assert_eq!((reply.major, reply.minor), (1, 0));
        }
        Action::Io(io) => {
            let end = io.data_offset as usize + io.len_bytes as usize;
            match io.kind {
                IoKind::Read => prop_assert!(end <= frame.len()),
                IoKind::Write => {
                    prop_assert!(end <= request.len(), "write past the received bytes")
                }
                IoKind::Flush => prop_assert_eq!(io.len_bytes, 0),
            }
            if io.kind != IoKind::Flush {
                let window = 8 * SECTOR_SIZE as u64..(8 + 4096) * SECTOR_SIZE as u64;
                prop_assert!(window.contains(&io.offset_bytes));
                prop_assert!(io.offset_bytes + u64::from(io.len_bytes) <= window.end);
                prop_assert!(io.len_bytes > 0 && io.len_bytes as usize <= 7 * SECTOR_SIZE);
            }
            let len = t.complete(&mut frame, &io, IoOutcome::Done);
            prop_assert!((MIN_FRAME_LEN..=frame.len()).contains(&len));
            let len = t.complete(&mut frame, &io, IoOutcome::Failed);
            prop_assert!((MIN_FRAME_LEN..=frame.len()).contains(&len));
        }
    }
    Ok(())
}

/// A valid AoE request of any command, as a starting point for mutations.
fn valid_request() -> impl Strategy<Value = Vec<u8>> {
    (
        0u8..5,
        any::<u8>(),
        any::<u8>(),
        any::<u64>(),
        0u8..10,
        any::<bool>(),
    )
        .prop_map(|(command, ata_cmd, aflags, lba, count, broadcast)| {
            let mut frame = vec![0u8; 36 + usize::from(count) * SECTOR_SIZE];
            let hdr = Header {
                dst: if broadcast { Mac::BROADCAST } else { OWN },
                src: Mac([2, 0, 0, 0, 0, 9]),
                vlan_tci: None,
                version: 1,
                flags: 0,
                error: 0,
                major: 1,
                minor: 0,
                command,
                tag: 7,
            };
            let body = hdr.encode(&mut frame).unwrap_or(24);
            let opcode = [
                ata::opcode::READ_SECTORS_EXT,
                ata::opcode::WRITE_SECTORS_EXT,
                ata::opcode::IDENTIFY_DEVICE,
                ata_cmd,
            ][usize::from(ata_cmd % 4)];
            let _ = AtaHeader {
                aflags,
                err_feature: 0,
                sector_count: count,
                cmd_status: opcode,
                lba_bytes: AtaHeader::lba_bytes_for(lba % 5000, true),
            }
            .encode(&mut frame, body);
            frame
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4000), capacity in 0usize..4000) {
        check(&target(), &bytes, capacity)?;
    }

    #[test]
    fn aoe_shaped_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 14..1200), capacity in 0usize..4000) {
        // Make most of them AoE to the target so the deep paths run.
        bytes[..6].copy_from_slice(&OWN.0);
        bytes[12] = 0x88;
        bytes[13] = 0xa2;
        if bytes.len() > 14 { bytes[14] = 0x10 | (bytes[14] & 0x07); }
        if bytes.len() > 18 { bytes[16] = 0; bytes[17] = 1; bytes[18] = 0; }
        check(&target(), &bytes, capacity)?;
    }

    #[test]
    fn mutated_valid_requests_never_panic(
        frame in valid_request(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        truncate in any::<usize>(),
        capacity in 60usize..3700,
    ) {
        let mut frame = frame;
        for (at, value) in flips {
            let len = frame.len();
            frame[at % len] = value;
        }
        let keep = if truncate % 3 == 0 { truncate % (frame.len() + 1) } else { frame.len() };
        frame.truncate(keep);
        check(&target(), &frame, capacity)?;
    }
}

const SENDER: Mac = Mac([2, 0, 0, 0, 0, 9]);

/// A small pool, so that adds and deletes hit listed MACs often.
fn pool_mac() -> impl Strategy<Value = Mac> {
    (0u8..4).prop_map(|n| Mac([2, 0, 0, 0, 0, 8 + n]))
}

/// A Query Config, Mac Mask List or Reserve/Release request from [`SENDER`], with any
/// sub-command and arguments.
fn control_request() -> impl Strategy<Value = Vec<u8>> {
    (
        1u8..=3,
        0u8..6,
        proptest::collection::vec((0u8..4, pool_mac()), 0..6),
        proptest::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(command, sub, entries, string)| {
            use aoe_proto::config::ConfigHeader;
            use aoe_proto::mask::{Directive, MaskHeader};
            use aoe_proto::reserve::{self, ReserveHeader};
            let mut frame = vec![0u8; 1024];
            let hdr = Header {
                dst: OWN,
                src: SENDER,
                vlan_tci: None,
                version: 1,
                flags: 0,
                error: 0,
                major: 1,
                minor: 0,
                command,
                tag: 7,
            };
            let body = hdr.encode(&mut frame).unwrap_or(24);
            let end = match command {
                1 => {
                    let _ = ConfigHeader {
                        ccmd: sub,
                        aoe_version: 1,
                        string_len: string.len() as u16,
                        ..Default::default()
                    }
                    .encode(&mut frame, body);
                    let start = aoe_proto::config::string_offset(body);
                    frame[start..start + string.len()].copy_from_slice(&string);
                    start + string.len()
                }
                2 => {
                    let _ = MaskHeader {
                        mcmd: sub % 2,
                        merror: 0,
                        directive_count: entries.len() as u8,
                    }
                    .encode(&mut frame, body);
                    for (i, (dcmd, mac)) in entries.iter().enumerate() {
                        let _ = Directive {
                            dcmd: *dcmd,
                            mac: *mac,
                        }
                        .encode(&mut frame, body, i);
                    }
                    aoe_proto::mask::frame_len(body, entries.len())
                }
                _ => {
                    let _ = ReserveHeader {
                        rcmd: sub % 3,
                        nmacs: entries.len() as u8,
                    }
                    .encode(&mut frame, body);
                    for (i, (_, mac)) in entries.iter().enumerate() {
                        let _ = reserve::write_mac(&mut frame, body, i, *mac);
                    }
                    reserve::frame_len(body, entries.len())
                }
            };
            frame.truncate(end);
            frame
        })
}

#[derive(Clone, Copy, Debug)]
enum OperatorOp {
    Mask(MaskEdit),
    Reserve,
}

fn operator_op() -> impl Strategy<Value = (OperatorOp, Vec<Mac>)> {
    (
        prop_oneof![
            Just(OperatorOp::Mask(MaskEdit::Set)),
            Just(OperatorOp::Mask(MaskEdit::Add)),
            Just(OperatorOp::Mask(MaskEdit::Remove)),
            Just(OperatorOp::Reserve),
        ],
        proptest::collection::vec(pool_mac(), 0..5),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// Whatever control requests a host sends, a locked export's mask list and config
    /// string, and an operator's reservation, stay as the operator set them; every refusal
    /// is reported as such and changes nothing.
    #[test]
    fn locked_state_is_the_operators(
        operator_mask in proptest::collection::vec(pool_mac(), 0..4),
        operator_reservation in proptest::collection::vec(pool_mac(), 0..3),
        requests in proptest::collection::vec(control_request(), 1..8),
    ) {
        let t = target();
        t.set_locked(true);
        let mut mask = operator_mask.clone();
        mask.push(SENDER); // admitted, so that its requests reach the decisions
        prop_assert!(t.edit_mask(MaskEdit::Set, &mask).is_ok());
        prop_assert!(t.reserve_by_operator(&operator_reservation).is_ok());
        let before = t.state();
        for request in requests {
            let mut frame = vec![0u8; 1500];
            frame[..request.len()].copy_from_slice(&request);
            let action = t.decide(&mut frame, request.len());
            check(&t, &request, 1500)?;
            let after = t.state();
            prop_assert_eq!(after.mask.as_slice(), before.mask.as_slice());
            prop_assert_eq!(after.config_string(), before.config_string());
            if before.operator_reserved {
                prop_assert_eq!(&after.reservation, &before.reservation);
            }
            if let Action::Reply { kind: ReplyKind::RefusedLocked, change, .. } = action {
                prop_assert_eq!(change, None);
            }
            if let Action::Reply { change: Some(change), .. } = action {
                prop_assert_eq!(change, StateChange::Reservation);
                prop_assert!(!before.operator_reserved);
            }
        }
    }

    /// Operator edits behave as set operations on an ordered list, all or nothing.
    #[test]
    fn operator_edits_follow_a_list_model(ops in proptest::collection::vec(operator_op(), 0..12)) {
        let t = target();
        let mut mask: Vec<Mac> = Vec::new();
        let mut reservation: Vec<Mac> = Vec::new();
        for (op, macs) in ops {
            let mut distinct: Vec<Mac> = Vec::new();
            for mac in &macs {
                if !distinct.contains(mac) {
                    distinct.push(*mac);
                }
            }
            let before = t.state();
            match op {
                OperatorOp::Mask(MaskEdit::Set) => mask = distinct,
                OperatorOp::Mask(MaskEdit::Add) => {
                    mask.extend(distinct.into_iter().filter(|m| !before.mask.contains(*m)))
                }
                OperatorOp::Mask(MaskEdit::Remove) => mask.retain(|m| !macs.contains(m)),
                OperatorOp::Reserve => reservation = distinct,
            }
            let changed = match op {
                OperatorOp::Mask(edit) => t.edit_mask(edit, &macs),
                OperatorOp::Reserve => t.reserve_by_operator(&macs),
            };
            let after = t.state();
            prop_assert_eq!(after.mask.as_slice(), &mask[..]);
            prop_assert_eq!(after.reservation.as_slice(), &reservation[..]);
            prop_assert_eq!(after.operator_reserved, !reservation.is_empty());
            prop_assert_eq!(changed, Ok(after != before));
        }
    }
}
