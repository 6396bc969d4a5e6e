//! The qcow2 header and its extensions, parsed strictly from the first cluster.

use super::Qcow2Error as E;
use crate::probe::QCOW2_MAGIC;
use crate::readat::ReadAt;

/// Smallest and largest cluster sizes qemu accepts (512 B to 2 MiB).
pub const MIN_CLUSTER_BITS: u32 = 9;
/// See [`MIN_CLUSTER_BITS`].
pub const MAX_CLUSTER_BITS: u32 = 21;
const V2_HEADER_LEN: u32 = 72;
const V3_HEADER_LEN: u32 = 104;
const MAX_BACKING_NAME: u32 = 1023;

/// Incompatible feature bits (qcow2 spec).
pub mod incompat {
    /// Refcounts may be stale (lazy refcounts); needs a repair before use.
    pub const DIRTY: u64 = 1 << 0;
    /// Some metadata was found corrupt; must not be written.
    pub const CORRUPT: u64 = 1 << 1;
    /// Guest data lives in an external data file.
    pub const EXTERNAL_DATA: u64 = 1 << 2;
    /// A compression type other than zlib (zstd).
    pub const COMPRESSION_TYPE: u64 = 1 << 3;
    /// 128-bit L2 entries with subclusters.
    pub const EXTENDED_L2: u64 = 1 << 4;
    /// Every bit the spec defines.
    pub const KNOWN: u64 = DIRTY | CORRUPT | EXTERNAL_DATA | COMPRESSION_TYPE | EXTENDED_L2;
}

/// Header extension types.
mod ext {
    pub const END: u32 = 0;
    pub const BACKING_FORMAT: u32 = 0xe279_2aca;
    pub const FEATURE_NAMES: u32 = 0x6803_f857;
    pub const BITMAPS: u32 = 0x2385_2875;
    pub const ENCRYPTION: u32 = 0x0537_be77;
    pub const DATA_FILE: u32 = 0x4441_5441;
}

/// A parsed qcow2 header: every field, plus the strings its extensions carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qcow2Header {
    /// 2 or 3.
    pub version: u32,
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// Virtual disk size in bytes.
    pub size: u64,
    /// 0 = none; anything else is encryption.
    pub crypt_method: u32,
    /// Entries in the active L1 table.
    pub l1_size: u32,
    /// File offset of the active L1 table.
    pub l1_table_offset: u64,
    /// File offset of the refcount table.
    pub refcount_table_offset: u64,
    /// Clusters the refcount table occupies.
    pub refcount_table_clusters: u32,
    /// Internal snapshots.
    pub nb_snapshots: u32,
    /// File offset of the snapshot table.
    pub snapshots_offset: u64,
    /// Incompatible feature bits (0 for v2).
    pub incompatible_features: u64,
    /// Compatible feature bits (0 for v2).
    pub compatible_features: u64,
    /// Auto-clear feature bits (0 for v2).
    pub autoclear_features: u64,
    /// log2 of the refcount width in bits (4 for v2).
    pub refcount_order: u32,
    /// Bytes of header before the extensions.
    pub header_length: u32,
    /// 0 = zlib, 1 = zstd.
    pub compression_type: u8,
    /// Backing file name, as written in the image.
    pub backing_file: Option<String>,
    /// Backing format from the extension ("raw", "qcow2"), if any.
    pub backing_format: Option<String>,
    /// External data file name from the extension, if any.
    pub data_file: Option<String>,
    /// An encryption header extension is present.
    pub has_encryption_ext: bool,
    /// A bitmaps extension is present.
    pub has_bitmaps: bool,
}

impl Qcow2Header {
    /// Cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }
    /// Dirty bit (lazy refcounts left unrepaired).
    pub fn dirty(&self) -> bool {
        self.incompatible_features & incompat::DIRTY != 0
    }
    /// Corrupt bit.
    pub fn corrupt(&self) -> bool {
        self.incompatible_features & incompat::CORRUPT != 0
    }
    /// Lazy refcounts (compatible feature bit 0).
    pub fn lazy_refcounts(&self) -> bool {
        self.compatible_features & 1 != 0
    }
    /// Refcount width in bits.
    pub fn refcount_bits(&self) -> u32 {
        1 << self.refcount_order
    }

    /// Reads and parses the header of `src`.
    pub fn read<R: ReadAt + ?Sized>(src: &R) -> Result<Self, E> {
        let file_len = src.len().map_err(E::Io)?;
        let mut fixed = [0u8; V3_HEADER_LEN as usize];
        let have = file_len.min(V3_HEADER_LEN as u64) as usize;
        src.read_exact_at(&mut fixed[..have], 0).map_err(E::Io)?;
        if have < V2_HEADER_LEN as usize {
            return Err(E::Truncated {
                need: V2_HEADER_LEN as u64,
                have: file_len,
            });
        }
        let h = Fixed(&fixed);
        if h.u32(0) != u32::from_be_bytes(QCOW2_MAGIC) {
            return Err(E::NotQcow2);
        }
        let version = h.u32(4);
        if version != 2 && version != 3 {
            return Err(E::UnsupportedVersion(version));
        }
        let cluster_bits = h.u32(20);
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(E::ClusterBits(cluster_bits));
        }
        let cluster_size = 1u64 << cluster_bits;
        let mut hdr = Qcow2Header {
            version,
            cluster_bits,
            size: h.u64(24),
            crypt_method: h.u32(32),
            l1_size: h.u32(36),
            l1_table_offset: h.u64(40),
            refcount_table_offset: h.u64(48),
            refcount_table_clusters: h.u32(56),
            nb_snapshots: h.u32(60),
            snapshots_offset: h.u64(64),
            incompatible_features: 0,
            compatible_features: 0,
            autoclear_features: 0,
            refcount_order: 4,
            header_length: V2_HEADER_LEN,
            compression_type: 0,
            backing_file: None,
            backing_format: None,
            data_file: None,
            has_encryption_ext: false,
            has_bitmaps: false,
        };
        if version == 3 {
            if have < V3_HEADER_LEN as usize {
                return Err(E::Truncated {
                    need: V3_HEADER_LEN as u64,
                    have: file_len,
                });
            }
            hdr.incompatible_features = h.u64(72);
            hdr.compatible_features = h.u64(80);
            hdr.autoclear_features = h.u64(88);
            hdr.refcount_order = h.u32(96);
            hdr.header_length = h.u32(100);
            if hdr.header_length < V3_HEADER_LEN
                || hdr.header_length as u64 > cluster_size
                || !hdr.header_length.is_multiple_of(8)
            {
                return Err(E::HeaderLength(hdr.header_length));
            }
            if hdr.refcount_order > 6 {
                return Err(E::RefcountOrder(hdr.refcount_order));
            }
        }

        // Everything else the header may reference lies in the first cluster.
        let first_len = cluster_size.min(file_len) as usize;
        let mut first = vec![0u8; first_len];
        src.read_exact_at(&mut first, 0).map_err(E::Io)?;
        if (first.len() as u64) < hdr.header_length as u64 {
            return Err(E::Truncated {
                need: hdr.header_length as u64,
                have: file_len,
            });
        }
        if hdr.header_length > V3_HEADER_LEN {
            hdr.compression_type = first[V3_HEADER_LEN as usize];
        }
        hdr.parse_backing_name(&Fixed(&fixed), &first, cluster_size)?;
        hdr.parse_extensions(&first, cluster_size)?;
        Ok(hdr)
    }

    fn parse_backing_name(&mut self, h: &Fixed, first: &[u8], cluster_size: u64) -> Result<(), E> {
        let offset = h.u64(8);
        let size = h.u32(16);
        if offset == 0 {
            return Ok(());
        }
        if size > MAX_BACKING_NAME {
            return Err(E::BackingName(format!(
                "name is {size} bytes (max {MAX_BACKING_NAME})"
            )));
        }
        let end = offset
            .checked_add(size as u64)
            .filter(|&e| e <= cluster_size);
        let Some(end) = end.filter(|&e| e <= first.len() as u64) else {
            return Err(E::BackingName(format!(
                "name at {offset}+{size} lies outside the first cluster"
            )));
        };
        if offset < self.header_length as u64 {
            return Err(E::BackingName(format!(
                "name at {offset} overlaps the header"
            )));
        }
        let raw = &first[offset as usize..end as usize];
        self.backing_file = Some(text(raw, "backing file name")?);
        Ok(())
    }

    fn parse_extensions(&mut self, first: &[u8], cluster_size: u64) -> Result<(), E> {
        let mut off = self.header_length as u64;
        let limit = cluster_size.min(first.len() as u64);
        loop {
            if off + 8 > limit {
                // v2 images without extensions may end right after the header.
                if self.version == 2 && off == V2_HEADER_LEN as u64 && limit < off + 8 {
                    return Ok(());
                }
                return Err(E::Extension(format!(
                    "extension header at {off} runs past the first cluster"
                )));
            }
            let f = Fixed(&first[off as usize..]);
            let (kind, len) = (f.u32(0), f.u32(4) as u64);
            let data_start = off + 8;
            let data_end = data_start + len;
            if data_end > limit {
                return Err(E::Extension(format!(
                    "extension {kind:#x} of {len} bytes at {off} runs past the first cluster"
                )));
            }
            let data = &first[data_start as usize..data_end as usize];
            match kind {
                ext::END => return Ok(()),
                ext::BACKING_FORMAT => set_once(
                    &mut self.backing_format,
                    text(data, "backing format")?,
                    "backing format",
                )?,
                ext::DATA_FILE => set_once(
                    &mut self.data_file,
                    text(data, "data file name")?,
                    "data file",
                )?,
                ext::ENCRYPTION => self.has_encryption_ext = true,
                ext::BITMAPS => self.has_bitmaps = true,
                ext::FEATURE_NAMES => {}
                // Unknown extensions are to be ignored, per the spec.
                _ => {}
            }
            off = data_start + len.next_multiple_of(8);
        }
    }
}

fn set_once(slot: &mut Option<String>, value: String, what: &str) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::Extension(format!("duplicate {what} extension")));
    }
    *slot = Some(value);
    Ok(())
}

fn text(raw: &[u8], what: &str) -> Result<String, E> {
    if raw.contains(&0) {
        return Err(E::BackingName(format!("{what} contains a NUL byte")));
    }
    String::from_utf8(raw.to_vec()).map_err(|_| E::BackingName(format!("{what} is not UTF-8")))
}

/// Big-endian field access into a header buffer that is known to be long enough.
struct Fixed<'a>(&'a [u8]);

impl Fixed<'_> {
    fn u32(&self, at: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.0[at..at + 4]);
        u32::from_be_bytes(b)
    }
    fn u64(&self, at: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[at..at + 8]);
        u64::from_be_bytes(b)
    }
}
