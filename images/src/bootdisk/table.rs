//! The partition table: GPT (through `gptman`, after our own bounds checks) or a DOS/MBR table
//! (its four primary entries, through `mbrman`). Linux's rules decide which: a GPT counts only
//! behind a protective MBR (an entry of type 0xEE), as the kernel requires without `gpt` on its
//! command line.

use super::{BootDiskError, DiskCursor, io_at};
use disk::backend::BlockBackend;
use std::io::{Read, Seek, SeekFrom};

/// Sector size of the tables we read: virtio-blk's logical block.
pub(crate) const SECTOR: u64 = 512;
/// Most GPT entries we accept (UEFI's minimum array is 128; tools write 128).
const MAX_GPT_ENTRIES: u32 = 1024;
/// `EFI PART`.
const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";
/// The MBR partition type of a GPT's protective entry.
const PROTECTIVE: u8 = 0xee;

/// Which kind of table the disk has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// GUID partition table.
    Gpt,
    /// DOS (MBR) partition table.
    Mbr,
}

/// One partition, as the table describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Its number as Linux counts them (`vda1` is 1).
    pub number: u32,
    /// First byte on the disk.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// What the kernel's `root=PARTUUID=` matches: the GPT unique partition GUID, or for MBR
    /// `SSSSSSSS-NN` (disk signature, partition number); `None` for an MBR disk whose
    /// signature is 0.
    pub part_uuid: Option<String>,
    /// The GPT partition name (empty for MBR).
    pub name: String,
}

/// The table and its partitions (used entries only, in table order).
#[derive(Debug, Clone)]
pub struct Table {
    /// GPT or MBR.
    pub kind: TableKind,
    /// The partitions.
    pub partitions: Vec<Partition>,
}

/// Reads the partition table of `disk`.
pub fn read_table(disk: &dyn BlockBackend) -> Result<Table, BootDiskError> {
    let size = disk.size();
    if size < SECTOR {
        return Err(BootDiskError::NoPartitionTable(format!(
            "the disk is {size} bytes, smaller than one sector"
        )));
    }
    let mut mbr = [0u8; 512];
    disk.read_at(&mut mbr, 0).map_err(io_at(0))?;
    if mbr[510..512] != [0x55, 0xaa] {
        let hint = if looks_like_gpt(disk)? {
            " (a GPT header is at LBA 1 but there is no protective MBR; Linux would not read it)"
        } else {
            ""
        };
        return Err(BootDiskError::NoPartitionTable(format!(
            "no boot signature 55 aa at the end of sector 0{hint}"
        )));
    }
    let header = mbrman::MBRHeader::read_from(&mut DiskCursor::new(disk))
        .map_err(|e| BootDiskError::Mbr(e.to_string()))?;
    let entries = [
        &header.partition_1,
        &header.partition_2,
        &header.partition_3,
        &header.partition_4,
    ];
    if entries.iter().any(|p| p.sys == PROTECTIVE) {
        return read_gpt(disk);
    }
    let signature = u32::from_le_bytes(header.disk_signature);
    let mut partitions = Vec::new();
    for (i, p) in entries.iter().enumerate() {
        let number = i as u32 + 1;
        // Empty entries and extended containers (logical partitions are not walked).
        if p.sys == 0 || p.sectors == 0 || matches!(p.sys, 0x05 | 0x0f | 0x85) {
            continue;
        }
        let start = u64::from(p.starting_lba) * SECTOR;
        let len = u64::from(p.sectors) * SECTOR;
        partitions.push(Partition {
            number,
            start,
            len,
            part_uuid: (signature != 0).then(|| format!("{signature:08x}-{number:02x}")),
            name: String::new(),
        });
    }
    if partitions.is_empty() {
        return Err(BootDiskError::NoPartitionTable(
            "the MBR has no primary partition (logical partitions are not read)".into(),
        ));
    }
    Ok(Table {
        kind: TableKind::Mbr,
        partitions,
    })
}

fn looks_like_gpt(disk: &dyn BlockBackend) -> Result<bool, BootDiskError> {
    if disk.size() < 2 * SECTOR {
        return Ok(false);
    }
    let mut sig = [0u8; 8];
    disk.read_at(&mut sig, SECTOR).map_err(io_at(SECTOR))?;
    Ok(&sig == GPT_SIGNATURE)
}

fn read_gpt(disk: &dyn BlockBackend) -> Result<Table, BootDiskError> {
    let size = disk.size();
    let last_lba = size / SECTOR - 1;
    // gptman trusts the header's entry count (it allocates for all of them before reading),
    // its entry array location (multiplied unchecked) and the entries' start LBAs (its
    // alignment guess panics on a used entry starting at LBA 0): check what it will read,
    // the primary header and the backup it falls back to.
    let mut any = false;
    for lba in [1, last_lba] {
        any |= precheck_gpt_header(disk, lba)?;
    }
    if !any {
        return Err(BootDiskError::Gpt(
            "a protective MBR but no GPT header at LBA 1 nor at the last LBA".into(),
        ));
    }
    let gpt = gptman::GPT::read_from(&mut DiskCursor::new(disk), SECTOR)
        .map_err(|e| BootDiskError::Gpt(gpt_error(&e)))?;
    let mut partitions = Vec::new();
    for (number, p) in gpt.iter() {
        if p.is_unused() {
            continue;
        }
        if p.starting_lba > p.ending_lba {
            return Err(BootDiskError::Gpt(format!(
                "partition {number} ends (LBA {}) before it starts (LBA {})",
                p.ending_lba, p.starting_lba
            )));
        }
        let sectors = p.ending_lba - p.starting_lba + 1;
        let (Some(start), Some(len)) = (
            p.starting_lba.checked_mul(SECTOR),
            sectors.checked_mul(SECTOR),
        ) else {
            return Err(BootDiskError::Gpt(format!(
                "partition {number}: LBAs {}..={} overflow a byte offset",
                p.starting_lba, p.ending_lba
            )));
        };
        partitions.push(Partition {
            number,
            start,
            len,
            part_uuid: Some(guid_string(&p.unique_partition_guid)),
            name: p.partition_name.as_str().to_string(),
        });
    }
    if partitions.is_empty() {
        return Err(BootDiskError::NoPartitionTable(
            "the GPT has no partition".into(),
        ));
    }
    Ok(Table {
        kind: TableKind::Gpt,
        partitions,
    })
}

/// `gptman`'s error with the cause of a failed primary and backup read spelled out.
fn gpt_error(e: &gptman::Error) -> String {
    match e {
        gptman::Error::ReadError(primary, backup) => format!(
            "primary header: {}; backup header: {}",
            gpt_error(primary),
            gpt_error(backup)
        ),
        gptman::Error::Io(io) => format!("I/O error: {io}"),
        other => other.to_string(),
    }
}

/// Checks the header at `lba` (if it has the GPT signature) against what `gptman` assumes;
/// true when a header is there.
fn precheck_gpt_header(disk: &dyn BlockBackend, lba: u64) -> Result<bool, BootDiskError> {
    let size = disk.size();
    let at = lba * SECTOR;
    let mut h = [0u8; 92];
    disk.read_at(&mut h, at).map_err(io_at(at))?;
    if &h[0..8] != GPT_SIGNATURE {
        return Ok(false);
    }
    let u32_at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().unwrap_or([0; 4]));
    let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().unwrap_or([0; 8]));
    let entries_lba = u64_at(72);
    let count = u32_at(80);
    let entry_size = u32_at(84);
    let which = if lba == 1 { "primary" } else { "backup" };
    if entry_size != 128 {
        return Err(BootDiskError::Gpt(format!(
            "{which} header: partition entries of {entry_size} bytes (only 128 is supported)"
        )));
    }
    if count > MAX_GPT_ENTRIES {
        return Err(BootDiskError::Gpt(format!(
            "{which} header: {count} partition entries (at most {MAX_GPT_ENTRIES})"
        )));
    }
    let array_len = u64::from(count) * 128;
    let array_at = entries_lba.checked_mul(SECTOR);
    match array_at.and_then(|a| a.checked_add(array_len)) {
        Some(end) if end <= size && entries_lba >= 1 => {}
        _ => {
            return Err(BootDiskError::Gpt(format!(
                "{which} header: the partition entry array (LBA {entries_lba}, {count} entries) \
                 lies outside the disk ({size} bytes): is the image truncated?"
            )));
        }
    }
    let array_at = entries_lba * SECTOR;
    let mut array = vec![0u8; array_len as usize];
    disk.read_at(&mut array, array_at)
        .map_err(io_at(array_at))?;
    for (i, e) in array.chunks_exact(128).enumerate() {
        let used = e[0..16].iter().any(|b| *b != 0);
        let start = u64::from_le_bytes(e[32..40].try_into().unwrap_or([0; 8]));
        if used && start == 0 {
            return Err(BootDiskError::Gpt(format!(
                "{which} header: partition {} starts at LBA 0",
                i + 1
            )));
        }
    }
    Ok(true)
}

/// A GUID as Linux prints it (mixed-endian, lower case).
fn guid_string(g: &[u8; 16]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        g[3],
        g[2],
        g[1],
        g[0],
        g[5],
        g[4],
        g[7],
        g[6],
        g[8],
        g[9],
        g[10],
        g[11],
        g[12],
        g[13],
        g[14],
        g[15]
    )
}

/// Reads into `buf` from the cursor's disk; a `Read + Seek` view for the table crates.
impl Read for DiskCursor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = self.disk.size();
        if self.pos >= size {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(size - self.pos) as usize;
        self.disk.read_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for DiskCursor<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let size = self.disk.size();
        let new = match to {
            SeekFrom::Start(o) => Some(o),
            SeekFrom::End(d) => size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let Some(new) = new else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of the disk or past 2^64",
            ));
        };
        self.pos = new;
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_print_as_linux_does() {
        // sfdisk's uuid=5b0ed9f6-6c3e-4a41-9d0a-7a1f0e2c9b11 on disk.
        let g = [
            0xf6, 0xd9, 0x0e, 0x5b, 0x3e, 0x6c, 0x41, 0x4a, 0x9d, 0x0a, 0x7a, 0x1f, 0x0e, 0x2c,
            0x9b, 0x11,
        ];
        assert_eq!(guid_string(&g), "5b0ed9f6-6c3e-4a41-9d0a-7a1f0e2c9b11");
    }
}
