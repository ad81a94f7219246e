//! The ATA command (AoE command 0): a 12-byte header after the common header, then sector
//! data (36 bytes into an untagged frame).

use crate::{field, field_mut, ParseError, SECTOR_SIZE};

/// Bytes of the ATA header that follow the AoE common header.
pub const HEADER_LEN: usize = 12;

/// AFlags bit E: the command is LBA48 ("extended").
pub const AFLAG_EXTENDED: u8 = 0x40;
/// AFlags bit D: the ATA device/head register's DEV bit.
pub const AFLAG_DEVICE: u8 = 0x10;
/// AFlags bit A: asynchronous write (the target may reply before the write is done).
pub const AFLAG_ASYNC: u8 = 0x02;
/// AFlags bit W: the command transfers data to the target.
pub const AFLAG_WRITE: u8 = 0x01;

/// ATA opcodes a target must serve (ACS command names).
pub mod opcode {
    pub const READ_SECTORS: u8 = 0x20;
    pub const READ_SECTORS_EXT: u8 = 0x24;
    pub const WRITE_SECTORS: u8 = 0x30;
    pub const WRITE_SECTORS_EXT: u8 = 0x34;
    pub const CHECK_POWER_MODE: u8 = 0xE5;
    pub const FLUSH_CACHE: u8 = 0xE7;
    pub const FLUSH_CACHE_EXT: u8 = 0xEA;
    pub const IDENTIFY_DEVICE: u8 = 0xEC;
    /// SMART (answered with ABRT: not supported).
    pub const SMART: u8 = 0xB0;
}

/// ATA status register bits.
pub mod status {
    /// DRDY: device ready.
    pub const DRDY: u8 = 0x40;
    /// ERR: the error register is valid.
    pub const ERR: u8 = 0x01;
    /// DRDY alone: success.
    pub const OK: u8 = DRDY;
    /// DRDY | ERR: failure, see the error register.
    pub const FAILED: u8 = DRDY | ERR;
    /// The bits the Linux initiator tests for failure (BSY | DF | DRQ | ERR).
    pub const LINUX_FAILURE_MASK: u8 = 0xA9;
}

/// ATA error register bits.
pub mod error {
    /// ABRT: command aborted (unsupported command, or a write that failed).
    pub const ABRT: u8 = 0x04;
    /// IDNF: the address is outside the device.
    pub const IDNF: u8 = 0x10;
    /// UNC: uncorrectable data error (a read that failed).
    pub const UNC: u8 = 0x40;
}

/// Sector count field of a CHECK POWER MODE reply: the device is active or idle.
pub const POWER_MODE_ACTIVE: u8 = 0xFF;

/// Offsets from the start of the ATA header (the AoE body).
const AFLAGS_OFFSET: usize = 0;
const ERR_FEATURE_OFFSET: usize = 1;
const SECTOR_COUNT_OFFSET: usize = 2;
const CMD_STATUS_OFFSET: usize = 3;
const LBA_OFFSET: usize = 4;

/// The ATA header, as a request carries it (`feature`, `command`) or a reply (`error`,
/// `status`: the same bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AtaHeader {
    pub aflags: u8,
    /// Feature register in a request, error register in a reply.
    pub err_feature: u8,
    /// Sectors to transfer in a request; sectors remaining (0 on success) in a reply.
    pub sector_count: u8,
    /// Command register in a request, status register in a reply.
    pub cmd_status: u8,
    /// LBA registers 0..5 in the order they appear on the wire (little-endian).
    pub lba_bytes: [u8; 6],
}

impl AtaHeader {
    /// Decodes the ATA header at `body_offset` (see [`crate::Header::body_offset`]).
    pub fn parse(frame: &[u8], body_offset: usize) -> Result<AtaHeader, ParseError> {
        let b = field(frame, body_offset, HEADER_LEN)?;
        let mut lba_bytes = [0u8; 6];
        lba_bytes.copy_from_slice(&b[LBA_OFFSET..LBA_OFFSET + 6]);
        Ok(AtaHeader {
            aflags: b[AFLAGS_OFFSET],
            err_feature: b[ERR_FEATURE_OFFSET],
            sector_count: b[SECTOR_COUNT_OFFSET],
            cmd_status: b[CMD_STATUS_OFFSET],
            lba_bytes,
        })
    }

    /// Writes the header at `body_offset`, the two reserved bytes zeroed.
    pub fn encode(&self, frame: &mut [u8], body_offset: usize) -> Result<(), ParseError> {
        let b = field_mut(frame, body_offset, HEADER_LEN)?;
        b[AFLAGS_OFFSET] = self.aflags;
        b[ERR_FEATURE_OFFSET] = self.err_feature;
        b[SECTOR_COUNT_OFFSET] = self.sector_count;
        b[CMD_STATUS_OFFSET] = self.cmd_status;
        b[LBA_OFFSET..LBA_OFFSET + 6].copy_from_slice(&self.lba_bytes);
        b[10] = 0;
        b[11] = 0;
        Ok(())
    }

    /// Writes only the fields a target changes in a reply (error, sectors remaining,
    /// status), leaving AFlags and the LBA as the request had them.
    pub fn encode_reply(
        frame: &mut [u8],
        body_offset: usize,
        status: u8,
        error: u8,
        sector_count: u8,
    ) -> Result<(), ParseError> {
        let b = field_mut(frame, body_offset, HEADER_LEN)?;
        b[ERR_FEATURE_OFFSET] = error;
        b[SECTOR_COUNT_OFFSET] = sector_count;
        b[CMD_STATUS_OFFSET] = status;
        Ok(())
    }

    pub fn is_extended(&self) -> bool {
        self.aflags & AFLAG_EXTENDED != 0
    }

    pub fn is_write(&self) -> bool {
        self.aflags & AFLAG_WRITE != 0
    }

    pub fn is_async(&self) -> bool {
        self.aflags & AFLAG_ASYNC != 0
    }

    /// The logical block address: 48 bits when [`AFLAG_EXTENDED`] is set, else 28 bits (the
    /// high nibble of LBA byte 3 is the device register and is masked off).
    pub fn lba(&self) -> u64 {
        let b = self.lba_bytes;
        if self.is_extended() {
            u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], 0, 0])
        } else {
            u64::from_le_bytes([b[0], b[1], b[2], b[3] & 0x0f, 0, 0, 0, 0])
        }
    }

    /// LBA bytes for `lba`: 48 bits when `extended`, else 28 bits with the device register
    /// nibble set to 0xE (LBA mode, as the Linux driver does for LBA28).
    pub fn lba_bytes_for(lba: u64, extended: bool) -> [u8; 6] {
        let le = lba.to_le_bytes();
        if extended {
            [le[0], le[1], le[2], le[3], le[4], le[5]]
        } else {
            [le[0], le[1], le[2], (le[3] & 0x0f) | 0xe0, 0, 0]
        }
    }
}

/// Where the sector data of an ATA frame starts.
pub fn data_offset(body_offset: usize) -> usize {
    body_offset + HEADER_LEN
}

/// Bytes of sector data `sector_count` sectors carry.
pub fn data_len(sector_count: u8) -> usize {
    usize::from(sector_count) * SECTOR_SIZE
}

/// Largest LBA28 capacity IDENTIFY words 60-61 can report.
pub const LBA28_MAX_SECTORS: u64 = 0x0FFF_FFFF;

/// The text fields of IDENTIFY DEVICE data.
#[derive(Clone, Copy, Debug)]
pub struct IdentifyStrings<'a> {
    /// Words 10-19, 20 characters.
    pub serial: &'a str,
    /// Words 23-26, 8 characters.
    pub firmware: &'a str,
    /// Words 27-46, 40 characters.
    pub model: &'a str,
}

/// Builds the 512-byte IDENTIFY DEVICE data (ATA/ATAPI-7 layout) of a disk of
/// `size_sectors` sectors that supports LBA48 and FLUSH CACHE (EXT).
pub fn identify_data(size_sectors: u64, strings: IdentifyStrings<'_>) -> [u8; SECTOR_SIZE] {
    let mut words = [0u16; 256];
    words[0] = 0x0040; // fixed (non-removable) device
    put_string(&mut words[10..20], strings.serial);
    put_string(&mut words[23..27], strings.firmware);
    put_string(&mut words[27..47], strings.model);
    words[47] = 0x8000; // READ/WRITE MULTIPLE: no sectors per DRQ block
    words[49] = 0x0200; // LBA supported
    words[50] = 0x4000; // capabilities word valid
    words[53] = 0x0000;
    let lba28 = size_sectors.min(LBA28_MAX_SECTORS) as u32;
    words[60] = lba28 as u16;
    words[61] = (lba28 >> 16) as u16;
    words[80] = 0x00f0; // ATA-4 .. ATA-7
                        // Words 82-87: command sets supported (82-84) and enabled (85-87).
                        // Bit 10: 48-bit address feature set; bit 12: FLUSH CACHE; bit 13: FLUSH CACHE EXT.
                        // Bit 14 of words 83, 84 and 87 must be one (the word is valid).
    words[83] = 0x4000 | 0x2000 | 0x1000 | 0x0400;
    words[84] = 0x4000;
    words[86] = 0x2000 | 0x1000 | 0x0400;
    words[87] = 0x4000;
    let lba48 = size_sectors & 0xFFFF_FFFF_FFFF;
    for (i, word) in words[100..104].iter_mut().enumerate() {
        *word = (lba48 >> (16 * i)) as u16;
    }
    let mut out = [0u8; SECTOR_SIZE];
    for (chunk, word) in out.chunks_exact_mut(2).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// ATA strings: ASCII, space padded, two characters per word with the first in the high byte.
fn put_string(words: &mut [u16], text: &str) {
    let mut bytes = text.bytes().filter(|b| b.is_ascii_graphic() || *b == b' ');
    for word in words {
        let hi = bytes.next().unwrap_or(b' ');
        let lo = bytes.next().unwrap_or(b' ');
        *word = u16::from_be_bytes([hi, lo]);
    }
}

/// Reads an ATA string back from IDENTIFY data (for initiators and tests), trailing spaces
/// removed. `words` is the word range, e.g. `27..47` for the model.
pub fn identify_string(data: &[u8; SECTOR_SIZE], words: core::ops::Range<usize>) -> String {
    let mut s = String::new();
    for w in words.filter(|w| *w < 256) {
        s.push(char::from(data[2 * w + 1]));
        s.push(char::from(data[2 * w]));
    }
    s.trim_end().to_owned()
}

/// Reads IDENTIFY word `index` (little-endian), 0 beyond the end.
pub fn identify_word(data: &[u8; SECTOR_SIZE], index: usize) -> u16 {
    match data.get(2 * index..2 * index + 2) {
        Some(b) => u16::from_le_bytes([b[0], b[1]]),
        None => 0,
    }
}

/// The capacity an initiator takes from IDENTIFY data: words 100-103 when word 83 or 86
/// says LBA48, else words 60-61 (the Linux aoe driver's rule).
pub fn identify_capacity_sectors(data: &[u8; SECTOR_SIZE]) -> u64 {
    let lba48 = (identify_word(data, 83) | identify_word(data, 86)) & 0x0400 != 0;
    if lba48 {
        (0..4).fold(0u64, |acc, i| {
            acc | u64::from(identify_word(data, 100 + i)) << (16 * i)
        })
    } else {
        u64::from(identify_word(data, 60)) | u64::from(identify_word(data, 61)) << 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lba48_and_lba28_decoding() {
        let mut h = AtaHeader {
            aflags: AFLAG_EXTENDED,
            lba_bytes: [1, 2, 3, 4, 5, 6],
            ..Default::default()
        };
        assert_eq!(h.lba(), 0x0605_0403_0201);
        h.aflags = 0;
        h.lba_bytes = [1, 2, 3, 0xe4, 5, 6];
        assert_eq!(h.lba(), 0x0403_0201, "device nibble and bytes 4-5 ignored");
    }

    #[test]
    fn lba_bytes_round_trip() {
        for lba in [0u64, 1, 0x0fff_ffff, 0x1234_5678_9abc] {
            let h = AtaHeader {
                aflags: AFLAG_EXTENDED,
                lba_bytes: AtaHeader::lba_bytes_for(lba, true),
                ..Default::default()
            };
            assert_eq!(h.lba(), lba);
        }
        let b = AtaHeader::lba_bytes_for(0x0abc_def1, false);
        assert_eq!(b, [0xf1, 0xde, 0xbc, 0xea, 0, 0]);
    }

    #[test]
    fn header_wire_layout() {
        let mut frame = [0u8; 36];
        let h = AtaHeader {
            aflags: AFLAG_EXTENDED | AFLAG_WRITE,
            err_feature: 0,
            sector_count: 2,
            cmd_status: opcode::WRITE_SECTORS_EXT,
            lba_bytes: [9, 8, 7, 6, 5, 4],
        };
        h.encode(&mut frame, 24).unwrap();
        assert_eq!(&frame[24..36], &[0x41, 0, 2, 0x34, 9, 8, 7, 6, 5, 4, 0, 0]);
        assert_eq!(AtaHeader::parse(&frame, 24), Ok(h));
        assert!(AtaHeader::parse(&frame[..35], 24).is_err());
        AtaHeader::encode_reply(&mut frame, 24, status::FAILED, error::IDNF, 0).unwrap();
        assert_eq!(&frame[24..28], &[0x41, 0x10, 0, 0x41]);
    }

    #[test]
    fn identify_reports_capacity_features_and_strings() {
        let size = 0x1_2345_6789u64;
        let id = identify_data(
            size,
            IdentifyStrings {
                serial: "SN42",
                firmware: "0.1.0",
                model: "xblade",
            },
        );
        assert_eq!(identify_capacity_sectors(&id), size);
        assert_eq!(identify_word(&id, 60), 0xffff);
        assert_eq!(identify_word(&id, 61), 0x0fff);
        assert_eq!(identify_word(&id, 49) & 0x0200, 0x0200);
        assert_eq!(identify_word(&id, 83) & 0x3400, 0x3400);
        assert_eq!(identify_word(&id, 86) & 0x3400, 0x3400);
        assert_eq!(identify_string(&id, 10..20), "SN42");
        assert_eq!(identify_string(&id, 23..27), "0.1.0");
        assert_eq!(identify_string(&id, 27..47), "xblade");
        // Byte-swapped pairs: "xb" is stored as 'b','x'.
        assert_eq!(&id[54..56], b"bx");
        let small = identify_data(
            1000,
            IdentifyStrings {
                serial: "",
                firmware: "",
                model: "",
            },
        );
        assert_eq!(identify_word(&small, 60), 1000);
        assert_eq!(identify_capacity_sectors(&small), 1000);
    }
}
