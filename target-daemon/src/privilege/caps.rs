//! Capabilities (capabilities(7)) and the no_new_privs bit: thin wrappers over capset(2)
//! and prctl(2), and a reader of what the kernel says each thread holds
//! (`/proc/self/task/TID/status`).
//!
//! The bounding set, the inheritable set and the ambient set are per thread and inherited
//! by new threads, and capset(2) and `PR_CAPBSET_DROP` act on the calling thread only: they
//! are cleared by [`clear_inherited_sets`] before the first thread is created, so every
//! worker starts without them. The permitted and effective sets go at the uid switch (in
//! every thread, see [`super::user`]).

use std::io;
use std::path::Path;

use super::PrivilegeError;

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets in two 32-bit halves.
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapUserHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapUserData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// capset(2) for the calling thread.
fn capset(effective: u64, permitted: u64, inheritable: u64) -> io::Result<()> {
    let mut header = CapUserHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let half = |set: u64, high: bool| (if high { set >> 32 } else { set }) as u32;
    let data = [false, true].map(|high| CapUserData {
        effective: half(effective, high),
        permitted: half(permitted, high),
        inheritable: half(inheritable, high),
    });
    // SAFETY: `header` and the two-element `data` array are the layout capset(2) reads for
    // version 3; both live through the call and the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapUserHeader,
            data.as_ptr(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// capget(2) for the calling thread: (effective, permitted, inheritable).
fn capget() -> io::Result<(u64, u64, u64)> {
    let mut header = CapUserHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapUserData::default(); 2];
    // SAFETY: as for capset; the kernel writes two `CapUserData` into `data`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapUserHeader,
            data.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let join = |low: u32, high: u32| u64::from(low) | (u64::from(high) << 32);
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
        join(data[0].inheritable, data[1].inheritable),
    ))
}

/// Clears the calling thread's bounding set (`PR_CAPBSET_DROP` of every capability the
/// kernel knows, which needs CAP_SETPCAP), ambient set (`PR_CAP_AMBIENT_CLEAR_ALL`) and
/// inheritable set (capset(2), keeping effective and permitted). Call it before any other
/// thread exists: threads inherit all three. The daemon keeps its effective capabilities
/// for start-up; what is gone is any way to regain one through execve(2).
pub fn clear_inherited_sets() -> Result<(), PrivilegeError> {
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            // EINVAL: past the last capability this kernel has (cap_last_cap).
            if e.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(PrivilegeError::Syscall {
                call: "prctl(PR_CAPBSET_DROP)",
                source: e,
            });
        }
    }
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(PrivilegeError::Syscall {
            call: "prctl(PR_CAP_AMBIENT_CLEAR_ALL)",
            source: io::Error::last_os_error(),
        });
    }
    let (effective, permitted, _) = capget().map_err(|source| PrivilegeError::Syscall {
        call: "capget",
        source,
    })?;
    capset(effective, permitted, 0).map_err(|source| PrivilegeError::Syscall {
        call: "capset",
        source,
    })
}

/// Empties the calling thread's effective, permitted and inheritable sets. After the uid
/// switch they already are; this makes it independent of how the switch went.
pub fn clear_all() -> Result<(), PrivilegeError> {
    capset(0, 0, 0).map_err(|source| PrivilegeError::Syscall {
        call: "capset",
        source,
    })
}

/// `PR_SET_NO_NEW_PRIVS`: execve(2) can never grant privileges again (set-user-ID bits and
/// file capabilities are ignored). Also what lets an unprivileged thread install a seccomp
/// filter; `SECCOMP_FILTER_FLAG_TSYNC` then sets it in every thread.
pub fn set_no_new_privs() -> Result<(), PrivilegeError> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(PrivilegeError::Syscall {
            call: "prctl(PR_SET_NO_NEW_PRIVS)",
            source: io::Error::last_os_error(),
        })
    }
}

/// What `/proc/PID/task/TID/status` says about one thread's privileges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadPrivileges {
    /// Real, effective, saved and filesystem uid.
    pub uids: [u32; 4],
    pub gids: [u32; 4],
    pub groups: Vec<u32>,
    pub cap_inheritable: u64,
    pub cap_permitted: u64,
    pub cap_effective: u64,
    pub cap_bounding: u64,
    pub cap_ambient: u64,
    pub no_new_privs: bool,
    /// 0 none, 1 strict, 2 filter.
    pub seccomp_mode: u32,
}

impl ThreadPrivileges {
    /// Parses the fields of a status file; `Err` names the field that is missing or bad.
    pub fn parse(status: &str) -> Result<ThreadPrivileges, String> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
                .ok_or_else(|| format!("no {name} line"))
        };
        let ids = |name: &str| -> Result<[u32; 4], String> {
            let values: Vec<u32> = field(name)?
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| format!("bad {name} line"))?;
            values.try_into().map_err(|_| format!("bad {name} line"))
        };
        let hex = |name: &str| {
            u64::from_str_radix(field(name)?, 16).map_err(|_| format!("bad {name} line"))
        };
        let number = |name: &str| {
            field(name)?
                .parse::<u32>()
                .map_err(|_| format!("bad {name} line"))
        };
        Ok(ThreadPrivileges {
            uids: ids("Uid")?,
            gids: ids("Gid")?,
            groups: field("Groups")?
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| "bad Groups line".to_owned())?,
            cap_inheritable: hex("CapInh")?,
            cap_permitted: hex("CapPrm")?,
            cap_effective: hex("CapEff")?,
            cap_bounding: hex("CapBnd")?,
            cap_ambient: hex("CapAmb")?,
            no_new_privs: number("NoNewPrivs")? == 1,
            seccomp_mode: number("Seccomp")?,
        })
    }

    /// Why this thread is not fully dropped to `uid`/`gid` with a seccomp filter, if it is
    /// not.
    pub fn problem(&self, uid: u32, gid: u32) -> Option<String> {
        let mut wrong = Vec::new();
        if self.uids != [uid; 4] {
            wrong.push(format!("uids {:?}", self.uids));
        }
        if self.gids != [gid; 4] {
            wrong.push(format!("gids {:?}", self.gids));
        }
        for (name, set) in [
            ("CapInh", self.cap_inheritable),
            ("CapPrm", self.cap_permitted),
            ("CapEff", self.cap_effective),
            ("CapBnd", self.cap_bounding),
            ("CapAmb", self.cap_ambient),
        ] {
            if set != 0 {
                wrong.push(format!("{name} {set:016x}"));
            }
        }
        if !self.no_new_privs {
            wrong.push("NoNewPrivs 0".to_owned());
        }
        if self.seccomp_mode != 2 {
            wrong.push(format!("Seccomp {}", self.seccomp_mode));
        }
        (!wrong.is_empty()).then(|| wrong.join(", "))
    }
}

/// Reads every thread of this process from `/proc/self/task` and returns an error naming
/// the first one that still holds anything.
pub fn verify_every_thread(uid: u32, gid: u32) -> Result<usize, PrivilegeError> {
    let task = Path::new("/proc/self/task");
    let entries = std::fs::read_dir(task).map_err(|source| PrivilegeError::Syscall {
        call: "read /proc/self/task",
        source,
    })?;
    let mut threads = 0;
    for entry in entries {
        let entry = entry.map_err(|source| PrivilegeError::Syscall {
            call: "read /proc/self/task",
            source,
        })?;
        let path = entry.path().join("status");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            // The thread ended between the listing and the read.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(PrivilegeError::Syscall {
                    call: "read /proc/self/task/TID/status",
                    source,
                })
            }
        };
        let thread = ThreadPrivileges::parse(&text)
            .map_err(|m| PrivilegeError::Verify(format!("{}: {m}", path.display())))?;
        if let Some(problem) = thread.problem(uid, gid) {
            return Err(PrivilegeError::Verify(format!(
                "thread {} still has: {problem}",
                entry.file_name().to_string_lossy()
            )));
        }
        threads += 1;
    }
    Ok(threads)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DROPPED: &str = "Name:\txblade-eth0-q0\nUmask:\t0022\nState:\tS (sleeping)\n\
        Uid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\nFDSize:\t64\n\
        Groups:\t65534 \nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\n\
        CapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\n\
        NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n";

    #[test]
    fn a_dropped_thread_parses_and_passes() {
        let t = ThreadPrivileges::parse(DROPPED).unwrap();
        assert_eq!(t.uids, [65534; 4]);
        assert_eq!(t.groups, vec![65534]);
        assert!(t.no_new_privs);
        assert_eq!(t.seccomp_mode, 2);
        assert_eq!(t.problem(65534, 65534), None);
    }

    #[test]
    fn every_leftover_is_named() {
        let root = DROPPED
            .replace("Uid:\t65534\t65534\t65534", "Uid:\t0\t65534\t65534")
            .replace("CapEff:\t0000000000000000", "CapEff:\t000001ffffffffff")
            .replace("Seccomp:\t2", "Seccomp:\t0");
        let problem = ThreadPrivileges::parse(&root)
            .unwrap()
            .problem(65534, 65534)
            .unwrap();
        assert_eq!(
            problem,
            "uids [0, 65534, 65534, 65534], CapEff 000001ffffffffff, Seccomp 0"
        );
    }

    #[test]
    fn missing_or_bad_fields_are_errors() {
        assert_eq!(
            ThreadPrivileges::parse(&DROPPED.replace("CapAmb", "Cap")),
            Err("no CapAmb line".to_owned())
        );
        assert_eq!(
            ThreadPrivileges::parse(&DROPPED.replace("Gid:\t65534\t", "Gid:\tx\t")),
            Err("bad Gid line".to_owned())
        );
    }
}
