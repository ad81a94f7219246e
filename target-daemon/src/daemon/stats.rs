//! The answer to `xbladectl stats`: every counter as it is now, read from the counter blocks
//! the workers write (never by asking them, never under a lock they take).

use crate::control::{ExportStats, StatsReply};

use super::Daemon;

impl Daemon {
    /// Every export (in the configuration's order), every running queue and interface.
    pub(super) fn stats_reply(&self) -> StatsReply {
        let exports = self
            .exports
            .values()
            .map(|export| {
                let key = export.key();
                let (generation, snapshot) = self.stats.read(key);
                // Blocks of an older version (not yet replaced on a worker) are not this
                // version's.
                let snapshot = if generation == export.generation {
                    snapshot
                } else {
                    Default::default()
                };
                ExportStats {
                    name: key.to_string(),
                    shelf: key.major(),
                    slot: key.minor(),
                    // The version being served, whether or not a worker has counted yet.
                    generation: export.generation,
                    ..snapshot.to_export_stats()
                }
            })
            .collect();
        let running = || self.interfaces.values().filter_map(|s| s.running.as_ref());
        StatsReply {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            uptime_ns: u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            exports,
            queues: running().flat_map(|r| r.queue_stats()).collect(),
            interfaces: running().map(|r| r.interface_stats()).collect(),
        }
    }
}

/// Keeps only the exports named in `names` (all of them when it is empty), in the order
/// given. The error names the first unknown export and the known ones.
pub(super) fn select(mut reply: StatsReply, names: &[String]) -> Result<StatsReply, String> {
    if names.is_empty() {
        return Ok(reply);
    }
    let mut chosen = Vec::with_capacity(names.len());
    for name in names {
        match reply.exports.iter().find(|e| &e.name == name) {
            Some(export) => chosen.push(export.clone()),
            None => {
                let known: Vec<&str> = reply.exports.iter().map(|e| e.name.as_str()).collect();
                return Err(format!(
                    "no export named '{name}' (served: {}; names are e<shelf>.<slot>, as `xbladectl status` shows them)",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ));
            }
        }
    }
    reply.exports = chosen;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply() -> StatsReply {
        StatsReply {
            exports: ["e1.0", "e1.1"]
                .iter()
                .map(|n| ExportStats {
                    name: (*n).to_owned(),
                    ..ExportStats::default()
                })
                .collect(),
            ..StatsReply::default()
        }
    }

    #[test]
    fn select_keeps_the_named_exports_in_order() {
        assert_eq!(select(reply(), &[]).unwrap().exports.len(), 2);
        let names = ["e1.1".to_owned(), "e1.0".to_owned()];
        let picked = select(reply(), &names).unwrap();
        let got: Vec<&str> = picked.exports.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(got, ["e1.1", "e1.0"]);
        let error = select(reply(), &["e9.9".to_owned()]).unwrap_err();
        assert!(
            error.starts_with("no export named 'e9.9' (served: e1.0, e1.1;"),
            "{error}"
        );
    }
}
