//! Converting between raw and qcow2, keeping the result sparse.

use disk::backend::{BlockBackend, BlockStatus, OpenError, OpenOptions, open_disk};
use disk::create::{CreateError, Qcow2Options, create_qcow2, create_raw};
use disk::probe::Format;
use std::io;
use std::path::{Path, PathBuf};

/// Bytes copied per read; zero detection works on [`ZERO_BLOCK`] pieces of it.
const CHUNK: usize = 1 << 20;
/// Granularity of zero detection: one default qcow2 cluster.
const ZERO_BLOCK: usize = 65536;

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The source could not be opened.
    #[error("source: {0}")]
    Source(#[source] OpenError),
    /// The destination could not be created.
    #[error("destination: {0}")]
    Create(#[from] CreateError),
    /// The destination could not be opened after creating it.
    #[error("destination: {0}")]
    Destination(#[source] OpenError),
    /// Only raw and qcow2 can be written.
    #[error("{path}: cannot write {format} images (only raw and qcow2)")]
    Unsupported {
        /// The destination.
        path: PathBuf,
        /// The format asked for.
        format: Format,
    },
    /// I/O failed while copying.
    #[error("copying at offset {offset}: {source}")]
    Copy {
        /// Guest offset of the failure.
        offset: u64,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

/// What a conversion did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConvertStats {
    /// Bytes written to the destination.
    pub written: u64,
    /// Bytes left unallocated because they read as zeroes.
    pub skipped: u64,
}

/// Copies the disk at `src` (opened with `src_opts`, read-only) into a new image at `dst` of
/// `format` (raw or qcow2; `qcow2` sets its cluster size). Zero ranges are not written, so the
/// result is as sparse as the content allows. A failed conversion removes `dst`.
pub fn convert(
    src: &Path,
    src_opts: &OpenOptions,
    dst: &Path,
    format: Format,
    qcow2: &Qcow2Options,
) -> Result<ConvertStats, ConvertError> {
    let source = open_disk(src, &src_opts.clone().read_only(true)).map_err(ConvertError::Source)?;
    let size = source.size();
    match format {
        Format::Raw => create_raw(dst, size)?,
        Format::Qcow2 => create_qcow2(
            dst,
            size,
            &Qcow2Options {
                backing: None,
                ..qcow2.clone()
            },
        )?,
        other => {
            return Err(ConvertError::Unsupported {
                path: dst.to_owned(),
                format: other,
            });
        }
    }
    let result = open_disk(dst, &OpenOptions::new().format(format))
        .map_err(ConvertError::Destination)
        .and_then(|target| {
            let stats = copy(source.as_ref(), target.as_ref())?;
            target.flush().map_err(|source| ConvertError::Copy {
                offset: size,
                source,
            })?;
            Ok(stats)
        });
    if result.is_err() {
        let _ = std::fs::remove_file(dst);
    }
    result
}

/// Copies every non-zero block of `src` to `dst` (which reads as zeroes everywhere).
pub fn copy(src: &dyn BlockBackend, dst: &dyn BlockBackend) -> Result<ConvertStats, ConvertError> {
    let size = src.size();
    let mut stats = ConvertStats::default();
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0;
    while offset < size {
        let err = |source| ConvertError::Copy { offset, source };
        let want = (size - offset).min(CHUNK as u64);
        let (status, n) = src.block_status(offset, want).map_err(err)?;
        if status == BlockStatus::Zero {
            stats.skipped += n;
            offset += n;
            continue;
        }
        let chunk = &mut buf[..n as usize];
        src.read_at(chunk, offset).map_err(err)?;
        for (i, piece) in chunk.chunks(ZERO_BLOCK).enumerate() {
            let at = offset + (i * ZERO_BLOCK) as u64;
            if is_zero(piece) {
                stats.skipped += piece.len() as u64;
            } else {
                dst.write_at(piece, at)
                    .map_err(|source| ConvertError::Copy { offset: at, source })?;
                stats.written += piece.len() as u64;
            }
        }
        offset += n;
    }
    Ok(stats)
}

/// True when every byte is zero; folds 64-byte blocks so the compiler can vectorise it.
fn is_zero(buf: &[u8]) -> bool {
    let mut blocks = buf.chunks_exact(64);
    let head_zero = blocks.all(|b| b.iter().fold(0u8, |acc, &x| acc | x) == 0);
    head_zero && blocks.remainder().iter().all(|&b| b == 0)
}
