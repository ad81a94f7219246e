//! The operator's access-control requests (`acl`, `mask`, `reserve`, `config_string` on the
//! control socket).
//!
//! An operator's change goes the way an initiator's does: into the export's shared target
//! state (every worker and every link sees it at once), then [`Daemon::publish_change`]
//! mirrors a mask list into the XDP ACL maps of the interfaces serving the export and saves
//! the state file. Other exports are not touched.
//!
//! The configuration's `mask` entries (`mask = [...]` in the file, `-m` on the command line)
//! are the operator's too. They are put on the list at start-up and whenever a reload changes
//! them (entries leaving the configuration leave the list, entries joining it join); entries
//! added with `xbladectl mask` or by initiators stay across reloads and restarts. So
//! `xbladectl mask remove` of a configured entry holds until the next start or the next
//! reload that changes that export's `mask`: remove it from the file to remove it for good.

use tracing::info;
use xblade_target::{ExportKey, MaskEdit, StateChange, TooManyMacs};

use crate::control::acl::{
    check_config_string, parse_export_name, parse_macs, MASK_CAPACITY, RESERVE_CAPACITY,
};
use crate::control::{AclChangeReply, AclReply, ConfigStringOp, MaskOp, Reply, ReserveOp};

use super::Daemon;

impl Daemon {
    /// `acl`: the access control of `names` (none: every export).
    pub(super) fn acl(&self, names: &[String]) -> Reply {
        if names.is_empty() {
            let exports = self.exports.values().map(|e| e.acl()).collect();
            return Reply::Acl(AclReply { exports });
        }
        let mut exports = Vec::with_capacity(names.len());
        for name in names {
            match self.export_named(name) {
                Ok(key) => exports.extend(self.exports.get(&key).map(|e| e.acl())),
                Err(e) => return Reply::error(e),
            }
        }
        Reply::Acl(AclReply { exports })
    }

    /// `mask`: the operator edits an export's mask list.
    pub(super) fn edit_mask(&mut self, name: &str, op: MaskOp, macs: &[String]) -> Reply {
        let key = match self.export_named(name) {
            Ok(key) => key,
            Err(e) => return Reply::error(e),
        };
        let macs = match (op, parse_macs(macs, MASK_CAPACITY)) {
            (MaskOp::Clear, _) => Vec::new(),
            (_, Ok(macs)) if macs.is_empty() => {
                return Reply::error(format!(
                    "mask {name} {}: name at least one MAC (to empty the list, use 'clear')",
                    op.name()
                ))
            }
            (_, Ok(macs)) => macs,
            (_, Err(e)) => return Reply::error(format!("mask {name}: {e}")),
        };
        let edit = match op {
            MaskOp::Set | MaskOp::Clear => MaskEdit::Set,
            MaskOp::Add => MaskEdit::Add,
            MaskOp::Remove => MaskEdit::Remove,
        };
        let Some(export) = self.exports.get(&key) else {
            return Reply::error(unknown_export(name, self.export_names()));
        };
        let changed = match export.target.edit_mask(edit, &macs) {
            Ok(changed) => changed,
            Err(e) => return Reply::error(too_many(name, "mask list", e)),
        };
        if changed {
            info!(export = %key, op = op.name(), mask = ?export.acl().mask, "operator changed the mask list");
            self.publish_change(key, StateChange::MaskList);
        }
        self.change_reply(key, changed, Reply::Mask)
    }

    /// `reserve`: the operator sets or clears an export's reservation.
    pub(super) fn reserve(&mut self, name: &str, op: ReserveOp, macs: &[String]) -> Reply {
        let key = match self.export_named(name) {
            Ok(key) => key,
            Err(e) => return Reply::error(e),
        };
        let macs = match (op, parse_macs(macs, RESERVE_CAPACITY)) {
            (ReserveOp::Clear, _) => Vec::new(),
            (ReserveOp::Set, Ok(macs)) if macs.is_empty() => {
                return Reply::error(format!(
                    "reserve {name} set: name at least one MAC (to release the export, use 'clear')"
                ))
            }
            (ReserveOp::Set, Ok(macs)) => macs,
            (ReserveOp::Set, Err(e)) => return Reply::error(format!("reserve {name}: {e}")),
        };
        let Some(export) = self.exports.get(&key) else {
            return Reply::error(unknown_export(name, self.export_names()));
        };
        let changed = match export.target.reserve_by_operator(&macs) {
            Ok(changed) => changed,
            Err(e) => return Reply::error(too_many(name, "reservation", e)),
        };
        if changed {
            info!(export = %key, holders = ?export.acl().reservation, "operator changed the reservation");
            self.publish_change(key, StateChange::Reservation);
        }
        self.change_reply(key, changed, Reply::Reserve)
    }

    /// `config_string`: the operator sets or clears an export's AoE config string.
    pub(super) fn set_config_string(
        &mut self,
        name: &str,
        op: ConfigStringOp,
        value: &str,
    ) -> Reply {
        let key = match self.export_named(name) {
            Ok(key) => key,
            Err(e) => return Reply::error(e),
        };
        let value = match op {
            ConfigStringOp::Clear => "",
            ConfigStringOp::Set => match check_config_string(value) {
                Ok(()) => value,
                Err(e) => return Reply::error(format!("config_string {name}: {e}")),
            },
        };
        let Some(export) = self.exports.get(&key) else {
            return Reply::error(unknown_export(name, self.export_names()));
        };
        let changed = match export
            .target
            .set_config_string_by_operator(value.as_bytes())
        {
            Ok(changed) => changed,
            Err(_) => return Reply::error(format!("config_string {name}: too long")),
        };
        if changed {
            info!(export = %key, value, "operator changed the config string");
            self.publish_change(key, StateChange::ConfigString);
        }
        self.change_reply(key, changed, Reply::ConfigString)
    }

    fn change_reply(
        &self,
        key: ExportKey,
        changed: bool,
        reply: fn(AclChangeReply) -> Reply,
    ) -> Reply {
        match self.exports.get(&key) {
            Some(export) => reply(AclChangeReply {
                changed,
                export: export.acl(),
            }),
            None => Reply::error(format!("{key} disappeared while it was changed")),
        }
    }

    /// The served export called `name`, or a sentence saying why there is none.
    fn export_named(&self, name: &str) -> Result<ExportKey, String> {
        let key = parse_export_name(name)?;
        if self.exports.contains_key(&key) {
            Ok(key)
        } else {
            Err(unknown_export(name, self.export_names()))
        }
    }

    fn export_names(&self) -> Vec<String> {
        self.exports.keys().map(ExportKey::to_string).collect()
    }
}

fn unknown_export(name: &str, served: Vec<String>) -> String {
    if served.is_empty() {
        format!("no export {name}: this xblade serves none")
    } else {
        format!(
            "no export {name} (served: {}; xbladectl status lists them)",
            served.join(", ")
        )
    }
}

fn too_many(name: &str, list: &str, e: TooManyMacs) -> String {
    format!(
        "the {list} of {name} holds at most {} MACs and this would make it {}: nothing was \
         changed (remove some first)",
        e.capacity, e.would_hold
    )
}
