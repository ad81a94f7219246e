//! The UMEM: one anonymous shared mapping that holds every packet frame of one socket.
//!
//! The first `frame_count * frame_size` bytes are registered with the kernel as the UMEM
//! (`XDP_UMEM_REG`, aligned chunk mode: frame `i` starts at UMEM address `i * frame_size`). An
//! optional tail (`extra_bytes`, e.g. bounce buffers) lives in the same mapping but is not given
//! to the kernel, so the whole mapping can be registered with io_uring as fixed buffers in one
//! piece.

use std::{io, ptr::NonNull};

use super::XskError;

/// `XDP_PACKET_HEADROOM`: the kernel reserves this much in front of every received packet
/// (on top of [`UmemConfig::frame_headroom`]).
pub const XDP_PACKET_HEADROOM: u32 = 256;
/// `XDP_UMEM_MIN_CHUNK_SIZE`: the smallest frame the kernel accepts.
pub const XDP_UMEM_MIN_CHUNK_SIZE: u32 = 2048;

/// Geometry of a UMEM and of the four rings of the socket that uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UmemConfig {
    /// Number of frames (UMEM chunks).
    pub frame_count: u32,
    /// Bytes per frame: a power of two from 2048 to the page size (4096 here; larger chunks
    /// are refused with EINVAL).
    pub frame_size: u32,
    /// Extra headroom the kernel leaves in front of each received packet, after its own
    /// `XDP_PACKET_HEADROOM` (256). 220 puts byte 36 of the packet (AoE sector data) at frame
    /// offset 512.
    pub frame_headroom: u32,
    /// Entries of each of the fill, completion, RX and TX rings: a power of two.
    pub ring_size: u32,
}

impl Default for UmemConfig {
    fn default() -> Self {
        Self {
            frame_count: 4096,
            frame_size: 4096,
            frame_headroom: 220,
            ring_size: 2048,
        }
    }
}

impl UmemConfig {
    /// Bytes of UMEM proper (`frame_count * frame_size`), or an error when that overflows.
    pub fn umem_len(&self) -> Result<usize, XskError> {
        (self.frame_count as usize)
            .checked_mul(self.frame_size as usize)
            .ok_or_else(|| {
                invalid(format!(
                    "{} frames of {} bytes overflow",
                    self.frame_count, self.frame_size
                ))
            })
    }

    /// Checks the rules the kernel enforces in `xdp_umem_reg()` and `xsk_init_queue()`, so
    /// that a bad configuration fails with a message instead of a bare EINVAL.
    pub fn validate(&self) -> Result<(), XskError> {
        if self.frame_count == 0 {
            return Err(invalid("frame_count must be at least 1".into()));
        }
        if !self.frame_size.is_power_of_two()
            || self.frame_size < XDP_UMEM_MIN_CHUNK_SIZE
            || self.frame_size as usize > page_size()
        {
            return Err(invalid(format!(
                "frame_size {} must be a power of two from {XDP_UMEM_MIN_CHUNK_SIZE} to the page \
                 size ({})",
                self.frame_size,
                page_size()
            )));
        }
        if self.frame_headroom >= self.frame_size - XDP_PACKET_HEADROOM {
            return Err(invalid(format!(
                "frame_headroom {} leaves no room for data in a {}-byte frame (limit {})",
                self.frame_headroom,
                self.frame_size,
                self.frame_size - XDP_PACKET_HEADROOM - 1
            )));
        }
        if !self.ring_size.is_power_of_two() {
            return Err(invalid(format!(
                "ring_size {} must be a non-zero power of two",
                self.ring_size
            )));
        }
        self.umem_len().map(|_| ())
    }
}

fn invalid(reason: String) -> XskError {
    XskError::InvalidConfig { reason }
}

pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096)
}

/// One `mmap(MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE)` holding the UMEM frames and an
/// optional tail that is not part of the UMEM. Unmapped on drop.
///
/// The memory is shared with the kernel (and, through fixed buffers, with io_uring), which
/// write it concurrently; it is therefore only exposed as a raw pointer.
#[derive(Debug)]
pub struct UmemRegion {
    ptr: NonNull<u8>,
    len: usize,
    umem_len: usize,
    frame_count: u32,
    frame_size: u32,
}

// SAFETY: the region is a plain owned mapping with no thread affinity; it only hands out raw
// pointers, whose use is the caller's `unsafe` responsibility.
unsafe impl Send for UmemRegion {}
// SAFETY: all methods take `&self` and only read immutable fields.
unsafe impl Sync for UmemRegion {}

impl UmemRegion {
    /// Maps `frame_count * frame_size + extra_bytes`, rounded up to whole pages, zeroed and
    /// pre-faulted (`MAP_POPULATE`) so that the data path never takes a page fault.
    pub fn new(config: &UmemConfig, extra_bytes: usize) -> Result<Self, XskError> {
        config.validate()?;
        let umem_len = config.umem_len()?;
        let page = page_size();
        let len = umem_len
            .checked_add(extra_bytes)
            .and_then(|l| l.checked_next_multiple_of(page))
            .ok_or_else(|| {
                invalid(format!(
                    "UMEM of {umem_len} bytes plus {extra_bytes} extra bytes overflows"
                ))
            })?;
        // SAFETY: an anonymous mapping at an address of the kernel's choosing cannot alias
        // any existing Rust object; all arguments are valid and the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(XskError::UmemMap {
                len,
                source: io::Error::last_os_error(),
            });
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| XskError::UmemMap {
            len,
            source: io::Error::from_raw_os_error(libc::ENOMEM),
        })?;
        Ok(Self {
            ptr,
            len,
            umem_len,
            frame_count: config.frame_count,
            frame_size: config.frame_size,
        })
    }

    /// Start of the mapping (page aligned); UMEM address 0.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the whole mapping, tail included, in bytes (a multiple of the page size).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: a region has at least one frame. (For clippy's `len_without_is_empty`.)
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes registered as UMEM: `frame_count * frame_size`.
    pub fn umem_len(&self) -> usize {
        self.umem_len
    }

    /// Number of frames.
    pub fn frame_count(&self) -> u32 {
        self.frame_count
    }

    /// Bytes per frame.
    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    /// UMEM address of the start of frame `index` (aligned mode: `index * frame_size`).
    pub fn frame_addr(&self, index: u32) -> u64 {
        u64::from(index) * u64::from(self.frame_size)
    }
}

impl Drop for UmemRegion {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe exactly the mapping created in `new`, unmapped only
        // here. Kernel users (AF_XDP, io_uring) pin the pages themselves, so unmapping cannot
        // free memory they still use.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        UmemConfig::default().validate().expect("valid");
    }

    #[test]
    fn rejects_bad_geometry() {
        let ok = UmemConfig::default();
        for bad in [
            UmemConfig {
                frame_count: 0,
                ..ok
            },
            UmemConfig {
                frame_size: 3000,
                ..ok
            },
            UmemConfig {
                frame_size: 1024,
                ..ok
            },
            UmemConfig {
                frame_size: 8192,
                ..ok
            },
            UmemConfig {
                frame_headroom: 4096 - 256,
                ..ok
            },
            UmemConfig {
                ring_size: 1000,
                ..ok
            },
            UmemConfig { ring_size: 0, ..ok },
        ] {
            let err = bad.validate().expect_err("invalid");
            assert!(
                err.to_string().starts_with("invalid UMEM configuration"),
                "{err}"
            );
        }
    }

    #[test]
    fn maps_frames_and_tail() {
        let cfg = UmemConfig {
            frame_count: 3,
            ..UmemConfig::default()
        };
        let region = UmemRegion::new(&cfg, 100).expect("mmap");
        assert_eq!(region.umem_len(), 3 * 4096);
        assert_eq!(region.len(), 4 * 4096, "tail rounded up to a page");
        assert_eq!(region.as_ptr() as usize % page_size(), 0);
        assert_eq!(region.frame_addr(2), 8192);
        // SAFETY: the mapping is `len` bytes, readable and writable, and nobody else uses it.
        unsafe {
            let last = region.as_ptr().add(region.len() - 1);
            assert_eq!(*last, 0);
            *last = 7;
            assert_eq!(*last, 7);
        }
    }
}
