//! The answer to `xbladectl status`: every export and every interface as they are now.

use crate::config::ConfigSource;
use crate::control::{ExportStatus, InterfaceStatus, StatusReply};

use super::Daemon;

impl Daemon {
    pub(super) fn status(&self) -> StatusReply {
        let exports = self
            .exports
            .values()
            .map(|export| {
                let key = export.key();
                let live: Vec<&str> = self
                    .interfaces
                    .iter()
                    .filter(|(_, s)| s.running.as_ref().is_some_and(|r| r.exports.contains(&key)))
                    .map(|(n, _)| n.as_str())
                    .collect();
                let state = if live.len() == export.config.interfaces.len() {
                    "serving".to_owned()
                } else if live.is_empty() {
                    "waiting for an interface".to_owned()
                } else {
                    format!(
                        "serving on {} of {} interfaces",
                        live.len(),
                        export.config.interfaces.len()
                    )
                };
                ExportStatus {
                    name: key.to_string(),
                    shelf: key.major(),
                    slot: key.minor(),
                    file: export.config.file.display().to_string(),
                    size_sectors: export.backend.size_sectors,
                    interfaces: export.config.interfaces.clone(),
                    read_only: export.config.read_only,
                    state,
                }
            })
            .collect();
        let interfaces = self
            .interfaces
            .iter()
            .map(|(name, slot)| match &slot.running {
                Some(r) => InterfaceStatus {
                    napi_busy_poll_us: r.napi_busy_poll().map(|(st, _)| st.busy_poll_us),
                    napi_busy_poll_budget: r.napi_busy_poll().map(|(st, _)| st.budget),
                    napi_busy_poll_queues_with_napi: r.napi_busy_poll().map(|(_, n)| n),
                    name: name.clone(),
                    state: "up".to_owned(),
                    mac: Some(r.netdev.mac.to_string()),
                    mtu: Some(r.netdev.mtu),
                    sectors_per_frame: Some(r.max_sectors),
                    queues: r.queue_count() as u32,
                    xdp_mode: Some(r.xdp_mode.to_string()),
                    exports: r.exports.len() as u32,
                },
                None => InterfaceStatus {
                    name: name.clone(),
                    state: slot.problem.clone().unwrap_or_else(|| "down".to_owned()),
                    exports: super::exports_on(&self.exports, name).len() as u32,
                    ..InterfaceStatus::default()
                },
            })
            .collect();
        StatusReply {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            uptime_s: self.started.elapsed().as_secs(),
            config: match &self.config.source {
                ConfigSource::File(path) => Some(path.display().to_string()),
                ConfigSource::CommandLine => None,
            },
            metrics_listen: self.metrics_listen.map(|addr| addr.to_string()),
            exports,
            interfaces,
        }
    }
}
