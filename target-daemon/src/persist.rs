//! The state initiators and the operator set (config string, MAC mask list, reservation), kept across
//! restarts in a small text file that is replaced atomically: written to a temporary file,
//! fsync'd, renamed over the old one, and the directory fsync'd. A crash leaves either the
//! old or the new file, never a torn one.
//!
//! Format (one item per line; `#` comments):
//! ```text
//! xblade-state 1
//! config 686f73742d61        (hex of the config string's bytes; absent when empty)
//! mask 02:00:00:00:00:01     (one line per mask list entry, in order)
//! reserve 02:00:00:00:00:02  (one line per reservation holder)
//! reserved-by operator       (the operator set the reservation; absent: an initiator did)
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use aoe_proto::Mac;

use crate::target::TargetState;

const MAGIC: &str = "xblade-state 1";

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("state file {}: line {line}: {reason} (fix or delete the file to start with empty state)", .path.display())]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("state file {}: {what}: {source}", .path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
}

/// Where a target's state lives.
#[derive(Clone, Debug)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(path: PathBuf) -> StateFile {
        StateFile { path }
    }

    /// The default place: next to a regular image (`IMAGE.xblade-state`), or under
    /// /var/lib/xblade for a block device (`/var/lib/xblade/sdb.state`).
    pub fn default_for(image: &Path, is_block_device: bool) -> StateFile {
        let path = if is_block_device {
            let name = image
                .file_name()
                .map_or_else(|| "device".into(), |n| n.to_string_lossy().into_owned());
            PathBuf::from("/var/lib/xblade").join(format!("{name}.state"))
        } else {
            let mut path = image.as_os_str().to_owned();
            path.push(".xblade-state");
            PathBuf::from(path)
        };
        StateFile { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the state; `Ok(None)` when there is no file yet.
    pub fn load(&self) -> Result<Option<TargetState>, PersistError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(PersistError::Io {
                    path: self.path.clone(),
                    what: "read",
                    source,
                })
            }
        };
        parse(&text)
            .map(Some)
            .map_err(|(line, reason)| PersistError::Corrupt {
                path: self.path.clone(),
                line,
                reason,
            })
    }

    /// Replaces the file with `state`, durably.
    pub fn save(&self, state: &TargetState) -> Result<(), PersistError> {
        let io_err = |what| {
            move |source| PersistError::Io {
                path: self.path.clone(),
                what,
                source,
            }
        };
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(io_err("create directory"))?;
        let mut temporary = self.path.as_os_str().to_owned();
        temporary.push(format!(".tmp{}", std::process::id()));
        let temporary = PathBuf::from(temporary);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(io_err("create temporary file"))?;
        file.write_all(render(state).as_bytes())
            .map_err(io_err("write"))?;
        file.sync_all().map_err(io_err("fsync"))?;
        drop(file);
        fs::rename(&temporary, &self.path).map_err(io_err("rename"))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync directory"))?;
        Ok(())
    }
}

fn render(state: &TargetState) -> String {
    let mut out = format!("{MAGIC}\n# written by xblade; replaced atomically on every change\n");
    let config = state.config_string();
    if !config.is_empty() {
        out.push_str("config ");
        for b in config {
            out.push_str(&format!("{b:02x}"));
        }
        out.push('\n');
    }
    for mac in state.mask.as_slice() {
        out.push_str(&format!("mask {mac}\n"));
    }
    for mac in state.reservation.as_slice() {
        out.push_str(&format!("reserve {mac}\n"));
    }
    if state.operator_reserved {
        out.push_str("reserved-by operator\n");
    }
    out
}

fn parse(text: &str) -> Result<TargetState, (usize, String)> {
    let mut state = TargetState::default();
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()));
    match lines.next() {
        Some((_, MAGIC)) => {}
        _ => return Err((1, format!("expected '{MAGIC}'"))),
    }
    for (line, content) in lines {
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let (key, value) = content.split_once(' ').unwrap_or((content, ""));
        let mac = || {
            value
                .trim()
                .parse::<Mac>()
                .map_err(|e| (line, e.to_string()))
        };
        match key {
            "config" => {
                let hex = value.trim();
                if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err((line, "config is not an even number of hex digits".into()));
                }
                let bytes: Vec<u8> = (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
                    .collect();
                state.set_config_string(&bytes).map_err(|_| {
                    (
                        line,
                        format!(
                            "config string longer than {} bytes",
                            aoe_proto::config::MAX_STRING_LEN
                        ),
                    )
                })?;
            }
            "mask" => state
                .mask
                .add(mac()?)
                .map_err(|_| (line, "more mask entries than the list holds".to_owned()))?,
            "reserve" => state.reservation.add(mac()?).map_err(|_| {
                (
                    line,
                    "more reservation entries than the list holds".to_owned(),
                )
            })?,
            "reserved-by" => match value.trim() {
                "operator" => state.operator_reserved = true,
                other => {
                    return Err((
                        line,
                        format!("reserved-by '{other}': only 'operator' is written"),
                    ))
                }
            },
            other => return Err((line, format!("unknown key '{other}'"))),
        }
    }
    if state.operator_reserved && state.reservation.is_empty() {
        return Err((
            text.lines().count(),
            "'reserved-by operator' without a 'reserve' line".to_owned(),
        ));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TargetState {
        let mut s = TargetState::default();
        s.set_config_string(b"host-a \x00\xff").unwrap();
        s.mask.add(Mac([2, 0, 0, 0, 0, 1])).unwrap();
        s.mask.add(Mac([2, 0, 0, 0, 0, 2])).unwrap();
        s.reservation.add(Mac([2, 0, 0, 0, 0, 3])).unwrap();
        s.operator_reserved = true;
        s
    }

    #[test]
    fn render_parse_round_trip() {
        let s = sample();
        assert_eq!(parse(&render(&s)), Ok(s.clone()));
        assert!(render(&s).contains("\nreserved-by operator\n"));
        let mut initiators = s;
        initiators.operator_reserved = false;
        assert!(!render(&initiators).contains("reserved-by"));
        assert_eq!(parse(&render(&initiators)), Ok(initiators));
        assert_eq!(
            parse(&render(&TargetState::default())),
            Ok(TargetState::default())
        );
    }

    #[test]
    fn corrupt_files_name_the_line() {
        assert_eq!(parse("").unwrap_err().0, 1);
        assert_eq!(parse("xblade-state 2\n").unwrap_err().0, 1);
        assert_eq!(parse("xblade-state 1\nconfig abc\n").unwrap_err().0, 2);
        assert_eq!(parse("xblade-state 1\n\nmask zz\n").unwrap_err().0, 3);
        assert_eq!(parse("xblade-state 1\nfoo bar\n").unwrap_err().0, 2);
        assert_eq!(
            parse("xblade-state 1\nreserve 02:00:00:00:00:01\nreserved-by host\n")
                .unwrap_err()
                .0,
            3
        );
        assert!(parse("xblade-state 1\nreserved-by operator\n").is_err());
        let many: String = (0..=crate::target::MAX_MASK_ENTRIES)
            .map(|i| format!("mask 02:00:00:00:01:{:02x}\n", i))
            .collect();
        assert!(parse(&format!("xblade-state 1\n{many}")).is_err());
    }

    #[test]
    fn save_and_load_atomically() {
        let dir = std::env::temp_dir().join(format!("xblade-persist-{}", std::process::id()));
        let file = StateFile::new(dir.join("sub").join("e1.0.state"));
        assert_eq!(file.load().unwrap(), None);
        file.save(&sample()).unwrap();
        assert_eq!(file.load().unwrap(), Some(sample()));
        file.save(&TargetState::default()).unwrap();
        assert_eq!(file.load().unwrap(), Some(TargetState::default()));
        let leftovers: Vec<_> = fs::read_dir(dir.join("sub")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left");
        fs::write(file.path(), "garbage").unwrap();
        let e = file.load().unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn default_locations() {
        assert_eq!(
            StateFile::default_for(Path::new("/srv/d.img"), false).path(),
            Path::new("/srv/d.img.xblade-state")
        );
        assert_eq!(
            StateFile::default_for(Path::new("/dev/sdb"), true).path(),
            Path::new("/var/lib/xblade/sdb.state")
        );
    }
}
