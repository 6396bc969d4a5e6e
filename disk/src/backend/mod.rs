//! Block back ends: what virtio-blk reads and writes, whatever the format behind it.

mod mapcache;
mod qcow2;
mod raw;

pub use self::qcow2::Qcow2Backend;
pub(crate) use self::qcow2::resolve_backing;
pub use self::raw::RawBackend;

use crate::probe::{self, Format};
use crate::qcow2::{Policy, Qcow2Error};
use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut};
use std::path::{Path, PathBuf};

/// Errors from a block back end.
pub type BlockResult<T> = io::Result<T>;

/// What virtio-blk needs from a disk, whatever its format. Methods take `&self` so one back end
/// can be shared by the device thread and the control thread (e.g. to report counters).
pub trait BlockBackend: Send + Sync {
    /// Virtual size in bytes (what the guest sees).
    fn size(&self) -> u64;
    /// True when writes, discards and write-zeroes are refused.
    fn read_only(&self) -> bool;
    /// Fills `buf` from `offset`; reading past the end is an error.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> BlockResult<()>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> BlockResult<()>;
    /// Makes every completed write durable (fdatasync on the files behind it).
    fn flush(&self) -> BlockResult<()>;
    /// Deallocates a range where the format can; reads of it then return zeroes or old data.
    fn discard(&self, offset: u64, len: u64) -> BlockResult<()>;
    /// Makes a range read as zeroes, deallocating it when `unmap` is set and the format can.
    fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> BlockResult<()>;

    /// How the range from `offset` starts: whether it is known to read as zeroes, and for how
    /// many bytes (at most `len`, at least 1 when `len > 0`). Converters use it to stay sparse.
    fn block_status(&self, offset: u64, len: u64) -> BlockResult<(BlockStatus, u64)> {
        let _ = offset;
        Ok((BlockStatus::Data, len))
    }

    /// Scatter read: fills `bufs` in order from `offset` (one request, several guest buffers).
    fn read_vectored_at(&self, bufs: &mut [IoSliceMut<'_>], mut offset: u64) -> BlockResult<()> {
        for buf in bufs.iter_mut() {
            self.read_at(buf, offset)?;
            offset += buf.len() as u64;
        }
        Ok(())
    }
    /// Gather write: writes `bufs` in order from `offset`.
    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], mut offset: u64) -> BlockResult<()> {
        for buf in bufs {
            self.write_at(buf, offset)?;
            offset += buf.len() as u64;
        }
        Ok(())
    }
}

/// What a range of a disk holds, as far as the format knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockStatus {
    /// May hold data (read it to know).
    Data,
    /// Reads as zeroes without being read.
    Zero,
}

/// How to open a disk.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Refuse writes, discards and write-zeroes; open the files read-only.
    pub read_only: bool,
    /// The format the caller knows the disk has; `None` probes the content. A known format is
    /// safer: a guest that writes a qcow2 header into its raw disk cannot make it a qcow2 then.
    /// `Raw` is trusted as given (the bytes are never interpreted); `Qcow2` must match.
    pub format: Option<Format>,
    /// Directories a backing file may live in (the base-image cache). Empty: any qcow2 with a
    /// backing file is refused.
    pub trusted_backing_dirs: Vec<PathBuf>,
    /// Also walk every L2 table before opening (slower; the store does this on upload).
    pub deep_check: bool,
}

impl OpenOptions {
    /// Read-write, format probed, no backing files allowed.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets read-only mode.
    pub fn read_only(mut self, ro: bool) -> Self {
        self.read_only = ro;
        self
    }
    /// Sets the expected format.
    pub fn format(mut self, format: Format) -> Self {
        self.format = Some(format);
        self
    }
    /// Allows backing files under `dir`.
    pub fn trust_backing_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.trusted_backing_dirs.push(dir.into());
        self
    }
}

/// Longest backing chain followed.
pub const MAX_CHAIN_DEPTH: usize = 16;

/// Why a disk could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The disk.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The content is not the format the caller said.
    #[error("{path}: expected {expected} but the content is {actual}")]
    FormatMismatch {
        /// The disk.
        path: PathBuf,
        /// Format the caller gave.
        expected: Format,
        /// Format probed.
        actual: Format,
    },
    /// A format we cannot serve as a disk.
    #[error("{path}: {format} disks are not supported (only raw and qcow2)")]
    Unsupported {
        /// The disk.
        path: PathBuf,
        /// Its format.
        format: Format,
    },
    /// The qcow2 metadata failed validation.
    #[error("{path}: refused: {source}")]
    Refused {
        /// The disk.
        path: PathBuf,
        /// The reason.
        #[source]
        source: Qcow2Error,
    },
    /// A backing file outside the trusted directories, without a recorded format, or too deep.
    #[error("{path}: backing file {backing:?} refused: {why}")]
    Backing {
        /// The disk.
        path: PathBuf,
        /// The backing file name as written in the image.
        backing: String,
        /// Why.
        why: String,
    },
    /// imago failed to open the validated image.
    #[error("{path}: opening the qcow2 image: {source}")]
    Qcow2 {
        /// The disk.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

/// Opens `path` as a block back end: the format is probed from the content (or checked against
/// `opts.format`), qcow2 metadata is validated, backing files are followed only into trusted
/// directories.
pub fn open_disk(
    path: impl AsRef<Path>,
    opts: &OpenOptions,
) -> Result<Box<dyn BlockBackend>, OpenError> {
    let path = path.as_ref();
    if opts.format == Some(Format::Raw) {
        // A disk the caller knows is raw is read as raw whatever its bytes look like, as qemu
        // does with format=raw: a guest may legitimately store a qcow2 image on its disk, and
        // reading it as plain bytes can reach nothing outside it.
        return Ok(Box::new(
            RawBackend::open(path, opts.read_only).map_err(io_err(path))?,
        ));
    }
    let (file, format) = open_checked(path, opts.read_only, opts.format)?;
    match format {
        Format::Raw => Ok(Box::new(
            RawBackend::from_file(file, opts.read_only).map_err(io_err(path))?,
        )),
        Format::Qcow2 => Ok(Box::new(Qcow2Backend::open_file(file, path, opts)?)),
        other => Err(OpenError::Unsupported {
            path: path.to_owned(),
            format: other,
        }),
    }
}

/// Opens a file and checks its content against the expected format.
pub(crate) fn open_checked(
    path: &Path,
    read_only: bool,
    expected: Option<Format>,
) -> Result<(File, Format), OpenError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(path)
        .map_err(io_err(path))?;
    let actual = probe::probe(&file).map_err(io_err(path))?;
    // An ISO is plain bytes to a disk: it may be opened as raw.
    let compatible = |e: Format| e == actual || (e == Format::Raw && actual == Format::Iso);
    match expected {
        Some(e) if !compatible(e) => Err(OpenError::FormatMismatch {
            path: path.to_owned(),
            expected: e,
            actual,
        }),
        Some(e) => Ok((file, e)),
        None if actual == Format::Iso => Ok((file, Format::Raw)),
        None => Ok((file, actual)),
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OpenError + '_ {
    move |source| OpenError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The validation policy a disk open applies.
pub(crate) fn policy_for(opts: &OpenOptions) -> Policy {
    Policy {
        allow_backing: !opts.trusted_backing_dirs.is_empty(),
        deep: opts.deep_check,
        ..Policy::default()
    }
}

/// Checks a bounds-checked request range.
pub(crate) fn check_range(size: u64, offset: u64, len: u64, what: &str) -> io::Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} of {len} bytes at {offset} is beyond the {size}-byte disk"),
        )),
    }
}

/// The error every mutating call on a read-only back end returns.
pub(crate) fn read_only_err() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, "the disk is read-only")
}
