//! Our own strict qcow2 header and metadata validation. It runs before imago opens anything, so
//! a hostile image is refused with a precise reason instead of reaching the I/O path.

mod header;
mod tables;

pub use header::{Qcow2Header, incompat};
pub use tables::{MAX_L1_BYTES, MAX_REFTABLE_BYTES, MAX_SNAPSHOTS, TableStats};

use crate::readat::ReadAt;
use std::io;

/// Largest virtual size we accept: 64 TiB. Larger claims are refused as absurd.
pub const MAX_VIRTUAL_SIZE: u64 = 64 << 40;

/// Why a qcow2 image was refused.
#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    /// Reading the image failed.
    #[error("reading the image: {0}")]
    Io(#[source] io::Error),
    /// No qcow2 magic.
    #[error("not a qcow2 image (no QFI\\xfb magic)")]
    NotQcow2,
    /// The file ends inside the header.
    #[error("truncated: the header needs {need} bytes but the file has {have}")]
    Truncated {
        /// Bytes needed.
        need: u64,
        /// Bytes present.
        have: u64,
    },
    /// Version other than 2 or 3.
    #[error("qcow2 version {0} is not supported (only 2 and 3)")]
    UnsupportedVersion(u32),
    /// Cluster size outside 512 B..2 MiB.
    #[error("cluster_bits {0} is outside 9..=21")]
    ClusterBits(u32),
    /// Bad v3 header length.
    #[error(
        "header_length {0} is invalid (at least 104, a multiple of 8, within the first cluster)"
    )]
    HeaderLength(u32),
    /// Refcount width above 64 bits.
    #[error("refcount_order {0} is above 6")]
    RefcountOrder(u32),
    /// Backing file name (or another header string) malformed.
    #[error("malformed header string: {0}")]
    BackingName(String),
    /// Header extension area malformed.
    #[error("malformed header extension: {0}")]
    Extension(String),
    /// Encrypted image.
    #[error("encrypted images are not supported (crypt_method {0})")]
    Encrypted(u32),
    /// Incompatible feature bits nobody defines.
    #[error("unknown incompatible feature bits {0:#x}")]
    UnknownFeatures(u64),
    /// A defined feature we do not implement.
    #[error("unsupported feature: {0}")]
    UnsupportedFeature(&'static str),
    /// Corrupt bit set.
    #[error("the image is marked corrupt")]
    Corrupt,
    /// Dirty bit set (lazy refcounts need a repair).
    #[error("the image is marked dirty (lazy refcounts); repair it with `qemu-img check -r all`")]
    Dirty,
    /// External data file (OSSA-2024-001 class).
    #[error("the image uses an external data file {0:?}; refused (it can point at any host file)")]
    ExternalDataFile(String),
    /// Backing file where none is allowed.
    #[error("the image has a backing file {0:?}; refused (it can point at any host file)")]
    BackingFile(String),
    /// Virtual size beyond the limit.
    #[error("virtual size {size} exceeds the limit of {max} bytes")]
    VirtualSize {
        /// Claimed virtual size.
        size: u64,
        /// Limit.
        max: u64,
    },
    /// L1 table too small for the virtual size.
    #[error("L1 table has {entries} entries but the virtual size needs {need}")]
    L1TooSmall {
        /// Entries in the header.
        entries: u32,
        /// Entries needed.
        need: u64,
    },
    /// A table's size is absurd.
    #[error("{table} table size {entries} is absurd")]
    TableSize {
        /// Which table.
        table: &'static str,
        /// Its size field.
        entries: u64,
    },
    /// A table lies outside the file or is misplaced.
    #[error("{table} at offset {offset:#x}: {why}")]
    Table {
        /// Which table.
        table: &'static str,
        /// Its offset.
        offset: u64,
        /// What is wrong.
        why: String,
    },
    /// A table entry is invalid.
    #[error("{table} entry {index} ({entry:#018x}): {why}")]
    Entry {
        /// Which table.
        table: &'static str,
        /// Index of the entry.
        index: u64,
        /// Raw entry.
        entry: u64,
        /// What is wrong.
        why: &'static str,
    },
}

/// What an image may contain to be accepted.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// A backing file name is acceptable (the caller then vets where it points).
    pub allow_backing: bool,
    /// Walk every L2 table too (the store does; opening a disk does not need to).
    pub deep: bool,
    /// Largest acceptable virtual size.
    pub max_virtual_size: u64,
}

impl Policy {
    /// Standalone images only, every table checked: what the image store accepts.
    pub const STANDALONE_DEEP: Policy = Policy {
        allow_backing: false,
        deep: true,
        max_virtual_size: MAX_VIRTUAL_SIZE,
    };
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allow_backing: false,
            deep: false,
            max_virtual_size: MAX_VIRTUAL_SIZE,
        }
    }
}

/// A header that passed validation, with what the table walk saw.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The parsed header.
    pub header: Qcow2Header,
    /// Table statistics (data counts only in deep mode).
    pub stats: TableStats,
}

/// Parses the header of `src` and refuses anything hostile or unsupported under `policy`.
pub fn validate<R: ReadAt + ?Sized>(src: &R, policy: Policy) -> Result<Validated, Qcow2Error> {
    let header = Qcow2Header::read(src)?;
    check_features(&header)?;
    if let Some(name) = &header.data_file {
        return Err(Qcow2Error::ExternalDataFile(name.clone()));
    }
    if let Some(name) = &header.backing_file
        && !policy.allow_backing
    {
        return Err(Qcow2Error::BackingFile(name.clone()));
    }
    let stats = tables::check(src, &header, policy.max_virtual_size, policy.deep)?;
    Ok(Validated { header, stats })
}

/// Refuses feature bits and header fields imago (and so our I/O path) cannot honour.
fn check_features(h: &Qcow2Header) -> Result<(), Qcow2Error> {
    let inc = h.incompatible_features;
    if inc & !incompat::KNOWN != 0 {
        return Err(Qcow2Error::UnknownFeatures(inc & !incompat::KNOWN));
    }
    if h.crypt_method != 0 {
        return Err(Qcow2Error::Encrypted(h.crypt_method));
    }
    if h.has_encryption_ext {
        return Err(Qcow2Error::UnsupportedFeature(
            "full disk encryption header extension",
        ));
    }
    if inc & incompat::CORRUPT != 0 {
        return Err(Qcow2Error::Corrupt);
    }
    if inc & incompat::DIRTY != 0 {
        return Err(Qcow2Error::Dirty);
    }
    if inc & incompat::EXTERNAL_DATA != 0 {
        let name = h.data_file.clone().unwrap_or_else(|| "(unnamed)".into());
        return Err(Qcow2Error::ExternalDataFile(name));
    }
    if inc & incompat::EXTENDED_L2 != 0 {
        return Err(Qcow2Error::UnsupportedFeature(
            "extended L2 entries (subclusters)",
        ));
    }
    if inc & incompat::COMPRESSION_TYPE != 0 || h.compression_type != 0 {
        return Err(Qcow2Error::UnsupportedFeature(
            "compression type other than zlib",
        ));
    }
    Ok(())
}

#[cfg(any(test, feature = "test-util"))]
pub mod sample;
#[cfg(test)]
mod tests;
