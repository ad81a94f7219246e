use core::fmt;

/// Why a byte slice could not be decoded as the AoE structure asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The slice ends before the structure does.
    TooShort { needed: usize, actual: usize },
    /// The Ethernet frame does not carry AoE (ethertype 0x88A2).
    NotAoe { ethertype: u16 },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { needed, actual } => {
                write!(f, "frame too short: {actual} bytes, need {needed}")
            }
            Self::NotAoe { ethertype } => {
                write!(f, "not an AoE frame (ethertype {ethertype:#06x})")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// AoE error codes (the header's error field, valid when the E flag is set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AoeError {
    UnrecognizedCommand = 1,
    BadArgument = 2,
    DeviceUnavailable = 3,
    ConfigStringPresent = 4,
    UnsupportedVersion = 5,
    TargetReserved = 6,
}

impl AoeError {
    /// Decodes a wire error code; `None` for codes the specification does not define.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::UnrecognizedCommand,
            2 => Self::BadArgument,
            3 => Self::DeviceUnavailable,
            4 => Self::ConfigStringPresent,
            5 => Self::UnsupportedVersion,
            6 => Self::TargetReserved,
            _ => return None,
        })
    }
}

impl fmt::Display for AoeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnrecognizedCommand => "unrecognized command",
            Self::BadArgument => "bad argument",
            Self::DeviceUnavailable => "device unavailable",
            Self::ConfigStringPresent => "config string present",
            Self::UnsupportedVersion => "unsupported version",
            Self::TargetReserved => "target is reserved",
        })
    }
}
