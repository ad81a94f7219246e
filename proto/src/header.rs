//! Ethernet framing and the AoE common header (AoE r11 section 2).

use crate::{be16, be32, field_mut, Mac, ParseError};

/// Ethertype registered for AoE.
pub const ETHERTYPE_AOE: u16 = 0x88A2;
/// Ethertype of an IEEE 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// Destination MAC, source MAC, ethertype.
pub const ETH_HEADER_LEN: usize = 14;
/// TPID is the ethertype field above; the tag adds the TCI and the inner ethertype.
pub const VLAN_TAG_LEN: usize = 4;
/// Version/flags, error, major, minor, command, tag.
pub const AOE_HEADER_LEN: usize = 10;
/// The only protocol version this crate speaks (high nibble of the first AoE byte).
pub const AOE_VERSION: u8 = 1;
/// R: the frame is a response.
pub const FLAG_RESPONSE: u8 = 0x08;
/// E: the error field is valid.
pub const FLAG_ERROR: u8 = 0x04;
/// Major (shelf) address that matches every shelf.
pub const MAJOR_ANY: u16 = 0xFFFF;
/// Minor (slot) address that matches every slot.
pub const MINOR_ANY: u8 = 0xFF;
/// Minimum Ethernet frame without FCS. Replies are padded to it.
pub const MIN_FRAME_LEN: usize = 60;

const VER_FLAGS_OFFSET: usize = 0;
const ERROR_OFFSET: usize = 1;
const MAJOR_OFFSET: usize = 2;
const MINOR_OFFSET: usize = 4;
const COMMAND_OFFSET: usize = 5;
const TAG_OFFSET: usize = 6;

/// AoE command codes (header byte 19 of an untagged frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Command {
    Ata = 0,
    QueryConfig = 1,
    MacMaskList = 2,
    ReserveRelease = 3,
}

impl Command {
    /// Decodes a command byte; `None` for vendor and unassigned codes.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Ata,
            1 => Self::QueryConfig,
            2 => Self::MacMaskList,
            3 => Self::ReserveRelease,
            _ => return None,
        })
    }
}

/// The Ethernet header (with at most one 802.1Q tag) and the AoE common header of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub dst: Mac,
    pub src: Mac,
    /// The 802.1Q tag control information when the frame carries one tag.
    pub vlan_tci: Option<u16>,
    /// High nibble of the first AoE byte.
    pub version: u8,
    /// Low nibble of the first AoE byte: [`FLAG_RESPONSE`], [`FLAG_ERROR`].
    pub flags: u8,
    pub error: u8,
    pub major: u16,
    pub minor: u8,
    pub command: u8,
    pub tag: u32,
}

impl Header {
    /// Decodes the Ethernet and AoE common headers at the start of `frame`.
    pub fn parse(frame: &[u8]) -> Result<Header, ParseError> {
        let too_short = |needed| ParseError::TooShort {
            needed,
            actual: frame.len(),
        };
        let mut ethertype = be16(frame, 12).ok_or(too_short(ETH_HEADER_LEN))?;
        let mut vlan_tci = None;
        let mut l2_len = ETH_HEADER_LEN;
        if ethertype == ETHERTYPE_VLAN {
            let needed = ETH_HEADER_LEN + VLAN_TAG_LEN;
            vlan_tci = Some(be16(frame, 14).ok_or(too_short(needed))?);
            ethertype = be16(frame, 16).ok_or(too_short(needed))?;
            l2_len = needed;
        }
        if ethertype != ETHERTYPE_AOE {
            return Err(ParseError::NotAoe { ethertype });
        }
        let aoe = frame
            .get(l2_len..l2_len + AOE_HEADER_LEN)
            .ok_or(too_short(l2_len + AOE_HEADER_LEN))?;
        let (Some(dst), Some(src), Some(major), Some(tag)) = (
            Mac::read(frame, 0),
            Mac::read(frame, 6),
            be16(aoe, MAJOR_OFFSET),
            be32(aoe, TAG_OFFSET),
        ) else {
            return Err(too_short(l2_len + AOE_HEADER_LEN));
        };
        Ok(Header {
            dst,
            src,
            vlan_tci,
            version: aoe[VER_FLAGS_OFFSET] >> 4,
            flags: aoe[VER_FLAGS_OFFSET] & 0x0f,
            error: aoe[ERROR_OFFSET],
            major,
            minor: aoe[MINOR_OFFSET],
            command: aoe[COMMAND_OFFSET],
            tag,
        })
    }

    /// Length of the Ethernet header including the VLAN tag: where the AoE header starts.
    pub fn l2_len(&self) -> usize {
        ETH_HEADER_LEN
            + if self.vlan_tci.is_some() {
                VLAN_TAG_LEN
            } else {
                0
            }
    }

    /// Where the command-specific header starts (24 in an untagged frame).
    pub fn body_offset(&self) -> usize {
        self.l2_len() + AOE_HEADER_LEN
    }

    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }

    /// True when (major, minor) names `(major, minor)` exactly or through the wildcards.
    pub fn addresses(&self, major: u16, minor: u8) -> bool {
        (self.major == major || self.major == MAJOR_ANY)
            && (self.minor == minor || self.minor == MINOR_ANY)
    }

    /// Writes both headers at the start of `frame`; returns [`Header::body_offset`].
    pub fn encode(&self, frame: &mut [u8]) -> Result<usize, ParseError> {
        let body = self.body_offset();
        let out = field_mut(frame, 0, body)?;
        out[0..6].copy_from_slice(&self.dst.0);
        out[6..12].copy_from_slice(&self.src.0);
        let mut at = 12;
        if let Some(tci) = self.vlan_tci {
            out[12..14].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
            out[14..16].copy_from_slice(&tci.to_be_bytes());
            at = 16;
        }
        out[at..at + 2].copy_from_slice(&ETHERTYPE_AOE.to_be_bytes());
        let aoe = &mut out[at + 2..];
        aoe[VER_FLAGS_OFFSET] = (self.version << 4) | (self.flags & 0x0f);
        aoe[ERROR_OFFSET] = self.error;
        aoe[MAJOR_OFFSET..MAJOR_OFFSET + 2].copy_from_slice(&self.major.to_be_bytes());
        aoe[MINOR_OFFSET] = self.minor;
        aoe[COMMAND_OFFSET] = self.command;
        aoe[TAG_OFFSET..TAG_OFFSET + 4].copy_from_slice(&self.tag.to_be_bytes());
        Ok(body)
    }

    /// The header of the reply to this request: from `own_mac` to the requester, version 1,
    /// R set, no error, the target's own address (never the wildcards), same command and tag.
    pub fn reply(&self, own_mac: Mac, major: u16, minor: u8) -> Header {
        Header {
            dst: self.src,
            src: own_mac,
            vlan_tci: self.vlan_tci,
            version: AOE_VERSION,
            flags: FLAG_RESPONSE,
            error: 0,
            major,
            minor,
            command: self.command,
            tag: self.tag,
        }
    }

    /// This header with the E flag and `error` set.
    pub fn with_error(mut self, error: crate::AoeError) -> Header {
        self.flags |= FLAG_ERROR;
        self.error = error as u8;
        self
    }
}

/// Zeroes `frame[len..MIN_FRAME_LEN]` and returns the padded length: replies are never
/// shorter than [`MIN_FRAME_LEN`] (aoeping and aoecfg ignore shorter ones). Returns `len`
/// unchanged when it is already long enough, and `None` when `frame` cannot hold 60 bytes.
pub fn pad_reply(frame: &mut [u8], len: usize) -> Option<usize> {
    if len >= MIN_FRAME_LEN {
        return Some(len);
    }
    frame.get_mut(len..MIN_FRAME_LEN)?.fill(0);
    Some(MIN_FRAME_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AoeError;

    fn sample(vlan: Option<u16>) -> Header {
        Header {
            dst: Mac::BROADCAST,
            src: Mac([2, 0, 0, 0, 0, 7]),
            vlan_tci: vlan,
            version: 1,
            flags: 0,
            error: 0,
            major: 0x1234,
            minor: 5,
            command: 1,
            tag: 0xdead_beef,
        }
    }

    #[test]
    fn untagged_wire_offsets_match_the_specification() {
        let mut frame = [0u8; 24];
        assert_eq!(sample(None).encode(&mut frame), Ok(24));
        assert_eq!(&frame[0..6], &[0xff; 6]);
        assert_eq!(&frame[6..12], &[2, 0, 0, 0, 0, 7]);
        assert_eq!(&frame[12..14], &[0x88, 0xa2]);
        assert_eq!(frame[14], 0x10);
        assert_eq!(frame[15], 0);
        assert_eq!(&frame[16..18], &[0x12, 0x34]);
        assert_eq!(frame[18], 5);
        assert_eq!(frame[19], 1);
        assert_eq!(&frame[20..24], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(Header::parse(&frame), Ok(sample(None)));
    }

    #[test]
    fn one_vlan_tag_shifts_the_aoe_header() {
        let mut frame = [0u8; 28];
        let hdr = sample(Some(0x0064));
        assert_eq!(hdr.encode(&mut frame), Ok(28));
        assert_eq!(&frame[12..16], &[0x81, 0x00, 0x00, 0x64]);
        assert_eq!(&frame[16..18], &[0x88, 0xa2]);
        let parsed = Header::parse(&frame).unwrap();
        assert_eq!(parsed, hdr);
        assert_eq!(parsed.l2_len(), 18);
        assert_eq!(parsed.body_offset(), 28);
    }

    #[test]
    fn short_and_foreign_frames_are_errors() {
        let mut frame = [0u8; 24];
        sample(None).encode(&mut frame).unwrap();
        for len in 0..24 {
            assert!(Header::parse(&frame[..len]).is_err(), "len {len}");
        }
        frame[12] = 0x08;
        frame[13] = 0x00;
        assert_eq!(
            Header::parse(&frame),
            Err(ParseError::NotAoe { ethertype: 0x0800 })
        );
    }

    #[test]
    fn reply_swaps_addresses_and_keeps_tag_and_command() {
        let req = sample(None);
        let own = Mac([2, 0, 0, 0, 0, 1]);
        let reply = req.reply(own, 7, 9).with_error(AoeError::BadArgument);
        assert_eq!(reply.dst, req.src);
        assert_eq!(reply.src, own);
        assert_eq!((reply.major, reply.minor), (7, 9));
        assert_eq!(reply.tag, req.tag);
        assert_eq!(reply.command, req.command);
        assert_eq!(reply.flags, FLAG_RESPONSE | FLAG_ERROR);
        assert_eq!(reply.error, 2);
        assert!(reply.is_response());
    }

    #[test]
    fn wildcards_address_every_target() {
        let mut h = sample(None);
        h.major = MAJOR_ANY;
        h.minor = MINOR_ANY;
        assert!(h.addresses(3, 4));
        h.major = 3;
        assert!(h.addresses(3, 4) && !h.addresses(2, 4));
        h.minor = 5;
        assert!(!h.addresses(3, 4) && h.addresses(3, 5));
    }

    #[test]
    fn pad_reply_zeroes_up_to_sixty_bytes() {
        let mut frame = [0xaau8; 64];
        assert_eq!(pad_reply(&mut frame, 32), Some(60));
        assert!(frame[32..60].iter().all(|&b| b == 0));
        assert_eq!(frame[60], 0xaa);
        assert_eq!(pad_reply(&mut frame, 61), Some(61));
        assert_eq!(pad_reply(&mut frame[..40], 32), None);
    }
}
