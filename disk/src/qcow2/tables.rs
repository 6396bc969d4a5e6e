//! Bounds checks on the tables a qcow2 header points at: L1, refcount table, snapshots, and
//! (deep mode) every L2 table.

use super::Qcow2Error as E;
use super::header::Qcow2Header;
use crate::readat::ReadAt;
use std::collections::HashSet;

/// qemu's own limits: a 32 MiB L1 table, an 8 MiB refcount table, 65536 snapshots.
pub const MAX_L1_BYTES: u64 = 32 << 20;
/// See [`MAX_L1_BYTES`].
pub const MAX_REFTABLE_BYTES: u64 = 8 << 20;
/// See [`MAX_L1_BYTES`].
pub const MAX_SNAPSHOTS: u32 = 65536;

const L1_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const L1_RESERVED: u64 = 0x7f00_0000_0000_01ff;
const L2_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const L2_COMPRESSED: u64 = 1 << 62;
const L2_ZERO: u64 = 1;
const L2_RESERVED: u64 = 0x3f00_0000_0000_01fe;
const REFT_RESERVED: u64 = 0x1ff;

/// What the table walk found, for `info`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    /// L2 tables referenced by the active L1 table.
    pub l2_tables: u64,
    /// Data clusters (standard and compressed) referenced by the L2 tables (deep mode only).
    pub data_clusters: u64,
    /// Compressed clusters among them (deep mode only).
    pub compressed_clusters: u64,
}

/// Checks that every table lies inside the file and has a sane size; with `deep`, also walks
/// every L2 table and checks each entry.
pub fn check<R: ReadAt + ?Sized>(
    src: &R,
    h: &Qcow2Header,
    max_virtual_size: u64,
    deep: bool,
) -> Result<TableStats, E> {
    let file_len = src.len().map_err(E::Io)?;
    let cs = h.cluster_size();
    if h.size > max_virtual_size {
        return Err(E::VirtualSize {
            size: h.size,
            max: max_virtual_size,
        });
    }
    // Bytes of guest data one L2 table maps: cluster_size / 8 entries of one cluster each.
    let per_l2 = cs * (cs / 8);
    let need_l1 = h.size.div_ceil(per_l2);
    if h.l1_size as u64 * 8 > MAX_L1_BYTES {
        return Err(E::TableSize {
            table: "L1",
            entries: h.l1_size as u64,
        });
    }
    if (h.l1_size as u64) < need_l1 {
        return Err(E::L1TooSmall {
            entries: h.l1_size,
            need: need_l1,
        });
    }
    if h.l1_size > 0 {
        region(
            h.l1_table_offset,
            h.l1_size as u64 * 8,
            cs,
            file_len,
            "L1 table",
        )?;
    }
    let reft_bytes = h.refcount_table_clusters as u64 * cs;
    if h.refcount_table_clusters == 0 || reft_bytes > MAX_REFTABLE_BYTES.max(cs) {
        return Err(E::TableSize {
            table: "refcount",
            entries: h.refcount_table_clusters as u64,
        });
    }
    region(
        h.refcount_table_offset,
        reft_bytes,
        cs,
        file_len,
        "refcount table",
    )?;
    if h.nb_snapshots > MAX_SNAPSHOTS {
        return Err(E::TableSize {
            table: "snapshot",
            entries: h.nb_snapshots as u64,
        });
    }
    if h.nb_snapshots > 0 {
        // Each entry is at least 40 bytes; the exact length needs parsing the entries.
        region(
            h.snapshots_offset,
            h.nb_snapshots as u64 * 40,
            cs,
            file_len,
            "snapshot table",
        )?;
    }

    let reft = read_table(src, h.refcount_table_offset, reft_bytes)?;
    for (i, &e) in reft.iter().enumerate() {
        if e & REFT_RESERVED != 0 {
            return Err(E::Entry {
                table: "refcount",
                index: i as u64,
                entry: e,
                why: "reserved bits set",
            });
        }
        cluster_ref(e & !REFT_RESERVED, cs, file_len).map_err(|why| E::Entry {
            table: "refcount",
            index: i as u64,
            entry: e,
            why,
        })?;
    }

    let mut stats = TableStats::default();
    let l1 = read_table(src, h.l1_table_offset, h.l1_size as u64 * 8)?;
    let mut seen = HashSet::new();
    for (i, &e) in l1.iter().enumerate() {
        if e & L1_RESERVED != 0 {
            return Err(E::Entry {
                table: "L1",
                index: i as u64,
                entry: e,
                why: "reserved bits set",
            });
        }
        let off = e & L1_OFFSET_MASK;
        cluster_ref(off, cs, file_len).map_err(|why| E::Entry {
            table: "L1",
            index: i as u64,
            entry: e,
            why,
        })?;
        if off == 0 {
            continue;
        }
        stats.l2_tables += 1;
        if deep && seen.insert(off) {
            check_l2(src, h, off, file_len, &mut stats)?;
        }
    }
    Ok(stats)
}

fn check_l2<R: ReadAt + ?Sized>(
    src: &R,
    h: &Qcow2Header,
    l2_off: u64,
    file_len: u64,
    stats: &mut TableStats,
) -> Result<(), E> {
    let cs = h.cluster_size();
    let table = read_table(src, l2_off, cs)?;
    let bad = |index: usize, entry: u64, why: &'static str| E::Entry {
        table: "L2",
        index: index as u64,
        entry,
        why,
    };
    for (i, &e) in table.iter().enumerate() {
        if e & L2_COMPRESSED != 0 {
            // Compressed: host offset in the low (62 - (cluster_bits - 8)) bits, then a sector count.
            let x = 62 - (h.cluster_bits - 8);
            let host = e & ((1u64 << x) - 1);
            if host < cs {
                return Err(bad(i, e, "compressed data overlaps the header"));
            }
            if host >= file_len {
                return Err(bad(i, e, "compressed data lies beyond the end of the file"));
            }
            stats.data_clusters += 1;
            stats.compressed_clusters += 1;
            continue;
        }
        if e & L2_RESERVED != 0 || (h.version == 2 && e & L2_ZERO != 0) {
            return Err(bad(i, e, "reserved bits set"));
        }
        let off = e & L2_OFFSET_MASK;
        // A data cluster at the end of the file may be written only partly (reads past the end
        // are zeroes), so it need only start inside the file.
        if !off.is_multiple_of(cs) {
            return Err(bad(i, e, "offset not cluster-aligned"));
        }
        if off >= file_len && off != 0 {
            return Err(bad(i, e, "points beyond the end of the file"));
        }
        if off != 0 {
            stats.data_clusters += 1;
        }
    }
    Ok(())
}

/// A table must be cluster-aligned, not at offset 0 (the header), and end inside the file.
fn region(offset: u64, bytes: u64, cs: u64, file_len: u64, what: &'static str) -> Result<(), E> {
    if !offset.is_multiple_of(cs) {
        return Err(E::Table {
            table: what,
            offset,
            why: "not cluster-aligned".into(),
        });
    }
    if offset == 0 {
        return Err(E::Table {
            table: what,
            offset,
            why: "overlaps the header".into(),
        });
    }
    match offset.checked_add(bytes) {
        Some(end) if end <= file_len => Ok(()),
        _ => Err(E::Table {
            table: what,
            offset,
            why: format!("{bytes} bytes from there run past the end of the {file_len}-byte file"),
        }),
    }
}

/// A table entry pointing at a whole cluster (0 means unallocated).
fn cluster_ref(off: u64, cs: u64, file_len: u64) -> Result<(), &'static str> {
    if off == 0 {
        return Ok(());
    }
    if !off.is_multiple_of(cs) {
        return Err("offset not cluster-aligned");
    }
    match off.checked_add(cs) {
        Some(end) if end <= file_len => Ok(()),
        _ => Err("points beyond the end of the file"),
    }
}

/// Reads a big-endian u64 table; the caller has checked it lies inside the file.
fn read_table<R: ReadAt + ?Sized>(src: &R, offset: u64, bytes: u64) -> Result<Vec<u64>, E> {
    let len = usize::try_from(bytes).map_err(|_| E::Table {
        table: "metadata",
        offset,
        why: format!("{bytes} bytes do not fit in memory"),
    })?;
    let mut raw = vec![0u8; len];
    src.read_exact_at(&mut raw, offset).map_err(E::Io)?;
    Ok(raw
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}
