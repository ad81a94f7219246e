//! Reserve/Release (AoE command 3): a 2-byte header after the common header, then NMacs
//! MAC addresses (26 bytes into an untagged frame).

use crate::{field, field_mut, Mac, ParseError};

/// Bytes of the Reserve/Release header that follow the AoE common header.
pub const HEADER_LEN: usize = 2;

/// RCmd values.
pub mod rcmd {
    pub const READ: u8 = 0;
    pub const SET: u8 = 1;
    pub const FORCE_SET: u8 = 2;
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReserveHeader {
    pub rcmd: u8,
    pub nmacs: u8,
}

impl ReserveHeader {
    pub fn parse(frame: &[u8], body_offset: usize) -> Result<ReserveHeader, ParseError> {
        let b = field(frame, body_offset, HEADER_LEN)?;
        Ok(ReserveHeader {
            rcmd: b[0],
            nmacs: b[1],
        })
    }

    pub fn encode(&self, frame: &mut [u8], body_offset: usize) -> Result<(), ParseError> {
        let b = field_mut(frame, body_offset, HEADER_LEN)?;
        b[0] = self.rcmd;
        b[1] = self.nmacs;
        Ok(())
    }
}

fn mac_offset(body_offset: usize, index: usize) -> usize {
    body_offset + HEADER_LEN + index * 6
}

/// MAC `index` of the list that follows the header.
pub fn mac(frame: &[u8], body_offset: usize, index: usize) -> Result<Mac, ParseError> {
    let b = field(frame, mac_offset(body_offset, index), 6)?;
    Ok(Mac::read(b, 0).unwrap_or_default())
}

pub fn write_mac(
    frame: &mut [u8],
    body_offset: usize,
    index: usize,
    mac: Mac,
) -> Result<(), ParseError> {
    field_mut(frame, mac_offset(body_offset, index), 6)?.copy_from_slice(&mac.0);
    Ok(())
}

/// Frame length of a reserve message with `count` MACs.
pub fn frame_len(body_offset: usize, count: usize) -> usize {
    mac_offset(body_offset, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_layout() {
        let mut frame = [0u8; 38];
        ReserveHeader {
            rcmd: rcmd::SET,
            nmacs: 2,
        }
        .encode(&mut frame, 24)
        .unwrap();
        write_mac(&mut frame, 24, 0, Mac([1; 6])).unwrap();
        write_mac(&mut frame, 24, 1, Mac([2; 6])).unwrap();
        assert_eq!(&frame[24..26], &[1, 2]);
        assert_eq!(&frame[26..32], &[1; 6]);
        assert_eq!(mac(&frame, 24, 1), Ok(Mac([2; 6])));
        assert!(mac(&frame, 24, 2).is_err());
        assert_eq!(frame_len(24, 2), 38);
        assert_eq!(
            ReserveHeader::parse(&frame, 24),
            Ok(ReserveHeader { rcmd: 1, nmacs: 2 })
        );
    }
}
