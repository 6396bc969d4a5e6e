//! The image service's store: streaming uploads to a temporary file, checked and published
//! atomically under the image id. Runtime-agnostic: every call blocks, so async callers run it
//! on a blocking thread.

mod format;

pub use format::{DiskFormat, UnknownDiskFormat, Verified, VerifyError, verify};

use crate::checksum::{HashError, ParallelHasher};
use disk::create::sync_parent;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The upload passed the size limit.
    #[error("image exceeds the size limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The content is not the claimed format.
    #[error("disk_format {claimed} claimed but the content is {actual}")]
    FormatMismatch {
        /// Claimed format.
        claimed: DiskFormat,
        /// Probed format.
        actual: String,
    },
    /// The content is unsafe to store.
    #[error("image refused: {0}")]
    Hostile(String),
    /// A format we do not accept.
    #[error("image refused: {0}")]
    Unsupported(String),
    /// No image with that id.
    #[error("no image data for {0:?}")]
    NotFound(String),
    /// The id could be a path trick.
    #[error(
        "invalid image id {0:?} (1-128 characters of A-Z a-z 0-9 - _ ., not starting with a dot)"
    )]
    InvalidId(String),
    /// Data for that id is already published.
    #[error("image {0:?} already has data")]
    Exists(String),
    /// Hashing the upload failed (a hashing thread could not start or died).
    #[error("hashing the upload: {0}")]
    Hashing(#[from] HashError),
    /// File system failure.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

impl From<VerifyError> for StoreError {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Mismatch { claimed, actual } => {
                StoreError::FormatMismatch { claimed, actual }
            }
            VerifyError::Hostile(why) => StoreError::Hostile(why),
            VerifyError::Unsupported(why) => StoreError::Unsupported(why),
            VerifyError::Io(source) => StoreError::Io {
                what: "reading the upload".into(),
                source,
            },
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let what = what.into();
    move |source| StoreError::Io { what, source }
}

/// A published image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    /// Bytes stored.
    pub size: u64,
    /// md5, lowercase hex (the image service's `checksum`).
    pub md5: String,
    /// sha512, lowercase hex (`os_hash_value`).
    pub sha512: String,
    /// The verified format.
    pub format: DiskFormat,
    /// Virtual disk size, where the format tells it.
    pub virtual_size: Option<u64>,
}

/// Image data on a local file system: `<root>/images/<id>`, uploads in `<root>/tmp/`.
#[derive(Debug)]
pub struct ImageStore {
    images: PathBuf,
    tmp: PathBuf,
    max_image_bytes: u64,
}

/// Distinguishes concurrent uploads from one process.
static UPLOAD_SEQ: AtomicU64 = AtomicU64::new(0);

impl ImageStore {
    /// Opens (creating if needed) a store under `root`; uploads larger than `max_image_bytes`
    /// are refused. Temporary files left by dead processes are removed.
    pub fn open(root: impl Into<PathBuf>, max_image_bytes: u64) -> Result<Self, StoreError> {
        let root = root.into();
        let images = root.join("images");
        let tmp = root.join("tmp");
        for dir in [&images, &tmp] {
            std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        let store = ImageStore {
            images,
            tmp,
            max_image_bytes,
        };
        store.remove_stale_uploads();
        Ok(store)
    }

    /// Starts an upload for `id`; its data becomes visible only when [`Upload::finish`] succeeds.
    pub fn begin_upload(&self, id: &str) -> Result<Upload, StoreError> {
        check_id(id)?;
        let target = self.images.join(id);
        if target.exists() {
            return Err(StoreError::Exists(id.to_owned()));
        }
        // Before the file exists, so that a failure here leaves nothing to clean.
        let hasher = ParallelHasher::new()?;
        let seq = UPLOAD_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .tmp
            .join(format!("{id}.{}.{seq}.part", std::process::id()));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err(format!("creating {}", tmp.display())))?;
        Ok(Upload {
            id: id.to_owned(),
            file,
            tmp,
            target,
            limit: self.max_image_bytes,
            hasher,
            done: false,
        })
    }

    /// Directory of published images (read-only to everyone but the store).
    pub fn images_dir(&self) -> &Path {
        &self.images
    }

    /// Path of the published image `id`, if there is one.
    pub fn path(&self, id: &str) -> Option<PathBuf> {
        check_id(id).ok()?;
        let p = self.images.join(id);
        p.is_file().then_some(p)
    }

    /// Opens the published image `id` for reading (downloads).
    pub fn open_image(&self, id: &str) -> Result<File, StoreError> {
        check_id(id)?;
        File::open(self.images.join(id)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::NotFound(id.to_owned()),
            _ => StoreError::Io {
                what: format!("opening image {id}"),
                source: e,
            },
        })
    }

    /// Removes the published image `id`. Readers that opened it keep their data until they close.
    pub fn delete(&self, id: &str) -> Result<(), StoreError> {
        check_id(id)?;
        let p = self.images.join(id);
        std::fs::remove_file(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::NotFound(id.to_owned()),
            _ => StoreError::Io {
                what: format!("deleting {}", p.display()),
                source: e,
            },
        })?;
        sync_parent(&p).map_err(io_err("syncing the image directory"))
    }

    /// Removes `*.part` files whose writer process is gone (a crash mid-upload).
    fn remove_stale_uploads(&self) {
        let Ok(entries) = std::fs::read_dir(&self.tmp) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(upload_pid) else {
                continue;
            };
            if !process_alive(pid) {
                tracing::info!(file = %entry.path().display(), "removing an upload left by a dead process");
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// The writer's pid in `<id>.<pid>.<seq>.part`.
pub(crate) fn upload_pid(name: &str) -> Option<i32> {
    let stem = name.strip_suffix(".part")?;
    let mut parts = stem.rsplitn(3, '.');
    let _seq = parts.next()?;
    parts.next()?.parse().ok()
}

pub(crate) fn process_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks whether the process exists; it sends nothing.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Ids become file names: allow only a safe alphabet (UUIDs fit).
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn check_id(id: &str) -> Result<(), StoreError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(StoreError::InvalidId(id.to_owned()))
    }
}

/// An upload in progress. Dropping it unfinished removes its temporary file.
#[derive(Debug)]
pub struct Upload {
    id: String,
    file: File,
    tmp: PathBuf,
    target: PathBuf,
    limit: u64,
    hasher: ParallelHasher,
    done: bool,
}

impl Upload {
    /// Appends the next chunk, hashing it on the way (md5 and sha512 on their own threads).
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        if self.hasher.size().saturating_add(chunk.len() as u64) > self.limit {
            return Err(StoreError::TooLarge { limit: self.limit });
        }
        self.file
            .write_all(chunk)
            .map_err(io_err(format!("writing {}", self.tmp.display())))?;
        self.hasher.update(chunk)?;
        Ok(())
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.hasher.size()
    }

    /// True before the first byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the content against `claimed`, makes it durable and publishes it atomically.
    pub fn finish(mut self, claimed: DiskFormat) -> Result<StoredImage, StoreError> {
        let verified = verify(&self.file, claimed)?;
        self.file
            .sync_all()
            .map_err(io_err(format!("syncing {}", self.tmp.display())))?;
        // Blocks already handed over were hashed while the file synced; the digests must be
        // in hand before the data is published.
        let digests = self.hasher.finish()?;
        // A hard link publishes the complete file in one step and, unlike rename, fails
        // instead of replacing data another upload published meanwhile.
        std::fs::hard_link(&self.tmp, &self.target).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => StoreError::Exists(self.id.clone()),
            _ => StoreError::Io {
                what: format!("publishing {}", self.target.display()),
                source: e,
            },
        })?;
        sync_parent(&self.target).map_err(io_err("syncing the image directory"))?;
        self.done = true;
        let _ = std::fs::remove_file(&self.tmp);
        tracing::info!(id = %self.id, size = digests.size, format = %claimed, "image stored");
        Ok(StoredImage {
            size: digests.size,
            md5: digests.md5,
            sha512: digests.sha512,
            format: claimed,
            virtual_size: verified.virtual_size,
        })
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests;
