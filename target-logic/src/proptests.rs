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
