//! MAC Mask List (AoE command 2): a 4-byte header after the common header, then 8-byte
//! directives (28 bytes into an untagged frame).

use crate::{field, field_mut, Mac, ParseError};

/// Bytes of the Mac Mask List header that follow the AoE common header.
pub const HEADER_LEN: usize = 4;
/// Bytes per directive: reserved, DCmd, MAC.
pub const DIRECTIVE_LEN: usize = 8;

/// MCmd values.
pub mod mcmd {
    pub const READ: u8 = 0;
    pub const EDIT: u8 = 1;
}

/// MError values.
pub mod merror {
    pub const UNSPECIFIED: u8 = 1;
    pub const BAD_DIRECTIVE: u8 = 2;
    pub const LIST_FULL: u8 = 3;
}

/// DCmd values.
pub mod dcmd {
    pub const NONE: u8 = 0;
    pub const ADD: u8 = 1;
    pub const DELETE: u8 = 2;
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaskHeader {
    pub mcmd: u8,
    pub merror: u8,
    /// Directives that follow (in a failed edit's reply: the index of the failing one).
    pub directive_count: u8,
}

impl MaskHeader {
    pub fn parse(frame: &[u8], body_offset: usize) -> Result<MaskHeader, ParseError> {
        let b = field(frame, body_offset, HEADER_LEN)?;
        Ok(MaskHeader {
            mcmd: b[1],
            merror: b[2],
            directive_count: b[3],
        })
    }

    pub fn encode(&self, frame: &mut [u8], body_offset: usize) -> Result<(), ParseError> {
        let b = field_mut(frame, body_offset, HEADER_LEN)?;
        b[0] = 0;
        b[1] = self.mcmd;
        b[2] = self.merror;
        b[3] = self.directive_count;
        Ok(())
    }
}

/// One directive: what to do (DCmd) with which MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Directive {
    pub dcmd: u8,
    pub mac: Mac,
}

fn directive_offset(body_offset: usize, index: usize) -> usize {
    body_offset + HEADER_LEN + index * DIRECTIVE_LEN
}

impl Directive {
    /// Decodes directive `index` (0-based).
    pub fn parse(frame: &[u8], body_offset: usize, index: usize) -> Result<Directive, ParseError> {
        let b = field(frame, directive_offset(body_offset, index), DIRECTIVE_LEN)?;
        Ok(Directive {
            dcmd: b[1],
            mac: Mac::read(b, 2).unwrap_or_default(),
        })
    }

    pub fn encode(
        &self,
        frame: &mut [u8],
        body_offset: usize,
        index: usize,
    ) -> Result<(), ParseError> {
        let b = field_mut(frame, directive_offset(body_offset, index), DIRECTIVE_LEN)?;
        b[0] = 0;
        b[1] = self.dcmd;
        b[2..8].copy_from_slice(&self.mac.0);
        Ok(())
    }
}

/// Frame length of a mask list message with `count` directives.
pub fn frame_len(body_offset: usize, count: usize) -> usize {
    directive_offset(body_offset, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_layout() {
        let mut frame = [0u8; 44];
        MaskHeader {
            mcmd: mcmd::EDIT,
            merror: 0,
            directive_count: 2,
        }
        .encode(&mut frame, 24)
        .unwrap();
        let a = Directive {
            dcmd: dcmd::ADD,
            mac: Mac([2, 0, 0, 0, 0, 1]),
        };
        let d = Directive {
            dcmd: dcmd::DELETE,
            mac: Mac([2, 0, 0, 0, 0, 2]),
        };
        a.encode(&mut frame, 24, 0).unwrap();
        d.encode(&mut frame, 24, 1).unwrap();
        assert_eq!(&frame[24..28], &[0, 1, 0, 2]);
        assert_eq!(&frame[28..36], &[0, 1, 2, 0, 0, 0, 0, 1]);
        assert_eq!(Directive::parse(&frame, 24, 1), Ok(d));
        assert!(Directive::parse(&frame, 24, 2).is_err());
        assert_eq!(frame_len(24, 2), 44);
    }
}
