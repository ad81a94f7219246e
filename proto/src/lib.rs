//! ATA over Ethernet, protocol revision 11: the wire format and nothing else.
//!
//! Every type here is a plain value decoded from, or encoded into, a caller-owned byte
//! slice. Nothing in this crate touches a socket or a file, allocates, or panics on any
//! input: decoding a slice that is too short is an error value, never an index panic.
//!
//! Offsets in the AoE specification are given from the first byte of an untagged Ethernet
//! frame. This crate also accepts one 802.1Q tag, so every AoE offset is relative to
//! [`Header::l2_len`] (14, or 18 with a tag), exposed as constants named `*_OFFSET` that
//! count from the start of the AoE header.

#![forbid(unsafe_code)]

pub mod ata;
pub mod config;
mod error;
mod header;
mod mac;
pub mod mask;
pub mod reserve;

pub use error::{AoeError, ParseError};
pub use header::{
    pad_reply, Command, Header, AOE_HEADER_LEN, AOE_VERSION, ETHERTYPE_AOE, ETHERTYPE_VLAN,
    ETH_HEADER_LEN, FLAG_ERROR, FLAG_RESPONSE, MAJOR_ANY, MINOR_ANY, MIN_FRAME_LEN, VLAN_TAG_LEN,
};
pub use mac::{Mac, MacParseError};

/// Bytes per ATA sector as AoE carries them.
pub const SECTOR_SIZE: usize = 512;

/// Reads a big-endian u16 at `offset`, or `None` when the slice is too short.
fn be16(bytes: &[u8], offset: usize) -> Option<u16> {
    let b = bytes.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Reads a big-endian u32 at `offset`, or `None` when the slice is too short.
fn be32(bytes: &[u8], offset: usize) -> Option<u32> {
    let b = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Returns `bytes[start..start + len]`, or [`ParseError::TooShort`] naming how much was needed.
fn field(bytes: &[u8], start: usize, len: usize) -> Result<&[u8], ParseError> {
    let end = start.saturating_add(len);
    bytes.get(start..end).ok_or(ParseError::TooShort {
        needed: end,
        actual: bytes.len(),
    })
}

/// Mutable counterpart of [`field`].
fn field_mut(bytes: &mut [u8], start: usize, len: usize) -> Result<&mut [u8], ParseError> {
    let actual = bytes.len();
    let end = start.saturating_add(len);
    bytes.get_mut(start..end).ok_or(ParseError::TooShort {
        needed: end,
        actual,
    })
}
