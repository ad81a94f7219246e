//! Surviving SIGBUS on a mapped backing file.
//!
//! An access to a page of a `MAP_SHARED` file mapping that the file can no longer back
//! raises SIGBUS (mmap(2), "Errors"): the file was truncated below it, or (tmpfs) the page
//! is a hole the file system has no room to fill. pread(2) would have returned a short
//! count or ENOSPC; a mapped read or write must not kill a target with I/O in flight.
//!
//! Every mapped window is registered here ([`Guard`]). The handler (sigaction(2),
//! `SA_SIGINFO`) looks the fault address (`si_addr`) up among them. When a window holds it,
//! the handler marks the window poisoned and maps an anonymous page over the faulting page
//! (`mmap(MAP_FIXED | MAP_ANONYMOUS)`), so that the faulting instruction, restarted on
//! return, completes: reading zeros, or writing into a page nothing reads. The worker sees
//! the mark right after its copy ([`Guard::poisoned`]), answers that request with an ATA
//! error and serves the export with preadv/pwritev from then on. Any other address is not
//! ours: the disposition installed before this one runs (Rust's stack-overflow handler), or
//! the default action (the process dies with a core dump, as without this handler).
//!
//! Ordering: the handler stores the mark before it calls mmap; any thread that reads or
//! writes through the anonymous page does so after the kernel installed it, which a
//! replaced mapping makes visible to other CPUs only through a TLB shootdown (an IPI, a
//! full barrier on the receiving CPU), so a copy that touched the anonymous page always
//! finds the mark set when it looks afterwards.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Most windows registered at once; a window beyond it is not mapped (its export uses the
/// synchronous engine).
pub const MAX_GUARDED: usize = 1024;

/// One registered address range `[start, end)`. `end` is 0 when the slot is free and
/// [`CLAIMED`] while it is being filled; the handler only reads a slot whose `end` is a
/// real address (loaded with Acquire, after which `start` is valid).
struct Window {
    start: AtomicUsize,
    end: AtomicUsize,
    poisoned: AtomicBool,
}

const CLAIMED: usize = usize::MAX;

#[allow(clippy::declare_interior_mutable_const)] // the array initialiser of WINDOWS
const FREE: Window = Window {
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    poisoned: AtomicBool::new(false),
};

static WINDOWS: [Window; MAX_GUARDED] = [FREE; MAX_GUARDED];
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();
/// The outcome of the one installation attempt (an errno on failure), so that a failure
/// is reported to every later registration too, not only the first.
static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();

/// A registered window; unregistered on drop (before the caller unmaps it).
#[derive(Debug)]
pub struct Guard {
    slot: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("more than {MAX_GUARDED} mapped exports")]
    Full,
    #[error("sigaction(SIGBUS) failed: {0}")]
    Install(std::io::Error),
}

impl Guard {
    /// Registers `[start, start + len_bytes)`, installing the handler on first use.
    pub fn register(start: usize, len_bytes: usize) -> Result<Guard, GuardError> {
        install()?;
        let end = start + len_bytes;
        for (slot, window) in WINDOWS.iter().enumerate() {
            if window
                .end
                .compare_exchange(0, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                window.poisoned.store(false, Ordering::Relaxed);
                window.start.store(start, Ordering::Relaxed);
                // Pairs with the handler's Acquire load of `end`: it then sees `start`.
                window.end.store(end, Ordering::Release);
                return Ok(Guard { slot });
            }
        }
        Err(GuardError::Full)
    }

    /// True once an access to the window raised SIGBUS: some of its pages are no longer
    /// the file's.
    pub fn poisoned(&self) -> bool {
        WINDOWS[self.slot].poisoned.load(Ordering::Acquire)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // The handler stops matching the range before the owner unmaps it.
        WINDOWS[self.slot].end.store(0, Ordering::Release);
    }
}

/// Installs the handler once, remembering the disposition it replaces.
fn install() -> Result<(), GuardError> {
    let outcome = INSTALLED.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        PAGE_SIZE.store(usize::try_from(page).unwrap_or(4096), Ordering::Relaxed);
        // SAFETY: sigaction is plain old data; all-zero is a valid value (no flags, empty
        // mask, SIG_DFL), filled in below.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: as above.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid; the handler is an extern "C" function with the
        // SA_SIGINFO signature that only does async-signal-safe work (atomics, mmap(2),
        // sigaction(2), raise(3), or the previous handler).
        let rc = unsafe {
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGBUS, &action, &mut previous)
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EINVAL));
        }
        let _ = PREVIOUS.set(previous);
        Ok(())
    });
    outcome.map_err(|errno| GuardError::Install(std::io::Error::from_raw_os_error(errno)))
}

/// The registered window holding `addr`, if any.
fn window_of(addr: usize) -> Option<&'static Window> {
    WINDOWS.iter().find(|w| {
        let end = w.end.load(Ordering::Acquire);
        end != 0 && end != CLAIMED && (w.start.load(Ordering::Relaxed)..end).contains(&addr)
    })
}

extern "C" fn on_sigbus(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    if let Some(window) = window_of(addr) {
        window.poisoned.store(true, Ordering::SeqCst);
        let page_size = PAGE_SIZE.load(Ordering::Relaxed);
        let page = addr & !(page_size - 1);
        // SAFETY: the page lies inside a registered window, a mapping its owner keeps until
        // the guard is dropped; replacing one of its pages with anonymous memory changes
        // what the owner's copies read or write there, never memory anything else owns.
        let mapped = unsafe {
            libc::mmap(
                page as *mut libc::c_void,
                page_size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if mapped != libc::MAP_FAILED {
            return;
        }
    }
    // SAFETY: passes the kernel's arguments on unchanged.
    unsafe { chain(signal, info, context) }
}

/// What would have happened without this handler: the previous handler, or the default
/// action (restored, then the signal raised again, so the process dies of SIGBUS).
///
/// # Safety
/// Called from the SIGBUS handler with the kernel's arguments.
unsafe fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    if let Some(previous) = PREVIOUS.get() {
        let handler = previous.sa_sigaction;
        if handler != libc::SIG_DFL && handler != libc::SIG_IGN {
            if previous.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the previous disposition was installed with SA_SIGINFO, so the
                // address is a function with this signature.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(handler) };
                f(signal, info, context);
            } else {
                // SAFETY: without SA_SIGINFO the address is a sighandler(int).
                let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
                f(signal);
            }
            return;
        }
    }
    // SAFETY: all-zero is SIG_DFL with an empty mask; raise(3) and sigaction(2) are
    // async-signal-safe. SIGBUS is blocked while this handler runs, so the raised one is
    // delivered (and kills) right after it returns.
    unsafe {
        let default: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut());
        libc::raise(signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared mapping of a file on /dev/shm, truncated to nothing: every access raises
    /// SIGBUS. The guard turns it into a poisoned mark and zeros.
    #[test]
    fn a_truncated_mapping_poisons_instead_of_killing() {
        let path = std::env::temp_dir().join(format!("xblade-sigbus-{}", std::process::id()));
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(2 * 4096).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh shared mapping of an open file, unmapped below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * 4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let guard = Guard::register(base as usize, 2 * 4096).unwrap();
        // SAFETY: inside the mapping.
        unsafe { base.cast::<u8>().write_volatile(7) };
        assert!(!guard.poisoned());
        file.set_len(0).unwrap();
        // SAFETY: inside the mapping; the page is gone from the file, so this faults and
        // the handler replaces it.
        let read = unsafe { base.cast::<u8>().add(4096).read_volatile() };
        assert_eq!(read, 0);
        assert!(guard.poisoned(), "the fault was seen");
        drop(guard);
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(base, 2 * 4096) };
        std::fs::remove_file(&path).unwrap();
    }
}
