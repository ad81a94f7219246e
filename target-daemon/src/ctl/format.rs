//! `xbladectl`'s rendering of replies for a human: tables, sizes, durations.

use crate::control::{ExportStatus, InterfaceStatus, ReloadReply, StatusReply};

/// `1.0 GiB`, `512 B`, `3.5 TiB`: binary units, one decimal.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `42s`, `5m07s`, `2h03m`, `3d04h`.
pub fn human_duration(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Left-aligned columns two spaces apart, without trailing blanks.
pub fn table(rows: &[Vec<String>]) -> String {
    aligned_table(rows, Align::Left)
}

/// How the columns after the first are aligned (the first is always left-aligned).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    /// Numbers: right-aligned.
    Right,
}

/// Columns two spaces apart, each as wide as its widest cell, without trailing blanks.
pub fn aligned_table(rows: &[Vec<String>], align: Align) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            let pad = widths[c].saturating_sub(cell.chars().count());
            if c > 0 && align == Align::Right {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn export_row(e: &ExportStatus) -> Vec<String> {
    vec![
        e.name.clone(),
        e.file.clone(),
        human_size(e.size_sectors.saturating_mul(512)),
        if e.interfaces.is_empty() {
            "-".to_owned()
        } else {
            e.interfaces.join(",")
        },
        if e.read_only { "ro" } else { "rw" }.to_owned(),
        e.state.clone(),
    ]
}

fn interface_row(i: &InterfaceStatus) -> Vec<String> {
    vec![
        i.name.clone(),
        i.state.clone(),
        or_dash(i.mac.as_deref()),
        or_dash(i.mtu),
        or_dash(i.sectors_per_frame),
        i.queues.to_string(),
        or_dash(i.xdp_mode.as_deref()),
        i.exports.to_string(),
    ]
}

pub fn format_status(status: &StatusReply) -> String {
    let mut out = format!(
        "xblade {}, pid {}, up {}, {}\n",
        status.version,
        status.pid,
        human_duration(status.uptime_s),
        match &status.config {
            Some(path) => format!("config {path}"),
            None => "configured by its command line".to_owned(),
        }
    );
    if let Some(addr) = &status.metrics_listen {
        out.push_str(&format!("metrics at http://{addr}/metrics\n"));
    }
    out.push('\n');
    if status.exports.is_empty() {
        out.push_str("no exports\n");
    } else {
        let mut rows = vec![["EXPORT", "FILE", "SIZE", "INTERFACES", "MODE", "STATE"]
            .map(str::to_owned)
            .to_vec()];
        rows.extend(status.exports.iter().map(export_row));
        out.push_str(&table(&rows));
    }
    out.push('\n');
    if status.interfaces.is_empty() {
        out.push_str("no interfaces\n");
    } else {
        let mut rows = vec![[
            "INTERFACE",
            "STATE",
            "MAC",
            "MTU",
            "SECTORS/FRAME",
            "QUEUES",
            "XDP",
            "EXPORTS",
        ]
        .map(str::to_owned)
        .to_vec()];
        rows.extend(status.interfaces.iter().map(interface_row));
        out.push_str(&table(&rows));
        for i in &status.interfaces {
            out.push_str(&napi_busy_poll_line(i));
        }
    }
    out
}

/// `eth1: NAPI busy polling ...` for an interface that has it on; empty otherwise.
fn napi_busy_poll_line(i: &InterfaceStatus) -> String {
    let Some(us) = i.napi_busy_poll_us else {
        return String::new();
    };
    let budget = i
        .napi_busy_poll_budget
        .map_or("?".to_owned(), |b| b.to_string());
    let with_napi = i.napi_busy_poll_queues_with_napi.unwrap_or(0);
    let note = if with_napi < i.queues {
        " (a socket without one polls nothing: copy mode)"
    } else {
        ""
    };
    format!(
        "{}: NAPI busy polling {us} µs, budget {budget}; NAPI context on {with_napi} of {} queues{note}\n",
        i.name, i.queues
    )
}

pub fn format_reload(reload: &ReloadReply) -> String {
    let nothing = reload.added.is_empty()
        && reload.removed.is_empty()
        && reload.changed.is_empty()
        && reload.interfaces_attached.is_empty()
        && reload.interfaces_detached.is_empty();
    if nothing {
        return format!(
            "reloaded: no changes ({} export{} unchanged)\n",
            reload.unchanged,
            if reload.unchanged == 1 { "" } else { "s" }
        );
    }
    let mut out = format!(
        "reloaded: {} added, {} removed, {} changed, {} unchanged\n",
        reload.added.len(),
        reload.removed.len(),
        reload.changed.len(),
        reload.unchanged
    );
    for (label, names) in [
        ("added", &reload.added),
        ("removed", &reload.removed),
        ("changed", &reload.changed),
        ("interfaces attached", &reload.interfaces_attached),
        ("interfaces detached", &reload.interfaces_detached),
    ] {
        if !names.is_empty() {
            out.push_str(&format!("  {label}: {}\n", names.join(" ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1 << 30), "1.0 GiB");
        assert_eq!(human_size(1536 << 20), "1.5 GiB");
        assert_eq!(human_size((1 << 30) - 1), "1.0 GiB");
        assert_eq!(human_size(u64::MAX), "16.0 EiB");
        assert_eq!(human_duration(42), "42s");
        assert_eq!(human_duration(307), "5m07s");
        assert_eq!(human_duration(7380), "2h03m");
        assert_eq!(human_duration(273_600), "3d04h");
    }

    #[test]
    fn status_table() {
        let status = StatusReply {
            version: "0.1.0".into(),
            pid: 42,
            uptime_s: 3600,
            config: Some("/etc/xblade.toml".into()),
            metrics_listen: None,
            exports: vec![
                ExportStatus {
                    name: "e1.0".into(),
                    shelf: 1,
                    slot: 0,
                    file: "/srv/vol0.img".into(),
                    size_sectors: 2 * 1024 * 1024,
                    interfaces: vec!["eth1".into(), "eth2".into()],
                    read_only: false,
                    state: "serving".into(),
                },
                ExportStatus {
                    name: "e12.3".into(),
                    shelf: 12,
                    slot: 3,
                    file: "null:64G".into(),
                    size_sectors: 64 << 21,
                    interfaces: vec!["eth1".into()],
                    read_only: true,
                    state: "waiting for interface".into(),
                },
            ],
            interfaces: vec![
                InterfaceStatus {
                    name: "eth1".into(),
                    state: "up".into(),
                    mac: Some("02:00:00:00:00:01".into()),
                    mtu: Some(9000),
                    sectors_per_frame: Some(17),
                    queues: 4,
                    xdp_mode: Some("native".into()),
                    exports: 2,
                    napi_busy_poll_us: Some(20),
                    napi_busy_poll_budget: Some(64),
                    napi_busy_poll_queues_with_napi: Some(4),
                },
                InterfaceStatus {
                    name: "eth2".into(),
                    state: "absent".into(),
                    exports: 1,
                    ..Default::default()
                },
            ],
        };
        let text = format_status(&status);
        assert_eq!(
            text,
            "xblade 0.1.0, pid 42, up 1h00m, config /etc/xblade.toml\n\
             \n\
             EXPORT  FILE           SIZE      INTERFACES  MODE  STATE\n\
             e1.0    /srv/vol0.img  1.0 GiB   eth1,eth2   rw    serving\n\
             e12.3   null:64G       64.0 GiB  eth1        ro    waiting for interface\n\
             \n\
             INTERFACE  STATE   MAC                MTU   SECTORS/FRAME  QUEUES  XDP     EXPORTS\n\
             eth1       up      02:00:00:00:00:01  9000  17             4       native  2\n\
             eth2       absent  -                  -     -              0       -       1\n\
             eth1: NAPI busy polling 20 µs, budget 64; NAPI context on 4 of 4 queues\n"
        );
    }

    #[test]
    fn status_names_the_metrics_endpoint() {
        let status = StatusReply {
            version: "0.1.0".into(),
            pid: 42,
            uptime_s: 61,
            metrics_listen: Some("[::1]:9650".into()),
            ..Default::default()
        };
        assert_eq!(
            format_status(&status),
            "xblade 0.1.0, pid 42, up 1m01s, configured by its command line\n\
             metrics at http://[::1]:9650/metrics\n\
             \n\
             no exports\n\
             \n\
             no interfaces\n"
        );
    }

    #[test]
    fn reload_summary() {
        assert_eq!(
            format_reload(&ReloadReply {
                unchanged: 3,
                ..Default::default()
            }),
            "reloaded: no changes (3 exports unchanged)\n"
        );
        assert_eq!(
            format_reload(&ReloadReply {
                added: vec!["e1.2".into()],
                removed: vec!["e1.3".into(), "e1.4".into()],
                changed: vec![],
                unchanged: 1,
                interfaces_attached: vec!["eth3".into()],
                interfaces_detached: vec![],
            }),
            "reloaded: 1 added, 2 removed, 0 changed, 1 unchanged\n  \
             added: e1.2\n  removed: e1.3 e1.4\n  interfaces attached: eth3\n"
        );
    }
}
