//! What the daemon needs to know about a network interface, read from sysfs
//! (/sys/class/net/IFACE/{address,mtu}) in the current network namespace.

use std::path::PathBuf;

use aoe_proto::Mac;

#[derive(Debug, thiserror::Error)]
pub enum NetdevError {
    #[error("no such network interface '{0}' (see `ip link`)")]
    NotFound(String),
    #[error("interface '{iface}': cannot read {what}: {detail}")]
    Unreadable {
        iface: String,
        what: &'static str,
        detail: String,
    },
}

/// The interface facts that shape the AoE service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Netdev {
    pub name: String,
    pub mac: Mac,
    pub mtu: u32,
}

impl Netdev {
    pub fn lookup(name: &str) -> Result<Netdev, NetdevError> {
        if name.is_empty() || name.contains(['/', '\0']) || name == "." || name == ".." {
            return Err(NetdevError::NotFound(name.to_owned()));
        }
        let dir = PathBuf::from("/sys/class/net").join(name);
        if !dir.exists() {
            return Err(NetdevError::NotFound(name.to_owned()));
        }
        let read = |what: &'static str| {
            std::fs::read_to_string(dir.join(what))
                .map(|s| s.trim().to_owned())
                .map_err(|e| NetdevError::Unreadable {
                    iface: name.to_owned(),
                    what,
                    detail: e.to_string(),
                })
        };
        let mac = read("address")?
            .parse::<Mac>()
            .map_err(|e| NetdevError::Unreadable {
                iface: name.to_owned(),
                what: "address",
                detail: e.to_string(),
            })?;
        let mtu = read("mtu")?
            .parse::<u32>()
            .map_err(|e| NetdevError::Unreadable {
                iface: name.to_owned(),
                what: "mtu",
                detail: e.to_string(),
            })?;
        Ok(Netdev {
            name: name.to_owned(),
            mac,
            mtu,
        })
    }
}

/// Sectors per AoE ATA frame at this MTU and frame capacity. By the link: (MTU - 36) / 512,
/// the rule the Linux initiator applies (it subtracts the whole 36-byte header, Ethernet
/// included, from the MTU). By the frame: the 36-byte header and the data must fit the UMEM
/// frame the reply is built in.
pub fn max_sectors_per_frame(mtu: u32, frame_capacity: u32) -> u8 {
    let by_mtu = mtu.saturating_sub(36) / 512;
    let by_frame = frame_capacity.saturating_sub(36) / 512;
    by_mtu.min(by_frame).min(255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sectors_per_frame() {
        assert_eq!(max_sectors_per_frame(1500, 3620), 2);
        assert_eq!(max_sectors_per_frame(9000, 3620), 7);
        assert_eq!(max_sectors_per_frame(9000, 100_000), 17);
        assert_eq!(max_sectors_per_frame(500, 3620), 0);
    }

    #[test]
    fn missing_interface_is_a_clear_error() {
        let e = Netdev::lookup("xbl-no-such0").unwrap_err();
        assert_eq!(
            e.to_string(),
            "no such network interface 'xbl-no-such0' (see `ip link`)"
        );
        assert!(Netdev::lookup("../etc").is_err());
        assert!(Netdev::lookup("").is_err());
    }

    #[test]
    fn loopback_is_readable() {
        let lo = Netdev::lookup("lo").unwrap();
        assert_eq!(lo.mac, Mac::ZERO);
        assert!(lo.mtu >= 1500);
    }
}
