//! Loading and attaching the XDP program (`xdp-prog/xblade.bpf.c`) and driving its maps.
//!
//! The program is compiled by `build.rs` and embedded in the binary. It is attached with a BPF
//! link (`BPF_LINK_CREATE`, attach type `BPF_XDP`), so the kernel detaches it by itself when the
//! last link descriptor is closed: when [`XdpProgram`] is dropped, and also when the daemon is
//! killed. aya falls back to the legacy netlink attach (`IFLA_XDP`, which outlives the process)
//! only when `BPF_LINK_CREATE` fails with EINVAL, i.e. on kernels before 5.9.
//!
//! One program per interface serves many exports (shelf.slot pairs), each with its own MAC mask
//! list. Maps (names as in the C source; layouts in `xdp-prog/xblade_abi.h`):
//! * `targets` (`BPF_MAP_TYPE_HASH`, key `(major << 8) | minor`, value `struct xblade_target
//!   { __u32 flags; }`, [`MAX_EXPORTS`] exports plus wildcard markers): the served exports,
//!   flagged `XBLADE_TARGET_ACL` when their mask list is non-empty, and one *marker* entry
//!   (flag `XBLADE_TARGET_MARKER`) per wildcard that matches something served: `M.0xFF` while
//!   any export of shelf M is served, `0xFFFF.m` while any export with slot m is, and
//!   `0xFFFF.0xFF` while any export is. The program looks the request's key up as it is, so a
//!   wildcard for a shelf or slot not served here passes to the kernel (`pass_other_target`)
//!   and one that matches is redirected, without an ACL check (userspace checks each matching
//!   export's mask list);
//! * `acl` (`BPF_MAP_TYPE_HASH`, key `struct xblade_acl_key { __u32 target; __u8 mac[6]; __u8
//!   pad[2]; }`, [`MAX_ACL_ENTRIES`] entries for all exports together): the allowed (export,
//!   source MAC) pairs of the exports that have a mask list; one export's list never admits or
//!   blocks anyone on another export;
//! * `xsks` (`BPF_MAP_TYPE_XSKMAP`): AF_XDP socket per RX queue;
//! * `counters` (`BPF_MAP_TYPE_PERCPU_ARRAY`): one counter per verdict, see [`XdpCounters`].
//!
//! [`XdpProgram`] keeps a mirror of what `targets` and `acl` hold and applies only the
//! difference, one entry at a time, in an order that never briefly denies an (export, MAC)
//! allowed before and after, never briefly admits one denied before and after, and never
//! briefly unserves an export (or wildcard) served before and after (see `maps::plan`).
//!
//! The counter indices, map sizes and struct sizes come from `xdp-prog/xblade_abi.h`, parsed by
//! `build.rs` (see `abi.rs`); [`XdpProgram::attach`] also checks every map's `max_entries`, key
//! and value size as the kernel reports them against those constants.

mod abi;
mod maps;

use std::{
    collections::{BTreeMap, BTreeSet},
    error::Error as StdError,
    fmt, io,
    str::FromStr,
};

use aya::{
    maps::{HashMap, Map, MapData, MapError, PerCpuArray, XskMap},
    programs::{ProgramError, Xdp, XdpMode},
    Ebpf, EbpfError,
};

use abi::{AclKey, TargetValue};
use maps::{MapState, Op};

/// Served exports (shelf.slot pairs) per interface, at most.
pub const MAX_EXPORTS: usize = abi::XBLADE_MAX_EXPORTS as usize;
/// Max entries of `acl`: (export, MAC) pairs of all exports' mask lists together.
pub const MAX_ACL_ENTRIES: usize = abi::XBLADE_ACL_MAX_ENTRIES as usize;
/// Max entries of `xsks`: queue ids must be below this.
pub const MAX_QUEUES: u32 = abi::XBLADE_XSKS_MAX_ENTRIES;

/// Name of the program function in the object.
const PROGRAM_NAME: &str = "xblade_xdp";

/// Counter indices of the `counters` map (from `xblade_abi.h`).
mod counter {
    use super::abi;

    pub const PASS_NOT_AOE: u32 = abi::XBLADE_COUNTER_PASS_NOT_AOE;
    pub const PASS_RESPONSE: u32 = abi::XBLADE_COUNTER_PASS_RESPONSE;
    pub const PASS_OTHER_TARGET: u32 = abi::XBLADE_COUNTER_PASS_OTHER_TARGET;
    pub const DROP_ACL: u32 = abi::XBLADE_COUNTER_DROP_ACL;
    pub const REDIRECT: u32 = abi::XBLADE_COUNTER_REDIRECT;
    pub const PASS_NO_SOCKET: u32 = abi::XBLADE_COUNTER_PASS_NO_SOCKET;
    pub const DROP_MALFORMED: u32 = abi::XBLADE_COUNTER_DROP_MALFORMED;
    pub const COUNT: u32 = abi::XBLADE_COUNTER_COUNT;
}

/// One export as the XDP program sees it: shelf, slot and the MAC mask list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XdpExport {
    /// Shelf (not 0xFFFF).
    pub major: u16,
    /// Slot (not 0xFF).
    pub minor: u8,
    /// Source MACs allowed to use this export; empty: no ACL for this export (everyone may).
    pub mask: Vec<[u8; 6]>,
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
    /// Source MAC not on the export's mask list: dropped.
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
    #[error(
        "{what}: permission denied; need root or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN ({source})"
    )]
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
    /// More (export, MAC) pairs than the `acl` map holds.
    #[error(
        "the mask lists of all exports on this interface would need {count} XDP ACL entries \
         (one per export and MAC); the limit is {MAX_ACL_ENTRIES} (XBLADE_ACL_MAX_ENTRIES in \
         xdp-prog/xblade_abi.h)"
    )]
    AclTooLarge {
        /// Entries needed.
        count: usize,
    },
    /// More exports than the `targets` map holds.
    #[error(
        "{count} exports on one interface exceed the XDP limit of {MAX_EXPORTS} \
         (XBLADE_MAX_EXPORTS in xdp-prog/xblade_abi.h)"
    )]
    TooManyExports {
        /// Exports given.
        count: usize,
    },
    /// The same shelf.slot twice in one export list.
    #[error("export e{major}.{minor} is listed twice")]
    DuplicateExport {
        /// Shelf.
        major: u16,
        /// Slot.
        minor: u8,
    },
    /// A mask list change for an export the program does not serve.
    #[error("export e{major}.{minor} is not served by the XDP program")]
    NotServed {
        /// Shelf.
        major: u16,
        /// Slot.
        minor: u8,
    },
    /// A map as created by the kernel differs from what this binary was built for.
    #[error(
        "XDP map `{map}`: the kernel reports {what} {actual}, this binary expects {expected} \
         (xdp-prog/xblade_abi.h and the embedded object disagree; rebuild)"
    )]
    MapLayout {
        /// The map.
        map: &'static str,
        /// `max_entries`, `key_size` or `value_size`.
        what: &'static str,
        /// As the kernel reports it.
        actual: u32,
        /// As `xblade_abi.h` says.
        expected: u32,
    },
}

/// The loaded and attached XDP program with its maps. Dropping it detaches the program
/// (closing the BPF link) and frees the maps; it logs nothing.
pub struct XdpProgram {
    targets: HashMap<MapData, u32, TargetValue>,
    acl: HashMap<MapData, AclKey, u8>,
    xsks: XskMap<MapData>,
    counters: PerCpuArray<MapData, u64>,
    mode: AttachedMode,
    /// What `targets` and `acl` hold: updated after each successful single-entry operation,
    /// so it stays exact when an update fails half-way.
    mirror: MapState,
    /// The list [`XdpProgram::set_acl`] last set, given to exports added by
    /// [`XdpProgram::serve_target`].
    default_mask: Vec<[u8; 6]>,
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
        let targets = take_map(
            &mut ebpf,
            MapSpec {
                name: "targets",
                max_entries: abi::XBLADE_TARGETS_MAX_ENTRIES,
                key_size: size_of::<u32>(),
                value_size: size_of::<TargetValue>(),
            },
            HashMap::try_from,
        )?;
        let acl = take_map(
            &mut ebpf,
            MapSpec {
                name: "acl",
                max_entries: abi::XBLADE_ACL_MAX_ENTRIES,
                key_size: size_of::<AclKey>(),
                value_size: size_of::<u8>(),
            },
            HashMap::try_from,
        )?;
        let xsks = take_map(
            &mut ebpf,
            MapSpec {
                name: "xsks",
                max_entries: abi::XBLADE_XSKS_MAX_ENTRIES,
                key_size: size_of::<u32>(),
                value_size: size_of::<u32>(),
            },
            XskMap::try_from,
        )?;
        let counters = take_map(
            &mut ebpf,
            MapSpec {
                name: "counters",
                max_entries: counter::COUNT,
                key_size: size_of::<u32>(),
                value_size: size_of::<u64>(),
            },
            PerCpuArray::try_from,
        )?;
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
            xsks,
            counters,
            mode: attached,
            mirror: MapState::default(),
            default_mask: Vec::new(),
            _ebpf: ebpf,
        })
    }

    /// The mode the program runs in.
    pub fn mode(&self) -> AttachedMode {
        self.mode
    }

    /// Makes the maps serve exactly `exports`: adds, updates and removes exports, their ACL
    /// entries and the wildcard markers as needed, touching only what differs from what is
    /// served now. Never denies, even briefly, an (export, MAC) allowed both before and after,
    /// never briefly admits one denied both before and after, and never briefly unserves an
    /// export (or a wildcard) served before and after.
    ///
    /// Checked before anything changes: no shelf 0xFFFF or slot 0xFF
    /// ([`XdpError::InvalidTarget`]), no shelf.slot twice ([`XdpError::DuplicateExport`]), at
    /// most [`MAX_EXPORTS`] exports ([`XdpError::TooManyExports`]) and at most
    /// [`MAX_ACL_ENTRIES`] (export, MAC) pairs over all mask lists together
    /// ([`XdpError::AclTooLarge`], naming the limit); duplicate MACs in a list count once.
    /// A map operation failing half-way ([`XdpError::Map`]) leaves the maps in one of the safe
    /// intermediate states; the next call continues from there.
    pub fn set_exports(&mut self, exports: &[XdpExport]) -> Result<(), XdpError> {
        if exports.len() > MAX_EXPORTS {
            return Err(XdpError::TooManyExports {
                count: exports.len(),
            });
        }
        let mut wanted: BTreeMap<u32, BTreeSet<[u8; 6]>> = BTreeMap::new();
        for export in exports {
            let key = export_key(export.major, export.minor)?;
            let mask = export.mask.iter().copied().collect();
            if wanted.insert(key, mask).is_some() {
                return Err(XdpError::DuplicateExport {
                    major: export.major,
                    minor: export.minor,
                });
            }
        }
        let count: usize = wanted.values().map(BTreeSet::len).sum();
        if count > MAX_ACL_ENTRIES {
            return Err(XdpError::AclTooLarge { count });
        }
        let desired = MapState::for_exports(wanted.iter().map(|(k, m)| (*k, m)));
        let ops = maps::plan(&self.mirror, &desired);
        self.apply(&ops)
    }

    /// Replaces the mask list of one served export (an initiator edited it), updating only
    /// that export's entries, with the same promises as [`XdpProgram::set_exports`]. An empty
    /// list turns the export's ACL off. [`XdpError::NotServed`] if the export is not served;
    /// [`XdpError::AclTooLarge`] if all lists together would exceed [`MAX_ACL_ENTRIES`].
    pub fn set_export_mask(
        &mut self,
        major: u16,
        minor: u8,
        mask: &[[u8; 6]],
    ) -> Result<(), XdpError> {
        let key = export_key(major, minor)?;
        if !self.mirror.serves(key) {
            return Err(XdpError::NotServed { major, minor });
        }
        let current = self.mirror.export_only(key);
        let wanted: BTreeSet<[u8; 6]> = mask.iter().copied().collect();
        let count = self.mirror.acl.len() - current.acl.len() + wanted.len();
        if count > MAX_ACL_ENTRIES {
            return Err(XdpError::AclTooLarge { count });
        }
        let desired = MapState {
            targets: [(key, maps::export_flags(wanted.is_empty()))].into(),
            acl: wanted.iter().map(|mac| AclKey::new(key, *mac)).collect(),
        };
        let ops = maps::plan(&current, &desired);
        self.apply(&ops)
    }

    /// The exports served now, by shelf then slot, with their mask lists (sorted).
    pub fn exports(&self) -> Vec<XdpExport> {
        self.mirror
            .export_keys()
            .map(|key| {
                let (major, minor) = maps::split_key(key);
                XdpExport {
                    major,
                    minor,
                    mask: self.mirror.mask_of(key).collect(),
                }
            })
            .collect()
    }

    /// Single-export convenience (the API of the one-export daemon), built on
    /// [`XdpProgram::set_exports`]: starts steering requests for shelf `major`, slot `minor`
    /// (and the wildcards matching it) to the sockets, keeping the other exports. A new export
    /// gets the mask list last given to [`XdpProgram::set_acl`]; serving an export already
    /// served changes nothing.
    pub fn serve_target(&mut self, major: u16, minor: u8) -> Result<(), XdpError> {
        let key = export_key(major, minor)?;
        if self.mirror.serves(key) {
            return Ok(());
        }
        let mut exports = self.exports();
        exports.push(XdpExport {
            major,
            minor,
            mask: self.default_mask.clone(),
        });
        self.set_exports(&exports)
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

    /// Single-export convenience (the API of the one-export daemon): gives every served export
    /// the mask list `macs` (and remembers it for exports [`XdpProgram::serve_target`] adds
    /// later). An empty slice turns the ACLs off. Never denies, even briefly, a MAC that is in
    /// both the old and the new list. [`XdpError::AclTooLarge`] if the exports times the
    /// distinct MACs exceed [`MAX_ACL_ENTRIES`].
    pub fn set_acl(&mut self, macs: &[[u8; 6]]) -> Result<(), XdpError> {
        let macs: Vec<[u8; 6]> = macs
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if macs.len() > MAX_ACL_ENTRIES {
            return Err(XdpError::AclTooLarge { count: macs.len() });
        }
        let exports: Vec<XdpExport> = self
            .exports()
            .into_iter()
            .map(|e| XdpExport {
                mask: macs.clone(),
                ..e
            })
            .collect();
        self.set_exports(&exports)?;
        self.default_mask = macs;
        Ok(())
    }

    /// Applies `ops` in order, recording each success in the mirror.
    fn apply(&mut self, ops: &[Op]) -> Result<(), XdpError> {
        for op in ops {
            let result = match *op {
                Op::PutTarget { key, flags } => self
                    .targets
                    .insert(key, TargetValue { flags }, 0)
                    .map_err(|e| map_error("targets", "insert", &e)),
                Op::DelTarget { key } => match self.targets.remove(&key) {
                    Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
                    Err(e) => Err(map_error("targets", "remove", &e)),
                },
                Op::PutAcl(key) => self
                    .acl
                    .insert(key, 1, 0)
                    .map_err(|e| map_error("acl", "insert", &e)),
                Op::DelAcl(key) => match self.acl.remove(&key) {
                    Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
                    Err(e) => Err(map_error("acl", "remove", &e)),
                },
            };
            result?;
            self.mirror.apply(op);
        }
        Ok(())
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

/// The `targets` key of an export; the wildcard values are not exports.
fn export_key(major: u16, minor: u8) -> Result<u32, XdpError> {
    let key = maps::target_key(major, minor);
    if maps::is_wildcard(key) {
        return Err(XdpError::InvalidTarget { major, minor });
    }
    Ok(key)
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

/// A map as `xblade_abi.h` and the Rust types say it must be.
struct MapSpec {
    name: &'static str,
    max_entries: u32,
    key_size: usize,
    value_size: usize,
}

/// Takes map `spec.name` out of `ebpf`, checks its kernel-side layout against `spec` and
/// converts it.
fn take_map<M>(
    ebpf: &mut Ebpf,
    spec: MapSpec,
    convert: impl FnOnce(Map) -> Result<M, MapError>,
) -> Result<M, XdpError> {
    let name = spec.name;
    let map = ebpf.take_map(name).ok_or_else(|| XdpError::Map {
        map: name,
        op: "find",
        detail: "not in the embedded object (build bug)".into(),
    })?;
    let data = match &map {
        Map::HashMap(d) | Map::PerCpuArray(d) | Map::XskMap(d) | Map::Array(d) => d,
        _ => {
            return Err(XdpError::Map {
                map: name,
                op: "open",
                detail: "unexpected map type in the embedded object (build bug)".into(),
            })
        }
    };
    let info = data.info().map_err(|e| map_error(name, "get info", &e))?;
    check_layout(
        &spec,
        info.max_entries(),
        info.key_size(),
        info.value_size(),
    )?;
    convert(map).map_err(|e| map_error(name, "open", &e))
}

/// Whether the kernel's view of a map (`max_entries`, key and value size) matches `spec`.
fn check_layout(
    spec: &MapSpec,
    max_entries: u32,
    key_size: u32,
    value_size: u32,
) -> Result<(), XdpError> {
    for (what, actual, expected) in [
        ("max_entries", max_entries, spec.max_entries),
        ("key_size", key_size, spec.key_size as u32),
        ("value_size", value_size, spec.value_size as u32),
    ] {
        if actual != expected {
            return Err(XdpError::MapLayout {
                map: spec.name,
                what,
                actual,
                expected,
            });
        }
    }
    Ok(())
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
    fn export_keys_refuse_wildcards() {
        assert_eq!(export_key(7, 3).ok(), Some(0x0703));
        assert!(matches!(
            export_key(0xFFFF, 3),
            Err(XdpError::InvalidTarget {
                major: 0xFFFF,
                minor: 3
            })
        ));
        assert!(matches!(
            export_key(7, 0xFF),
            Err(XdpError::InvalidTarget { .. })
        ));
    }

    #[test]
    fn layout_mismatch_is_a_clear_error() {
        let spec = MapSpec {
            name: "acl",
            max_entries: abi::XBLADE_ACL_MAX_ENTRIES,
            key_size: 12,
            value_size: 1,
        };
        assert!(check_layout(&spec, abi::XBLADE_ACL_MAX_ENTRIES, 12, 1).is_ok());
        let msg = check_layout(&spec, 256, 12, 1)
            .expect_err("mismatch")
            .to_string();
        assert!(msg.contains("`acl`"), "{msg}");
        assert!(msg.contains("max_entries 256"), "{msg}");
        assert!(msg.contains("expects 16384"), "{msg}");
        assert!(matches!(
            check_layout(&spec, abi::XBLADE_ACL_MAX_ENTRIES, 8, 1),
            Err(XdpError::MapLayout {
                what: "key_size",
                actual: 8,
                expected: 12,
                ..
            })
        ));
    }

    #[test]
    fn abi_constants_come_from_the_header() {
        let header = include_str!("../../../xdp-prog/xblade_abi.h");
        for (name, value) in [
            ("XBLADE_COUNTER_DROP_ACL", abi::XBLADE_COUNTER_DROP_ACL),
            ("XBLADE_ACL_MAX_ENTRIES", abi::XBLADE_ACL_MAX_ENTRIES),
            (
                "XBLADE_TARGETS_MAX_ENTRIES",
                abi::XBLADE_TARGETS_MAX_ENTRIES,
            ),
        ] {
            let line = format!("#define {name} {value}");
            assert!(header.contains(&line), "{line}");
        }
        assert_eq!(MAX_ACL_ENTRIES, 16384);
        assert_eq!(MAX_EXPORTS, 4096);
        assert_eq!(MAX_QUEUES, 64);
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
