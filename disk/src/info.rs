//! What an image is: format, sizes, qcow2 details, backing chain. Reading the header only, so
//! it also describes images that opening would refuse (dirty, corrupt, hostile backing).

use crate::backend::{MAX_CHAIN_DEPTH, resolve_backing};
use crate::probe::{self, Format};
use crate::qcow2::{Qcow2Error, Qcow2Header};
use crate::readat::file_len;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why an image could not be described.
#[derive(Debug, thiserror::Error)]
pub enum InfoError {
    /// File system failure.
    #[error("{path}: {source}")]
    Io {
        /// The image.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The qcow2 header cannot be parsed.
    #[error("{path}: {source}")]
    Header {
        /// The image.
        path: PathBuf,
        /// The failure.
        #[source]
        source: Qcow2Error,
    },
    /// A backing file that is not followed.
    #[error("{path}: backing file {backing:?} not followed: {why}")]
    Backing {
        /// The image.
        path: PathBuf,
        /// The name in its header.
        backing: String,
        /// Why.
        why: String,
    },
}

/// The facts `qemu-img info` reports, for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Format probed from content.
    pub format: Format,
    /// Guest-visible size (the file length for raw and unknown formats).
    pub virtual_size: u64,
    /// File length.
    pub file_size: u64,
    /// Bytes the file system has allocated (sparse files use less than their length).
    pub allocated_size: u64,
    /// qcow2 details, for qcow2 images.
    pub qcow2: Option<Qcow2Info>,
}

/// qcow2-specific facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qcow2Info {
    /// 2 or 3 (qemu's compat 0.10 or 1.1).
    pub version: u32,
    /// Cluster size in bytes.
    pub cluster_size: u64,
    /// Refcount width in bits.
    pub refcount_bits: u32,
    /// Dirty bit.
    pub dirty: bool,
    /// Corrupt bit.
    pub corrupt: bool,
    /// Lazy refcounts enabled.
    pub lazy_refcounts: bool,
    /// Internal snapshots.
    pub snapshots: u32,
    /// Backing file name as written in the header.
    pub backing_file: Option<String>,
    /// Backing format as written in the header.
    pub backing_format: Option<String>,
    /// External data file name, if any.
    pub data_file: Option<String>,
}

/// Describes the image at `path`.
pub fn info(path: &Path) -> Result<ImageInfo, InfoError> {
    let io = |source| InfoError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let file_size = file_len(&file).map_err(io)?;
    let format = probe::probe(&file).map_err(io)?;
    let mut out = ImageInfo {
        format,
        virtual_size: file_size,
        file_size,
        allocated_size: meta.blocks() * 512,
        qcow2: None,
    };
    if format == Format::Qcow2 {
        let h = Qcow2Header::read(&file).map_err(|source| InfoError::Header {
            path: path.to_owned(),
            source,
        })?;
        out.virtual_size = h.size;
        out.qcow2 = Some(Qcow2Info {
            version: h.version,
            cluster_size: h.cluster_size(),
            refcount_bits: h.refcount_bits(),
            dirty: h.dirty(),
            corrupt: h.corrupt(),
            lazy_refcounts: h.lazy_refcounts(),
            snapshots: h.nb_snapshots,
            backing_file: h.backing_file,
            backing_format: h.backing_format,
            data_file: h.data_file,
        });
    }
    Ok(out)
}

/// One image of a backing chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    /// Resolved path.
    pub path: PathBuf,
    /// Its description.
    pub info: ImageInfo,
}

/// Describes `path` and every image below it. Backing files are followed only into `trusted`
/// directories: listing a chain must not read arbitrary host files either.
pub fn backing_chain(path: &Path, trusted: &[PathBuf]) -> Result<Vec<ChainLink>, InfoError> {
    let mut chain = vec![ChainLink {
        path: path.to_owned(),
        info: info(path)?,
    }];
    loop {
        let last = chain
            .last()
            .expect("the chain starts with the image itself");
        let Some(name) = last
            .info
            .qcow2
            .as_ref()
            .and_then(|q| q.backing_file.clone())
        else {
            return Ok(chain);
        };
        let refuse = |why: String| InfoError::Backing {
            path: last.path.clone(),
            backing: name.clone(),
            why,
        };
        if chain.len() >= MAX_CHAIN_DEPTH {
            return Err(refuse(format!(
                "the chain is deeper than {MAX_CHAIN_DEPTH}"
            )));
        }
        let next = resolve_backing(&last.path, &name, trusted).map_err(refuse)?;
        if chain
            .iter()
            .any(|l| l.path.canonicalize().ok().as_ref() == Some(&next))
        {
            return Err(refuse("the chain loops".into()));
        }
        let next_info = info(&next)?;
        chain.push(ChainLink {
            path: next,
            info: next_info,
        });
    }
}
