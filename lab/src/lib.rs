//! Network-namespace test lab for xblade's integration tests and benchmarks.
//!
//! A [`Lab`] is two throwaway network namespaces joined by one veth pair: the *target* end (where
//! the daemon or the XDP program under test runs) and the *client* end (where initiators send
//! from). Everything is created with iproute2 (`ip netns add`, `ip link add ... type veth`) and
//! removed again when the `Lab` is dropped, so a test never touches the host's own interfaces.
//!
//! Namespaces are named `xbl<pid>-<counter>-<tag>-t` and `...-c`. The pid lets [`remove_stale`]
//! delete the leftovers of a test process that was killed before its `Drop` ran; [`Lab::new`]
//! calls it first.
//!
//! IPv6 is disabled in both namespaces before the veth exists, so the link carries only the
//! frames a test sends (no router solicitations, MLD reports or DAD probes that would otherwise
//! show up in AF_PACKET captures and XDP counters).
//!
//! Everything here needs root (`CAP_SYS_ADMIN` for `setns(2)` and namespace mounts, and
//! `CAP_NET_ADMIN`); tests call [`require_root`] first and skip when it returns `false`.

mod vblade;
pub use vblade::Vblade;

use std::{
    ffi::OsStr,
    fs::{self, File},
    io,
    marker::PhantomData,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

/// Prefix of every namespace a lab creates; [`remove_stale`] only ever deletes these.
pub const NS_PREFIX: &str = "xbl";

/// Where `ip netns add` bind-mounts named namespaces.
const NETNS_RUN_DIR: &str = "/run/netns";

/// Longest tag kept in namespace and interface names (`IFNAMSIZ` is 16 including the NUL).
const MAX_TAG_LEN: usize = 8;

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Why the lab could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// An iproute2 command exited non-zero.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line, for copy and paste.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr, trimmed.
        stderr: String,
    },
    /// A program could not be started at all.
    #[error("cannot run `{program}`: {source} (is iproute2 installed and on PATH?)")]
    Spawn {
        /// The program name.
        program: String,
        /// The error from `posix_spawn`/`execve`.
        source: io::Error,
    },
    /// A file the lab needs could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `setns(2)` refused to move the calling thread into a namespace.
    #[error("setns({path}, CLONE_NEWNET) failed: {source} (needs root / CAP_SYS_ADMIN)")]
    Setns {
        /// The namespace file.
        path: PathBuf,
        /// The errno.
        source: io::Error,
    },
    /// A namespace name that cannot be a file name under /run/netns.
    #[error("invalid network namespace name {0:?}")]
    InvalidNamespace(String),
    /// A helper thread panicked (a bug in this crate).
    #[error("lab helper thread panicked while {0}")]
    ThreadPanicked(&'static str),
    /// A program started in a namespace exited before it was ready.
    #[error("`{program}` exited at once ({status}); its log:\n{log}")]
    ExitedAtOnce {
        /// The program name.
        program: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it wrote to its log.
        log: String,
    },
    /// `ip link show` printed no `link/ether` address for an interface.
    #[error("cannot find the MAC address of {ifname} in namespace {ns}")]
    NoMac {
        /// The namespace.
        ns: String,
        /// The interface.
        ifname: String,
    },
}

/// Optional shape of the veth pair. `Default` is the kernel's default veth (one RX and TX queue
/// per possible CPU, MTU 1500).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LabOptions {
    /// RX queues of each veth end (`ip link add ... numrxqueues N`).
    pub rx_queues: Option<u32>,
    /// TX queues of each veth end (`numtxqueues N`); defaults to `rx_queues` when that is set.
    pub tx_queues: Option<u32>,
    /// MTU of both ends.
    pub mtu: Option<u32>,
}

impl LabOptions {
    /// The default shape with `rx_queues` RX (and as many TX) queues per end.
    pub fn with_rx_queues(rx_queues: u32) -> LabOptions {
        LabOptions {
            rx_queues: Some(rx_queues),
            ..LabOptions::default()
        }
    }
}

/// Two network namespaces joined by a veth pair, both ends up (and by more pairs that
/// [`Lab::add_link`] adds). Dropping it deletes both namespaces (and with them every veth
/// pair).
#[derive(Debug)]
pub struct Lab {
    target_ns: String,
    client_ns: String,
    target_if: String,
    client_if: String,
    target_mac: [u8; 6],
    client_mac: [u8; 6],
    /// Namespaces created so far; `Drop` deletes exactly these (also for a half-built lab).
    created: Vec<String>,
    /// The sanitised tag, reused in the names of links added later.
    tag: String,
    /// Veth pairs added by [`Lab::add_link`], in order.
    extra_links: Vec<Link>,
}

/// One veth pair of a [`Lab`]: its two ends and their MAC addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The end inside the target namespace.
    pub target_if: String,
    /// The end inside the client namespace.
    pub client_if: String,
    /// MAC address of the target end.
    pub target_mac: [u8; 6],
    /// MAC address of the client end.
    pub client_mac: [u8; 6],
}

/// Which namespace of a [`Lab`] an interface lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The target's namespace.
    Target,
    /// The client's namespace.
    Client,
}

impl Lab {
    /// Creates the namespaces and the veth pair. `tag` (a short test name) is kept, sanitised
    /// and shortened, in the namespace and interface names for easier debugging.
    pub fn new(tag: &str, opts: LabOptions) -> Result<Lab, LabError> {
        remove_stale();

        let tag = sanitise_tag(tag);
        let counter = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = format!("{NS_PREFIX}{}-{counter}-{tag}", std::process::id());
        let mut lab = Lab {
            target_ns: format!("{base}-t"),
            client_ns: format!("{base}-c"),
            // Each end lives alone in a fresh namespace, so the names only need to be valid.
            target_if: format!("xbt-{tag}"),
            client_if: format!("xbc-{tag}"),
            target_mac: [0; 6],
            client_mac: [0; 6],
            created: Vec::with_capacity(2),
            tag: tag.clone(),
            extra_links: Vec::new(),
        };

        for ns in [lab.target_ns.clone(), lab.client_ns.clone()] {
            run(Command::new("ip").args(["netns", "add", &ns]))?;
            lab.created.push(ns.clone());
            disable_ipv6(&ns)?;
        }

        let target_if = lab.target_if.clone();
        let client_if = lab.client_if.clone();
        lab.create_veth(&target_if, &client_if, &opts)?;
        lab.target_mac = read_mac(&lab.target_ns, &lab.target_if)?;
        lab.client_mac = read_mac(&lab.client_ns, &lab.client_if)?;
        Ok(lab)
    }

    /// Name of the target's namespace (under /run/netns).
    pub fn target_ns(&self) -> &str {
        &self.target_ns
    }

    /// Name of the client's namespace (under /run/netns).
    pub fn client_ns(&self) -> &str {
        &self.client_ns
    }

    /// The veth end inside the target namespace.
    pub fn target_if(&self) -> &str {
        &self.target_if
    }

    /// The veth end inside the client namespace.
    pub fn client_if(&self) -> &str {
        &self.client_if
    }

    /// MAC address of the target end.
    pub fn target_mac(&self) -> [u8; 6] {
        self.target_mac
    }

    /// MAC address of the client end.
    pub fn client_mac(&self) -> [u8; 6] {
        self.client_mac
    }

    /// `ip netns exec <target ns> <program>`; add the program's arguments to the result.
    pub fn command_in_target(&self, program: impl AsRef<OsStr>) -> Command {
        command_in(&self.target_ns, program)
    }

    /// `ip netns exec <client ns> <program>`; add the program's arguments to the result.
    pub fn command_in_client(&self, program: impl AsRef<OsStr>) -> Command {
        command_in(&self.client_ns, program)
    }

    /// Moves the calling thread into the target namespace until the guard is dropped.
    pub fn enter_target_thread(&self) -> Result<NetnsGuard, LabError> {
        enter_ns(&self.target_ns)
    }

    /// Moves the calling thread into the client namespace until the guard is dropped.
    pub fn enter_client_thread(&self) -> Result<NetnsGuard, LabError> {
        enter_ns(&self.client_ns)
    }

    /// Adds another veth pair between the same two namespaces, both ends up, shaped by
    /// `opts`. Its ends are named `xbt<n>-<tag>` and `xbc<n>-<tag>` (`n` counts the links
    /// added, from 1); it goes away with the namespaces when the lab is dropped.
    pub fn add_link(&mut self, opts: LabOptions) -> Result<Link, LabError> {
        let n = self.extra_links.len() + 1;
        let (target_if, client_if) = link_names(n, &self.tag);
        self.create_veth(&target_if, &client_if, &opts)?;
        let link = Link {
            target_mac: read_mac(&self.target_ns, &target_if)?,
            client_mac: read_mac(&self.client_ns, &client_if)?,
            target_if,
            client_if,
        };
        self.extra_links.push(link.clone());
        Ok(link)
    }

    /// Every veth pair of the lab: the one [`Lab::new`] made first, then those
    /// [`Lab::add_link`] added, in order.
    pub fn links(&self) -> Vec<Link> {
        let mut links = vec![Link {
            target_if: self.target_if.clone(),
            client_if: self.client_if.clone(),
            target_mac: self.target_mac,
            client_mac: self.client_mac,
        }];
        links.extend(self.extra_links.iter().cloned());
        links
    }

    /// `ip -n <ns> ARGS` in the namespace of `side` (e.g. `["link", "set", "dev", X, "down"]`).
    pub fn ip(&self, side: Side, args: &[&str]) -> Result<Output, LabError> {
        let ns = match side {
            Side::Target => &self.target_ns,
            Side::Client => &self.client_ns,
        };
        run(Command::new("ip").args(["-n", ns]).args(args))
    }

    /// Sets the interface `ifname` in the namespace of `side` up or down.
    pub fn set_link_state(&self, side: Side, ifname: &str, up: bool) -> Result<(), LabError> {
        let state = if up { "up" } else { "down" };
        self.ip(side, &["link", "set", "dev", ifname, state])
            .map(drop)
    }

    /// Creates the veth pair `target_if` (in the target namespace) / `client_if` (in the
    /// client namespace) and brings both ends (and each namespace's `lo`) up.
    fn create_veth(
        &self,
        target_if: &str,
        client_if: &str,
        opts: &LabOptions,
    ) -> Result<(), LabError> {
        let mut add = Command::new("ip");
        add.args(["link", "add", "name", target_if]);
        queue_args(&mut add, opts);
        add.args([
            "netns",
            &self.target_ns,
            "type",
            "veth",
            "peer",
            "name",
            client_if,
        ]);
        queue_args(&mut add, opts);
        add.args(["netns", &self.client_ns]);
        run(&mut add)?;

        for (ns, ifname) in [(&self.target_ns, target_if), (&self.client_ns, client_if)] {
            if let Some(mtu) = opts.mtu {
                let mtu = mtu.to_string();
                let args = ["-n", ns, "link", "set", "dev", ifname, "mtu", &mtu];
                run(Command::new("ip").args(args))?;
            }
            run(Command::new("ip").args(["-n", ns, "link", "set", "dev", "lo", "up"]))?;
            run(Command::new("ip").args(["-n", ns, "link", "set", "dev", ifname, "up"]))?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace destroys the veth end in it, and with it the peer.
        for ns in self.created.iter().rev() {
            if let Err(e) = run(Command::new("ip").args(["netns", "delete", ns])) {
                eprintln!("xblade-lab: cleanup: {e}");
            }
        }
    }
}

/// `ip netns exec <ns> <program>`.
pub fn command_in(ns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

/// Restores the thread's previous network namespace when dropped. Not `Send`: `setns(2)` acts
/// on the calling thread, so the guard must be dropped on the thread that entered.
#[must_use = "dropping the guard immediately moves the thread back to its previous namespace"]
#[derive(Debug)]
pub struct NetnsGuard {
    previous: File,
    _not_send: PhantomData<*const ()>,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        // SAFETY: `previous` is an open namespace file (/proc/thread-self/ns/net opened by
        // `enter_ns`); setns only reads the descriptor and changes this thread's namespace.
        let rc = unsafe { libc::setns(self.previous.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            eprintln!(
                "xblade-lab: cannot return the thread to its network namespace: {}",
                io::Error::last_os_error()
            );
        }
    }
}

/// Moves the *calling thread* into the named network namespace (`setns(2)` with
/// `CLONE_NEWNET` on `/run/netns/<name>`). Sockets created by this thread afterwards (AF_PACKET,
/// AF_XDP, netlink, and therefore `if_nametoindex`) live in that namespace; other threads are
/// not affected. The thread goes back to its previous namespace when the guard is dropped.
///
/// Note: /sys stays the host's view (it is tied to the mount, not to the thread), so sysfs
/// reads about the namespace's interfaces need `ip netns exec`, which remounts it.
pub fn enter_ns(name: &str) -> Result<NetnsGuard, LabError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(LabError::InvalidNamespace(name.to_owned()));
    }
    let self_path = Path::new("/proc/thread-self/ns/net");
    let previous = File::open(self_path).map_err(|source| LabError::Io {
        path: self_path.to_owned(),
        source,
    })?;
    let path = Path::new(NETNS_RUN_DIR).join(name);
    let target = File::open(&path).map_err(|source| LabError::Io {
        path: path.clone(),
        source,
    })?;
    // SAFETY: `target` is an open file descriptor for the duration of the call; setns does not
    // retain it, and only changes the calling thread's network namespace.
    let rc = unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(LabError::Setns {
            path,
            source: io::Error::last_os_error(),
        });
    }
    Ok(NetnsGuard {
        previous,
        _not_send: PhantomData,
    })
}

/// `true` when running as root. Otherwise prints why the calling test is skipped and returns
/// `false`: `if !xblade_lab::require_root() { return; }`.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        return true;
    }
    eprintln!(
        "skipped: this test needs root (network namespaces, veth, XDP, AF_XDP); run it as root \
         as CI does"
    );
    false
}

/// Deletes lab namespaces (`xbl<pid>-...`) whose creating process no longer exists, e.g. after a
/// test run was killed. Best effort; returns how many were deleted.
pub fn remove_stale() -> usize {
    let Ok(entries) = fs::read_dir(NETNS_RUN_DIR) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(pid) = owner_pid(name) else { continue };
        if Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        match run(Command::new("ip").args(["netns", "delete", name])) {
            Ok(_) => removed += 1,
            Err(e) => eprintln!("xblade-lab: removing stale namespace: {e}"),
        }
    }
    removed
}

/// The pid in a lab namespace name `xbl<pid>-...`, or `None` for any other name.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NS_PREFIX)?;
    let (pid, _) = rest.split_once('-')?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

fn sanitise_tag(tag: &str) -> String {
    let tag: String = tag
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(MAX_TAG_LEN)
        .collect();
    if tag.is_empty() {
        "lab".to_owned()
    } else {
        tag
    }
}

/// Names of the `n`-th added link's ends: `xbt<n>-<tag>` and `xbc<n>-<tag>`, the tag cut so
/// that each fits `IFNAMSIZ` (15 bytes and the NUL).
fn link_names(n: usize, tag: &str) -> (String, String) {
    const MAX_IFNAME: usize = 15;
    let prefix_len = format!("xbt{n}-").len();
    let tag: String = tag
        .chars()
        .take(MAX_IFNAME.saturating_sub(prefix_len))
        .collect();
    (format!("xbt{n}-{tag}"), format!("xbc{n}-{tag}"))
}

fn queue_args(cmd: &mut Command, opts: &LabOptions) {
    if let Some(rx) = opts.rx_queues {
        cmd.args(["numrxqueues", &rx.to_string()]);
    }
    if let Some(tx) = opts.tx_queues.or(opts.rx_queues) {
        cmd.args(["numtxqueues", &tx.to_string()]);
    }
}

/// Turns IPv6 off in `ns` (for interfaces created afterwards too). Silently does nothing on a
/// kernel without IPv6.
fn disable_ipv6(ns: &str) -> Result<(), LabError> {
    let dir = Path::new("/proc/sys/net/ipv6/conf");
    // /proc/sys/net follows the netns of the thread that opens the file, so a scoped thread is
    // enough; no process needs to be spawned.
    std::thread::scope(|s| {
        s.spawn(|| {
            let _guard = enter_ns(ns)?;
            if !dir.exists() {
                return Ok(());
            }
            for which in ["default", "all"] {
                let path = dir.join(which).join("disable_ipv6");
                fs::write(&path, "1").map_err(|source| LabError::Io { path, source })?;
            }
            Ok(())
        })
        .join()
        .unwrap_or(Err(LabError::ThreadPanicked("disabling IPv6")))
    })
}

fn read_mac(ns: &str, ifname: &str) -> Result<[u8; 6], LabError> {
    let out = run(Command::new("ip").args(["-n", ns, "-o", "link", "show", "dev", ifname]))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    let mac = words
        .by_ref()
        .find(|w| *w == "link/ether")
        .and_then(|_| words.next())
        .and_then(parse_mac);
    mac.ok_or_else(|| LabError::NoMac {
        ns: ns.to_owned(),
        ifname: ifname.to_owned(),
    })
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn run(cmd: &mut Command) -> Result<Output, LabError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|source| LabError::Spawn {
        program: program.clone(),
        source,
    })?;
    if out.status.success() {
        return Ok(out);
    }
    let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
    Err(LabError::Command {
        command: format!("{program} {}", args.join(" ")),
        status: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_only_lab_names() {
        assert_eq!(owner_pid("xbl1234-0-abc-t"), Some(1234));
        assert_eq!(owner_pid("xbl1234-"), Some(1234));
        assert_eq!(owner_pid("xbl-1-x"), None);
        assert_eq!(owner_pid("xblx1-1"), None);
        assert_eq!(owner_pid("xbl12"), None);
        assert_eq!(owner_pid("other123-1"), None);
    }

    #[test]
    fn tags_fit_interface_names() {
        assert_eq!(sanitise_tag("My Test/öß-long-name"), "mytestlo");
        assert_eq!(sanitise_tag("--"), "lab");
        // "xbt-" + 8 characters = 12 < IFNAMSIZ (16, including the NUL).
        assert!(format!("xbt-{}", sanitise_tag("abcdefghijklmnop")).len() <= 15);
    }

    #[test]
    fn added_link_names_fit_interface_names() {
        assert_eq!(
            link_names(1, "abcdefgh"),
            ("xbt1-abcdefgh".to_owned(), "xbc1-abcdefgh".to_owned())
        );
        let (t, c) = link_names(123_456, "abcdefgh");
        assert!(t.len() <= 15 && c.len() <= 15, "{t} {c}");
        assert!(t.starts_with("xbt123456-") && c.starts_with("xbc123456-"));
        assert_ne!(link_names(1, "x"), link_names(2, "x"));
    }

    #[test]
    fn macs_parse() {
        assert_eq!(
            parse_mac("02:1a:ff:00:9b:10"),
            Some([0x02, 0x1a, 0xff, 0x00, 0x9b, 0x10])
        );
        assert_eq!(parse_mac("02:1a:ff:00:9b"), None);
        assert_eq!(parse_mac("02:1a:ff:00:9b:10:11"), None);
        assert_eq!(parse_mac("zz:1a:ff:00:9b:10"), None);
    }

    #[test]
    fn lab_lifecycle() {
        if !require_root() {
            return;
        }
        let lab = Lab::new(
            "lifecycle",
            LabOptions {
                rx_queues: Some(2),
                mtu: Some(3000),
                ..LabOptions::default()
            },
        )
        .expect("lab");
        let (t, c) = (lab.target_ns().to_owned(), lab.client_ns().to_owned());
        assert!(Path::new(NETNS_RUN_DIR).join(&t).exists());
        assert_ne!(lab.target_mac(), lab.client_mac());
        let out = lab
            .command_in_target("ip")
            .args(["-o", "-d", "link", "show", "dev", lab.target_if()])
            .output()
            .expect("ip");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("mtu 3000"), "{text}");
        assert!(text.contains("numrxqueues 2"), "{text}");
        {
            let _g = lab.enter_client_thread().expect("setns");
            let name = std::ffi::CString::new(lab.client_if()).expect("cstring");
            // SAFETY: `name` is a valid NUL-terminated string.
            assert_ne!(unsafe { libc::if_nametoindex(name.as_ptr()) }, 0);
        }
        let name = std::ffi::CString::new(lab.client_if()).expect("cstring");
        // SAFETY: `name` is a valid NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert_eq!(index, 0, "guard restored the ns");
        drop(lab);
        assert!(!Path::new(NETNS_RUN_DIR).join(&t).exists());
        assert!(!Path::new(NETNS_RUN_DIR).join(&c).exists());
    }

    #[test]
    fn added_links_join_the_same_namespaces() {
        if !require_root() {
            return;
        }
        let mut lab = Lab::new("links", LabOptions::default()).expect("lab");
        let second = lab
            .add_link(LabOptions {
                mtu: Some(2000),
                ..LabOptions::default()
            })
            .expect("second link");
        let third = lab.add_link(LabOptions::default()).expect("third link");
        let links = lab.links();
        assert_eq!(links.len(), 3);
        assert_eq!(links[0].target_if, lab.target_if());
        assert_eq!(links[0].target_mac, lab.target_mac());
        assert_eq!((&links[1], &links[2]), (&second, &third));
        let mut macs: Vec<[u8; 6]> = links
            .iter()
            .flat_map(|l| [l.target_mac, l.client_mac])
            .collect();
        macs.sort_unstable();
        macs.dedup();
        assert_eq!(macs.len(), 6, "every end has its own MAC");

        let show = |side, ifname: &str| {
            let out = lab
                .ip(side, &["-o", "link", "show", "dev", ifname])
                .expect("ip link show");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let text = show(Side::Target, &second.target_if);
        assert!(text.contains("mtu 2000") && text.contains("UP"), "{text}");
        let text = show(Side::Client, &third.client_if);
        assert!(text.contains("UP"), "{text}");

        lab.set_link_state(Side::Target, &third.target_if, false)
            .expect("down");
        let text = show(Side::Target, &third.target_if);
        assert!(!text.contains(",UP"), "{text}");
        lab.set_link_state(Side::Target, &third.target_if, true)
            .expect("up");
        let text = show(Side::Target, &third.target_if);
        assert!(text.contains(",UP"), "{text}");

        let t = lab.target_ns().to_owned();
        drop(lab);
        assert!(!Path::new(NETNS_RUN_DIR).join(&t).exists());
    }
}

/// A scratch directory for a test's images and logs, removed with everything in it on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/xblade-test-PID-TAG-NANOS`. Panics if it cannot: for tests only.
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("xblade-test-{}-{tag}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    /// A sparse file of `bytes` bytes in this directory.
    pub fn image(&self, name: &str, bytes: u64) -> PathBuf {
        let path = self.0.join(name);
        std::fs::File::create(&path)
            .and_then(|f| f.set_len(bytes))
            .expect("create image");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
