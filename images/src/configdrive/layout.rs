//! Where everything goes on the image, and the bytes of the volume descriptors, path tables and
//! directories (ECMA-119; Joliet is a supplementary descriptor with UCS-2 names).
//!
//! Sectors: 0-15 system area, 16 primary descriptor, 17 Joliet descriptor, 18 terminator, then
//! the four path tables (primary L and M, Joliet L and M), the primary directories, the Joliet
//! directories, and the file data, which both hierarchies share.

use super::time::Timestamp;
use super::tree::{Kind, Tree};

/// Logical sector and block size.
pub(super) const SECTOR: usize = 2048;
const FIRST_DESCRIPTOR: u32 = 16;
const PATH_TABLES_START: u32 = FIRST_DESCRIPTOR + 3;
/// Directory record flag: this is a directory.
const FLAG_DIR: u8 = 0x02;
/// Joliet level 3 (UCS-2), as genisoimage writes it.
const JOLIET_ESCAPE: &[u8; 3] = b"%/E";
const APPLICATION_ID: &str = "VIRGA CONFIG DRIVE";

/// The metadata sectors, ready to write, and where each file's data goes after them.
pub(super) struct Layout {
    /// Sectors 0 up to the first file's data.
    pub metadata: Vec<u8>,
    /// `(index into the caller's files, first sector)`, in ascending sector order.
    pub files: Vec<(usize, u32)>,
    /// The volume's size in sectors.
    pub total_sectors: u64,
}

/// One hierarchy (primary or Joliet): its directories in path-table order and their extents.
struct Hierarchy {
    joliet: bool,
    /// `(node, index of the parent in this list)`.
    dirs: Vec<(usize, usize)>,
    /// First sector and size in bytes of each directory in `dirs`.
    extents: Vec<(u32, u32)>,
    /// For each tree node that is a directory, its index in `dirs`.
    index: Vec<usize>,
    path_table_len: usize,
    l_table: u32,
    m_table: u32,
}

/// Computes the layout and encodes the metadata. `sizes[i]` is the length of file `i`;
/// `None` when the volume would need more than `max_sectors` sectors.
pub(super) fn plan(
    tree: &Tree,
    sizes: &[u64],
    label: &str,
    now: Timestamp,
    max_sectors: u64,
) -> Option<Layout> {
    let mut primary = Hierarchy::new(tree, false);
    let mut joliet = Hierarchy::new(tree, true);
    let mut next = u64::from(PATH_TABLES_START);
    for h in [&mut primary, &mut joliet] {
        let table_sectors = sectors(h.path_table_len as u64);
        h.l_table = u32::try_from(next).ok()?;
        h.m_table = u32::try_from(next + table_sectors).ok()?;
        next += 2 * table_sectors;
    }
    for h in [&mut primary, &mut joliet] {
        for i in 0..h.dirs.len() {
            let size = dir_size(tree, h.dirs[i].0, h.joliet);
            h.extents
                .push((u32::try_from(next).ok()?, u32::try_from(size).ok()?));
            next += sectors(size);
        }
    }
    let metadata_sectors = next;
    let mut files = Vec::new();
    let mut file_lba = vec![0u32; sizes.len()];
    for node in &tree.nodes {
        if let Kind::File { data } = node.kind {
            file_lba[data] = u32::try_from(next).ok()?;
            u32::try_from(sizes[data]).ok()?;
            files.push((data, file_lba[data]));
            next += sectors(sizes[data]);
        }
    }
    if next > max_sectors {
        return None;
    }
    let mut out = vec![0u8; usize::try_from(metadata_sectors).ok()? * SECTOR];
    let total = u32::try_from(next).ok()?;
    for (i, h) in [&primary, &joliet].into_iter().enumerate() {
        let at = (FIRST_DESCRIPTOR as usize + i) * SECTOR;
        write_descriptor(&mut out[at..at + SECTOR], h, label, total, now);
        write_path_tables(&mut out, tree, h);
        for (i, &(node, _)) in h.dirs.iter().enumerate() {
            write_dir(&mut out, tree, h, i, node, &file_lba, sizes, now);
        }
    }
    let term = (FIRST_DESCRIPTOR as usize + 2) * SECTOR;
    out[term] = 255;
    out[term + 1..term + 6].copy_from_slice(b"CD001");
    out[term + 6] = 1;
    Some(Layout {
        metadata: out,
        files,
        total_sectors: next,
    })
}

impl Hierarchy {
    fn new(tree: &Tree, joliet: bool) -> Self {
        let dirs = tree.dirs_breadth_first(joliet);
        let mut index = vec![0; tree.nodes.len()];
        for (i, &(node, _)) in dirs.iter().enumerate() {
            index[node] = i;
        }
        let path_table_len = dirs
            .iter()
            .map(|&(node, _)| path_record_len(name(tree, node, joliet).len()))
            .sum();
        Self {
            joliet,
            extents: Vec::with_capacity(dirs.len()),
            dirs,
            index,
            path_table_len,
            l_table: 0,
            m_table: 0,
        }
    }
}

fn name(tree: &Tree, node: usize, joliet: bool) -> &[u8] {
    let n = &tree.nodes[node];
    if joliet { &n.joliet_name } else { &n.iso_name }
}

fn sectors(bytes: u64) -> u64 {
    bytes.div_ceil(SECTOR as u64)
}

fn path_record_len(name_len: usize) -> usize {
    8 + name_len + name_len % 2
}

fn dir_record_len(name_len: usize) -> usize {
    33 + name_len + (1 - name_len % 2)
}

/// Records never cross a sector boundary: a record that does not fit starts the next sector.
fn dir_size(tree: &Tree, dir: usize, joliet: bool) -> u64 {
    let mut lens = vec![dir_record_len(1), dir_record_len(1)];
    lens.extend(
        tree.children(dir, joliet)
            .iter()
            .map(|&c| dir_record_len(name(tree, c, joliet).len())),
    );
    let mut sectors_used = 1u64;
    let mut used = 0;
    for len in lens {
        if used + len > SECTOR {
            sectors_used += 1;
            used = 0;
        }
        used += len;
    }
    sectors_used * SECTOR as u64
}

fn both_u32(out: &mut [u8], v: u32) {
    out[..4].copy_from_slice(&v.to_le_bytes());
    out[4..8].copy_from_slice(&v.to_be_bytes());
}

fn both_u16(out: &mut [u8], v: u16) {
    out[..2].copy_from_slice(&v.to_le_bytes());
    out[2..4].copy_from_slice(&v.to_be_bytes());
}

/// Fills a text field: a-characters padded with spaces, or UCS-2 padded with UCS-2 spaces.
fn text(out: &mut [u8], value: &str, joliet: bool) {
    if joliet {
        let units: Vec<u16> = value.encode_utf16().collect();
        for (i, pair) in out.chunks_exact_mut(2).enumerate() {
            let unit = units.get(i).copied().unwrap_or(u16::from(b' '));
            pair.copy_from_slice(&unit.to_be_bytes());
        }
        if out.len() % 2 == 1 {
            let last = out.len() - 1;
            out[last] = 0;
        }
    } else {
        out.fill(b' ');
        let n = value.len().min(out.len());
        out[..n].copy_from_slice(&value.as_bytes()[..n]);
    }
}

fn write_descriptor(out: &mut [u8], h: &Hierarchy, label: &str, total: u32, now: Timestamp) {
    let root = h.extents[0];
    out[0] = if h.joliet { 2 } else { 1 };
    out[1..6].copy_from_slice(b"CD001");
    out[6] = 1;
    text(&mut out[8..40], "LINUX", h.joliet);
    text(&mut out[40..72], label, h.joliet);
    both_u32(&mut out[80..88], total);
    if h.joliet {
        out[88..91].copy_from_slice(JOLIET_ESCAPE);
    }
    both_u16(&mut out[120..124], 1);
    both_u16(&mut out[124..128], 1);
    both_u16(&mut out[128..132], SECTOR as u16);
    both_u32(&mut out[132..140], h.path_table_len as u32);
    out[140..144].copy_from_slice(&h.l_table.to_le_bytes());
    out[148..152].copy_from_slice(&h.m_table.to_be_bytes());
    dir_record(&mut out[156..190], &[0], root.0, root.1, FLAG_DIR, now);
    for range in [190..318, 318..446, 446..574] {
        text(&mut out[range], "", h.joliet);
    }
    text(&mut out[574..702], APPLICATION_ID, h.joliet);
    for range in [702..739, 739..776, 776..813] {
        text(&mut out[range], "", h.joliet);
    }
    let date = now.descriptor_date();
    out[813..830].copy_from_slice(&date);
    out[830..847].copy_from_slice(&date);
    // Expiration and effective dates: "not specified".
    for at in [847, 864] {
        out[at..at + 16].fill(b'0');
        out[at + 16] = 0;
    }
    out[881] = 1;
}

fn write_path_tables(out: &mut [u8], tree: &Tree, h: &Hierarchy) {
    let mut l = h.l_table as usize * SECTOR;
    let mut m = h.m_table as usize * SECTOR;
    for (i, &(node, parent)) in h.dirs.iter().enumerate() {
        let id: &[u8] = if node == 0 {
            &[0]
        } else {
            name(tree, node, h.joliet)
        };
        let lba = h.extents[i].0;
        let parent = (parent + 1) as u16;
        let len = path_record_len(id.len());
        for (at, big) in [(l, false), (m, true)] {
            let rec = &mut out[at..at + len];
            rec[0] = id.len() as u8;
            if big {
                rec[2..6].copy_from_slice(&lba.to_be_bytes());
                rec[6..8].copy_from_slice(&parent.to_be_bytes());
            } else {
                rec[2..6].copy_from_slice(&lba.to_le_bytes());
                rec[6..8].copy_from_slice(&parent.to_le_bytes());
            }
            rec[8..8 + id.len()].copy_from_slice(id);
        }
        l += len;
        m += len;
    }
}

#[allow(clippy::too_many_arguments)]
fn write_dir(
    out: &mut [u8],
    tree: &Tree,
    h: &Hierarchy,
    index: usize,
    node: usize,
    file_lba: &[u32],
    sizes: &[u64],
    now: Timestamp,
) {
    let (lba, size) = h.extents[index];
    let parent = h.extents[h.dirs[index].1];
    let mut records: Vec<(&[u8], u32, u32, u8)> = vec![
        (&[0], lba, size, FLAG_DIR),
        (&[1], parent.0, parent.1, FLAG_DIR),
    ];
    for child in tree.children(node, h.joliet) {
        let id = name(tree, child, h.joliet);
        records.push(match tree.nodes[child].kind {
            Kind::Dir { .. } => {
                let (clba, csize) = h.extents[h.index[child]];
                (id, clba, csize, FLAG_DIR)
            }
            Kind::File { data } => (id, file_lba[data], sizes[data] as u32, 0),
        });
    }
    let start = lba as usize * SECTOR;
    let mut at = start;
    for (id, rlba, rsize, flags) in records {
        let len = dir_record_len(id.len());
        if (at - start) % SECTOR + len > SECTOR {
            at = (at - start).next_multiple_of(SECTOR) + start;
        }
        dir_record(&mut out[at..at + len], id, rlba, rsize, flags, now);
        at += len;
    }
}

fn dir_record(rec: &mut [u8], id: &[u8], lba: u32, size: u32, flags: u8, now: Timestamp) {
    rec[0] = rec.len() as u8;
    both_u32(&mut rec[2..10], lba);
    both_u32(&mut rec[10..18], size);
    rec[18..25].copy_from_slice(&now.record_date());
    rec[25] = flags;
    both_u16(&mut rec[28..32], 1);
    rec[32] = id.len() as u8;
    rec[33..33 + id.len()].copy_from_slice(id);
}
