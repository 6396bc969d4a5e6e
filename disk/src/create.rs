//! Creating and growing images: raw, qcow2, qcow2 over a backing file.

use crate::backend::OpenError;
use crate::probe::{self, Format};
use crate::qcow2::{Policy, Qcow2Error, validate};
use imago::file::File as ImagoFile;
use imago::format::PreallocateMode;
use imago::qcow2::Qcow2;
use imago::{
    DenyImplicitOpenGate, FormatAccess, FormatCreateBuilder, FormatDriverBuilder,
    StorageOpenOptions,
};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Default qcow2 cluster size, as qemu-img uses.
pub const DEFAULT_CLUSTER_SIZE: u32 = 65536;

/// Why an image could not be created or resized.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// File system failure.
    #[error("{path}: {source}")]
    Io {
        /// The image.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// Bad parameters.
    #[error("{path}: {why}")]
    Invalid {
        /// The image.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The existing image failed validation.
    #[error("{path}: refused: {source}")]
    Refused {
        /// The image.
        path: PathBuf,
        /// The reason.
        #[source]
        source: Qcow2Error,
    },
    /// Opening the backing image failed.
    #[error(transparent)]
    Open(#[from] OpenError),
}

/// How to lay out a new qcow2 image.
#[derive(Debug, Clone)]
pub struct Qcow2Options {
    /// Cluster size in bytes: a power of two from 512 B to 2 MiB.
    pub cluster_size: u32,
    /// Backing file name as it is written into the header, and its format (raw or qcow2).
    pub backing: Option<(String, Format)>,
}

impl Default for Qcow2Options {
    fn default() -> Self {
        Qcow2Options {
            cluster_size: DEFAULT_CLUSTER_SIZE,
            backing: None,
        }
    }
}

/// Creates a sparse raw image of `size` bytes; fails if `path` exists.
pub fn create_raw(path: &Path, size: u64) -> Result<(), CreateError> {
    let io = io_err(path);
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io)?;
    file.set_len(size).map_err(io_err(path))?;
    durable(&file, path)
}

/// Creates a qcow2 v3 image of `size` virtual bytes; fails if `path` exists.
pub fn create_qcow2(path: &Path, size: u64, opts: &Qcow2Options) -> Result<(), CreateError> {
    let invalid = |why: String| CreateError::Invalid {
        path: path.to_owned(),
        why,
    };
    let cs = opts.cluster_size;
    if !cs.is_power_of_two() || !(512..=2 << 20).contains(&cs) {
        return Err(invalid(format!(
            "cluster size {cs} is not a power of two from 512 to 2097152"
        )));
    }
    if size > crate::qcow2::MAX_VIRTUAL_SIZE {
        return Err(invalid(format!(
            "size {size} exceeds {}",
            crate::qcow2::MAX_VIRTUAL_SIZE
        )));
    }
    if let Some((name, fmt)) = &opts.backing {
        if !matches!(fmt, Format::Raw | Format::Qcow2) {
            return Err(invalid(format!("backing format {fmt} is not raw or qcow2")));
        }
        if name.is_empty() || name.len() > 1023 || name.contains('\0') {
            return Err(invalid(format!(
                "backing file name {name:?} is empty, too long or has a NUL"
            )));
        }
    }
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err(path))?;
    let result = write_qcow2(&file, path, size, opts);
    if result.is_err() {
        // A half-written image must not stay behind under the name the caller asked for.
        let _ = std::fs::remove_file(path);
    }
    result
}

fn write_qcow2(
    file: &File,
    path: &Path,
    size: u64,
    opts: &Qcow2Options,
) -> Result<(), CreateError> {
    let storage = imago_file(file.try_clone().map_err(io_err(path))?, path)?;
    let mut builder = Qcow2::<ImagoFile>::create_builder(storage)
        .size(size)
        .cluster_size(opts.cluster_size as usize);
    if let Some((name, fmt)) = &opts.backing {
        builder = builder.backing(name.clone(), fmt.name().to_owned());
    }
    builder.create().map_err(io_err(path))?;
    durable(file, path)
}

/// Grows the image at `path` to `new_size` virtual bytes (raw or qcow2, probed from content).
/// Shrinking is refused: it would destroy guest data.
pub fn resize(path: &Path, new_size: u64) -> Result<(), CreateError> {
    let file = File::options()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    let invalid = |why: String| CreateError::Invalid {
        path: path.to_owned(),
        why,
    };
    match probe::probe(&file).map_err(io_err(path))? {
        Format::Raw => {
            let old = file.metadata().map_err(io_err(path))?.len();
            if new_size < old {
                return Err(invalid(format!(
                    "shrinking from {old} to {new_size} bytes is refused"
                )));
            }
            file.set_len(new_size).map_err(io_err(path))?;
            durable(&file, path)
        }
        Format::Qcow2 => {
            // The backing file is not opened: growing touches only this image's tables.
            let policy = Policy {
                allow_backing: true,
                ..Policy::default()
            };
            let header = validate(&file, policy)
                .map_err(|source| CreateError::Refused {
                    path: path.to_owned(),
                    source,
                })?
                .header;
            if new_size < header.size {
                return Err(invalid(format!(
                    "shrinking from {} to {new_size} bytes is refused",
                    header.size
                )));
            }
            if new_size > crate::qcow2::MAX_VIRTUAL_SIZE {
                return Err(invalid(format!(
                    "size {new_size} exceeds {}",
                    crate::qcow2::MAX_VIRTUAL_SIZE
                )));
            }
            let storage = imago_file(file.try_clone().map_err(io_err(path))?, path)?;
            let qcow2 = Qcow2::<ImagoFile>::builder(storage)
                .write(true)
                .backing(None)
                .data_file(None)
                .open(DenyImplicitOpenGate::default())
                .map_err(io_err(path))?;
            let access = FormatAccess::new(qcow2);
            access
                .resize_grow(new_size, PreallocateMode::None)
                .and_then(|()| access.flush())
                .and_then(|()| access.sync())
                .map_err(io_err(path))?;
            durable(&file, path)
        }
        other => Err(invalid(format!("cannot resize a {other} image"))),
    }
}

pub(crate) fn imago_file(file: File, path: &Path) -> Result<ImagoFile, CreateError> {
    ImagoFile::from_open_file(file, StorageOpenOptions::new().filename(path).write(true))
        .map_err(io_err(path))
}

/// fsyncs the file and its directory, so the new image survives a crash under its name.
pub(crate) fn durable(file: &File, path: &Path) -> Result<(), CreateError> {
    file.sync_all().map_err(io_err(path))?;
    sync_parent(path).map_err(io_err(path))
}

/// fsyncs the directory holding `path`.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> CreateError + '_ {
    move |source| CreateError::Io {
        path: path.to_owned(),
        source,
    }
}
