//! The OpenStack config drive: an ISO 9660 image with Joliet names, as Nova makes it with
//! `genisoimage -J -r -V config-2`, written by us so hosts need no genisoimage.
//!
//! See docs/configdrive.md for the layout and the limits.

mod layout;
mod time;
mod tree;

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use disk::create::sync_parent;
use layout::SECTOR;
use time::Timestamp;
use tree::Tree;

/// The volume label cloud-init looks for.
pub const CONFIG_DRIVE_LABEL: &str = "config-2";
/// Largest image we write: Nova's fixed config-drive size (vfat format), 64 MiB.
pub const MAX_IMAGE_BYTES: u64 = 64 << 20;
/// Longest volume label: the Joliet descriptor holds 16 UCS-2 characters.
pub const MAX_LABEL_LEN: usize = 16;

/// Why a config drive could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigDriveError {
    /// The label is empty, too long or has a character other than `A-Z a-z 0-9 _ - .`.
    #[error("bad volume label {label:?}: {reason}")]
    BadLabel {
        /// The label given.
        label: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file path cannot be stored.
    #[error("bad path {path:?}: {reason}")]
    BadPath {
        /// The path given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two files with the same path.
    #[error("path {path:?} is given twice")]
    DuplicatePath {
        /// The repeated path.
        path: String,
    },
    /// A path uses a file as a directory, or names a directory as a file.
    #[error("path {path:?} conflicts with another entry (a file and a directory of the same name)")]
    PathConflict {
        /// The path given.
        path: String,
    },
    /// More files and directories than we lay out in memory.
    #[error("more than {max} files and directories")]
    TooManyEntries {
        /// The limit.
        max: usize,
    },
    /// The image would be too large.
    #[error("the image would exceed {max} bytes")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// Writing or publishing the image failed.
    #[error("writing config drive {path}: {source}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

/// Writes an ISO 9660 + Joliet image at `dest` holding `files` (paths such as
/// `openstack/latest/meta_data.json`; directories are implied). Atomic: `dest` is either left
/// as it was or replaced by the complete, fsynced image.
pub fn write_iso(
    dest: &Path,
    volume_label: &str,
    files: &[(&str, &[u8])],
) -> Result<(), ConfigDriveError> {
    check_label(volume_label)?;
    let tree = Tree::build(files)?;
    let sizes: Vec<u64> = files.iter().map(|(_, data)| data.len() as u64).collect();
    let max_sectors = MAX_IMAGE_BYTES / SECTOR as u64;
    let too_large = ConfigDriveError::TooLarge {
        max: MAX_IMAGE_BYTES,
    };
    // Checked before planning, so that no sum below can overflow.
    if sizes.iter().any(|&s| s > MAX_IMAGE_BYTES) {
        return Err(too_large);
    }
    let layout = layout::plan(&tree, &sizes, volume_label, Timestamp::now(), max_sectors)
        .ok_or(too_large)?;
    tracing::debug!(
        dest = %dest.display(),
        files = files.len(),
        bytes = layout.total_sectors * SECTOR as u64,
        "writing config drive"
    );
    publish(dest, |out| {
        out.write_all(&layout.metadata)?;
        let padding = [0u8; SECTOR];
        for &(index, _) in &layout.files {
            let data = files[index].1;
            out.write_all(data)?;
            out.write_all(&padding[..data.len().next_multiple_of(SECTOR) - data.len()])?;
        }
        Ok(())
    })
}

fn check_label(label: &str) -> Result<(), ConfigDriveError> {
    let bad = |reason: String| ConfigDriveError::BadLabel {
        label: label.to_owned(),
        reason,
    };
    if label.is_empty() {
        return Err(bad("empty".into()));
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(bad(format!(
            "{} bytes, at most {MAX_LABEL_LEN} fit the Joliet descriptor",
            label.len()
        )));
    }
    if let Some(ch) = label
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "_-.".contains(c)))
    {
        return Err(bad(format!(
            "character {ch:?} is not one of A-Z a-z 0-9 _ - ."
        )));
    }
    Ok(())
}

/// Writes into a temporary file beside `dest`, fsyncs it, renames it over `dest` and fsyncs
/// the directory; the temporary file is removed on any failure.
fn publish(
    dest: &Path,
    fill: impl FnOnce(&mut BufWriter<&File>) -> io::Result<()>,
) -> Result<(), ConfigDriveError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let io_err = |source| ConfigDriveError::Io {
        path: dest.to_owned(),
        source,
    };
    let file_name = dest.file_name().ok_or_else(|| {
        io_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "destination has no file name",
        ))
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dest.with_file_name(tmp_name);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io_err)?;
    let result = (|| {
        let mut out = BufWriter::with_capacity(1 << 16, &file);
        fill(&mut out)?;
        out.flush()?;
        drop(out);
        file.sync_all()?;
        fs::rename(&tmp, dest)?;
        sync_parent(dest)
    })();
    if result.is_err() {
        // Best effort: the error that matters is the one reported below.
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}

#[cfg(test)]
mod tests;
