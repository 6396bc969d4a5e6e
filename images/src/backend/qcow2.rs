//! qcow2 disks through imago, after our own validation has passed.

use super::{
    BlockBackend, BlockResult, BlockStatus, MAX_CHAIN_DEPTH, OpenError, OpenOptions, check_range,
    io_err, open_checked, policy_for, read_only_err,
};
use crate::probe::Format;
use crate::qcow2::validate;
use imago::file::File as ImagoFile;
use imago::io_buffers::{IoVector, IoVectorMut};
use imago::qcow2::Qcow2;
use imago::raw::Raw;
use imago::{DenyImplicitOpenGate, FormatAccess, FormatDriverBuilder, Mapping, StorageOpenOptions};
use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut};
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A qcow2 image (and its backing chain), served by imago.
///
/// imago's discard calls may invalidate mappings that concurrent requests hold, so reads and
/// writes share a read lock and discards take the write lock.
pub struct Qcow2Backend {
    access: RwLock<FormatAccess<ImagoFile>>,
    size: u64,
    read_only: bool,
}

impl std::fmt::Debug for Qcow2Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qcow2Backend")
            .field("size", &self.size)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl Qcow2Backend {
    /// Opens `path`, which must hold qcow2, validating it (and its backing chain) first.
    pub fn open(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<Self, OpenError> {
        let path = path.as_ref();
        let (file, _) = open_checked(path, opts.read_only, Some(Format::Qcow2))?;
        Self::open_file(file, path, opts)
    }

    /// Opens an already opened qcow2 file; `path` names it in errors and anchors relative
    /// backing file names.
    pub(crate) fn open_file(
        file: File,
        path: &Path,
        opts: &OpenOptions,
    ) -> Result<Self, OpenError> {
        let qcow2 = open_qcow2(file, path, opts, 0)?;
        let access = FormatAccess::new(qcow2);
        Ok(Qcow2Backend {
            size: access.size(),
            access: RwLock::new(access),
            read_only: opts.read_only,
        })
    }

    fn shared(&self) -> io::Result<RwLockReadGuard<'_, FormatAccess<ImagoFile>>> {
        self.access.read().map_err(|_| poisoned())
    }

    fn exclusive(&self) -> io::Result<RwLockWriteGuard<'_, FormatAccess<ImagoFile>>> {
        self.access.write().map_err(|_| poisoned())
    }

    fn writable(&self, offset: u64, len: u64, what: &str) -> io::Result<()> {
        if self.read_only {
            return Err(read_only_err());
        }
        check_range(self.size, offset, len, what)
    }
}

fn poisoned() -> io::Error {
    io::Error::other("qcow2 back end unusable: a thread panicked while using it")
}

impl BlockBackend for Qcow2Backend {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> BlockResult<()> {
        check_range(self.size, offset, buf.len() as u64, "read")?;
        self.shared()?.read(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> BlockResult<()> {
        self.writable(offset, buf.len() as u64, "write")?;
        self.shared()?.write(buf, offset)
    }

    fn read_vectored_at(&self, bufs: &mut [IoSliceMut<'_>], offset: u64) -> BlockResult<()> {
        let total: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        check_range(self.size, offset, total, "read")?;
        let list: Vec<IoSliceMut<'_>> = bufs
            .iter_mut()
            .map(|b| IoSliceMut::new(&mut b[..]))
            .collect();
        self.shared()?.readv(IoVectorMut::from(list), offset)
    }

    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> BlockResult<()> {
        let total: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        self.writable(offset, total, "write")?;
        self.shared()?.writev(IoVector::from(bufs.to_vec()), offset)
    }

    fn block_status(&self, offset: u64, len: u64) -> BlockResult<(BlockStatus, u64)> {
        check_range(self.size, offset, len, "block status")?;
        let access = self.shared()?;
        let (mapping, n) = access.get_mapping(offset, len)?;
        let status = match mapping {
            Mapping::Zero { .. } | Mapping::Eof { .. } => BlockStatus::Zero,
            _ => BlockStatus::Data,
        };
        Ok((status, n.clamp(len.min(1), len)))
    }

    fn flush(&self) -> BlockResult<()> {
        let access = self.shared()?;
        // flush() writes imago's cached metadata; sync() makes it and the data durable.
        access.flush()?;
        access.sync()
    }

    fn discard(&self, offset: u64, len: u64) -> BlockResult<()> {
        self.writable(offset, len, "discard")?;
        self.exclusive()?.discard_to_any(offset, len)
    }

    fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> BlockResult<()> {
        self.writable(offset, len, "write-zeroes")?;
        if unmap {
            self.exclusive()?.discard_to_zero(offset, len)
        } else {
            self.shared()?.write_zeroes(offset, len)
        }
    }
}

/// Validates `file` and opens it with imago, its backing chain opened by us (never by imago's
/// implicit opening) and any external data file refused.
fn open_qcow2(
    file: File,
    path: &Path,
    opts: &OpenOptions,
    depth: usize,
) -> Result<Qcow2<ImagoFile>, OpenError> {
    let refused = |source| OpenError::Refused {
        path: path.to_owned(),
        source,
    };
    let header = validate(&file, policy_for(opts)).map_err(refused)?.header;
    let backing = match &header.backing_file {
        None => None,
        Some(name) => Some(open_backing(
            path,
            name,
            header.backing_format.as_deref(),
            opts,
            depth,
        )?),
    };
    let storage = imago_file(file, path, !opts.read_only)?;
    Qcow2::<ImagoFile>::builder(storage)
        .write(!opts.read_only)
        .backing(backing)
        .data_file(None)
        .open(DenyImplicitOpenGate::default())
        .map_err(|source| OpenError::Qcow2 {
            path: path.to_owned(),
            source,
        })
}

fn imago_file(file: File, path: &Path, writable: bool) -> Result<ImagoFile, OpenError> {
    ImagoFile::from_open_file(
        file,
        StorageOpenOptions::new().filename(path).write(writable),
    )
    .map_err(io_err(path))
}

fn open_backing(
    image: &Path,
    name: &str,
    format: Option<&str>,
    opts: &OpenOptions,
    depth: usize,
) -> Result<FormatAccess<ImagoFile>, OpenError> {
    let refuse = |why: String| OpenError::Backing {
        path: image.to_owned(),
        backing: name.to_owned(),
        why,
    };
    if depth + 1 >= MAX_CHAIN_DEPTH {
        return Err(refuse(format!(
            "the backing chain is deeper than {MAX_CHAIN_DEPTH}"
        )));
    }
    let format = match format {
        Some("raw") | Some("file") => Format::Raw,
        Some("qcow2") => Format::Qcow2,
        Some(other) => return Err(refuse(format!("backing format {other:?} is not supported"))),
        None => {
            return Err(refuse(
                "the image records no backing format, and probing one is unsafe".into(),
            ));
        }
    };
    let resolved = resolve_backing(image, name, &opts.trusted_backing_dirs).map_err(refuse)?;
    let (file, format) = open_checked(&resolved, true, Some(format))?;
    let backing_opts = OpenOptions {
        read_only: true,
        format: Some(format),
        ..opts.clone()
    };
    match format {
        Format::Qcow2 => Ok(FormatAccess::new(open_qcow2(
            file,
            &resolved,
            &backing_opts,
            depth + 1,
        )?)),
        _ => {
            let raw = Raw::builder(imago_file(file, &resolved, false)?)
                .write(false)
                .open(DenyImplicitOpenGate::default())
                .map_err(|source| OpenError::Qcow2 {
                    path: resolved.clone(),
                    source,
                })?;
            Ok(FormatAccess::new(raw))
        }
    }
}

/// Resolves a backing file name (relative names are relative to the image's directory, as
/// qemu does) and accepts it only when it lies inside a trusted directory.
pub(crate) fn resolve_backing(
    image: &Path,
    name: &str,
    trusted: &[PathBuf],
) -> Result<PathBuf, String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    let candidate = Path::new(name);
    let candidate = if candidate.is_absolute() {
        candidate.to_path_buf()
    } else {
        let dir = image
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        dir.join(candidate)
    };
    let resolved = candidate
        .canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", candidate.display()))?;
    let meta = std::fs::metadata(&resolved).map_err(|e| format!("{}: {e}", resolved.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", resolved.display()));
    }
    let inside = trusted
        .iter()
        .filter_map(|d| d.canonicalize().ok())
        .any(|d| resolved.starts_with(&d));
    if !inside {
        return Err(format!(
            "{} is outside the trusted backing directories",
            resolved.display()
        ));
    }
    Ok(resolved)
}
