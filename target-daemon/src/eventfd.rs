//! A thin wrapper over eventfd(2): a counter in the kernel that one thread makes readable
//! (write) and another polls for and resets (read). Non-blocking and close-on-exec.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK).
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: plain syscall; the result is checked and owned at once.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(EventFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Adds 1 to the counter: the descriptor becomes readable (POLLIN).
    pub fn signal(&self) {
        signal(self.fd())
    }

    /// Reads and zeroes the counter; returns it (0 when it was not signalled).
    pub fn reset(&self) -> u64 {
        reset(self.fd())
    }
}

/// [`EventFd::signal`] on a descriptor known only by number (the owner keeps it open).
pub fn signal(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64; a closed or wrong descriptor only fails.
    let rc = unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    if rc != 8 {
        // EAGAIN: the counter is at its maximum, i.e. already readable.
        tracing::debug!("eventfd write: {}", io::Error::last_os_error());
    }
}

/// [`EventFd::reset`] on a descriptor known only by number.
pub fn reset(fd: RawFd) -> u64 {
    let mut value = 0u64;
    // SAFETY: reads 8 bytes into a valid u64; a non-blocking eventfd that was not signalled
    // fails with EAGAIN and leaves `value` at 0.
    let rc = unsafe { libc::read(fd, (&mut value as *mut u64).cast(), 8) };
    if rc == 8 {
        value
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_then_reset() {
        let e = EventFd::new().unwrap();
        assert_eq!(e.reset(), 0);
        e.signal();
        e.signal();
        assert_eq!(e.reset(), 2);
        assert_eq!(e.reset(), 0);
    }
}
