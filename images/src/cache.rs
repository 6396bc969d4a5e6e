//! Each host's base-image cache and the per-instance overlays on it, as Nova does it: a base is
//! fetched once per host, each instance gets a qcow2 overlay on it grown to its flavor's disk,
//! and bases no overlay uses are removed after a grace period.
//!
//! Layout under the root: `bases/<image>` (verified, never written again), `overlays/<instance>.qcow2`,
//! `locks/<image>` (flock, one fetch at a time per base), `used/<image>` (its mtime is the last
//! time an overlay of the base was created or removed), `boot/<image>/` (the kernel inside the
//! base, [`BaseCache::image_boot`]), `tmp/` (fetches in progress).
//! Which overlays use a base is read from the overlays' own headers, so it survives restarts.

use crate::store::{DiskFormat, VerifyError, process_alive, upload_pid, valid_id, verify};
use disk::backend::OpenOptions;
use disk::create::{CreateError, Qcow2Options, create_qcow2, sync_parent};
use disk::info::{InfoError, info};
use disk::probe::Format;
use disk::qcow2::Qcow2Header;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Why a cache operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// An image or instance id that could be a path trick.
    #[error("invalid id {0:?}")]
    InvalidId(String),
    /// The base is not in the cache.
    #[error("base image {0:?} is not cached")]
    NoBase(String),
    /// The instance has no overlay.
    #[error("instance {0:?} has no overlay")]
    NoOverlay(String),
    /// The instance already has an overlay.
    #[error("instance {0:?} already has an overlay")]
    OverlayExists(String),
    /// The flavor's disk is smaller than the image.
    #[error("disk of {disk} bytes is smaller than image {image}'s virtual size of {virtual_size}")]
    DiskTooSmall {
        /// The image.
        image: String,
        /// Requested disk size.
        disk: u64,
        /// The base's virtual size.
        virtual_size: u64,
    },
    /// Only raw and qcow2 bases can back an overlay.
    #[error("image {image}: disk_format {format} cannot back an instance disk (raw or qcow2 only)")]
    Unsupported {
        /// The image.
        image: String,
        /// Its format.
        format: DiskFormat,
    },
    /// The fetched content was refused.
    #[error("image {image}: {source}")]
    Refused {
        /// The image.
        image: String,
        /// Why.
        #[source]
        source: VerifyError,
    },
    /// Creating the overlay failed.
    #[error(transparent)]
    Create(#[from] CreateError),
    /// Reading an image failed.
    #[error(transparent)]
    Info(#[from] InfoError),
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

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> CacheError {
    let what = what.into();
    move |source| CacheError::Io { what, source }
}

fn check(id: &str) -> Result<(), CacheError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(CacheError::InvalidId(id.to_owned()))
    }
}

static FETCH_SEQ: AtomicU64 = AtomicU64::new(0);

/// A host's base images and instance overlays.
#[derive(Debug)]
pub struct BaseCache {
    bases: PathBuf,
    overlays: PathBuf,
    locks: PathBuf,
    used: PathBuf,
    boot: PathBuf,
    tmp: PathBuf,
    grace: Duration,
}

impl BaseCache {
    /// Opens (creating if needed) the cache under `root`; unused bases are kept for `grace`.
    pub fn open(root: impl Into<PathBuf>, grace: Duration) -> Result<Self, CacheError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(io_err(format!("creating {}", root.display())))?;
        // Overlays name their base by absolute path: anchor it once, symlinks resolved.
        let root = root
            .canonicalize()
            .map_err(io_err(format!("resolving {}", root.display())))?;
        let cache = BaseCache {
            bases: root.join("bases"),
            overlays: root.join("overlays"),
            locks: root.join("locks"),
            used: root.join("used"),
            boot: root.join("boot"),
            tmp: root.join("tmp"),
            grace,
        };
        for dir in [
            &cache.bases,
            &cache.overlays,
            &cache.locks,
            &cache.used,
            &cache.boot,
            &cache.tmp,
        ] {
            std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        cache.remove_stale_fetches();
        Ok(cache)
    }

    /// Directory of base images: the only place an overlay's backing file may be.
    pub fn bases_dir(&self) -> &Path {
        &self.bases
    }

    /// How the VMM opens an overlay of this cache.
    pub fn overlay_open_options(&self) -> OpenOptions {
        OpenOptions::new()
            .format(Format::Qcow2)
            .trust_backing_dir(&self.bases)
    }

    /// Path of the cached base `image`, if cached.
    pub fn base_path(&self, image: &str) -> Option<PathBuf> {
        check(image).ok()?;
        let p = self.bases.join(image);
        p.is_file().then_some(p)
    }

    /// Path of `instance`'s overlay, if it has one.
    pub fn overlay_path(&self, instance: &str) -> Option<PathBuf> {
        check(instance).ok()?;
        let p = self.overlay_file(instance);
        p.is_file().then_some(p)
    }

    /// Returns the cached base `image`, fetching it first if needed. `fetch` writes the image's
    /// bytes; it runs at most once per host at a time, and never when the base is cached. The
    /// content must be `format` (raw or qcow2) and pass the same checks as the image store.
    pub fn ensure_base(
        &self,
        image: &str,
        format: DiskFormat,
        fetch: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<PathBuf, CacheError> {
        check(image)?;
        if !matches!(
            format,
            DiskFormat::Raw | DiskFormat::Ami | DiskFormat::Qcow2
        ) {
            return Err(CacheError::Unsupported {
                image: image.to_owned(),
                format,
            });
        }
        let _lock = self.lock(image)?;
        let base = self.bases.join(image);
        if base.is_file() {
            return Ok(base);
        }
        let seq = FETCH_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .tmp
            .join(format!("{image}.{}.{seq}.part", std::process::id()));
        let result = self.fetch_into(&tmp, image, format, fetch).and_then(|()| {
            std::fs::rename(&tmp, &base)
                .map_err(io_err(format!("publishing {}", base.display())))?;
            sync_parent(&base).map_err(io_err("syncing the bases directory"))
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result?;
        self.mark_used(image)?;
        tracing::info!(image, "base image cached");
        Ok(base)
    }

    fn fetch_into(
        &self,
        tmp: &Path,
        image: &str,
        format: DiskFormat,
        fetch: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), CacheError> {
        let what = || format!("fetching image {image} into {}", tmp.display());
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(tmp)
            .map_err(io_err(what()))?;
        let mut out = BufWriter::with_capacity(1 << 20, &file);
        fetch(&mut out).map_err(io_err(what()))?;
        out.flush().map_err(io_err(what()))?;
        drop(out);
        verify(&file, format).map_err(|source| CacheError::Refused {
            image: image.to_owned(),
            source,
        })?;
        // Bases are shared by many overlays: nobody writes them again.
        let mut perms = file.metadata().map_err(io_err(what()))?.permissions();
        perms.set_readonly(true);
        file.set_permissions(perms).map_err(io_err(what()))?;
        file.sync_all().map_err(io_err(what()))
    }

    /// Creates `instance`'s overlay on the cached base `image`, `disk_size` bytes large (the
    /// flavor's root disk; `None` keeps the image's virtual size).
    pub fn create_overlay(
        &self,
        image: &str,
        instance: &str,
        disk_size: Option<u64>,
    ) -> Result<PathBuf, CacheError> {
        check(image)?;
        check(instance)?;
        let _lock = self.lock(image)?;
        let base = self.bases.join(image);
        if !base.is_file() {
            return Err(CacheError::NoBase(image.to_owned()));
        }
        let overlay = self.overlay_file(instance);
        if overlay.exists() {
            return Err(CacheError::OverlayExists(instance.to_owned()));
        }
        let base_info = info(&base)?;
        let size = disk_size.unwrap_or(base_info.virtual_size);
        if size < base_info.virtual_size {
            return Err(CacheError::DiskTooSmall {
                image: image.to_owned(),
                disk: size,
                virtual_size: base_info.virtual_size,
            });
        }
        let name = base
            .to_str()
            .ok_or_else(|| CacheError::InvalidId(base.display().to_string()))?;
        let opts = Qcow2Options {
            backing: Some((name.to_owned(), base_info.format)),
            ..Default::default()
        };
        create_qcow2(&overlay, size, &opts)?;
        self.mark_used(image)?;
        tracing::info!(image, instance, size, "overlay created");
        Ok(overlay)
    }

    /// Removes `instance`'s overlay; its base then counts as unused from now on if no other
    /// overlay uses it.
    pub fn remove_overlay(&self, instance: &str) -> Result<(), CacheError> {
        check(instance)?;
        let overlay = self.overlay_file(instance);
        let base = self.base_of(&overlay).map_err(|e| match e {
            CacheError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                CacheError::NoOverlay(instance.to_owned())
            }
            other => other,
        })?;
        std::fs::remove_file(&overlay)
            .map_err(io_err(format!("removing {}", overlay.display())))?;
        if let Some(image) = base {
            self.mark_used(&image)?;
        }
        Ok(())
    }

    /// Instances whose overlay uses the base `image`.
    pub fn users(&self, image: &str) -> Result<Vec<String>, CacheError> {
        check(image)?;
        let mut users = Vec::new();
        let entries = std::fs::read_dir(&self.overlays).map_err(io_err("listing overlays"))?;
        for entry in entries {
            let path = entry.map_err(io_err("listing overlays"))?.path();
            let Some(instance) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".qcow2"))
            else {
                continue;
            };
            if self.base_of(&path)?.as_deref() == Some(image) {
                users.push(instance.to_owned());
            }
        }
        users.sort();
        Ok(users)
    }

    /// Removes bases no overlay uses and nobody used for the grace period (as of `now`);
    /// returns the removed image ids.
    pub fn cleanup(&self, now: SystemTime) -> Result<Vec<String>, CacheError> {
        let mut removed = Vec::new();
        let entries = std::fs::read_dir(&self.bases).map_err(io_err("listing bases"))?;
        let mut images: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect();
        images.sort();
        for image in images {
            if !valid_id(&image) {
                continue;
            }
            // A base being fetched or given an overlay right now is in use: skip it.
            let Some(lock) = self.try_lock(&image)? else {
                continue;
            };
            let idle = now
                .duration_since(self.last_used(&image)?)
                .unwrap_or(Duration::ZERO);
            if idle < self.grace || !self.users(&image)?.is_empty() {
                continue;
            }
            let base = self.bases.join(&image);
            std::fs::remove_file(&base).map_err(io_err(format!("removing {}", base.display())))?;
            let _ = std::fs::remove_file(self.used.join(&image));
            self.remove_image_boot(&image);
            // Unlinking the lock file while holding it is safe: `lock` re-checks the inode.
            let _ = std::fs::remove_file(self.locks.join(&image));
            drop(lock);
            tracing::info!(
                image,
                idle_secs = idle.as_secs(),
                "unused base image removed"
            );
            removed.push(image);
        }
        Ok(removed)
    }

    fn overlay_file(&self, instance: &str) -> PathBuf {
        self.overlays.join(format!("{instance}.qcow2"))
    }

    /// The cached base an overlay uses, from its header (`None` if it names no base of ours).
    fn base_of(&self, overlay: &Path) -> Result<Option<String>, CacheError> {
        let file = File::open(overlay).map_err(io_err(format!("opening {}", overlay.display())))?;
        let Ok(header) = Qcow2Header::read(&file) else {
            return Ok(None);
        };
        let Some(backing) = header.backing_file else {
            return Ok(None);
        };
        let backing = Path::new(&backing);
        if backing.parent() != Some(self.bases.as_path()) {
            return Ok(None);
        }
        Ok(backing
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned))
    }

    fn mark_used(&self, image: &str) -> Result<(), CacheError> {
        let marker = self.used.join(image);
        File::create(&marker)
            .map(drop)
            .map_err(io_err(format!("touching {}", marker.display())))
    }

    fn last_used(&self, image: &str) -> Result<SystemTime, CacheError> {
        let marker = self.used.join(image);
        let meta =
            std::fs::metadata(&marker).or_else(|_| std::fs::metadata(self.bases.join(image)));
        meta.and_then(|m| m.modified())
            .map_err(io_err(format!("reading when {image} was last used")))
    }

    /// Takes the per-base lock (shared by every process using this cache), waiting for it.
    fn lock(&self, image: &str) -> Result<BaseLock, CacheError> {
        let lock = self.lock_with(image, libc::LOCK_EX)?;
        lock.ok_or_else(|| {
            io_err(format!("locking base {image}"))(io::ErrorKind::WouldBlock.into())
        })
    }

    /// Takes the per-base lock if nobody holds it (`None` if somebody does).
    fn try_lock(&self, image: &str) -> Result<Option<BaseLock>, CacheError> {
        self.lock_with(image, libc::LOCK_EX | libc::LOCK_NB)
    }

    fn lock_with(&self, image: &str, op: libc::c_int) -> Result<Option<BaseLock>, CacheError> {
        let path = self.locks.join(image);
        loop {
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io_err(format!("opening {}", path.display())))?;
            // SAFETY: flock takes the descriptor owned by `file` and an integer operation.
            if unsafe { libc::flock(file.as_raw_fd(), op) } != 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    return Ok(None);
                }
                return Err(io_err(format!("locking {}", path.display()))(err));
            }
            // Cleanup may have unlinked the file while we waited: lock the current one then.
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if same {
                return Ok(Some(BaseLock { _file: file }));
            }
        }
    }

    fn remove_stale_fetches(&self) {
        let Ok(entries) = std::fs::read_dir(&self.tmp) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name
                .to_str()
                .and_then(upload_pid)
                .is_some_and(|pid| !process_alive(pid))
            {
                // A fetch is a file, an image's kernel being unpacked ([`BaseCache::image_boot`]) a directory.
                let _ = std::fs::remove_file(entry.path())
                    .or_else(|_| std::fs::remove_dir_all(entry.path()));
            }
        }
    }
}

/// Held while a base is fetched, given an overlay, or removed; released when dropped.
struct BaseLock {
    _file: File,
}

mod boot;
pub use boot::{HostBootFiles, ImageBoot};

#[cfg(test)]
mod tests;
