//! qcow2 disks through imago, after our own validation has passed.
//!
//! Reads and in-place writes go straight to the image files at offsets that imago looked up
//! once and [`MapCache`] remembers; anything that allocates, copies or frees clusters goes
//! through imago, which owns the metadata.

use super::mapcache::{Extent, MapCache, Target};
use super::{
    BlockBackend, BlockResult, BlockStatus, MAX_CHAIN_DEPTH, OpenError, OpenOptions, check_range,
    io_err, open_checked, policy_for, read_only_err,
};
use crate::probe::Format;
use crate::qcow2::validate;
use crate::readat::ReadAt;
use imago::file::File as ImagoFile;
use imago::qcow2::Qcow2;
use imago::raw::Raw;
use imago::{
    DenyImplicitOpenGate, FormatAccess, FormatDriverBuilder, Mapping, Storage, StorageOpenOptions,
};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A qcow2 image (and its backing chain), served by imago.
///
/// imago's discard calls may invalidate mappings that concurrent requests hold, so reads and
/// writes share a read lock and discards take the write lock.
pub struct Qcow2Backend {
    access: RwLock<FormatAccess<ImagoFile>>,
    /// The image and its backing files (by the names imago knows them), each a second handle on
    /// the file imago reads, for requests served from `map`.
    files: Files,
    map: MapCache,
    size: u64,
    read_only: bool,
}

/// Files of a chain, top first: (path as given to imago, our handle).
type Files = Vec<(PathBuf, File)>;

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
        let mut files = Files::new();
        let qcow2 = open_qcow2(file, path, opts, 0, &mut files)?;
        let access = FormatAccess::new(qcow2);
        Ok(Qcow2Backend {
            size: access.size(),
            access: RwLock::new(access),
            files,
            map: MapCache::default(),
            read_only: opts.read_only,
        })
    }

    /// Where guest offset `at` lives and for how many bytes (at most `max`, at least 1): from
    /// the cache, or asked of imago and remembered. `None`: only imago can serve it (compressed
    /// clusters, a storage we hold no handle for).
    fn locate(
        &self,
        access: &FormatAccess<ImagoFile>,
        at: u64,
        max: u64,
    ) -> io::Result<(Option<Target>, u64)> {
        if let Some((target, n)) = self.map.lookup(at) {
            return Ok((Some(target), n.min(max)));
        }
        let miss = self.map.miss(at, max);
        let (mapping, n) = access.get_mapping(at, miss.ahead.min(self.size - at))?;
        if n == 0 {
            return Ok((None, max));
        }
        let target = match mapping {
            Mapping::Raw {
                storage,
                offset,
                writable,
                ..
            } => storage.get_filename().and_then(|name| {
                let file = self.files.iter().position(|(p, _)| *p == name)?;
                Some(Target::Data {
                    file,
                    host: offset,
                    writable,
                })
            }),
            Mapping::Zero { .. } => Some(Target::Zero),
            _ => None,
        };
        if let Some(target) = target {
            let run = Extent {
                start: at,
                end: at + n,
                target,
            };
            self.map.insert(miss, run);
        }
        Ok((target, n.min(max)))
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
        let access = self.shared()?;
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let rest = &mut buf[done..];
            let (target, n) = self.locate(&access, at, rest.len() as u64)?;
            let piece = &mut rest[..n as usize];
            match target {
                // Past the end of the file reads as zeroes, as imago reads it.
                Some(Target::Data { file, host, .. }) => {
                    self.files[file].1.read_zero_padded_at(piece, host)?
                }
                Some(Target::Zero) => piece.fill(0),
                None => access.read(&mut *piece, at)?,
            }
            done += piece.len();
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> BlockResult<()> {
        self.writable(offset, buf.len() as u64, "write")?;
        let access = self.shared()?;
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let rest = &buf[done..];
            let (target, n) = self.locate(&access, at, rest.len() as u64)?;
            let piece = &rest[..n as usize];
            match target {
                Some(Target::Data {
                    file,
                    host,
                    writable: true,
                }) => self.files[file].1.write_all_at(piece, host)?,
                _ => {
                    // imago allocates or copies clusters here: what we remember of this range
                    // is stale once it is done (or failed half way).
                    let written = access.write(piece, at);
                    self.map.invalidate(at, n);
                    written?;
                }
            }
            done += piece.len();
        }
        Ok(())
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
        let mut access = self.exclusive()?;
        // Freed clusters may be reused for other guest offsets: forget every mapping.
        let done = access.discard_to_any(offset, len);
        self.map.clear();
        done
    }

    fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> BlockResult<()> {
        self.writable(offset, len, "write-zeroes")?;
        if unmap {
            let mut access = self.exclusive()?;
            let done = access.discard_to_zero(offset, len);
            self.map.clear();
            done
        } else {
            let done = self.shared()?.write_zeroes(offset, len);
            self.map.invalidate(offset, len);
            done
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
    files: &mut Files,
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
            files,
        )?),
    };
    let storage = imago_file(file, path, !opts.read_only, files)?;
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

/// Hands `file` to imago, keeping a second handle on it in `files` under the name imago knows.
fn imago_file(
    file: File,
    path: &Path,
    writable: bool,
    files: &mut Files,
) -> Result<ImagoFile, OpenError> {
    files.push((path.to_owned(), file.try_clone().map_err(io_err(path))?));
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
    files: &mut Files,
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
            files,
        )?)),
        _ => {
            let raw = Raw::builder(imago_file(file, &resolved, false, files)?)
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
