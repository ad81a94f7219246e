//! The control protocol's access-control commands: `acl` (show), `mask` (edit the MAC mask
//! list), `reserve` (set or clear the reservation) and `config_string` (set or clear the AoE
//! config string), their payloads, and the checks of their arguments that both ends make
//! (an export name, a list of MACs, a string's length).
//!
//! ```text
//! {"cmd":"acl","exports":["e1.0"]}                  (no "exports", or []: every export)
//! {"cmd":"mask","export":"e1.0","op":"set","macs":["02:00:00:00:00:01"]}
//! {"cmd":"mask","export":"e1.0","op":"add","macs":["02:00:00:00:00:02"]}
//! {"cmd":"mask","export":"e1.0","op":"remove","macs":["02:00:00:00:00:02"]}
//! {"cmd":"mask","export":"e1.0","op":"clear"}
//! {"cmd":"reserve","export":"e1.0","op":"set","macs":["02:00:00:00:00:01"]}
//! {"cmd":"reserve","export":"e1.0","op":"clear"}
//! {"cmd":"config_string","export":"e1.0","op":"set","value":"cluster-a"}
//! {"cmd":"config_string","export":"e1.0","op":"clear"}
//! ```
//!
//! Replies (shown wrapped; one line on the wire):
//!
//! ```text
//! {"ok":true,"cmd":"acl","exports":[{"name":"e1.0","shelf":1,"slot":0,"locked":true,
//!  "mask":["02:00:00:00:00:01"],"mask_configured":["02:00:00:00:00:01"],
//!  "mask_capacity":64,"reservation":[],"reserved_by_operator":false,"config_string":""}]}
//! {"ok":true,"cmd":"mask","changed":true,"export":{"name":"e1.0",...}}
//! {"ok":true,"cmd":"reserve","changed":false,"export":{"name":"e1.0",...}}
//! {"ok":true,"cmd":"config_string","changed":true,"export":{"name":"e1.0",...}}
//! ```
//!
//! An operator's change takes effect at once on every interface serving the export (the XDP
//! program's ACL map included) and is saved in the export's state file, as an initiator's
//! change is. MACs are written `aa:bb:cc:dd:ee:ff` (`aa-bb-..` and `aabbccddeeff` are read
//! too); the mask list holds at most [`MAX_MASK_ENTRIES`] and a reservation at most
//! [`MAX_RESERVE_ENTRIES`]. An edit that does not fit changes nothing.

use serde::{Deserialize, Serialize};

use aoe_proto::config::MAX_STRING_LEN;
use aoe_proto::Mac;
use xblade_target::{ExportKey, MAX_MASK_ENTRIES, MAX_RESERVE_ENTRIES};

/// How `mask` changes the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskOp {
    /// The list becomes exactly `macs`.
    Set,
    /// `macs` join the list.
    Add,
    /// `macs` leave the list.
    Remove,
    /// The list is emptied: every host may use the export again.
    Clear,
}

impl MaskOp {
    pub fn name(self) -> &'static str {
        match self {
            MaskOp::Set => "set",
            MaskOp::Add => "add",
            MaskOp::Remove => "remove",
            MaskOp::Clear => "clear",
        }
    }
}

/// How `reserve` changes the reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReserveOp {
    /// Only `macs` may read and write the export.
    Set,
    /// Released: every host the mask list admits may read and write.
    Clear,
}

/// How `config_string` changes the string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigStringOp {
    /// The string becomes `value` (its UTF-8 bytes).
    Set,
    /// The string is emptied.
    Clear,
}

/// One export's access control, as `acl`, `mask` and `reserve` report it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExportAcl {
    /// `e<shelf>.<slot>`.
    pub name: String,
    pub shelf: u16,
    pub slot: u8,
    /// The mask list and config string are the operator's alone: changes from the wire are
    /// refused.
    pub locked: bool,
    /// The MAC mask list, in order; empty: every host may use the export.
    pub mask: Vec<String>,
    /// The entries the configuration (`mask` in the file, `-m` on the command line) puts
    /// on the list at start-up and when a reload changes them.
    pub mask_configured: Vec<String>,
    /// Most entries the mask list holds.
    pub mask_capacity: u32,
    /// The hosts holding the reservation; empty: not reserved.
    pub reservation: Vec<String>,
    /// The operator set the reservation (on a locked export, hosts cannot change it).
    pub reserved_by_operator: bool,
    /// The AoE config string, printable ASCII as is, other bytes as `\xNN`.
    pub config_string: String,
}

/// The payload of a successful `acl`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AclReply {
    pub exports: Vec<ExportAcl>,
}

/// The payload of a successful `mask` or `reserve`: the export's access control after the
/// change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AclChangeReply {
    /// False when the request asked for what already was (nothing was saved).
    pub changed: bool,
    pub export: ExportAcl,
}

/// `e1.0` → shelf 1, slot 0. The error is a sentence naming the fix.
pub fn parse_export_name(name: &str) -> Result<ExportKey, String> {
    let bad = || {
        format!(
            "'{name}' is not an export name: write e<shelf>.<slot>, e.g. e1.0 \
             (shelf 0-65534, slot 0-254; xbladectl status lists them)"
        )
    };
    let (shelf, slot) = name
        .strip_prefix('e')
        .and_then(|rest| rest.split_once('.'))
        .ok_or_else(bad)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(shelf) || !digits(slot) {
        return Err(bad());
    }
    let key = match (shelf.parse::<u16>(), slot.parse::<u8>()) {
        (Ok(shelf), Ok(slot)) => ExportKey::new(shelf, slot),
        _ => return Err(bad()),
    };
    if !key.is_addressable() {
        return Err(bad());
    }
    Ok(key)
}

/// Parses the MACs of a mask list or reservation (at most `capacity`, each an initiator's
/// unicast address). The error is a sentence naming the fix.
pub fn parse_macs(macs: &[String], capacity: usize) -> Result<Vec<Mac>, String> {
    let mut parsed = Vec::with_capacity(macs.len());
    for text in macs {
        let mac: Mac = text.trim().parse().map_err(|_| {
            format!("'{text}' is not a MAC address: write six hex bytes, e.g. 02:00:00:00:00:01")
        })?;
        if mac.is_multicast() || mac == Mac::ZERO {
            return Err(format!(
                "{mac} is not a host's address (it is {}): list initiators' unicast MACs",
                if mac == Mac::ZERO {
                    "all zeros"
                } else {
                    "a multicast or broadcast address"
                }
            ));
        }
        if !parsed.contains(&mac) {
            parsed.push(mac);
        }
    }
    if parsed.len() > capacity {
        return Err(format!(
            "{} MACs given, more than the {capacity} the list holds",
            parsed.len()
        ));
    }
    Ok(parsed)
}

/// Checks a config string the operator sets: at most [`MAX_STRING_LEN`] bytes.
pub fn check_config_string(value: &str) -> Result<(), String> {
    match value.len() {
        0 => Err("an empty config string: to clear it, use 'clear'".to_owned()),
        n if n > MAX_STRING_LEN => Err(format!(
            "the config string is {n} bytes, more than the {MAX_STRING_LEN} AoE carries"
        )),
        _ => Ok(()),
    }
}

/// The most MACs a `mask` request can name.
pub const MASK_CAPACITY: usize = MAX_MASK_ENTRIES;
/// The most MACs a `reserve` request can name.
pub const RESERVE_CAPACITY: usize = MAX_RESERVE_ENTRIES;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_names() {
        assert_eq!(parse_export_name("e1.0"), Ok(ExportKey::new(1, 0)));
        assert_eq!(
            parse_export_name("e65534.254"),
            Ok(ExportKey::new(65534, 254))
        );
        for bad in [
            "", "e", "1.0", "e1", "e1.", "e.0", "e1.0.0", "e-1.0", "e+1.0", "e1.256", "e65535.0",
            "e1.255", "E1.0", " e1.0",
        ] {
            let error = parse_export_name(bad).unwrap_err();
            assert!(
                error.contains("e<shelf>.<slot>, e.g. e1.0"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn mac_lists() {
        assert_eq!(
            parse_macs(
                &[
                    "02:00:00:00:00:01".into(),
                    "020000000002".into(),
                    "02-00-00-00-00-01".into()
                ],
                2
            ),
            Ok(vec![Mac([2, 0, 0, 0, 0, 1]), Mac([2, 0, 0, 0, 0, 2])])
        );
        assert_eq!(
            parse_macs(&["02:00:00:00:00:zz".into()], 2),
            Err("'02:00:00:00:00:zz' is not a MAC address: write six hex bytes, e.g. 02:00:00:00:00:01".into())
        );
        assert_eq!(
            parse_macs(&["ff:ff:ff:ff:ff:ff".into()], 2),
            Err("ff:ff:ff:ff:ff:ff is not a host's address (it is a multicast or broadcast address): list initiators' unicast MACs".into())
        );
        assert!(parse_macs(&["00:00:00:00:00:00".into()], 2)
            .unwrap_err()
            .contains("all zeros"));
        let many: Vec<String> = (0..3).map(|i| format!("02:00:00:00:00:0{i}")).collect();
        assert_eq!(
            parse_macs(&many, 2),
            Err("3 MACs given, more than the 2 the list holds".into())
        );
    }

    #[test]
    fn config_strings() {
        assert_eq!(check_config_string("cluster-a"), Ok(()));
        assert_eq!(check_config_string(&"x".repeat(1024)), Ok(()));
        assert_eq!(
            check_config_string(&"x".repeat(1025)),
            Err("the config string is 1025 bytes, more than the 1024 AoE carries".into())
        );
        assert!(check_config_string("").unwrap_err().contains("use 'clear'"));
    }

    #[test]
    fn ops_spell_as_documented() {
        for (op, name) in [
            (MaskOp::Set, "set"),
            (MaskOp::Add, "add"),
            (MaskOp::Remove, "remove"),
            (MaskOp::Clear, "clear"),
        ] {
            assert_eq!(serde_json::to_string(&op).unwrap(), format!("\"{name}\""));
            assert_eq!(op.name(), name);
        }
        assert_eq!(
            serde_json::to_string(&ReserveOp::Clear).unwrap(),
            "\"clear\""
        );
    }
}
