//! Loading and attaching the XDP program (`xdp-prog/xblade.bpf.c`) and driving its maps.
//!
//! The program is compiled by `build.rs` and embedded in the binary. It is attached with a BPF
//! link (`BPF_LINK_CREATE`, attach type `BPF_XDP`), so the kernel detaches it by itself when the
//! last link descriptor is closed: when [`XdpProgram`] is dropped, and also when the daemon is
//! killed. aya falls back to the legacy netlink attach (`IFLA_XDP`, which outlives the process)
//! only when `BPF_LINK_CREATE` fails with EINVAL, i.e. on kernels before 5.9.
//!
//! Maps (names as in the C source):
//! * `targets` (`BPF_MAP_TYPE_HASH`, key `(major << 8) | minor`): served shelf.slot pairs;
//! * `acl` (`BPF_MAP_TYPE_HASH`, key: source MAC in the low 48 bits) and `config`
//!   (`BPF_MAP_TYPE_ARRAY`, `acl_active`): the source-MAC allow list;
//! * `xsks` (`BPF_MAP_TYPE_XSKMAP`): AF_XDP socket per RX queue;
//! * `counters` (`BPF_MAP_TYPE_PERCPU_ARRAY`): one counter per verdict, see [`XdpCounters`].

use std::{collections::HashSet, error::Error as StdError, fmt, io, str::FromStr};

use aya::{
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, XskMap},
    programs::{ProgramError, Xdp, XdpMode},
    Ebpf, EbpfError,
};

/// Max entries of `acl` and `targets` (as in the C source).
pub const MAX_ACL_ENTRIES: usize = 256;
/// Max entries of `xsks`: queue ids must be below this.
pub const MAX_QUEUES: u32 = 64;

/// Name of the program function in the object.
const PROGRAM_NAME: &str = "xblade_xdp";

/// Counter indices of the `counters` map; keep in sync with `enum counter` in the C source.
mod counter {
    pub const PASS_NOT_AOE: u32 = 0;
    pub const PASS_RESPONSE: u32 = 1;
    pub const PASS_OTHER_TARGET: u32 = 2;
    pub const DROP_ACL: u32 = 3;
    pub const REDIRECT: u32 = 4;
    pub const PASS_NO_SOCKET: u32 = 5;
    pub const DROP_MALFORMED: u32 = 6;
}

/// aya parses the object in place and needs it 8-byte aligned, which `include_bytes!` does
/// not promise (this is what aya's `include_bytes_aligned!` does).
#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);

static OBJECT: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/xblade.bpf.o")));

/// Requested attach mode (`--xdp-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttachMode {
    /// Native if the driver accepts it, else generic.
    Auto,
    /// Driver mode (`XDP_FLAGS_DRV_MODE`) only.
    Native,
    /// Generic/SKB mode (`XDP_FLAGS_SKB_MODE`) only.
    Generic,
}

impl FromStr for XdpAttachMode {
    type Err = XdpError;

    fn from_str(s: &str) -> Result<Self, XdpError> {
        match s {
            "auto" => Ok(Self::Auto),
            "native" => Ok(Self::Native),
            "generic" => Ok(Self::Generic),
            _ => Err(XdpError::InvalidMode {
                given: s.to_owned(),
            }),
        }
    }
}

/// Mode the program actually runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    /// In the driver (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// In the generic receive path (`XDP_FLAGS_SKB_MODE`).
    Generic,
}

impl AttachedMode {
    fn aya(self) -> XdpMode {
        match self {
            Self::Native => XdpMode::Driver,
            Self::Generic => XdpMode::Skb,
        }
    }
}

impl fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Native => "native",
            Self::Generic => "generic",
        })
    }
}

/// Verdict counters of the XDP program, summed over all CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpCounters {
    /// Not AoE: passed to the kernel.
    pub pass_not_aoe: u64,
    /// AoE with the response flag: passed.
    pub pass_response: u64,
    /// AoE for a shelf.slot this host does not serve: passed.
    pub pass_other_target: u64,
    /// Source MAC not in the ACL: dropped.
    pub drop_acl: u64,
    /// Redirected to an AF_XDP socket (a full RX ring still drops it there).
    pub redirect: u64,
    /// Ours, but no socket on the receiving queue: passed.
    pub pass_no_socket: u64,
    /// AoE ethertype but shorter than the AoE header: dropped.
    pub drop_malformed: u64,
}

/// Why loading, attaching or updating the XDP program failed; one line each.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// `--xdp-mode` value not understood.
    #[error("invalid XDP mode '{given}' (expected auto, native or generic)")]
    InvalidMode {
        /// The value given.
        given: String,
    },
    /// The interface does not exist in this thread's network namespace.
    #[error("no such network interface '{name}' (see `ip link`)")]
    NoSuchInterface {
        /// The name.
        name: String,
    },
    /// Another XDP program (or link) owns the interface.
    #[error(
        "interface {ifname} already has an XDP program attached; detach it with \
         `ip link set dev {ifname} xdp off` or stop the program that owns it ({source})"
    )]
    AlreadyAttached {
        /// The interface.
        ifname: String,
        /// EBUSY (same mode) or EEXIST (the other mode).
        source: io::Error,
    },
    /// Not privileged enough to load or attach.
    #[error("{what}: permission denied; need root or CAP_NET_ADMIN+CAP_BPF ({source})")]
    PermissionDenied {
        /// The step that failed.
        what: &'static str,
        /// EPERM or EACCES.
        source: io::Error,
    },
    /// The kernel refused the attach in the requested mode.
    #[error("attaching XDP to {ifname} in {mode} mode failed: {source}{hint}")]
    AttachRefused {
        /// The interface.
        ifname: String,
        /// The mode tried.
        mode: AttachedMode,
        /// The errno.
        source: io::Error,
        /// What to try instead (empty or starting with "; ").
        hint: &'static str,
    },
    /// Attach failed in a way aya reports without an errno.
    #[error("attaching XDP to {ifname} in {mode} mode failed: {detail}")]
    Attach {
        /// The interface.
        ifname: String,
        /// The mode tried.
        mode: AttachedMode,
        /// aya's error, `{:?}`.
        detail: String,
    },
    /// The object could not be parsed, its maps created, or the verifier rejected it.
    #[error("loading the XDP program failed: {detail}")]
    Load {
        /// aya's error, `{:?}` (includes the errno and the verifier log).
        detail: String,
    },
    /// A map operation failed.
    #[error("XDP map `{map}`: {op} failed: {detail}")]
    Map {
        /// The map.
        map: &'static str,
        /// What was being done.
        op: &'static str,
        /// aya's error, `{:?}`.
        detail: String,
    },
    /// 0xFFFF / 0xFF are the AoE wildcards, not addresses.
    #[error("cannot serve shelf {major} slot {minor}: 65535 and 255 are the AoE broadcast values")]
    InvalidTarget {
        /// Shelf.
        major: u16,
        /// Slot.
        minor: u8,
    },
    /// Queue id beyond the XSKMAP.
    #[error("queue {queue_id} is beyond the {MAX_QUEUES} queues the XDP program supports")]
    QueueOutOfRange {
        /// The queue.
        queue_id: u32,
    },
    /// More MACs than the `acl` map holds.
    #[error("ACL of {count} MAC addresses exceeds the limit of {MAX_ACL_ENTRIES}")]
    AclTooLarge {
        /// MACs given.
        count: usize,
    },
}

/// The loaded and attached XDP program with its maps. Dropping it detaches the program
/// (closing the BPF link) and frees the maps; it logs nothing.
pub struct XdpProgram {
    targets: HashMap<MapData, u32, u8>,
    acl: HashMap<MapData, u64, u8>,
    config: Array<MapData, u32>,
    xsks: XskMap<MapData>,
    counters: PerCpuArray<MapData, u64>,
    mode: AttachedMode,
    /// Owns the program and its link: dropping it detaches.
    _ebpf: Ebpf,
}

impl fmt::Debug for XdpProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XdpProgram")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl XdpProgram {
    /// Loads the embedded program and attaches it to `ifname` (looked up in the calling
    /// thread's network namespace). [`XdpAttachMode::Auto`] tries native mode and falls back
    /// to generic, saying so with `tracing::info!`; it does not fall back when the interface
    /// is taken or privileges are missing.
    pub fn attach(ifname: &str, mode: XdpAttachMode) -> Result<Self, XdpError> {
        // Resolved here, not by aya's `Xdp::attach(&str)`, which panics on a name with a NUL.
        let ifindex = crate::xsk::ifindex(ifname).map_err(|_| XdpError::NoSuchInterface {
            name: ifname.to_owned(),
        })?;

        let mut ebpf = Ebpf::load(&OBJECT.0).map_err(load_error)?;
        // Take the maps before the program goes live, so that failing here attaches nothing.
        let targets = take_map(&mut ebpf, "targets", HashMap::try_from)?;
        let acl = take_map(&mut ebpf, "acl", HashMap::try_from)?;
        let config = take_map(&mut ebpf, "config", Array::try_from)?;
        let xsks = take_map(&mut ebpf, "xsks", XskMap::try_from)?;
        let counters = take_map(&mut ebpf, "counters", PerCpuArray::try_from)?;
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or_else(|| XdpError::Load {
                detail: format!("the embedded object has no program `{PROGRAM_NAME}` (build bug)"),
            })?
            .try_into()
            .map_err(|e: ProgramError| XdpError::Load {
                detail: format!("{e:?}"),
            })?;
        program.load().map_err(|e| program_load_error(&e))?;

        let attached = match mode {
            XdpAttachMode::Native => attach_in(program, ifname, ifindex, AttachedMode::Native)?,
            XdpAttachMode::Generic => attach_in(program, ifname, ifindex, AttachedMode::Generic)?,
            XdpAttachMode::Auto => {
                match attach_in(program, ifname, ifindex, AttachedMode::Native) {
                    Ok(m) => m,
                    Err(
                        e @ (XdpError::AlreadyAttached { .. } | XdpError::PermissionDenied { .. }),
                    ) => {
                        return Err(e);
                    }
                    Err(native) => {
                        let m = attach_in(program, ifname, ifindex, AttachedMode::Generic)?;
                        tracing::info!(
                            ifname,
                            reason = %native,
                            "native XDP unavailable; using generic XDP"
                        );
                        m
                    }
                }
            }
        };
        if mode != XdpAttachMode::Auto || attached == AttachedMode::Native {
            tracing::info!(ifname, mode = %attached, "XDP program attached");
        }

        Ok(Self {
            targets,
            acl,
            config,
            xsks,
            counters,
            mode: attached,
            _ebpf: ebpf,
        })
    }

    /// The mode the program runs in.
    pub fn mode(&self) -> AttachedMode {
        self.mode
    }

    /// Starts steering requests for shelf `major`, slot `minor` to the sockets.
    pub fn serve_target(&mut self, major: u16, minor: u8) -> Result<(), XdpError> {
        if major == 0xFFFF || minor == 0xFF {
            return Err(XdpError::InvalidTarget { major, minor });
        }
        let key = (u32::from(major) << 8) | u32::from(minor);
        self.targets
            .insert(key, 1, 0)
            .map_err(|e| map_error("targets", "insert", &e))
    }

    /// Puts the AF_XDP socket for RX queue `queue_id` into the XSKMAP (replacing any previous
    /// one). Frames of that queue are redirected to it from now on.
    pub fn register_socket(
        &mut self,
        queue_id: u32,
        socket_fd: std::os::fd::BorrowedFd<'_>,
    ) -> Result<(), XdpError> {
        if queue_id >= MAX_QUEUES {
            return Err(XdpError::QueueOutOfRange { queue_id });
        }
        self.xsks
            .set(queue_id, socket_fd, 0)
            .map_err(|e| map_error("xsks", "set", &e))
    }

    /// Replaces the source-MAC allow list. An empty slice turns the ACL off (every source may
    /// pass); otherwise only the listed MACs may. The update never denies, even briefly, a MAC
    /// that is in both the old and the new list.
    pub fn set_acl(&mut self, macs: &[[u8; 6]]) -> Result<(), XdpError> {
        if macs.len() > MAX_ACL_ENTRIES {
            return Err(XdpError::AclTooLarge { count: macs.len() });
        }
        if macs.is_empty() {
            self.set_acl_active(false)?;
        }
        let wanted: HashSet<u64> = macs.iter().map(|m| mac_key(*m)).collect();
        // Remove stale entries first so the new ones fit in the map's 256 slots.
        let present: Vec<u64> = self
            .acl
            .keys()
            .collect::<Result<_, _>>()
            .map_err(|e| map_error("acl", "iterate", &e))?;
        for key in present.iter().filter(|k| !wanted.contains(k)) {
            match self.acl.remove(key) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_error("acl", "remove", &e)),
            }
        }
        for key in &wanted {
            self.acl
                .insert(*key, 1, 0)
                .map_err(|e| map_error("acl", "insert", &e))?;
        }
        if !macs.is_empty() {
            self.set_acl_active(true)?;
        }
        Ok(())
    }

    fn set_acl_active(&mut self, active: bool) -> Result<(), XdpError> {
        self.config
            .set(0, u32::from(active), 0)
            .map_err(|e| map_error("config", "set", &e))
    }

    /// The verdict counters, summed over CPUs.
    pub fn counters(&self) -> Result<XdpCounters, XdpError> {
        let read = |index: u32| -> Result<u64, XdpError> {
            let values = self
                .counters
                .get(&index, 0)
                .map_err(|e| map_error("counters", "lookup", &e))?;
            Ok(values.iter().fold(0u64, |sum, v| sum.wrapping_add(*v)))
        };
        Ok(XdpCounters {
            pass_not_aoe: read(counter::PASS_NOT_AOE)?,
            pass_response: read(counter::PASS_RESPONSE)?,
            pass_other_target: read(counter::PASS_OTHER_TARGET)?,
            drop_acl: read(counter::DROP_ACL)?,
            redirect: read(counter::REDIRECT)?,
            pass_no_socket: read(counter::PASS_NO_SOCKET)?,
            drop_malformed: read(counter::DROP_MALFORMED)?,
        })
    }
}

/// The `acl` map key of a MAC: its six wire-order bytes in the low 48 bits.
fn mac_key(mac: [u8; 6]) -> u64 {
    mac.iter().fold(0u64, |key, b| (key << 8) | u64::from(*b))
}

fn attach_in(
    program: &mut Xdp,
    ifname: &str,
    ifindex: u32,
    mode: AttachedMode,
) -> Result<AttachedMode, XdpError> {
    // The link stays owned by `program` (and so by the Ebpf): dropping it detaches.
    program
        .attach_to_if_index(ifindex, mode.aya())
        .map(|_link_id| mode)
        .map_err(|e| attach_error(&e, ifname, mode))
}

fn attach_error(e: &ProgramError, ifname: &str, mode: AttachedMode) -> XdpError {
    let Some(errno) = errno_in(e) else {
        return XdpError::Attach {
            ifname: ifname.to_owned(),
            mode,
            detail: format!("{e:?}"),
        };
    };
    let source = io::Error::from_raw_os_error(errno);
    match errno {
        // dev_xdp_attach(): EBUSY "Can't replace active BPF XDP link" / "Can't replace active
        // XDP program with BPF link"; EEXIST "Native and generic XDP can't be active at the
        // same time".
        libc::EBUSY | libc::EEXIST => XdpError::AlreadyAttached {
            ifname: ifname.to_owned(),
            source,
        },
        libc::EPERM | libc::EACCES => XdpError::PermissionDenied {
            what: "attaching the XDP program",
            source,
        },
        libc::ENODEV => XdpError::NoSuchInterface {
            name: ifname.to_owned(),
        },
        _ => XdpError::AttachRefused {
            ifname: ifname.to_owned(),
            mode,
            hint: match (mode, errno) {
                (AttachedMode::Native, libc::ERANGE) => {
                    "; the MTU (of the veth peer, too) is too large for native XDP: \
                     lower it or try --xdp-mode generic"
                }
                (AttachedMode::Native, _) => "; try --xdp-mode generic",
                (AttachedMode::Generic, _) => "",
            },
            source,
        },
    }
}

fn load_error(e: EbpfError) -> XdpError {
    match errno_in(&e) {
        Some(errno @ (libc::EPERM | libc::EACCES)) => XdpError::PermissionDenied {
            what: "loading the XDP program",
            source: io::Error::from_raw_os_error(errno),
        },
        _ => XdpError::Load {
            detail: format!("{e:?}"),
        },
    }
}

fn program_load_error(e: &ProgramError) -> XdpError {
    match (e, errno_in(e)) {
        // A verifier rejection is EACCES too; keep its log then.
        (ProgramError::LoadError { verifier_log, .. }, Some(libc::EACCES))
            if !verifier_log.to_string().trim().is_empty() =>
        {
            XdpError::Load {
                detail: format!("{e:?}"),
            }
        }
        (_, Some(errno @ (libc::EPERM | libc::EACCES))) => XdpError::PermissionDenied {
            what: "loading the XDP program",
            source: io::Error::from_raw_os_error(errno),
        },
        _ => XdpError::Load {
            detail: format!("{e:?}"),
        },
    }
}

fn map_error(map: &'static str, op: &'static str, e: &MapError) -> XdpError {
    XdpError::Map {
        map,
        op,
        detail: format!("{e:?}"),
    }
}

fn take_map<M>(
    ebpf: &mut Ebpf,
    name: &'static str,
    convert: impl FnOnce(aya::maps::Map) -> Result<M, MapError>,
) -> Result<M, XdpError> {
    let map = ebpf.take_map(name).ok_or_else(|| XdpError::Map {
        map: name,
        op: "find",
        detail: "not in the embedded object (build bug)".into(),
    })?;
    convert(map).map_err(|e| map_error(name, "open", &e))
}

/// The first OS error code in `e`'s source chain (aya nests `io::Error`s in its errors and
/// does not always print them).
fn errno_in(e: &(dyn StdError + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(code) = err
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
        {
            return Some(code);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_is_aligned_and_elf() {
        assert_eq!(OBJECT.0.as_ptr() as usize % 8, 0);
        assert_eq!(&OBJECT.0[..4], b"\x7fELF");
    }

    #[test]
    fn modes_parse() {
        assert_eq!(
            "auto".parse::<XdpAttachMode>().ok(),
            Some(XdpAttachMode::Auto)
        );
        assert_eq!(
            "native".parse::<XdpAttachMode>().ok(),
            Some(XdpAttachMode::Native)
        );
        assert_eq!(
            "generic".parse::<XdpAttachMode>().ok(),
            Some(XdpAttachMode::Generic)
        );
        let err = "skb".parse::<XdpAttachMode>().expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "invalid XDP mode 'skb' (expected auto, native or generic)"
        );
        assert_eq!(AttachedMode::Native.to_string(), "native");
        assert_eq!(AttachedMode::Generic.to_string(), "generic");
    }

    #[test]
    fn mac_key_is_wire_order_in_low_48_bits() {
        assert_eq!(
            mac_key([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]),
            0x0211_2233_4455
        );
        assert_eq!(mac_key([0xff; 6]), 0xffff_ffff_ffff);
    }

    #[test]
    fn errno_is_found_in_the_chain() {
        let e = ProgramError::SyscallError(aya::sys::SyscallError {
            call: "bpf_link_create",
            io_error: io::Error::from_raw_os_error(libc::EBUSY),
        });
        assert_eq!(errno_in(&e), Some(libc::EBUSY));
        match attach_error(&e, "veth0", AttachedMode::Generic) {
            XdpError::AlreadyAttached { ifname, .. } => assert_eq!(ifname, "veth0"),
            other => panic!("unexpected {other:?}"),
        }
        let e = ProgramError::SyscallError(aya::sys::SyscallError {
            call: "bpf_link_create",
            io_error: io::Error::from_raw_os_error(libc::EOPNOTSUPP),
        });
        let msg = attach_error(&e, "veth0", AttachedMode::Native).to_string();
        assert!(msg.contains("try --xdp-mode generic"), "{msg}");
    }
}
