//! The seccomp allowlist: the system calls xblade makes once it serves, nothing else.
//!
//! Derived by tracing (`strace -f`) the daemon after the drop point through everything it
//! does there: the data path (AF_XDP kicks, io_uring, the synchronous engine, FLUSH),
//! reloads (the config file, new backing files, state files, the XDP map updates,
//! io_uring file-table updates), `xbladectl` on the control socket, link events, the
//! once-a-second interface check, statistics (`XDP_STATISTICS`, per-CPU counter maps),
//! sd_notify, and the SIGHUP/SIGTERM shutdown with its summary. A metrics listener opened
//! before the drop point needs accept4, reads and writes, shutdown and epoll or poll, all
//! here; new threads need clone3, set_robust_list, rseq, mmap/mprotect without PROT_EXEC.
//!
//! Anything else fails with EPERM ([`MISMATCH`]; docs/PRIVILEGES.md says why not a kill).
//! Where an argument tells a harmless use from a dangerous one, the rule checks it:
//! `bpf` only on maps already open (no program load), `socket` only AF_UNIX (glibc's
//! if_nametoindex), `ioctl` only the interface and non-blocking requests, `mmap` and
//! `mprotect` never executable, `prctl` only the thread name, `clone` only threads.
//! execve, ptrace, mount, module loading, new io_uring instances, new AF_XDP or packet
//! sockets and every other call are refused.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

use super::PrivilegeError;

/// What a call outside the allowlist gets.
pub const MISMATCH: SeccompAction = SeccompAction::Errno(libc::EPERM as u32);

/// Calls allowed with any arguments.
const ALWAYS: &[libc::c_long] = &[
    // Files: config and state files, backing files added by a reload, /sys/class/net.
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_preadv2,
    libc::SYS_pwritev2,
    libc::SYS_openat,
    libc::SYS_close,
    libc::SYS_lseek,
    libc::SYS_statx,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_fstatfs,
    libc::SYS_fcntl,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_getdents64,
    libc::SYS_mkdirat,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_unlinkat,
    // io_uring on the rings created at start (IORING_REGISTER_FILES_UPDATE on reload).
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    // Sockets already open: AF_XDP kicks and XDP_STATISTICS, netlink, the control socket,
    // the metrics listener, the sd_notify socket.
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_getsockopt,
    libc::SYS_setsockopt,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_accept4,
    libc::SYS_shutdown,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_ppoll,
    // Memory (the allocator), threads, time and signals.
    libc::SYS_brk,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_futex,
    libc::SYS_clone3,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_yield,
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
    libc::SYS_clock_gettime,
    libc::SYS_gettimeofday,
    libc::SYS_getrandom,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_restart_syscall,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_tgkill,
    libc::SYS_uname,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// The same for the calls only x86_64 has (aarch64 has just the *at forms).
#[cfg(target_arch = "x86_64")]
const ALWAYS_X86_64: &[libc::c_long] = &[
    libc::SYS_poll,
    libc::SYS_epoll_wait,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_open,
    libc::SYS_rename,
    libc::SYS_mkdir,
    libc::SYS_unlink,
    libc::SYS_accept,
];
#[cfg(not(target_arch = "x86_64"))]
const ALWAYS_X86_64: &[libc::c_long] = &[];

/// bpf(2) commands on map and link fds already held (linux/bpf.h `enum bpf_cmd`).
const BPF_MAP_LOOKUP_ELEM: u64 = 1;
const BPF_MAP_UPDATE_ELEM: u64 = 2;
const BPF_MAP_DELETE_ELEM: u64 = 3;
const BPF_MAP_GET_NEXT_KEY: u64 = 4;
const BPF_OBJ_GET_INFO_BY_FD: u64 = 15;

/// ioctl(2) requests: if_nametoindex(3)/if_indextoname(3), FIONBIO, FIOCLEX, TCGETS.
#[allow(clippy::unnecessary_cast)] // `libc::Ioctl` is not u64 on every target.
const IOCTLS: &[u64] = &[
    libc::SIOCGIFINDEX as u64,
    libc::SIOCGIFNAME as u64,
    libc::FIONBIO as u64,
    libc::FIOCLEX as u64,
    libc::TCGETS as u64,
];

fn condition(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, PrivilegeError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(compile_error)
}

/// One rule per allowed value of argument `arg`.
fn any_of(arg: u8, values: &[u64]) -> Result<Vec<SeccompRule>, PrivilegeError> {
    values
        .iter()
        .map(|&v| {
            SeccompRule::new(vec![condition(arg, SeccompCmpOp::Eq, v)?]).map_err(compile_error)
        })
        .collect()
}

/// Argument `arg` has none of the bits in `mask` set.
fn without_bits(arg: u8, mask: u64) -> Result<Vec<SeccompRule>, PrivilegeError> {
    Ok(vec![SeccompRule::new(vec![condition(
        arg,
        SeccompCmpOp::MaskedEq(mask),
        0,
    )?])
    .map_err(compile_error)?])
}

fn compile_error(e: impl std::fmt::Display) -> PrivilegeError {
    PrivilegeError::Seccomp(e.to_string())
}

/// The allowlist, compiled for this machine's architecture.
pub fn allowlist() -> Result<BpfProgram, PrivilegeError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &call in ALWAYS.iter().chain(ALWAYS_X86_64) {
        rules.insert(call, Vec::new());
    }
    rules.insert(
        libc::SYS_bpf,
        any_of(
            0,
            &[
                BPF_MAP_LOOKUP_ELEM,
                BPF_MAP_UPDATE_ELEM,
                BPF_MAP_DELETE_ELEM,
                BPF_MAP_GET_NEXT_KEY,
                BPF_OBJ_GET_INFO_BY_FD,
            ],
        )?,
    );
    rules.insert(libc::SYS_socket, any_of(0, &[libc::AF_UNIX as u64])?);
    rules.insert(libc::SYS_ioctl, any_of(1, IOCTLS)?);
    rules.insert(libc::SYS_mmap, without_bits(2, libc::PROT_EXEC as u64)?);
    rules.insert(libc::SYS_mprotect, without_bits(2, libc::PROT_EXEC as u64)?);
    rules.insert(libc::SYS_prctl, any_of(0, &[libc::PR_SET_NAME as u64])?);
    // clone(2) only for a thread (glibc falls back to it where clone3 is missing); the
    // flags of clone3 are in memory a filter cannot read.
    rules.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![condition(
            0,
            SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
            libc::CLONE_THREAD as u64,
        )?])
        .map_err(compile_error)?],
    );
    let arch = std::env::consts::ARCH.try_into().map_err(compile_error)?;
    let filter =
        SeccompFilter::new(rules, MISMATCH, SeccompAction::Allow, arch).map_err(compile_error)?;
    filter.try_into().map_err(compile_error)
}

/// Installs the allowlist in every thread of the process (`SECCOMP_FILTER_FLAG_TSYNC`),
/// which also sets no_new_privs in each. Threads created later inherit it.
pub fn install() -> Result<(), PrivilegeError> {
    let program = allowlist()?;
    seccompiler::apply_filter_all_threads(&program).map_err(compile_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowlist_compiles() {
        let program = allowlist().unwrap();
        assert!(program.len() > 80, "{} instructions", program.len());
    }
}
