//! A cached base's own kernel: for an image without `kernel_id`, the kernel and initrd inside
//! it (found by [`crate::bootdisk`]) are unpacked once per host beside the base, under
//! `boot/<image>/` (`vmlinuz`, `initrd.img`, `root` holding the kernel's `root=` word), or
//! `boot/<image>/none` holding why the image has none. Bases never change, so neither does
//! this; it goes when the base goes ([`BaseCache::cleanup`]).

use super::{BaseCache, CacheError, FETCH_SEQ, check, io_err};
use crate::bootdisk::{BootDiskError, Limits, find_boot_files, write_boot_files};
use crate::store::DiskFormat;
use disk::backend::OpenOptions;
use disk::create::sync_parent;
use disk::probe::Format;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// The kernel and initrd an image holds, unpacked on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBootFiles {
    /// The kernel file.
    pub kernel: PathBuf,
    /// The initrd file, when the image has one.
    pub initrd: Option<PathBuf>,
    /// The kernel's `root=` word for the image's root partition.
    pub root_arg: String,
}

/// What an image offers to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageBoot {
    /// Its own kernel.
    Kernel(HostBootFiles),
    /// None, and why (no partition table, no ext file system, no kernel, a bad table...).
    NotBootable(String),
}

const ROOT: &str = "root";
const NONE: &str = "none";

impl BaseCache {
    /// The kernel inside the cached base `image` (of `format`), unpacked on first use.
    pub fn image_boot(
        &self,
        image: &str,
        format: DiskFormat,
        limits: &Limits,
    ) -> Result<ImageBoot, CacheError> {
        check(image)?;
        let _lock = self.lock(image)?;
        let base = self.bases.join(image);
        if !base.is_file() {
            return Err(CacheError::NoBase(image.to_owned()));
        }
        let dir = self.boot.join(image);
        if dir.is_dir() {
            return read_unpacked(&dir);
        }
        let opts = OpenOptions::new().format(match format {
            DiskFormat::Qcow2 => Format::Qcow2,
            _ => Format::Raw,
        });
        let seq = FETCH_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .tmp
            .join(format!("{image}.boot.{}.{seq}.part", std::process::id()));
        let what = format!(
            "unpacking the kernel of image {image} into {}",
            tmp.display()
        );
        let unpacked = std::fs::create_dir(&tmp)
            .and_then(|()| match find_boot_files(&base, &opts, limits) {
                Ok(files) => {
                    write_boot_files(&files, &tmp)?;
                    std::fs::write(tmp.join(ROOT), files.root_arg())
                }
                // A read error may pass: try again next time rather than remember it.
                Err(BootDiskError::Io { offset, source }) => Err(std::io::Error::new(
                    source.kind(),
                    format!("reading the base at byte {offset}: {source}"),
                )),
                Err(e) => std::fs::write(tmp.join(NONE), e.to_string()),
            })
            .and_then(|()| sync_dir(&tmp))
            .and_then(|()| std::fs::rename(&tmp, &dir))
            .and_then(|()| sync_parent(&dir));
        if let Err(e) = unpacked {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(io_err(what)(e));
        }
        let found = read_unpacked(&dir)?;
        tracing::info!(image, ?found, "image kernel looked for");
        Ok(found)
    }

    /// Removes what [`BaseCache::image_boot`] unpacked for `image` (its base is going).
    pub(super) fn remove_image_boot(&self, image: &str) {
        let _ = std::fs::remove_dir_all(self.boot.join(image));
    }
}

fn read_unpacked(dir: &Path) -> Result<ImageBoot, CacheError> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read_to_string(&p).map_err(io_err(format!("reading {}", p.display())))
    };
    if dir.join(NONE).is_file() {
        return Ok(ImageBoot::NotBootable(read(NONE)?));
    }
    let initrd = dir.join("initrd.img");
    Ok(ImageBoot::Kernel(HostBootFiles {
        kernel: dir.join("vmlinuz"),
        initrd: initrd.is_file().then_some(initrd),
        root_arg: read(ROOT)?,
    }))
}

/// Every file of `dir`, then `dir` itself, made durable (before it is published by rename).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        std::fs::File::open(entry?.path())?.sync_all()?;
    }
    std::fs::File::open(dir)?.sync_all()
}
