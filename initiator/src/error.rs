//! Error types: [`RequestError`] for one request that the target (or the network) failed,
//! [`InitiatorError`] for everything a caller of [`crate::Initiator`] can see.

use core::fmt;
use std::io;

use aoe_proto::{ata, AoeError, ParseError};

/// What a request was doing, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Read,
    Write,
    Identify,
    Flush,
    CheckPowerMode,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Identify => "IDENTIFY DEVICE",
            Self::Flush => "FLUSH CACHE",
            Self::CheckPowerMode => "CHECK POWER MODE",
        })
    }
}

/// Why one request failed. Carried by [`crate::Completion::result`] and, with the request's
/// address, by [`InitiatorError::Request`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The target ran the command and the device reported failure (`status & 0xA9 != 0`, the
    /// test the Linux driver applies).
    #[error("ATA status {status:#04x}, error register {error:#04x} ({})", describe_ata_error(*error))]
    Ata { status: u8, error: u8 },

    /// The target refused the request at the AoE level (E flag set).
    #[error("AoE error {code} ({})", aoe_error_text(*code))]
    Aoe { code: u8 },

    /// No reply to any of `attempts` transmissions (each a new tag, each waited for
    /// `timeout_ms`). The target is down, unreachable, or dropping requests.
    #[error(
        "no reply after {attempts} attempts of {timeout_ms} ms each (last tag {last_tag:#010x}); \
         is the target still running, or is --timeout-ms too short?"
    )]
    Timeout {
        attempts: u32,
        timeout_ms: u64,
        last_tag: u32,
    },

    /// A reply carried a different amount of sector data than the request asked for.
    #[error("reply carries {actual_bytes} bytes of sector data, expected {expected_bytes}")]
    DataLength {
        expected_bytes: usize,
        actual_bytes: usize,
    },

    /// A reply whose tag matched but that cannot be decoded.
    #[error("malformed reply: {0}")]
    Malformed(ParseError),

    /// A reply whose tag matched but whose AoE version is not 1.
    #[error("reply speaks AoE version {version}, expected 1")]
    Version { version: u8 },
}

impl RequestError {
    /// True for an ATA error whose error register has IDNF (address outside the device).
    pub fn is_out_of_range(&self) -> bool {
        matches!(self, Self::Ata { error, .. } if error & ata::error::IDNF != 0)
    }

    /// True for an ATA error whose error register has ABRT (command aborted or unsupported).
    pub fn is_aborted(&self) -> bool {
        matches!(self, Self::Ata { error, .. } if error & ata::error::ABRT != 0)
    }
}

fn aoe_error_text(code: u8) -> String {
    match AoeError::from_code(code) {
        Some(e) => e.to_string(),
        None => "not defined by AoE r11".to_owned(),
    }
}

/// Names the bits of an ATA error register, e.g. `"IDNF: address outside the device"`.
pub fn describe_ata_error(error: u8) -> &'static str {
    if error & ata::error::IDNF != 0 {
        "IDNF: address outside the device"
    } else if error & ata::error::UNC != 0 {
        "UNC: uncorrectable media error"
    } else if error & ata::error::ABRT != 0 {
        "ABRT: command aborted or not supported"
    } else if error == 0 {
        "no error bits"
    } else {
        "unrecognised error bits"
    }
}

/// Everything [`crate::Initiator`] can fail with.
#[derive(Debug, thiserror::Error)]
pub enum InitiatorError {
    #[error("interface name {ifname:?} is not valid (1 to 15 bytes, no NUL)")]
    InvalidInterfaceName { ifname: String },

    #[error("no network interface named {ifname:?} in this network namespace")]
    NoSuchInterface { ifname: String },

    #[error(
        "permission denied opening a raw AF_PACKET socket on {ifname:?}: run as root \
         (or grant CAP_NET_RAW)"
    )]
    PermissionDenied { ifname: String },

    /// A system call on the socket failed.
    #[error("{syscall} on interface {ifname:?} failed")]
    Socket {
        syscall: &'static str,
        ifname: String,
        #[source]
        source: io::Error,
    },

    #[error(
        "interface {ifname:?} has MTU {mtu_bytes}: too small for one 512-byte sector per AoE \
         frame (need at least 548)"
    )]
    MtuTooSmall { ifname: String, mtu_bytes: u32 },

    /// Nobody answered the Query Config broadcast.
    #[error(
        "no AoE target {address} answered on {ifname:?} ({attempts} queries, {timeout_ms} ms \
         each); is the target running on this link, and are shelf and slot right?"
    )]
    NoTarget {
        ifname: String,
        address: TargetAddress,
        attempts: u32,
        timeout_ms: u64,
    },

    /// The target answered the Query Config with the E flag.
    #[error("target {mac} refused Query Config with AoE error {code} ({})", aoe_error_text(*code))]
    DiscoverRefused { mac: aoe_proto::Mac, code: u8 },

    /// The target's Query Config reply makes I/O impossible.
    #[error("target {mac} advertises {sectors_per_frame} sectors per frame; it cannot serve I/O")]
    UnusableTarget {
        mac: aoe_proto::Mac,
        sectors_per_frame: u8,
    },

    /// One request failed; `source` says how (a timeout names the last tag sent).
    #[error("{op} at lba {lba} ({sectors} sectors) failed")]
    Request {
        op: Op,
        lba: u64,
        sectors: u8,
        #[source]
        source: RequestError,
    },

    #[error("buffer of {len_bytes} bytes is not a whole number of 512-byte sectors")]
    UnalignedLength { len_bytes: usize },

    #[error("lba {lba} + {sectors} sectors is beyond the 48-bit LBA range")]
    LbaOutOfRange { lba: u64, sectors: u64 },

    #[error("{sectors} sectors in one request; the target takes 1 to {max_sectors}")]
    BadSectorCount { sectors: usize, max_sectors: u8 },

    #[error("all {depth} request slots are in flight; poll() for completions first")]
    QueueFull { depth: usize },

    #[error("{in_flight} pipelined requests are in flight; poll() them to completion first")]
    Busy { in_flight: usize },

    #[error("queue depth {requested} is out of range 1..={max}")]
    BadQueueDepth { requested: usize, max: usize },

    #[error("raw frame of {len_bytes} bytes does not fit the interface (at most {max_bytes})")]
    FrameTooLong { len_bytes: usize, max_bytes: usize },
}

impl InitiatorError {
    /// The request-level cause, when this is [`InitiatorError::Request`].
    pub fn request_error(&self) -> Option<&RequestError> {
        match self {
            Self::Request { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A shelf.slot address where either part may be the wildcard, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetAddress {
    pub shelf: u16,
    pub slot: u8,
}

impl fmt::Display for TargetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.shelf == aoe_proto::MAJOR_ANY {
            f.write_str("any")?;
        } else {
            write!(f, "{}", self.shelf)?;
        }
        f.write_str(".")?;
        if self.slot == aoe_proto::MINOR_ANY {
            f.write_str("any")
        } else {
            write!(f, "{}", self.slot)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_cause() {
        let e = RequestError::Ata {
            status: 0x41,
            error: 0x10,
        };
        assert_eq!(
            e.to_string(),
            "ATA status 0x41, error register 0x10 (IDNF: address outside the device)"
        );
        assert!(e.is_out_of_range() && !e.is_aborted());
        let e = RequestError::Aoe { code: 2 };
        assert_eq!(e.to_string(), "AoE error 2 (bad argument)");
        let e = RequestError::Aoe { code: 77 };
        assert_eq!(e.to_string(), "AoE error 77 (not defined by AoE r11)");
        let addr = TargetAddress {
            shelf: aoe_proto::MAJOR_ANY,
            slot: 3,
        };
        assert_eq!(addr.to_string(), "any.3");
    }
}
