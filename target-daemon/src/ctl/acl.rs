//! `xbladectl acl`, `mask`, `reserve` and `config-string`: their requests, checked before
//! anything is sent, and the rendering of their replies for a human.

use crate::control::acl::{
    check_config_string, parse_export_name, parse_macs, MASK_CAPACITY, RESERVE_CAPACITY,
};
use crate::control::{
    AclChangeReply, AclReply, ConfigStringOp, ExportAcl, MaskOp, Request, ReserveOp,
};

/// The `acl` request for `exports` (none: every export). The error names the fix.
pub fn acl_request(exports: &[String]) -> Result<Request, String> {
    for name in exports {
        parse_export_name(name)?;
    }
    Ok(Request::Acl {
        exports: exports.to_vec(),
    })
}

/// The `mask` request. The error names the fix.
pub fn mask_request(export: &str, op: MaskOp, macs: &[String]) -> Result<Request, String> {
    parse_export_name(export)?;
    match (op, macs.is_empty()) {
        (MaskOp::Clear, false) => {
            return Err("'mask EXPORT clear' takes no MACs (to keep some, use 'set MAC…')".into())
        }
        (MaskOp::Set | MaskOp::Add | MaskOp::Remove, true) => {
            return Err(format!(
                "'mask EXPORT {}' needs at least one MAC (to empty the list, use 'clear')",
                op.name()
            ))
        }
        _ => {}
    }
    parse_macs(macs, MASK_CAPACITY)?;
    Ok(Request::Mask {
        export: export.to_owned(),
        op,
        macs: macs.to_vec(),
    })
}

/// The `reserve` request. The error names the fix.
pub fn reserve_request(export: &str, op: ReserveOp, macs: &[String]) -> Result<Request, String> {
    parse_export_name(export)?;
    match (op, macs.is_empty()) {
        (ReserveOp::Clear, false) => return Err("'reserve EXPORT clear' takes no MACs".into()),
        (ReserveOp::Set, true) => {
            return Err(
                "'reserve EXPORT set' needs at least one MAC (to release, use 'clear')".into(),
            )
        }
        _ => {}
    }
    parse_macs(macs, RESERVE_CAPACITY)?;
    Ok(Request::Reserve {
        export: export.to_owned(),
        op,
        macs: macs.to_vec(),
    })
}

/// The `config_string` request. The error names the fix.
pub fn config_string_request(
    export: &str,
    op: ConfigStringOp,
    value: Option<&str>,
) -> Result<Request, String> {
    parse_export_name(export)?;
    let value = match (op, value) {
        (ConfigStringOp::Set, Some(value)) => {
            check_config_string(value)?;
            value.to_owned()
        }
        (ConfigStringOp::Set, None) => {
            return Err(
                "'config-string EXPORT set' needs the STRING (to clear it, use 'clear')".into(),
            )
        }
        (ConfigStringOp::Clear, Some(_)) => {
            return Err("'config-string EXPORT clear' takes no STRING".into())
        }
        (ConfigStringOp::Clear, None) => String::new(),
    };
    Ok(Request::ConfigString {
        export: export.to_owned(),
        op,
        value,
    })
}

/// One export's access control:
///
/// ```text
/// e1.0  locked
///   mask         02:00:00:00:00:01  configured
///                02:00:00:00:00:02
///   reservation  02:00:00:00:00:02  set by the operator
///   config       "host-a"
/// ```
fn export_block(acl: &ExportAcl) -> String {
    let mut out = format!(
        "{}  {}\n",
        acl.name,
        if acl.locked { "locked" } else { "unlocked" }
    );
    let mut rows = |label: &str, values: Vec<String>, empty: &str| {
        if values.is_empty() {
            out.push_str(&format!("  {label:<11}  {empty}\n"));
        }
        for (i, value) in values.iter().enumerate() {
            let label = if i == 0 { label } else { "" };
            out.push_str(format!("  {label:<11}  {value}").trim_end());
            out.push('\n');
        }
    };
    let mask = acl
        .mask
        .iter()
        .map(|mac| match acl.mask_configured.contains(mac) {
            true => format!("{mac}  configured"),
            false => mac.clone(),
        })
        .collect();
    rows("mask", mask, "none: every host may use it");
    let reservation = acl
        .reservation
        .iter()
        .enumerate()
        .map(|(i, mac)| match (i, acl.reserved_by_operator) {
            (0, true) => format!("{mac}  set by the operator"),
            _ => mac.clone(),
        })
        .collect();
    rows("reservation", reservation, "none");
    let config = match acl.config_string.is_empty() {
        true => vec![],
        false => vec![format!("\"{}\"", acl.config_string)],
    };
    rows("config", config, "none");
    out
}

/// `xbladectl acl`: one block per export, a blank line between them.
pub fn format_acl(reply: &AclReply) -> String {
    if reply.exports.is_empty() {
        return "no exports\n".to_owned();
    }
    reply
        .exports
        .iter()
        .map(export_block)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `xbladectl mask` and `reserve`: what happened, then the export's access control.
pub fn format_acl_change(what: &str, reply: &AclChangeReply) -> String {
    let verdict = match reply.changed {
        true => "changed",
        false => "unchanged (it already was as asked)",
    };
    format!(
        "{}: {what} {verdict}\n{}",
        reply.export.name,
        export_block(&reply.export)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> String {
        format!("02:00:00:00:00:{n:02x}")
    }

    fn sample() -> ExportAcl {
        ExportAcl {
            name: "e1.0".into(),
            shelf: 1,
            slot: 0,
            locked: true,
            mask: vec![mac(1), mac(2)],
            mask_configured: vec![mac(1)],
            mask_capacity: 64,
            reservation: vec![mac(2), mac(3)],
            reserved_by_operator: true,
            config_string: "host-a\\x00".into(),
        }
    }

    #[test]
    fn acl_blocks() {
        let open = ExportAcl {
            name: "e1.1".into(),
            slot: 1,
            mask_capacity: 64,
            ..Default::default()
        };
        assert_eq!(
            format_acl(&AclReply {
                exports: vec![sample(), open]
            }),
            "e1.0  locked\n  \
             mask         02:00:00:00:00:01  configured\n               \
             02:00:00:00:00:02\n  \
             reservation  02:00:00:00:00:02  set by the operator\n               \
             02:00:00:00:00:03\n  \
             config       \"host-a\\x00\"\n\
             \n\
             e1.1  unlocked\n  \
             mask         none: every host may use it\n  \
             reservation  none\n  \
             config       none\n"
        );
        assert_eq!(format_acl(&AclReply::default()), "no exports\n");
    }

    #[test]
    fn change_lines() {
        let reply = AclChangeReply {
            changed: false,
            export: ExportAcl {
                reservation: vec![mac(9)],
                reserved_by_operator: false,
                mask: vec![],
                ..sample()
            },
        };
        assert_eq!(
            format_acl_change("reservation", &reply),
            "e1.0: reservation unchanged (it already was as asked)\n\
             e1.0  locked\n  \
             mask         none: every host may use it\n  \
             reservation  02:00:00:00:00:09\n  \
             config       \"host-a\\x00\"\n"
        );
        let reply = AclChangeReply {
            changed: true,
            ..reply
        };
        assert!(format_acl_change("mask list", &reply).starts_with("e1.0: mask list changed\n"));
    }

    #[test]
    fn requests_are_checked_before_sending() {
        assert_eq!(
            mask_request("e1.0", MaskOp::Add, &[mac(1)]),
            Ok(Request::Mask {
                export: "e1.0".into(),
                op: MaskOp::Add,
                macs: vec![mac(1)]
            })
        );
        assert_eq!(
            mask_request("e1.0", MaskOp::Clear, &[]),
            Ok(Request::Mask {
                export: "e1.0".into(),
                op: MaskOp::Clear,
                macs: vec![]
            })
        );
        assert!(mask_request("1.0", MaskOp::Add, &[mac(1)])
            .unwrap_err()
            .contains("e<shelf>.<slot>"));
        assert!(mask_request("e1.0", MaskOp::Add, &["zz".into()])
            .unwrap_err()
            .contains("'zz' is not a MAC address"));
        assert!(mask_request("e1.0", MaskOp::Set, &[])
            .unwrap_err()
            .contains("use 'clear'"));
        assert!(mask_request("e1.0", MaskOp::Clear, &[mac(1)]).is_err());
        let many: Vec<String> = (0..=64).map(mac).collect();
        assert_eq!(
            mask_request("e1.0", MaskOp::Set, &many),
            Err("65 MACs given, more than the 64 the list holds".into())
        );
        assert!(reserve_request("e1.0", ReserveOp::Set, &[]).is_err());
        assert!(reserve_request("e1.0", ReserveOp::Clear, &[mac(1)]).is_err());
        assert!(reserve_request("e1.0", ReserveOp::Clear, &[]).is_ok());
        assert!(acl_request(&["e1.0".into(), "x".into()]).is_err());
        assert_eq!(
            config_string_request("e1.0", ConfigStringOp::Set, Some("a b")),
            Ok(Request::ConfigString {
                export: "e1.0".into(),
                op: ConfigStringOp::Set,
                value: "a b".into()
            })
        );
        assert!(config_string_request("e1.0", ConfigStringOp::Set, None).is_err());
        assert!(config_string_request("e1.0", ConfigStringOp::Clear, Some("x")).is_err());
        assert!(
            config_string_request("e1.0", ConfigStringOp::Set, Some(&"x".repeat(1025)))
                .unwrap_err()
                .contains("1025 bytes")
        );
        assert_eq!(acl_request(&[]), Ok(Request::Acl { exports: vec![] }));
    }
}
