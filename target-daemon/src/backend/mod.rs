//! The backing store: a regular file or a block device, opened for io_uring.
//!
//! O_DIRECT is the default. The kernel says what alignment direct I/O needs
//! (statx(2) STATX_DIOALIGN: `stx_dio_offset_align`, `stx_dio_mem_align`); when sector
//! offsets cannot meet it (a 4Kn device: 4096-byte offsets) the file is opened for buffered
//! I/O instead, and when only buffer addresses cannot (memory alignment above what a frame
//! gives), the worker bounces through an aligned buffer. Either fallback is logged once.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use aoe_proto::SECTOR_SIZE;

pub mod mapped;
mod sigbus;

use mapped::{MapError, MappedWindow};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{}: no such file (create it first, e.g. `truncate -s 1G {}`)", .0.display(), .0.display())]
    NotFound(PathBuf),
    #[error("{}: permission denied (run as root, or give this user read{} access)", .path.display(), if *.write { "/write" } else { "" })]
    PermissionDenied { path: PathBuf, write: bool },
    #[error("{}: is a directory; export a regular file or a block device", .0.display())]
    IsDirectory(PathBuf),
    #[error("{}: not a regular file or block device", .0.display())]
    UnsupportedKind(PathBuf),
    #[error("{}: {size_bytes} bytes is smaller than one 512-byte sector", .path.display())]
    TooSmall { path: PathBuf, size_bytes: u64 },
    #[error("{}: the window of {length_sectors} sectors at sector {offset_sectors} does not fit in its {file_sectors} sectors (check -o/-l)", .path.display())]
    WindowOutside {
        path: PathBuf,
        offset_sectors: u64,
        length_sectors: u64,
        file_sectors: u64,
    },
    #[error("{}: io_engine mmap needs a file on tmpfs or ramfs (a page fault on this file would wait for its disk); use auto or uring", .0.display())]
    MapNeedsMemory(PathBuf),
    #[error("{}: mapping the export window failed: {source}", .path.display())]
    Map { path: PathBuf, source: MapError },
    #[error("null backend: '{0}' is not a size (e.g. null:64G)")]
    BadNullSize(String),
    #[error("{}: {what} failed: {source}", .path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
}

/// How the daemon wants the backing store opened.
#[derive(Clone, Debug)]
pub struct BackendOptions {
    pub path: PathBuf,
    pub read_only: bool,
    /// O_DSYNC: every write is durable before it completes (vblade `-s`).
    pub sync_writes: bool,
    /// The export window (`-o`): first sector.
    pub offset_sectors: u64,
    /// The export window (`-l`): length, or the rest of the file when `None`.
    pub length_sectors: Option<u64>,
}

/// How disk I/O reaches the backing store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoMode {
    /// No store at all: reads return zeros, writes are discarded (`null:SIZE`). Measures
    /// the network path alone, like SPDK's null bdev.
    Null,
    /// O_DIRECT; buffers must be aligned to `mem_align` bytes (else the worker bounces).
    Direct { mem_align: u32 },
    /// The page cache: no alignment constraints.
    Buffered,
}

/// The opened backing store.
#[derive(Debug)]
pub struct Backend {
    /// `None` for the null backend.
    file: Option<File>,
    pub path: PathBuf,
    pub io_mode: IoMode,
    /// Why O_DIRECT is not used, when it is not.
    pub buffered_reason: Option<String>,
    pub file_size_bytes: u64,
    /// Sectors exported (the window).
    pub size_sectors: u64,
    pub offset_sectors: u64,
    pub is_block_device: bool,
    /// The file lives in memory (tmpfs, ramfs): its I/O never waits for a device.
    pub memory_backed: bool,
    /// Every byte of the file has storage (st_blocks covers its size): no holes.
    pub fully_allocated: bool,
    /// The export window mapped into the process, for the mapped engine.
    mapping: Option<MappedWindow>,
}

impl Backend {
    pub fn open(options: &BackendOptions) -> Result<Backend, BackendError> {
        if let Some(spec) = options
            .path
            .to_str()
            .and_then(|p| p.strip_prefix(NULL_PREFIX))
        {
            return Backend::null(&options.path, spec);
        }
        let path = options.path.clone();
        let meta =
            std::fs::metadata(&path).map_err(|e| classify(&path, e, !options.read_only, "stat"))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            return Err(BackendError::IsDirectory(path));
        }
        let is_block_device = kind.is_block_device();
        if !kind.is_file() && !is_block_device {
            return Err(BackendError::UnsupportedKind(path));
        }

        let (offset_align, mem_align) = dio_alignment(&path);
        let direct_possible = offset_align.is_none_or(|a| a as usize <= SECTOR_SIZE);
        let mut flags = if options.sync_writes {
            libc::O_DSYNC
        } else {
            0
        };
        let mut buffered_reason = None;
        let file = if direct_possible {
            match open_with(&path, options.read_only, flags | libc::O_DIRECT) {
                Ok(file) => Some(file),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    buffered_reason = Some("the filesystem refuses O_DIRECT".to_owned());
                    None
                }
                Err(e) => return Err(classify(&path, e, !options.read_only, "open")),
            }
        } else {
            buffered_reason = Some(format!(
                "direct I/O needs {}-byte offsets and AoE addresses 512-byte sectors",
                offset_align.unwrap_or(0)
            ));
            None
        };
        let (file, io_mode) = match file {
            Some(file) => {
                let mem_align = mem_align.filter(|a| *a > 0).unwrap_or(SECTOR_SIZE as u32);
                (file, IoMode::Direct { mem_align })
            }
            None => {
                flags &= !libc::O_DIRECT;
                let file = open_with(&path, options.read_only, flags)
                    .map_err(|e| classify(&path, e, !options.read_only, "open"))?;
                (file, IoMode::Buffered)
            }
        };

        let file_size_bytes = if is_block_device {
            block_device_size(&file).map_err(|source| BackendError::Io {
                path: path.clone(),
                what: "BLKGETSIZE64",
                source,
            })?
        } else {
            meta.len()
        };
        let file_sectors = file_size_bytes / SECTOR_SIZE as u64;
        if file_sectors == 0 {
            return Err(BackendError::TooSmall {
                path,
                size_bytes: file_size_bytes,
            });
        }
        let offset_sectors = options.offset_sectors;
        let length_sectors = options
            .length_sectors
            .unwrap_or(file_sectors.saturating_sub(offset_sectors));
        if length_sectors == 0
            || offset_sectors
                .checked_add(length_sectors)
                .is_none_or(|end| end > file_sectors)
        {
            return Err(BackendError::WindowOutside {
                path,
                offset_sectors,
                length_sectors,
                file_sectors,
            });
        }
        Ok(Backend {
            file: Some(file),
            path,
            io_mode,
            buffered_reason,
            file_size_bytes,
            size_sectors: length_sectors,
            offset_sectors,
            is_block_device,
            memory_backed: false,
            fully_allocated: is_block_device
                || std::os::unix::fs::MetadataExt::blocks(&meta).saturating_mul(512)
                    >= file_size_bytes,
            mapping: None,
        }
        .with_memory_backed())
    }

    /// The null backend of `size` bytes (`null:SIZE`; SIZE takes K, M, G, T suffixes).
    fn null(path: &Path, size: &str) -> Result<Backend, BackendError> {
        let size_bytes =
            parse_size(size).ok_or_else(|| BackendError::BadNullSize(size.to_owned()))?;
        let size_sectors = size_bytes / SECTOR_SIZE as u64;
        if size_sectors == 0 {
            return Err(BackendError::TooSmall {
                path: path.to_owned(),
                size_bytes,
            });
        }
        Ok(Backend {
            file: None,
            path: path.to_owned(),
            io_mode: IoMode::Null,
            buffered_reason: None,
            file_size_bytes: size_bytes,
            size_sectors,
            offset_sectors: 0,
            is_block_device: false,
            memory_backed: true,
            fully_allocated: true,
            mapping: None,
        })
    }

    /// The descriptor io_uring registers; `None` for the null backend.
    pub fn raw_fd(&self) -> Option<RawFd> {
        self.file.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Maps the export window for the mapped engine ([`mapped`]): memory-backed files only.
    /// A fully allocated file is pre-faulted.
    pub fn map_window(&mut self, writable: bool) -> Result<(), BackendError> {
        let file = match &self.file {
            Some(file) if self.memory_backed => file,
            _ => return Err(BackendError::MapNeedsMemory(self.path.clone())),
        };
        let sector = SECTOR_SIZE as u64;
        let window = MappedWindow::map(
            file,
            self.offset_sectors * sector,
            self.size_sectors * sector,
            writable,
            self.fully_allocated,
        )
        .map_err(|source| BackendError::Map {
            path: self.path.clone(),
            source,
        })?;
        self.mapping = Some(window);
        Ok(())
    }

    /// The mapped export window, when the mapped engine serves this backend.
    pub fn mapping(&self) -> Option<&MappedWindow> {
        self.mapping.as_ref()
    }
}

impl Backend {
    /// Sets `memory_backed` from fstatfs(2)'s filesystem type.
    fn with_memory_backed(mut self) -> Backend {
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        const RAMFS_MAGIC: i64 = 0x8584_58f6;
        if let Some(file) = &self.file {
            // SAFETY: statfs is plain old data; all-zero is a valid value.
            let mut st: libc::statfs = unsafe { std::mem::zeroed() };
            // SAFETY: the descriptor is open and `st` is a valid out pointer.
            if unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } == 0 {
                #[allow(clippy::unnecessary_cast)]
                let kind = st.f_type as i64;
                self.memory_backed = kind == TMPFS_MAGIC || kind == RAMFS_MAGIC;
            }
        }
        self
    }
}

/// FILE arguments starting with this name the null backend.
pub const NULL_PREFIX: &str = "null:";

/// Parses `64M`, `10G`, `4096`... (the SIZE of `null:SIZE`) into bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last()? {
        (i, 'k' | 'K') => (&text[..i], 10),
        (i, 'm' | 'M') => (&text[..i], 20),
        (i, 'g' | 'G') => (&text[..i], 30),
        (i, 't' | 'T') => (&text[..i], 40),
        _ => (text, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

fn open_with(path: &Path, read_only: bool, flags: i32) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(!read_only)
        .custom_flags(flags | libc::O_CLOEXEC)
        .open(path)
}

fn classify(path: &Path, error: io::Error, write: bool, what: &'static str) -> BackendError {
    match error.kind() {
        io::ErrorKind::NotFound => BackendError::NotFound(path.to_owned()),
        io::ErrorKind::PermissionDenied => BackendError::PermissionDenied {
            path: path.to_owned(),
            write,
        },
        _ => BackendError::Io {
            path: path.to_owned(),
            what,
            source: error,
        },
    }
}

/// statx(2) with STATX_DIOALIGN: (`stx_dio_offset_align`, `stx_dio_mem_align`), each `None`
/// when the kernel or filesystem does not report it (or reports 0: direct I/O unsupported).
fn dio_alignment(path: &Path) -> (Option<u32>, Option<u32>) {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return (None, None);
    };
    // SAFETY: statx is plain old data; all-zero is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is NUL-terminated and outlives the call; stx is a valid out pointer.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            0,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    if rc != 0 || stx.stx_mask & libc::STATX_DIOALIGN == 0 || stx.stx_dio_offset_align == 0 {
        return (None, None);
    }
    (Some(stx.stx_dio_offset_align), Some(stx.stx_dio_mem_align))
}

/// ioctl(BLKGETSIZE64): a block device's size in bytes.
fn block_device_size(file: &File) -> io::Result<u64> {
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which is valid and aligned.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(path: &Path) -> BackendOptions {
        BackendOptions {
            path: path.to_owned(),
            read_only: false,
            sync_writes: false,
            offset_sectors: 0,
            length_sectors: None,
        }
    }

    fn temp_file(name: &str, len: u64) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("xblade-backend-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("image");
        File::create(&path).unwrap().set_len(len).unwrap();
        path
    }

    #[test]
    fn opens_a_file_and_computes_the_window() {
        let path = temp_file("window", 100 * 512 + 100);
        let b = Backend::open(&options(&path)).unwrap();
        assert_eq!(
            b.size_sectors, 100,
            "a partial trailing sector is not exported"
        );
        let b = Backend::open(&BackendOptions {
            offset_sectors: 10,
            length_sectors: Some(90),
            ..options(&path)
        })
        .unwrap();
        assert_eq!((b.offset_sectors, b.size_sectors), (10, 90));
        let b = Backend::open(&BackendOptions {
            offset_sectors: 10,
            ..options(&path)
        })
        .unwrap();
        assert_eq!(b.size_sectors, 90);
        for (offset, length) in [
            (10, Some(91)),
            (100, None),
            (0, Some(0)),
            (u64::MAX, Some(2)),
        ] {
            let e = Backend::open(&BackendOptions {
                offset_sectors: offset,
                length_sectors: length,
                ..options(&path)
            })
            .unwrap_err();
            assert!(
                matches!(e, BackendError::WindowOutside { .. }),
                "{offset} {length:?}: {e}"
            );
        }
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn null_backend_sizes() {
        let b = Backend::open(&options(Path::new("null:1G"))).unwrap();
        assert_eq!(
            (b.io_mode, b.size_sectors, b.raw_fd()),
            (IoMode::Null, 1 << 21, None)
        );
        assert_eq!(
            Backend::open(&options(Path::new("null:4096")))
                .unwrap()
                .size_sectors,
            8
        );
        for bad in [
            "null:",
            "null:x",
            "null:1Q",
            "null:100",
            "null:99999999999T",
        ] {
            assert!(Backend::open(&options(Path::new(bad))).is_err(), "{bad}");
        }
    }

    #[test]
    fn clear_errors_for_missing_tiny_and_directory() {
        let path = temp_file("errors", 511);
        let e = Backend::open(&options(&path)).unwrap_err();
        assert!(
            matches!(
                e,
                BackendError::TooSmall {
                    size_bytes: 511,
                    ..
                }
            ),
            "{e}"
        );
        let e = Backend::open(&options(&path.with_file_name("missing"))).unwrap_err();
        assert!(matches!(e, BackendError::NotFound(_)), "{e}");
        assert!(e.to_string().contains("no such file"));
        let e = Backend::open(&options(path.parent().unwrap())).unwrap_err();
        assert!(matches!(e, BackendError::IsDirectory(_)), "{e}");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
