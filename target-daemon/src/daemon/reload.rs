//! Reload: read and validate the whole new file, open what it adds, and only then apply the
//! difference. Exports the difference does not name are never touched: their workers keep
//! serving them through the whole reload.

use std::collections::{BTreeMap, BTreeSet};

use tracing::warn;
use xblade_target::ExportKey;

use crate::config::{ConfigSource, ServeConfig};
use crate::control::ReloadReply;

use super::export::RunningExport;
use super::{Daemon, DaemonError, InterfaceSlot};

/// What a reload changes, computed from the two configurations alone.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Plan {
    pub added: Vec<ExportKey>,
    pub removed: Vec<ExportKey>,
    /// The backing store or its options changed: a new version is opened.
    pub reopened: Vec<ExportKey>,
    /// Only the interfaces or the configured mask entries changed.
    pub adjusted: Vec<ExportKey>,
    pub unchanged: Vec<ExportKey>,
    pub interfaces_added: Vec<String>,
    pub interfaces_removed: Vec<String>,
    /// The interface's tuning changed: it is attached again.
    pub interfaces_retuned: Vec<String>,
}

impl Plan {
    pub fn new(old: &ServeConfig, new: &ServeConfig) -> Plan {
        let mut plan = Plan::default();
        for (key, config) in &new.exports {
            match old.exports.get(key) {
                None => plan.added.push(*key),
                Some(before) if before == config => plan.unchanged.push(*key),
                Some(before) if before.same_backing(config) => plan.adjusted.push(*key),
                Some(_) => plan.reopened.push(*key),
            }
        }
        plan.removed = old
            .exports
            .keys()
            .filter(|k| !new.exports.contains_key(k))
            .copied()
            .collect();
        for (name, config) in &new.interfaces {
            match old.interfaces.get(name) {
                None => plan.interfaces_added.push(name.clone()),
                Some(before) if before != config => plan.interfaces_retuned.push(name.clone()),
                Some(_) => {}
            }
        }
        plan.interfaces_removed = old
            .interfaces
            .keys()
            .filter(|n| !new.interfaces.contains_key(*n))
            .cloned()
            .collect();
        plan
    }

    pub fn reply(&self) -> ReloadReply {
        let names = |keys: &[ExportKey]| keys.iter().map(ExportKey::to_string).collect();
        let mut changed: Vec<ExportKey> = self.reopened.clone();
        changed.extend(&self.adjusted);
        changed.sort();
        ReloadReply {
            added: names(&self.added),
            removed: names(&self.removed),
            changed: names(&changed),
            unchanged: self.unchanged.len() as u32,
            interfaces_attached: self.interfaces_added.clone(),
            interfaces_detached: self.interfaces_removed.clone(),
        }
    }
}

/// A reload never moves the metrics endpoint: it was bound at start-up, before the daemon
/// may have dropped the privileges (and the system calls) binding needs. A changed
/// `metrics_listen` fails the whole reload, so that the operator learns it at once (from
/// `xbladectl reload` or `systemctl reload`) instead of from a dashboard gone quiet.
fn same_metrics_listen(old: &ServeConfig, new: &ServeConfig) -> Result<(), DaemonError> {
    if old.metrics_listen == new.metrics_listen {
        return Ok(());
    }
    let shown = |addr: Option<std::net::SocketAddr>| {
        addr.map_or_else(|| "off".to_owned(), |a| a.to_string())
    };
    Err(DaemonError::Setup(format!(
        "metrics_listen changed from {} to {}: a reload cannot move the metrics endpoint; \
         restart xblade to apply it, or put the old value back to reload the rest",
        shown(old.metrics_listen),
        shown(new.metrics_listen)
    )))
}

/// One line for the log.
pub(super) fn describe(r: &ReloadReply) -> String {
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    format!(
        "added {}; removed {}; changed {}; {} unchanged; interfaces attached {}, detached {}",
        list(&r.added),
        list(&r.removed),
        list(&r.changed),
        r.unchanged,
        list(&r.interfaces_attached),
        list(&r.interfaces_detached)
    )
}

impl Daemon {
    /// Re-reads the config file and applies the difference. On an error nothing changed.
    pub(super) fn reload(&mut self) -> Result<ReloadReply, DaemonError> {
        if self.config.source == ConfigSource::CommandLine {
            return Err(DaemonError::Setup(
                "xblade was started from a vblade command line: there is no file to reload \
                 (start it with --config FILE)"
                    .to_owned(),
            ));
        }
        // The file again, with the same command-line overrides as at start-up.
        // Files already served are not opened again to check them: after the privilege
        // drop the daemon may no longer be able to.
        let open: Vec<(std::path::PathBuf, bool)> = self
            .exports
            .values()
            .map(|e| (e.config.file.clone(), e.config.read_only))
            .collect();
        let mut new = self.cli.serve_config_reusing(&open)?;
        if new.control != self.config.control {
            warn!("the control socket path changed in the file; it takes effect at the next start");
            new.control = self.config.control.clone();
        }
        same_metrics_listen(&self.config, &new)?;
        if new.user != self.config.user {
            warn!("the user to run as changed in the file; it takes effect at the next start");
            new.user = self.config.user.clone();
        }
        super::check_limits(&new)?;
        let plan = Plan::new(&self.config, &new);
        // Attaching needs privilege the daemon may have dropped: refuse before anything
        // changes.
        let attaching: Vec<&str> = plan
            .interfaces_added
            .iter()
            .chain(&plan.interfaces_retuned)
            .map(String::as_str)
            .collect();
        self.require_privilege(&attaching)?;

        // Validate: open every new backing store before anything changes.
        let mut opened = BTreeMap::new();
        for key in plan.added.iter().chain(&plan.reopened) {
            let export = RunningExport::open(&new.exports[key], self.exports.get(key))
                .map_err(|e| e.in_export(*key))?;
            opened.insert(*key, export);
        }

        // Commit: the export table first, then each interface.
        let before: BTreeMap<String, BTreeSet<ExportKey>> = self
            .interfaces
            .iter()
            .filter_map(|(n, s)| s.running.as_ref().map(|r| (n.clone(), r.exports.clone())))
            .collect();
        for key in &plan.removed {
            self.exports.remove(key);
            self.stats.remove(*key);
        }
        for key in &plan.adjusted {
            if let Some(export) = self.exports.get_mut(key) {
                let old_mask = std::mem::replace(&mut export.config, new.exports[key].clone()).mask;
                export.reseed_from(&old_mask);
            }
        }
        for (key, export) in opened {
            if let Some(previous) = self.exports.get(&key) {
                export.reseed_from(&previous.config.mask);
            }
            self.exports.insert(key, export);
        }
        let reopened: BTreeSet<ExportKey> = plan.reopened.iter().copied().collect();
        for name in &plan.interfaces_removed {
            self.detach(name);
            self.interfaces.remove(name);
        }
        for name in &plan.interfaces_retuned {
            self.detach(name);
            if let Some(slot) = self.interfaces.get_mut(name) {
                slot.config = new.interfaces[name].clone();
            }
        }
        let names: Vec<String> = self.interfaces.keys().cloned().collect();
        for name in names {
            self.update_interface(&name, before.get(&name), &reopened);
        }
        for name in plan.interfaces_added.iter().chain(&plan.interfaces_retuned) {
            self.interfaces
                .entry(name.clone())
                .or_insert_with(|| InterfaceSlot {
                    config: new.interfaces[name].clone(),
                    running: None,
                    problem: None,
                });
            self.try_attach(name);
        }
        self.config = new;
        Ok(plan.reply())
    }

    /// Brings a running interface to the new export set: new versions and new exports are
    /// served (new ones announce themselves) before the XDP program steers to them, and
    /// exports that leave stop being steered before they retire.
    fn update_interface(
        &mut self,
        name: &str,
        before: Option<&BTreeSet<ExportKey>>,
        reopened: &BTreeSet<ExportKey>,
    ) {
        let empty = BTreeSet::new();
        let before = before.unwrap_or(&empty);
        let desired: Vec<&RunningExport> = super::exports_on(&self.exports, name);
        let desired_keys: BTreeSet<ExportKey> = desired.iter().map(|e| e.key()).collect();
        let Some(running) = self
            .interfaces
            .get_mut(name)
            .and_then(|s| s.running.as_mut())
        else {
            return;
        };
        let to_serve: Vec<&RunningExport> = desired
            .iter()
            .filter(|e| !before.contains(&e.key()) || reopened.contains(&e.key()))
            .copied()
            .collect();
        let announce: Vec<ExportKey> = desired_keys.difference(before).copied().collect();
        if !to_serve.is_empty() {
            running.serve(&to_serve, &announce, &mut self.stats);
        }
        if let Err(e) = running.steer(&desired) {
            warn!(iface = %name, "could not update the XDP maps: {e}");
        }
        let leaving: Vec<ExportKey> = before.difference(&desired_keys).copied().collect();
        if !leaving.is_empty() {
            running.retire(&leaving);
        }
        for export in to_serve {
            running.log_serving(export);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::{ExportConfig, InterfaceConfig, IoEngine, StateLocation, TuningFlags};
    use crate::xdp::XdpAttachMode;

    fn export(major: u16, minor: u8, interfaces: &[&str]) -> ExportConfig {
        ExportConfig {
            key: ExportKey::new(major, minor),
            file: PathBuf::from(format!("/srv/{major}.{minor}")),
            interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
            read_only: false,
            sync: false,
            offset_sectors: 0,
            length_sectors: None,
            mask: Vec::new(),
            locked: false,
            buffers: 128,
            serial: None,
            io_engine: IoEngine::Auto,
            state: StateLocation::None,
        }
    }

    fn interface(name: &str) -> InterfaceConfig {
        InterfaceConfig {
            name: name.to_owned(),
            xdp_mode: XdpAttachMode::Auto,
            queues: None,
            frames: 4096,
            batch: 64,
            spin_us: 50,
            busy_poll: false,
            pin: true,
            napi_busy_poll: None,
            tuning: TuningFlags::default(),
        }
    }

    fn config(exports: Vec<ExportConfig>, interfaces: &[&str]) -> ServeConfig {
        ServeConfig {
            source: ConfigSource::File(PathBuf::from("/etc/xblade.toml")),
            control: None,
            stats_interval_s: 0,
            metrics_listen: None,
            user: None,
            state_dir: None,
            interfaces: interfaces
                .iter()
                .map(|n| (n.to_string(), interface(n)))
                .collect(),
            exports: exports.into_iter().map(|e| (e.key, e)).collect(),
        }
    }

    #[test]
    fn a_reload_refuses_to_move_the_metrics_endpoint() {
        let off = config(vec![export(1, 0, &["a"])], &["a"]);
        let mut on = off.clone();
        on.metrics_listen = Some("127.0.0.1:9650".parse().unwrap());
        let mut moved = on.clone();
        moved.metrics_listen = Some("127.0.0.1:9651".parse().unwrap());
        assert!(same_metrics_listen(&off, &off).is_ok());
        assert!(same_metrics_listen(&on, &on).is_ok());
        assert_eq!(
            same_metrics_listen(&on, &moved).unwrap_err().to_string(),
            "metrics_listen changed from 127.0.0.1:9650 to 127.0.0.1:9651: a reload cannot \
             move the metrics endpoint; restart xblade to apply it, or put the old value back \
             to reload the rest"
        );
        let e = same_metrics_listen(&off, &on).unwrap_err().to_string();
        assert!(
            e.starts_with("metrics_listen changed from off to 127.0.0.1:9650"),
            "{e}"
        );
        let e = same_metrics_listen(&on, &off).unwrap_err().to_string();
        assert!(
            e.starts_with("metrics_listen changed from 127.0.0.1:9650 to off"),
            "{e}"
        );
    }

    #[test]
    fn plan_sorts_every_export_and_interface() {
        let old = config(
            vec![
                export(1, 0, &["a"]),
                export(1, 1, &["a"]),
                export(1, 2, &["a"]),
                export(1, 3, &["a"]),
                export(1, 4, &["a"]),
            ],
            &["a", "b"],
        );
        let mut reopened = export(1, 1, &["a"]);
        reopened.read_only = true;
        let mut moved = export(1, 2, &["a", "c"]);
        moved.mask = vec![aoe_proto::Mac([2, 0, 0, 0, 0, 1])];
        let mut new = config(
            vec![
                export(1, 0, &["a"]),
                reopened,
                moved,
                export(1, 4, &["a"]),
                export(2, 0, &["c"]),
            ],
            &["a", "c"],
        );
        new.interfaces.get_mut("a").unwrap().frames = 8192;
        let plan = Plan::new(&old, &new);
        let k = ExportKey::new;
        assert_eq!(plan.added, [k(2, 0)]);
        assert_eq!(plan.removed, [k(1, 3)]);
        assert_eq!(plan.reopened, [k(1, 1)]);
        assert_eq!(plan.adjusted, [k(1, 2)]);
        assert_eq!(plan.unchanged, [k(1, 0), k(1, 4)]);
        assert_eq!(plan.interfaces_added, ["c"]);
        assert_eq!(plan.interfaces_removed, ["b"]);
        assert_eq!(plan.interfaces_retuned, ["a"]);
        let reply = plan.reply();
        assert_eq!(reply.changed, ["e1.1", "e1.2"]);
        assert_eq!(reply.unchanged, 2);
        assert_eq!(
            describe(&reply),
            "added e2.0; removed e1.3; changed e1.1, e1.2; 2 unchanged; interfaces attached c, detached b"
        );
    }

    #[test]
    fn identical_configs_change_nothing() {
        let c = config(vec![export(1, 0, &["a"])], &["a"]);
        let plan = Plan::new(&c, &c);
        assert_eq!(
            plan,
            Plan {
                unchanged: vec![ExportKey::new(1, 0)],
                ..Plan::default()
            }
        );
    }
}
