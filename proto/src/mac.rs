use core::fmt;
use core::str::FromStr;

/// An Ethernet (EUI-48) address in wire order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);
    pub const ZERO: Mac = Mac([0; 6]);

    /// True for group (multicast and broadcast) addresses: the I/G bit of the first octet.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }

    /// Reads six bytes at `offset`, or `None` when the slice is too short.
    pub fn read(bytes: &[u8], offset: usize) -> Option<Mac> {
        let b = bytes.get(offset..offset.checked_add(6)?)?;
        let mut mac = [0u8; 6];
        mac.copy_from_slice(b);
        Some(Mac(mac))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// A string that is not a MAC address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MacParseError(pub String);

impl fmt::Display for MacParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' is not a MAC address (expected six hex octets, e.g. 02:00:00:aa:bb:cc or 020000aabbcc)",
            self.0
        )
    }
}

impl std::error::Error for MacParseError {}

impl FromStr for Mac {
    type Err = MacParseError;

    /// Accepts `aa:bb:cc:dd:ee:ff`, `aa-bb-cc-dd-ee-ff` and `aabbccddeeff` (vblade's `-m` form).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_owned());
        let hex: Vec<&str> = if s.contains([':', '-']) {
            s.split([':', '-']).collect()
        } else if s.len() == 12 && s.is_char_boundary(2) {
            (0..6).filter_map(|i| s.get(2 * i..2 * i + 2)).collect()
        } else {
            return Err(err());
        };
        if hex.len() != 6 {
            return Err(err());
        }
        let mut mac = [0u8; 6];
        for (octet, text) in mac.iter_mut().zip(hex) {
            if text.is_empty() || text.len() > 2 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            *octet = u8::from_str_radix(text, 16).map_err(|_| err())?;
        }
        Ok(Mac(mac))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_accepted_forms() {
        let want = Mac([0x02, 0, 0, 0xaa, 0xbb, 0xcc]);
        assert_eq!("02:00:00:aa:bb:cc".parse::<Mac>(), Ok(want));
        assert_eq!("02-00-00-AA-BB-CC".parse::<Mac>(), Ok(want));
        assert_eq!("020000aabbcc".parse::<Mac>(), Ok(want));
        assert_eq!(want.to_string(), "02:00:00:aa:bb:cc");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "02:00:00:aa:bb",
            "02:00:00:aa:bb:cc:dd",
            "0200zzaabbcc",
            "02::00:aa:bb:cc",
            "123:0:0:0:0:0",
            "é2000aabbcc",
            "+1:02:03:04:05:06",
            "+1+2+3+4+5+6",
            "02-+a-03-04-05-06",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }

    #[test]
    fn multicast_bit() {
        assert!(Mac::BROADCAST.is_multicast());
        assert!(!Mac([0x02, 0, 0, 0, 0, 1]).is_multicast());
        assert!(Mac([0x01, 0, 0x5e, 0, 0, 1]).is_multicast());
    }
}
