//! A thin wrapper over an epoll(7) instance: `epoll_create1(2)` and `epoll_ctl(2)`. Each
//! registered descriptor's `epoll_event.data` is the descriptor itself. The instance's own
//! descriptor is what the control loop polls for `POLLIN` (readable when any registered
//! descriptor is ready); the owner then serves every descriptor it holds.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An epoll instance (`EPOLL_CLOEXEC`), closed on drop.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// `epoll_create1(EPOLL_CLOEXEC)`.
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall; the result is checked and owned at once.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
        })
    }

    /// `EPOLL_CTL_ADD`: watch `fd` for `events` (`EPOLLIN`, `EPOLLOUT`, ...).
    pub fn add(&self, fd: RawFd, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events)
    }

    /// `EPOLL_CTL_MOD`: watch `fd` for `events` instead.
    pub fn modify(&self, fd: RawFd, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events)
    }

    /// `EPOLL_CTL_DEL`. Closing `fd` removes it too, unless the descriptor was duplicated;
    /// this keeps the set exact either way.
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events,
            u64: fd as u64,
        };
        // SAFETY: `event` is a valid epoll_event for the duration of the call (the kernel
        // copies it; EPOLL_CTL_DEL ignores it); `self.fd` is an open epoll instance, and a
        // bad `fd` is an error the kernel reports, not undefined behaviour.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut event) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn readable(epoll: &Epoll) -> bool {
        let mut pfd = libc::pollfd {
            fd: epoll.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
    }

    #[test]
    fn add_modify_delete() {
        let epoll = Epoll::new().unwrap();
        let (a, mut b) = UnixStream::pair().unwrap();
        epoll.add(a.as_raw_fd(), libc::EPOLLIN as u32).unwrap();
        assert!(!readable(&epoll), "nothing to read yet");
        std::io::Write::write_all(&mut b, b"x").unwrap();
        assert!(readable(&epoll));
        epoll.modify(a.as_raw_fd(), 0).unwrap();
        assert!(!readable(&epoll), "no events asked for");
        epoll.delete(a.as_raw_fd()).unwrap();
        assert_eq!(
            epoll.modify(a.as_raw_fd(), 0).unwrap_err().raw_os_error(),
            Some(libc::ENOENT)
        );
        assert!(epoll.add(-1, libc::EPOLLIN as u32).is_err());
    }
}
