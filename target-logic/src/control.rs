//! The control-plane commands: Query Config (1), MAC Mask List (2), Reserve/Release (3).
//! Each answers immediately from [`TargetState`] and may change it.

use aoe_proto::config::{self, ConfigCommand, ConfigHeader, MAX_STRING_LEN};
use aoe_proto::mask::{self, dcmd, mcmd, merror, Directive, MaskHeader};
use aoe_proto::reserve::{self, rcmd, ReserveHeader};
use aoe_proto::{AoeError, Header, ParseError, AOE_VERSION};

use super::{Action, DropReason, ReplyKind, StateChange, Target, TargetState};

/// Encodes a Query Config reply carrying `state`'s config string; returns the padded length.
pub(super) fn encode_config_reply(
    target: &Target,
    frame: &mut [u8],
    reply: Header,
    ccmd: u8,
    state: &TargetState,
) -> Result<usize, ParseError> {
    let body = reply.encode(frame)?;
    let string = state.config_string();
    ConfigHeader {
        buffer_count: target.config.buffer_count,
        firmware_version: target.config.firmware_version,
        sector_count: target.config.max_sectors_per_frame,
        aoe_version: AOE_VERSION,
        ccmd,
        string_len: string.len() as u16,
    }
    .encode(frame, body)?;
    let start = config::string_offset(body);
    let dst = frame
        .get_mut(start..start + string.len())
        .ok_or(ParseError::TooShort {
            needed: start + string.len(),
            actual: 0,
        })?;
    dst.copy_from_slice(string);
    aoe_proto::pad_reply(frame, start + string.len()).ok_or(ParseError::TooShort {
        needed: aoe_proto::MIN_FRAME_LEN,
        actual: 0,
    })
}

pub(super) fn query_config(
    target: &Target,
    frame: &mut [u8],
    len: usize,
    hdr: &Header,
    reply: Header,
) -> Action {
    let body = hdr.body_offset();
    let Ok(req) = ConfigHeader::parse(&frame[..len], body) else {
        return Action::Drop(DropReason::Malformed);
    };
    let Some(ccmd) = ConfigCommand::from_code(req.ccmd) else {
        return target.aoe_error(frame, len, reply, AoeError::BadArgument);
    };
    let string_len = usize::from(req.string_len);
    if string_len > MAX_STRING_LEN {
        return target.aoe_error(frame, len, reply, AoeError::BadArgument);
    }
    // The request's string is overwritten by the reply's: keep a copy on the stack.
    let mut requested = [0u8; MAX_STRING_LEN];
    match config::string(&frame[..len], body, req.string_len) {
        Ok(s) => requested[..string_len].copy_from_slice(s),
        Err(_) => return target.aoe_error(frame, len, reply, AoeError::BadArgument),
    }
    let requested = &requested[..string_len];

    let mut state = target.lock();
    let mut change = None;
    let mut reply = reply;
    let mut refused_locked = false;
    match ccmd {
        ConfigCommand::Read => {}
        ConfigCommand::Test if state.config_string() != requested => {
            return Action::Drop(DropReason::ConfigMismatch);
        }
        ConfigCommand::TestPrefix if !state.config_string().starts_with(requested) => {
            return Action::Drop(DropReason::ConfigMismatch);
        }
        ConfigCommand::Test | ConfigCommand::TestPrefix => {}
        ConfigCommand::SetIfEmpty | ConfigCommand::ForceSet => {
            if !state.reservation_allows(hdr.src) {
                drop(state);
                return target.aoe_error(frame, len, reply, AoeError::TargetReserved);
            }
            let current = state.config_string();
            if current != requested && target.is_locked() {
                // The operator's string: answered as a set of a string already present.
                reply = reply.with_error(AoeError::ConfigStringPresent);
                refused_locked = true;
            } else if ccmd == ConfigCommand::SetIfEmpty
                && !current.is_empty()
                && current != requested
            {
                reply = reply.with_error(AoeError::ConfigStringPresent);
            } else if current != requested {
                // Cannot fail: string_len <= MAX_STRING_LEN was checked above.
                let _ = state.set_config_string(requested);
                change = Some(StateChange::ConfigString);
            }
        }
    }
    let kind = match (reply.error, refused_locked) {
        (_, true) => ReplyKind::RefusedLocked,
        (0, false) => ReplyKind::Config,
        (_, false) => ReplyKind::AoeError(AoeError::ConfigStringPresent),
    };
    match encode_config_reply(target, frame, reply, req.ccmd, &state) {
        Ok(len) => Action::Reply { len, kind, change },
        Err(_) => Action::Drop(DropReason::Malformed),
    }
}

pub(super) fn mask_list(
    target: &Target,
    frame: &mut [u8],
    len: usize,
    hdr: &Header,
    reply: Header,
) -> Action {
    let body = hdr.body_offset();
    let Ok(req) = MaskHeader::parse(&frame[..len], body) else {
        return Action::Drop(DropReason::Malformed);
    };
    let count = usize::from(req.directive_count);
    let mut state = target.lock();
    let mut change = None;
    let mut failure = None;
    let mut refused_locked = false;
    match req.mcmd {
        mcmd::READ => {}
        mcmd::EDIT => {
            if len < mask::frame_len(body, count) {
                drop(state);
                return target.aoe_error(frame, len, reply, AoeError::BadArgument);
            }
            if !state.reservation_allows(hdr.src) {
                drop(state);
                return target.aoe_error(frame, len, reply, AoeError::TargetReserved);
            }
            // Directives apply in order; the first that fails stops the edit, and the
            // ones before it stay applied (the reply names the failing index). On a locked
            // export the first directive that would change the list fails.
            let locked = target.is_locked();
            let before = state.mask.clone();
            for index in 0..count {
                let Ok(d) = Directive::parse(&frame[..len], body, index) else {
                    failure = Some((merror::UNSPECIFIED, index));
                    break;
                };
                let changes = match d.dcmd {
                    dcmd::ADD => !state.mask.contains(d.mac),
                    dcmd::DELETE => state.mask.contains(d.mac),
                    _ => false,
                };
                if locked && changes {
                    failure = Some((merror::UNSPECIFIED, index));
                    refused_locked = true;
                    break;
                }
                match d.dcmd {
                    dcmd::NONE => {}
                    dcmd::ADD => {
                        if state.mask.add(d.mac).is_err() {
                            failure = Some((merror::LIST_FULL, index));
                            break;
                        }
                    }
                    dcmd::DELETE => state.mask.remove(d.mac),
                    _ => {
                        failure = Some((merror::BAD_DIRECTIVE, index));
                        break;
                    }
                }
            }
            if state.mask != before {
                target.update_restricted(&state);
                change = Some(StateChange::MaskList);
            }
        }
        _ => {
            drop(state);
            return target.aoe_error(frame, len, reply, AoeError::BadArgument);
        }
    }
    let encoded = reply.encode(frame).and_then(|_| match failure {
        Some((code, index)) => {
            MaskHeader {
                mcmd: req.mcmd,
                merror: code,
                directive_count: index as u8,
            }
            .encode(frame, body)?;
            Ok(mask::frame_len(body, 0))
        }
        None => {
            let list = state.mask.as_slice();
            MaskHeader {
                mcmd: req.mcmd,
                merror: 0,
                directive_count: list.len() as u8,
            }
            .encode(frame, body)?;
            for (index, mac) in list.iter().enumerate() {
                Directive {
                    dcmd: dcmd::NONE,
                    mac: *mac,
                }
                .encode(frame, body, index)?;
            }
            Ok(mask::frame_len(body, list.len()))
        }
    });
    drop(state);
    let kind = match refused_locked {
        true => ReplyKind::RefusedLocked,
        false => ReplyKind::MaskList,
    };
    match encoded {
        Ok(end) => target.reply(frame, end, kind, change),
        Err(_) => Action::Drop(DropReason::Malformed),
    }
}

pub(super) fn reserve(
    target: &Target,
    frame: &mut [u8],
    len: usize,
    hdr: &Header,
    reply: Header,
) -> Action {
    let body = hdr.body_offset();
    let Ok(req) = ReserveHeader::parse(&frame[..len], body) else {
        return Action::Drop(DropReason::Malformed);
    };
    let nmacs = usize::from(req.nmacs);
    let mut state = target.lock();
    let mut change = None;
    match req.rcmd {
        rcmd::READ => {}
        rcmd::SET | rcmd::FORCE_SET => {
            if len < reserve::frame_len(body, nmacs) || nmacs > state.reservation.capacity() {
                drop(state);
                return target.aoe_error(frame, len, reply, AoeError::BadArgument);
            }
            if req.rcmd == rcmd::SET && !state.reservation_allows(hdr.src) {
                drop(state);
                return target.aoe_error(frame, len, reply, AoeError::TargetReserved);
            }
            let mut next = state.reservation.clone();
            next.clear();
            for index in 0..nmacs {
                if let Ok(mac) = reserve::mac(&frame[..len], body, index) {
                    // Cannot fail: nmacs <= capacity was checked above.
                    let _ = next.add(mac);
                }
            }
            let operators = state.operator_reserved && target.is_locked();
            if operators && next != state.reservation {
                drop(state);
                let refused = target.aoe_error(frame, len, reply, AoeError::TargetReserved);
                return refused_locked(refused);
            }
            if !operators && (next != state.reservation || state.operator_reserved) {
                // An initiator's set makes the reservation the initiators' again.
                state.reservation = next;
                state.operator_reserved = false;
                target.update_restricted(&state);
                change = Some(StateChange::Reservation);
            }
        }
        _ => {
            drop(state);
            return target.aoe_error(frame, len, reply, AoeError::BadArgument);
        }
    }
    let list = state.reservation.as_slice();
    let encoded = reply.encode(frame).and_then(|_| {
        ReserveHeader {
            rcmd: req.rcmd,
            nmacs: list.len() as u8,
        }
        .encode(frame, body)?;
        for (index, mac) in list.iter().enumerate() {
            reserve::write_mac(frame, body, index, *mac)?;
        }
        Ok(reserve::frame_len(body, list.len()))
    });
    drop(state);
    match encoded {
        Ok(end) => target.reply(frame, end, ReplyKind::Reserve, change),
        Err(_) => Action::Drop(DropReason::Malformed),
    }
}

/// `action` (an AoE error reply) reported as a refusal for the export's lock.
fn refused_locked(action: Action) -> Action {
    match action {
        Action::Reply { len, change, .. } => Action::Reply {
            len,
            kind: ReplyKind::RefusedLocked,
            change,
        },
        other => other,
    }
}
