//! vblade, the classic AoE target, running on a lab's target end: the reference that
//! interoperability tests and benchmarks compare against.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{Lab, LabError};

/// How long vblade gets to fail on start-up (bad interface, unreadable image) before it is
/// taken as running. vblade prints nothing when it is ready.
const START_GRACE: Duration = Duration::from_millis(100);

/// A running vblade serving one image on the target end of a [`Lab`]. Killed (by its own
/// pid) and reaped on drop; its log is printed when the test is failing.
#[derive(Debug)]
pub struct Vblade {
    child: Child,
    log: PathBuf,
}

impl Vblade {
    /// Whether vblade is on PATH; prints why the test is skipped when it is not.
    pub fn available() -> bool {
        let ok = Command::new("vblade").arg("-h").output().is_ok();
        if !ok {
            eprintln!("skipped: vblade is not installed (apt-get install vblade)");
        }
        ok
    }

    /// Starts `vblade SHELF SLOT IFACE IMAGE` in the lab's target namespace, with its
    /// stdout and stderr in `log` (the caller's file, left in place).
    pub fn start(
        lab: &Lab,
        shelf: u16,
        slot: u8,
        image: &Path,
        log: PathBuf,
    ) -> Result<Vblade, LabError> {
        let io_error = |source| LabError::Io {
            path: log.clone(),
            source,
        };
        let out = File::create(&log).map_err(io_error)?;
        let err = out.try_clone().map_err(io_error)?;
        let child = lab
            .command_in_target("vblade")
            .arg(shelf.to_string())
            .arg(slot.to_string())
            .arg(lab.target_if())
            .arg(image)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| LabError::Spawn {
                program: "ip netns exec ... vblade".to_owned(),
                source,
            })?;
        let mut vblade = Vblade { child, log };
        std::thread::sleep(START_GRACE);
        if let Ok(Some(status)) = vblade.child.try_wait() {
            return Err(LabError::ExitedAtOnce {
                program: "vblade".to_owned(),
                status,
                log: vblade.log_text(),
            });
        }
        Ok(vblade)
    }

    /// The pid of the process (`ip netns exec` execs vblade, so it is vblade's own).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What vblade has written so far.
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        let _ = File::open(&self.log).and_then(|mut f| f.read_to_string(&mut s));
        s
    }
}

impl Drop for Vblade {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("vblade log:\n{}", self.log_text());
        }
    }
}
