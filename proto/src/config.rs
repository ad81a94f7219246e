//! Query Config Information (AoE command 1): an 8-byte header after the common header,
//! then the config string (32 bytes into an untagged frame).

use crate::{be16, field, field_mut, ParseError};

/// Bytes of the Query Config header that follow the AoE common header.
pub const HEADER_LEN: usize = 8;
/// Longest config string the protocol allows.
pub const MAX_STRING_LEN: usize = 1024;

/// The CCmd nibble of a Query Config request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ConfigCommand {
    /// Reply with the config string.
    Read = 0,
    /// Reply only if the target's string equals the request's.
    Test = 1,
    /// Reply only if the request's string is a prefix of the target's.
    TestPrefix = 2,
    /// Set the string if it is empty (or already equal); else error 4 with the current one.
    SetIfEmpty = 3,
    /// Set the string unconditionally.
    ForceSet = 4,
}

impl ConfigCommand {
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Read,
            1 => Self::Test,
            2 => Self::TestPrefix,
            3 => Self::SetIfEmpty,
            4 => Self::ForceSet,
            _ => return None,
        })
    }
}

/// The Query Config header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConfigHeader {
    /// Requests the target queues per initiator before it drops.
    pub buffer_count: u16,
    pub firmware_version: u16,
    /// Maximum sectors per ATA frame.
    pub sector_count: u8,
    /// High nibble of byte 29 (the AoE version the target speaks).
    pub aoe_version: u8,
    /// Low nibble of byte 29.
    pub ccmd: u8,
    /// Length of the config string that follows.
    pub string_len: u16,
}

impl ConfigHeader {
    pub fn parse(frame: &[u8], body_offset: usize) -> Result<ConfigHeader, ParseError> {
        let b = field(frame, body_offset, HEADER_LEN)?;
        Ok(ConfigHeader {
            buffer_count: be16(b, 0).unwrap_or(0),
            firmware_version: be16(b, 2).unwrap_or(0),
            sector_count: b[4],
            aoe_version: b[5] >> 4,
            ccmd: b[5] & 0x0f,
            string_len: be16(b, 6).unwrap_or(0),
        })
    }

    pub fn encode(&self, frame: &mut [u8], body_offset: usize) -> Result<(), ParseError> {
        let b = field_mut(frame, body_offset, HEADER_LEN)?;
        b[0..2].copy_from_slice(&self.buffer_count.to_be_bytes());
        b[2..4].copy_from_slice(&self.firmware_version.to_be_bytes());
        b[4] = self.sector_count;
        b[5] = (self.aoe_version << 4) | (self.ccmd & 0x0f);
        b[6..8].copy_from_slice(&self.string_len.to_be_bytes());
        Ok(())
    }
}

/// Where the config string starts.
pub fn string_offset(body_offset: usize) -> usize {
    body_offset + HEADER_LEN
}

/// The config string of a request: `string_len` bytes after the header. An error when the
/// frame is shorter than that (a length field that lies is a bad argument, not a truncation).
pub fn string(frame: &[u8], body_offset: usize, string_len: u16) -> Result<&[u8], ParseError> {
    field(frame, string_offset(body_offset), usize::from(string_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_wire_layout() {
        let mut frame = [0u8; 40];
        let h = ConfigHeader {
            buffer_count: 0x0102,
            firmware_version: 0x0304,
            sector_count: 2,
            aoe_version: 1,
            ccmd: 3,
            string_len: 8,
        };
        h.encode(&mut frame, 24).unwrap();
        assert_eq!(&frame[24..32], &[1, 2, 3, 4, 2, 0x13, 0, 8]);
        assert_eq!(ConfigHeader::parse(&frame, 24), Ok(h));
        frame[32..40].copy_from_slice(b"hello:42");
        assert_eq!(string(&frame, 24, 8), Ok(&b"hello:42"[..]));
        assert!(string(&frame, 24, 9).is_err());
        assert!(ConfigHeader::parse(&frame[..31], 24).is_err());
    }

    #[test]
    fn ccmd_codes() {
        for code in 0..=4 {
            assert_eq!(ConfigCommand::from_code(code).map(|c| c as u8), Some(code));
        }
        assert_eq!(ConfigCommand::from_code(5), None);
        assert_eq!(ConfigCommand::from_code(15), None);
    }
}
