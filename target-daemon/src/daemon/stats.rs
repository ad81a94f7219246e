//! The answer to `xbladectl stats` and the source of `/metrics`.
//!
//! A stand-in so that the metrics endpoint builds and serves every family: names, shelf and
//! slot of every export, every interface and queue, with zero counters. The stats branch
//! replaces this file with the real numbers.

use crate::control::protocol::{ExportStats, InterfaceStats, QueueStats, StatsReply};

use super::Daemon;

impl Daemon {
    pub(super) fn stats_reply(&self) -> StatsReply {
        StatsReply {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            uptime_ns: u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            exports: self
                .exports
                .keys()
                .map(|key| ExportStats {
                    name: key.to_string(),
                    shelf: key.major(),
                    slot: key.minor(),
                    ..ExportStats::default()
                })
                .collect(),
            queues: self
                .interfaces
                .iter()
                .filter_map(|(name, slot)| Some((name, slot.running.as_ref()?)))
                .flat_map(|(name, running)| {
                    running.counters().map(|(queue, _)| QueueStats {
                        interface: name.clone(),
                        queue,
                        ..QueueStats::default()
                    })
                })
                .collect(),
            interfaces: self
                .interfaces
                .keys()
                .map(|name| InterfaceStats {
                    name: name.clone(),
                    ..InterfaceStats::default()
                })
                .collect(),
        }
    }
}
