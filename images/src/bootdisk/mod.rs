//! Booting a disk image's own kernel: from a raw or qcow2 image (opened read-only through our
//! back ends, so the qcow2 validation and backing-file rules apply), read the partition table
//! (GPT or MBR, [`table`]) and the ext2/3/4 root file system (`ext4-view`), find the kernel and
//! its initrd, and say which `root=` to give the kernel. What Nova does for an image without
//! `kernel_id` through a firmware, done by the host instead (docs/cloud-image.md says why).
//!
//! Where the kernel is looked for, on each ext partition in table order (the first partition
//! that has one is the root):
//! 1. `/vmlinuz` and `/initrd.img` (Debian's links at the root),
//! 2. `/boot/vmlinuz` and `/boot/initrd.img`,
//! 3. the newest `/boot/vmlinuz-<version>` (versions compared number by number) with
//!    `/boot/initrd.img-<version>` (or `initrd-<version>.img`, `initramfs-<version>.img`).
//!
//! With the link of 1 or 2 but no initrd link, the initrd of the version the kernel link names
//! is used. Symbolic links resolve inside the image's file system (an absolute target is taken
//! from its root), never on the host. Everything read is bounded ([`Limits`]); bad input is an
//! error that says what is wrong, never a panic.

mod table;

pub use table::{Partition, Table, TableKind, read_table};

use disk::backend::{BlockBackend, OpenError, OpenOptions, open_disk};
use ext4_view::{Ext4, Ext4Error, Ext4Read};
use std::cmp::Ordering;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Upper bounds on what is read from an image.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest kernel accepted, in bytes.
    pub kernel_max: u64,
    /// Largest initrd accepted, in bytes.
    pub initrd_max: u64,
}

impl Default for Limits {
    /// 512 MiB each (a Debian kernel is about 10 MiB, its initrd 30-70 MiB).
    fn default() -> Self {
        Limits {
            kernel_max: 512 << 20,
            initrd_max: 512 << 20,
        }
    }
}

/// Most directory entries of `/boot` looked at.
const MAX_BOOT_ENTRIES: usize = 65536;

/// The root partition the kernel was found on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootPartition {
    /// GPT or MBR.
    pub table: TableKind,
    /// The partition (number, bytes, PARTUUID).
    pub partition: Partition,
    /// The file system's UUID (lower case, dashed), what `root=UUID=` matches.
    pub fs_uuid: String,
    /// The file system's label (may be empty).
    pub fs_label: String,
}

/// A kernel, its initrd and the root to boot them with.
#[derive(Clone)]
pub struct BootFiles {
    /// The kernel image (a bzImage or ELF vmlinux, as the file holds it).
    pub kernel: Vec<u8>,
    /// Its path in the root file system, links resolved.
    pub kernel_path: String,
    /// The initrd, when the image has one for that kernel.
    pub initrd: Option<Vec<u8>>,
    /// Its path, links resolved.
    pub initrd_path: Option<String>,
    /// Where they were found.
    pub root: RootPartition,
}

impl std::fmt::Debug for BootFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootFiles")
            .field("kernel_path", &self.kernel_path)
            .field("kernel_len", &self.kernel.len())
            .field("initrd_path", &self.initrd_path)
            .field("initrd_len", &self.initrd.as_ref().map(Vec::len))
            .field("root", &self.root)
            .finish()
    }
}

impl BootFiles {
    /// The kernel's `root=` word: `root=PARTUUID=...` (resolved by the kernel itself, no initrd
    /// needed) when the table gives one, else `root=UUID=...` (resolved by the initrd).
    pub fn root_arg(&self) -> String {
        match &self.root.partition.part_uuid {
            Some(p) => format!("root=PARTUUID={p}"),
            None => format!("root=UUID={}", self.root.fs_uuid),
        }
    }
}

/// Why no kernel could be taken from an image.
#[derive(Debug, thiserror::Error)]
pub enum BootDiskError {
    /// The image could not be opened (format, qcow2 validation, backing file).
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A read from the disk failed.
    #[error("reading the disk at byte {offset}: {source}")]
    Io {
        /// Where.
        offset: u64,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// Neither a GPT (behind a protective MBR) nor an MBR.
    #[error("no partition table: {0}")]
    NoPartitionTable(String),
    /// The GPT is malformed.
    #[error("bad GPT: {0}")]
    Gpt(String),
    /// The MBR is malformed.
    #[error("bad MBR: {0}")]
    Mbr(String),
    /// A partition extends past the end of the disk.
    #[error(
        "partition {number} (bytes {start}..{end}) runs past the end of the disk ({disk_size} \
         bytes): is the image truncated?"
    )]
    PartitionPastEnd {
        /// The partition.
        number: u32,
        /// Its first byte.
        start: u64,
        /// One past its last byte.
        end: u64,
        /// The disk's size.
        disk_size: u64,
    },
    /// No partition holds an ext2/3/4 file system.
    #[error("no ext2/3/4 file system on any of the {count} partitions ({kind:?} table)")]
    NoExtPartition {
        /// Partitions in the table.
        count: usize,
        /// The table.
        kind: TableKind,
    },
    /// `ext4-view` refused the file system or a read in it.
    #[error("partition {partition}: {what}: {source}")]
    Ext4 {
        /// The partition.
        partition: u32,
        /// What was being done.
        what: String,
        /// ext4-view's error.
        #[source]
        source: Ext4Error,
    },
    /// A path loops through symbolic links.
    #[error("partition {partition}: {path}: too many levels of symbolic links")]
    SymlinkLoop {
        /// The partition.
        partition: u32,
        /// The path.
        path: String,
    },
    /// No kernel on any ext partition.
    #[error(
        "no kernel on the ext file system(s) of partition(s) {partitions:?}: looked for \
         /vmlinuz, /boot/vmlinuz and /boot/vmlinuz-*"
    )]
    NoKernel {
        /// The partitions searched.
        partitions: Vec<u32>,
    },
    /// A file is larger than its limit.
    #[error(
        "partition {partition}: {path} is {size} bytes, over the {limit}-byte limit for {what}"
    )]
    TooLarge {
        /// The partition.
        partition: u32,
        /// The path.
        path: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
        /// "a kernel" or "an initrd".
        what: &'static str,
    },
    /// The kernel path is not a regular file.
    #[error("partition {partition}: {path} is not a regular file")]
    NotAFile {
        /// The partition.
        partition: u32,
        /// The path.
        path: String,
    },
    /// A file ended before the size its inode gives.
    #[error("partition {partition}: {path}: read {read} of its {size} bytes")]
    ShortFile {
        /// The partition.
        partition: u32,
        /// The path.
        path: String,
        /// Bytes read.
        read: u64,
        /// Its size.
        size: u64,
    },
    /// The kernel file is neither a bzImage nor an ELF file.
    #[error("partition {partition}: {path} is not a Linux kernel (no bzImage header, not ELF)")]
    NotAKernel {
        /// The partition.
        partition: u32,
        /// The path.
        path: String,
    },
}

pub(crate) fn io_at(offset: u64) -> impl FnOnce(io::Error) -> BootDiskError {
    move |source| BootDiskError::Io { offset, source }
}

/// A `Read + Seek` position over a back end, for the partition-table crates.
pub(crate) struct DiskCursor<'a> {
    disk: &'a dyn BlockBackend,
    pos: u64,
}

impl<'a> DiskCursor<'a> {
    fn new(disk: &'a dyn BlockBackend) -> Self {
        DiskCursor { disk, pos: 0 }
    }
}

/// Opens `path` read-only (format probed or as `opts` says, qcow2 metadata validated down to
/// every L2 entry, backing files only in `opts`' trusted directories) and finds its kernel, initrd and root.
pub fn find_boot_files(
    path: impl AsRef<Path>,
    opts: &OpenOptions,
    limits: &Limits,
) -> Result<BootFiles, BootDiskError> {
    let mut opts = opts.clone().read_only(true);
    // Every L2 entry checked too: a qcow2 cut short then fails here, by name, instead of
    // reading its missing clusters as zeroes.
    opts.deep_check = true;
    let disk: Arc<dyn BlockBackend> = Arc::from(open_disk(path, &opts)?);
    find_boot_files_in(disk, limits)
}

/// [`find_boot_files`] on an open disk.
pub fn find_boot_files_in(
    disk: Arc<dyn BlockBackend>,
    limits: &Limits,
) -> Result<BootFiles, BootDiskError> {
    let table = read_table(&*disk)?;
    let size = disk.size();
    for p in &table.partitions {
        match p.start.checked_add(p.len) {
            Some(end) if end <= size => {}
            end => {
                return Err(BootDiskError::PartitionPastEnd {
                    number: p.number,
                    start: p.start,
                    end: end.unwrap_or(u64::MAX),
                    disk_size: size,
                });
            }
        }
    }
    let mut searched = Vec::new();
    for p in &table.partitions {
        if !has_ext_magic(&*disk, p)? {
            continue;
        }
        searched.push(p.number);
        let fs = Ext4::load(Box::new(PartitionReader {
            disk: disk.clone(),
            start: p.start,
            len: p.len,
        }))
        .map_err(|source| BootDiskError::Ext4 {
            partition: p.number,
            what: "loading the file system".into(),
            source,
        })?;
        let search = Search {
            fs: &fs,
            partition: p.number,
        };
        if let Some((kernel_path, initrd_path)) = search.locate()? {
            let kernel = search.read(&kernel_path, limits.kernel_max, "a kernel")?;
            if !is_kernel(&kernel) {
                return Err(BootDiskError::NotAKernel {
                    partition: p.number,
                    path: kernel_path,
                });
            }
            let initrd = match &initrd_path {
                Some(i) => Some(search.read(i, limits.initrd_max, "an initrd")?),
                None => None,
            };
            return Ok(BootFiles {
                kernel,
                kernel_path,
                initrd,
                initrd_path,
                root: RootPartition {
                    table: table.kind,
                    partition: p.clone(),
                    fs_uuid: fs.uuid().to_string(),
                    fs_label: fs.label().to_str().unwrap_or_default().to_string(),
                },
            });
        }
    }
    if searched.is_empty() {
        return Err(BootDiskError::NoExtPartition {
            count: table.partitions.len(),
            kind: table.kind,
        });
    }
    Err(BootDiskError::NoKernel {
        partitions: searched,
    })
}

/// The ext2/3/4 superblock magic (0xef53 at byte 56 of the superblock at byte 1024).
fn has_ext_magic(disk: &dyn BlockBackend, p: &Partition) -> Result<bool, BootDiskError> {
    if p.len < 2048 {
        return Ok(false);
    }
    let at = p.start + 1024 + 56;
    let mut magic = [0u8; 2];
    disk.read_at(&mut magic, at).map_err(io_at(at))?;
    Ok(magic == [0x53, 0xef])
}

/// A bzImage ("HdrS" at 0x202) or an ELF file.
fn is_kernel(data: &[u8]) -> bool {
    data.get(0x202..0x206) == Some(b"HdrS") || data.starts_with(b"\x7fELF")
}

/// One partition as ext4-view reads it: bounded to the partition.
struct PartitionReader {
    disk: Arc<dyn BlockBackend>,
    start: u64,
    len: u64,
}

impl Ext4Read for PartitionReader {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        match start_byte.checked_add(dst.len() as u64) {
            Some(end) if end <= self.len => {}
            _ => {
                return Err(format!(
                    "read of {} bytes at {start_byte} is past the end of the partition ({} bytes)",
                    dst.len(),
                    self.len
                )
                .into());
            }
        }
        self.disk.read_at(dst, self.start + start_byte)?;
        Ok(())
    }
}

struct Search<'a> {
    fs: &'a Ext4,
    partition: u32,
}

impl Search<'_> {
    /// The kernel and initrd paths (resolved), or `None` when this file system has no kernel.
    fn locate(&self) -> Result<Option<(String, Option<String>)>, BootDiskError> {
        for dir in ["/", "/boot/"] {
            let Some(kernel) = self.resolve(&format!("{dir}vmlinuz"))? else {
                continue;
            };
            let initrd = match self.resolve(&format!("{dir}initrd.img"))? {
                Some(i) => Some(i),
                None => match kernel
                    .rsplit('/')
                    .next()
                    .and_then(|n| n.strip_prefix("vmlinuz-"))
                {
                    Some(version) => self.initrd_for(version)?,
                    None => None,
                },
            };
            return Ok(Some((kernel, initrd)));
        }
        let Some(version) = self.newest_kernel_version()? else {
            return Ok(None);
        };
        let kernel = format!("/boot/vmlinuz-{version}");
        Ok(Some((kernel, self.initrd_for(&version)?)))
    }

    fn initrd_for(&self, version: &str) -> Result<Option<String>, BootDiskError> {
        for name in [
            format!("/boot/initrd.img-{version}"),
            format!("/boot/initrd-{version}.img"),
            format!("/boot/initramfs-{version}.img"),
        ] {
            if let Some(p) = self.resolve(&name)? {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }

    /// The newest version among `/boot/vmlinuz-*` that are files (or links to files).
    fn newest_kernel_version(&self) -> Result<Option<String>, BootDiskError> {
        let entries = match self.fs.read_dir("/boot") {
            Ok(e) => e,
            Err(Ext4Error::NotFound | Ext4Error::NotADirectory) => return Ok(None),
            Err(e) => return Err(self.err(e, "/boot", "listing")),
        };
        let mut best: Option<String> = None;
        for (i, entry) in entries.enumerate() {
            if i >= MAX_BOOT_ENTRIES {
                return Err(BootDiskError::Ext4 {
                    partition: self.partition,
                    what: format!("listing /boot (more than {MAX_BOOT_ENTRIES} entries)"),
                    source: Ext4Error::FileTooLarge,
                });
            }
            let entry = entry.map_err(|e| self.err(e, "/boot", "listing"))?;
            let name = entry.file_name();
            let Ok(name) = name.as_str() else { continue };
            let Some(version) = name.strip_prefix("vmlinuz-") else {
                continue;
            };
            if version.is_empty() || self.resolve(&format!("/boot/{name}"))?.is_none() {
                continue;
            }
            if best
                .as_deref()
                .is_none_or(|b| compare_versions(version, b) == Ordering::Greater)
            {
                best = Some(version.to_string());
            }
        }
        Ok(best)
    }

    /// `path` with its links followed: `Some(resolved)` when it names a regular file, `None`
    /// when it does not exist (or is a dangling link); a loop or a non-file is an error.
    fn resolve(&self, path: &str) -> Result<Option<String>, BootDiskError> {
        let meta = match self.fs.metadata(path) {
            Ok(m) => m,
            Err(Ext4Error::NotFound) => return Ok(None),
            Err(e) => return Err(self.err(e, path, "looking up")),
        };
        if meta.is_dir() || !meta.file_type().is_regular_file() {
            return Err(BootDiskError::NotAFile {
                partition: self.partition,
                path: path.into(),
            });
        }
        let real = self
            .fs
            .canonicalize(path)
            .map_err(|e| self.err(e, path, "resolving"))?;
        Ok(Some(real.to_str().unwrap_or(path).to_string()))
    }

    /// The whole of `path`, refused above `limit` bytes.
    fn read(&self, path: &str, limit: u64, what: &'static str) -> Result<Vec<u8>, BootDiskError> {
        let mut file = self
            .fs
            .open(path)
            .map_err(|e| self.err(e, path, "opening"))?;
        let size = file.metadata().len();
        if size > limit {
            return Err(BootDiskError::TooLarge {
                partition: self.partition,
                path: path.into(),
                size,
                limit,
                what,
            });
        }
        let mut data = vec![0u8; size as usize];
        let mut done = 0;
        while done < data.len() {
            let n = file
                .read_bytes(&mut data[done..])
                .map_err(|e| self.err(e, path, "reading"))?;
            if n == 0 {
                break;
            }
            done += n;
        }
        if done < data.len() {
            return Err(BootDiskError::ShortFile {
                partition: self.partition,
                path: path.into(),
                read: done as u64,
                size,
            });
        }
        Ok(data)
    }

    fn err(&self, e: Ext4Error, path: &str, doing: &str) -> BootDiskError {
        match e {
            Ext4Error::TooManySymlinks => BootDiskError::SymlinkLoop {
                partition: self.partition,
                path: path.into(),
            },
            source => BootDiskError::Ext4 {
                partition: self.partition,
                what: format!("{doing} {path}"),
                source,
            },
        }
    }
}

/// Kernel versions compared as Debian's and most distributions' sort them closely enough:
/// runs of digits as numbers, everything else byte by byte (`6.12.1` > `6.9.3` > `6.9`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut rest = s;
        while let Some(c) = rest.chars().next() {
            let digit = c.is_ascii_digit();
            let end = rest
                .find(|ch: char| ch.is_ascii_digit() != digit)
                .unwrap_or(rest.len());
            out.push((digit, &rest[..end]));
            rest = &rest[end..];
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for ((da, sa), (db, sb)) in ca.iter().zip(cb.iter()) {
        let ord = if *da && *db {
            let (ta, tb) = (sa.trim_start_matches('0'), sb.trim_start_matches('0'));
            ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
        } else {
            sa.cmp(sb)
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

/// Writes the kernel and initrd to `dir/vmlinuz` and `dir/initrd.img` (for a VMM that takes
/// files); returns their paths.
pub fn write_boot_files(files: &BootFiles, dir: &Path) -> io::Result<(PathBuf, Option<PathBuf>)> {
    let kernel = dir.join("vmlinuz");
    std::fs::write(&kernel, &files.kernel)?;
    let initrd = match &files.initrd {
        Some(data) => {
            let p = dir.join("initrd.img");
            std::fs::write(&p, data)?;
            Some(p)
        }
        None => None,
    };
    Ok((kernel, initrd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_number_by_number() {
        assert_eq!(
            compare_versions("6.12.95+deb12-cloud-amd64", "6.1.0-13-cloud-amd64"),
            Ordering::Greater
        );
        assert_eq!(compare_versions("6.9.3", "6.12.1"), Ordering::Less);
        assert_eq!(compare_versions("6.9", "6.9.3"), Ordering::Less);
        assert_eq!(compare_versions("6.09", "6.9"), Ordering::Equal);
        assert_eq!(
            compare_versions("5.10.0-28-amd64", "5.10.0-9-amd64"),
            Ordering::Greater
        );
    }

    #[test]
    fn kernels_are_recognised_by_their_headers() {
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert!(is_kernel(&bz));
        assert!(is_kernel(b"\x7fELF\x02\x01\x01"));
        assert!(!is_kernel(b"#!/bin/sh\n"));
        assert!(!is_kernel(&[]));
    }
}
