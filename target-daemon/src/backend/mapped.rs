//! The mapped engine: a memory-backed file's export window mapped into the process
//! (mmap(2), `MAP_SHARED`), so that a read or a write is a memcpy between the window and the
//! request's frames: no system call, no page-cache lookup (`filemap_get_entry`) per request.
//! On tmpfs those two were 40 % of the worker's CPU per 1 KiB read (docs/PERFORMANCE.md).
//!
//! Only for memory-backed files (tmpfs, ramfs): a page fault on a disk-backed file would
//! stall the worker for a disk read. A window of a fully allocated file is pre-faulted
//! (madvise(2) `MADV_POPULATE_READ`: for a shared mapping of tmpfs the page tables are made
//! writable too, as the mapping needs no write notification), so no request pays a fault;
//! a sparse one is faulted in as requests touch it (populating it would allocate its holes).
//! Pages the file loses while mapped (truncation, a hole on a full tmpfs) raise SIGBUS,
//! which [`super::sigbus`] turns into a poisoned window: the copy completes on an anonymous
//! page, the request is answered with an error, and the export falls back to the
//! synchronous engine.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

use super::sigbus::{Guard, GuardError};

/// Why a window could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("mmap failed: {0}")]
    Mmap(io::Error),
    #[error(transparent)]
    Guard(#[from] GuardError),
}

/// A mapped export window: file bytes `[window_offset_bytes, + window_len_bytes)`.
#[derive(Debug)]
pub struct MappedWindow {
    /// The mapping's first byte: file offset `map_offset_bytes` (page aligned).
    base: NonNull<u8>,
    map_len_bytes: usize,
    map_offset_bytes: u64,
    window_offset_bytes: u64,
    window_len_bytes: u64,
    writable: bool,
    /// Registers the mapping with the SIGBUS handler; dropped first in `Drop`, before the
    /// mapping goes away. `None` only while `map` sets it up.
    guard: Option<Guard>,
}

// SAFETY: the window is plain memory shared with the kernel's page cache (like the UMEM):
// the struct only holds its address, which any thread may copy to or from; concurrent
// copies to one range race exactly as concurrent pwrite(2)s to it would, which is the
// initiators' business. Nothing in it is thread-affine.
unsafe impl Send for MappedWindow {}
// SAFETY: as above; every method takes `&self` and touches the window only through raw
// pointer copies, never through references.
unsafe impl Sync for MappedWindow {}

impl MappedWindow {
    /// Maps `window_len_bytes` of `file` from `window_offset_bytes`, writable unless
    /// `writable` is false; pre-faults it when `populate`.
    pub fn map(
        file: &File,
        window_offset_bytes: u64,
        window_len_bytes: u64,
        writable: bool,
        populate: bool,
    ) -> Result<MappedWindow, MapError> {
        let page = page_size() as u64;
        let map_offset_bytes = window_offset_bytes & !(page - 1);
        let map_len_bytes =
            usize::try_from(window_offset_bytes - map_offset_bytes + window_len_bytes)
                .map_err(|_| MapError::Mmap(io::Error::from_raw_os_error(libc::EOVERFLOW)))?;
        let protection = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a new mapping chosen by the kernel (no MAP_FIXED), of an open file; the
        // offset is page aligned. It is unmapped only in Drop.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len_bytes,
                protection,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                map_offset_bytes as libc::off_t,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(MapError::Mmap(io::Error::last_os_error()));
        }
        let base = NonNull::new(base.cast::<u8>()).expect("mmap never returns NULL on success");
        let mut window = MappedWindow {
            base,
            map_len_bytes,
            map_offset_bytes,
            window_offset_bytes,
            window_len_bytes,
            writable,
            guard: None,
        };
        window.guard = Some(Guard::register(base.as_ptr() as usize, map_len_bytes)?);
        if populate {
            // A failure leaves the pages to be faulted in on first use: not an error.
            // SAFETY: the range is the mapping made above.
            unsafe {
                libc::madvise(
                    base.as_ptr().cast(),
                    map_len_bytes,
                    libc::MADV_POPULATE_READ,
                )
            };
        }
        Ok(window)
    }

    /// True once the file lost pages under the window (see [`super::sigbus`]): it must not
    /// be used any more.
    pub fn poisoned(&self) -> bool {
        self.guard.as_ref().is_none_or(Guard::poisoned)
    }

    /// Copies file bytes from `offset_bytes` into `pieces`, in order. False when the range
    /// is outside the window or the window was poisoned (during this copy or before).
    ///
    /// # Safety
    /// Every piece must name memory the caller owns and nothing else touches during the call.
    pub unsafe fn read_into(&self, offset_bytes: u64, pieces: &[libc::iovec]) -> bool {
        let Some(mut at) = self.window_ptr(offset_bytes, pieces) else {
            return false;
        };
        for piece in pieces {
            // SAFETY: `window_ptr` checked that all the pieces' bytes lie in the window;
            // the pieces are the caller's (above) and cannot overlap a file mapping.
            unsafe {
                std::ptr::copy_nonoverlapping(at, piece.iov_base.cast::<u8>(), piece.iov_len);
                at = at.add(piece.iov_len);
            }
        }
        !self.poisoned()
    }

    /// Copies `pieces`, in order, to file bytes from `offset_bytes`. False when the range
    /// is outside the window, the window is read-only or it was poisoned.
    ///
    /// # Safety
    /// As for [`MappedWindow::read_into`].
    pub unsafe fn write_from(&self, offset_bytes: u64, pieces: &[libc::iovec]) -> bool {
        if !self.writable {
            return false;
        }
        let Some(mut at) = self.window_ptr(offset_bytes, pieces) else {
            return false;
        };
        for piece in pieces {
            // SAFETY: as in `read_into`, the other way round.
            unsafe {
                std::ptr::copy_nonoverlapping(piece.iov_base.cast::<u8>(), at, piece.iov_len);
                at = at.add(piece.iov_len);
            }
        }
        !self.poisoned()
    }

    /// The address of file byte `offset_bytes`, when the pieces' total from there lies in
    /// the window and the window is not poisoned.
    fn window_ptr(&self, offset_bytes: u64, pieces: &[libc::iovec]) -> Option<*mut u8> {
        let len: u64 = pieces.iter().map(|p| p.iov_len as u64).sum();
        let end = offset_bytes.checked_add(len)?;
        if offset_bytes < self.window_offset_bytes
            || end > self.window_offset_bytes + self.window_len_bytes
            || self.poisoned()
        {
            return None;
        }
        let delta = usize::try_from(offset_bytes - self.map_offset_bytes).ok()?;
        // SAFETY: delta + len <= map_len_bytes (checked above: the window lies in the map).
        Some(unsafe { self.base.as_ptr().add(delta) })
    }
}

impl Drop for MappedWindow {
    fn drop(&mut self) {
        // Unregister first: from here the handler no longer claims faults in the range.
        self.guard = None;
        // SAFETY: the mapping made in `map`; nothing uses it any more (the owner is being
        // dropped, and workers hold the backend through an Arc).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.map_len_bytes) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iov(buf: &mut [u8]) -> libc::iovec {
        libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        }
    }

    #[test]
    fn reads_and_writes_through_an_unaligned_window() {
        let path = std::env::temp_dir().join(format!("xblade-mapped-{}", std::process::id()));
        let data: Vec<u8> = (0..3 * 4096u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::options().read(true).write(true).open(&path).unwrap();
        // A window from sector 9 (not page aligned), 8 sectors long.
        let window = MappedWindow::map(&file, 9 * 512, 8 * 512, true, true).unwrap();
        let (mut a, mut b) = ([0u8; 1000], [0u8; 24]);
        // SAFETY: the pieces are local buffers.
        assert!(unsafe { window.read_into(9 * 512 + 10, &[iov(&mut a), iov(&mut b)]) });
        assert_eq!(&a[..], &data[9 * 512 + 10..9 * 512 + 1010]);
        assert_eq!(&b[..], &data[9 * 512 + 1010..9 * 512 + 1034]);
        let mut c = [0xabu8; 512];
        // SAFETY: as above.
        assert!(unsafe { window.write_from(16 * 512, &[iov(&mut c)]) });
        // Outside the window, on either side: refused, nothing copied.
        // SAFETY: as above.
        unsafe {
            assert!(!window.read_into(8 * 512, &[iov(&mut c)]));
            assert!(!window.write_from(17 * 512 - 1, &[iov(&mut [0u8; 2])]));
            assert!(!window.read_into(u64::MAX - 1, &[iov(&mut c)]));
        }
        drop(window);
        let after = std::fs::read(&path).unwrap();
        assert_eq!(&after[16 * 512..17 * 512], &[0xab; 512][..]);
        assert_eq!(&after[..16 * 512], &data[..16 * 512]);
        assert_eq!(&after[17 * 512..], &data[17 * 512..]);
        let read_only = MappedWindow::map(&file, 0, 4096, false, false).unwrap();
        // SAFETY: as above.
        assert!(!unsafe { read_only.write_from(0, &[iov(&mut c)]) });
        std::fs::remove_file(&path).unwrap();
    }
}
