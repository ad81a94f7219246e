//! Fuzzes the target's request path: any bytes, any frame capacity. `decide` must never
//! panic, and every reply it builds must fit the frame and parse as an AoE response.
#![no_main]

use aoe_proto::{Header, Mac, FLAG_RESPONSE, MIN_FRAME_LEN};
use libfuzzer_sys::fuzz_target;
use xblade_target::{Action, IoOutcome, Target, TargetConfig, TargetState};

const OWN: Mac = Mac([0x02, 0, 0, 0, 0, 0x01]);

fuzz_target!(|input: &[u8]| {
    // The first two bytes choose the frame capacity (low 12 bits) and whether the export is
    // locked (top bit); the rest is the received frame.
    let (selector, request) = match input {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]), rest),
        _ => return,
    };
    let capacity = usize::from(selector) % 4096;
    let target = Target::new(
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
    );
    target.set_locked(selector & 0x8000 != 0);
    let mut frame = vec![0u8; capacity.max(request.len())];
    frame[..request.len()].copy_from_slice(request);
    match target.decide(&mut frame, request.len()) {
        Action::Drop(_) => {}
        Action::Reply { len, .. } => {
            assert!((MIN_FRAME_LEN..=frame.len()).contains(&len));
            let reply = Header::parse(&frame[..len]).expect("reply parses");
            assert_eq!(reply.flags & FLAG_RESPONSE, FLAG_RESPONSE);
        }
        Action::Io(io) => {
            assert!(io.data_offset as usize + io.len_bytes as usize <= frame.len());
            let len = target.complete(&mut frame, &io, IoOutcome::Failed);
            assert!((MIN_FRAME_LEN..=frame.len()).contains(&len));
        }
    }
});
