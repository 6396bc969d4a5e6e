//! A read-only ISO 9660 reader with Joliet names: no allocation, no panics, every length from
//! the disk checked. It reads 2048-byte blocks through a callback, so the guest runs it over
//! virtio-blk and host tests over a byte slice (`tests/iso9660.rs` includes this file).
//!
//! Enough for a config drive: the volume label, a path lookup, a file read. Not supported (each
//! an error): multi-extent files, interleaving, directories larger than `MAX_DIR_BYTES`.

/// Logical block size; volumes with any other are refused.
pub const BLOCK: usize = 2048;
/// The first volume descriptor's block.
const FIRST_DESCRIPTOR: u32 = 16;
/// Descriptors scanned before giving up on a terminator.
const MAX_DESCRIPTORS: u32 = 32;
/// Largest directory read (a config drive's hold a few entries).
pub const MAX_DIR_BYTES: u32 = 64 * 1024;
/// Most path components followed (ISO 9660 has at most 8 levels).
pub const MAX_COMPONENTS: usize = 8;
const FLAG_DIR: u8 = 0x02;
const FLAG_MULTI_EXTENT: u8 = 0x80;

/// Why a read failed; `message` gives the text the guest prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsoError {
    /// The block device failed to read this block.
    Read(u32),
    /// No `CD001` primary volume descriptor at block 16.
    NotIso,
    /// A descriptor or directory field is out of range or inconsistent.
    Malformed(&'static str),
    /// A path component was not found.
    NotFound,
    /// A path component names a file where a directory is needed, or the reverse.
    WrongKind,
    /// The path is empty or has too many components.
    BadPath,
    /// A feature this reader leaves out.
    Unsupported(&'static str),
}

impl IsoError {
    /// A short description for the console.
    pub fn message(&self) -> &'static str {
        match self {
            IsoError::Read(_) => "block read failed",
            IsoError::NotIso => "not an ISO 9660 volume",
            IsoError::Malformed(what) => what,
            IsoError::NotFound => "no such file",
            IsoError::WrongKind => "a path component is of the wrong kind",
            IsoError::BadPath => "bad path",
            IsoError::Unsupported(what) => what,
        }
    }
}

/// A file or directory: where its data starts and how long it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// First block.
    pub lba: u32,
    /// Length in bytes.
    pub size: u32,
    /// A directory (else a file).
    pub dir: bool,
}

/// An opened volume.
#[derive(Clone, Copy, Debug)]
pub struct Volume {
    label: [u8; 32],
    label_len: usize,
    /// The volume's size in blocks, from the primary descriptor.
    pub blocks: u32,
    root: Extent,
    /// Names come from the Joliet tree (UCS-2) rather than the primary one.
    pub joliet: bool,
}

/// Reads block `lba` into the buffer; false when the device fails.
pub trait ReadBlock {
    /// Fills `buf` with block `lba`.
    fn read_block(&mut self, lba: u32, buf: &mut [u8; BLOCK]) -> bool;
}

impl<F: FnMut(u32, &mut [u8; BLOCK]) -> bool> ReadBlock for F {
    fn read_block(&mut self, lba: u32, buf: &mut [u8; BLOCK]) -> bool {
        self(lba, buf)
    }
}

fn read(dev: &mut impl ReadBlock, lba: u32, buf: &mut [u8; BLOCK]) -> Result<(), IsoError> {
    if dev.read_block(lba, buf) {
        Ok(())
    } else {
        Err(IsoError::Read(lba))
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A both-endian 32-bit field whose halves must agree.
fn both32(b: &[u8], at: usize, what: &'static str) -> Result<u32, IsoError> {
    let v = le32(b, at);
    if v == be32(b, at + 4) {
        Ok(v)
    } else {
        Err(IsoError::Malformed(what))
    }
}

impl Volume {
    /// Reads the volume descriptors: the primary one is required, a Joliet one is used when
    /// present.
    pub fn open(dev: &mut impl ReadBlock) -> Result<Volume, IsoError> {
        let mut buf = [0u8; BLOCK];
        let mut primary: Option<Volume> = None;
        let mut joliet_root = None;
        for lba in FIRST_DESCRIPTOR..FIRST_DESCRIPTOR + MAX_DESCRIPTORS {
            read(dev, lba, &mut buf)?;
            if &buf[1..6] != b"CD001" || buf[6] != 1 {
                if lba == FIRST_DESCRIPTOR {
                    return Err(IsoError::NotIso);
                }
                return Err(IsoError::Malformed("volume descriptor without CD001"));
            }
            match buf[0] {
                1 if primary.is_none() => primary = Some(Self::primary(&buf)?),
                2 if buf[88] == b'%'
                    && buf[89] == b'/'
                    && matches!(buf[90], b'@' | b'C' | b'E') =>
                {
                    joliet_root = Some(root_record(&buf)?);
                }
                255 => break,
                _ => {}
            }
        }
        let mut volume = primary.ok_or(IsoError::NotIso)?;
        if let Some(root) = joliet_root {
            volume.root = root;
            volume.joliet = true;
        }
        volume.check_extent(volume.root)?;
        Ok(volume)
    }

    fn primary(buf: &[u8; BLOCK]) -> Result<Volume, IsoError> {
        let block_size = u16::from_le_bytes([buf[128], buf[129]]);
        if block_size as usize != BLOCK || u16::from_be_bytes([buf[130], buf[131]]) != block_size {
            return Err(IsoError::Unsupported("logical block size other than 2048"));
        }
        let mut label = [0u8; 32];
        label.copy_from_slice(&buf[40..72]);
        let label_len = label
            .iter()
            .rposition(|&b| b != b' ' && b != 0)
            .map_or(0, |i| i + 1);
        Ok(Volume {
            label,
            label_len,
            blocks: both32(buf, 80, "volume size fields disagree")?,
            root: root_record(buf)?,
            joliet: false,
        })
    }

    /// The primary volume identifier without its padding.
    pub fn label(&self) -> &[u8] {
        &self.label[..self.label_len]
    }

    fn check_extent(&self, e: Extent) -> Result<(), IsoError> {
        let blocks = e.size.div_ceil(BLOCK as u32);
        match e.lba.checked_add(blocks) {
            Some(end) if end <= self.blocks => Ok(()),
            _ => Err(IsoError::Malformed("extent past the end of the volume")),
        }
    }

    /// Finds `path` (components separated by `/`, no leading slash needed).
    pub fn lookup(&self, dev: &mut impl ReadBlock, path: &[u8]) -> Result<Extent, IsoError> {
        let components = || path.split(|&b| b == b'/').filter(|c| !c.is_empty());
        if !(1..=MAX_COMPONENTS).contains(&components().count()) {
            return Err(IsoError::BadPath);
        }
        let mut current = self.root;
        for component in components() {
            if !current.dir {
                return Err(IsoError::WrongKind);
            }
            current = self.find(dev, current, component)?;
        }
        Ok(current)
    }

    /// Searches one directory for `name`.
    fn find(&self, dev: &mut impl ReadBlock, dir: Extent, name: &[u8]) -> Result<Extent, IsoError> {
        if dir.size > MAX_DIR_BYTES {
            return Err(IsoError::Unsupported("directory larger than 64 KiB"));
        }
        let mut buf = [0u8; BLOCK];
        for i in 0..dir.size.div_ceil(BLOCK as u32) {
            read(dev, dir.lba + i, &mut buf)?;
            let end = (dir.size - i * BLOCK as u32).min(BLOCK as u32) as usize;
            let mut at = 0;
            while at < end {
                let len = buf[at] as usize;
                if len == 0 {
                    break; // the rest of this block is padding
                }
                let record = buf
                    .get(at..at + len)
                    .filter(|_| at + len <= end)
                    .ok_or(IsoError::Malformed("directory record crosses its block"))?;
                let (extent, id) = parse_record(record)?;
                let dot = id.len() == 1 && id[0] <= 1;
                if !dot && self.name_matches(id, name) {
                    self.check_extent(extent)?;
                    return Ok(extent);
                }
                at += len;
            }
        }
        Err(IsoError::NotFound)
    }

    fn name_matches(&self, id: &[u8], name: &[u8]) -> bool {
        if self.joliet {
            joliet_matches(id, name)
        } else {
            primary_matches(id, name)
        }
    }

    /// Reads the start of a file into `out`; returns the bytes read (`min(size, out.len())`).
    pub fn read_file(
        &self,
        dev: &mut impl ReadBlock,
        file: Extent,
        out: &mut [u8],
    ) -> Result<usize, IsoError> {
        if file.dir {
            return Err(IsoError::WrongKind);
        }
        self.check_extent(file)?;
        let want = (file.size as usize).min(out.len());
        let mut buf = [0u8; BLOCK];
        let mut done = 0;
        let mut lba = file.lba;
        while done < want {
            read(dev, lba, &mut buf)?;
            let n = (want - done).min(BLOCK);
            out[done..done + n].copy_from_slice(&buf[..n]);
            done += n;
            lba += 1;
        }
        Ok(want)
    }
}

fn root_record(descriptor: &[u8; BLOCK]) -> Result<Extent, IsoError> {
    let record = &descriptor[156..190];
    if record[0] != 34 {
        return Err(IsoError::Malformed(
            "root directory record length is not 34",
        ));
    }
    let (extent, _) = parse_record(record)?;
    if !extent.dir {
        return Err(IsoError::Malformed("root record is not a directory"));
    }
    Ok(extent)
}

/// A directory record's extent and identifier; `record` is exactly the record's bytes.
fn parse_record(record: &[u8]) -> Result<(Extent, &[u8]), IsoError> {
    if record.len() < 34 {
        return Err(IsoError::Malformed(
            "directory record shorter than 34 bytes",
        ));
    }
    let id_len = record[32] as usize;
    let id = record
        .get(33..33 + id_len)
        .filter(|id| !id.is_empty())
        .ok_or(IsoError::Malformed("file identifier past its record"))?;
    let flags = record[25];
    if flags & FLAG_MULTI_EXTENT != 0 {
        return Err(IsoError::Unsupported("multi-extent file"));
    }
    if record[26] != 0 || record[27] != 0 {
        return Err(IsoError::Unsupported("interleaved file"));
    }
    let extent = Extent {
        lba: both32(record, 2, "extent location fields disagree")?,
        size: both32(record, 10, "data length fields disagree")?,
        dir: flags & FLAG_DIR != 0,
    };
    Ok((extent, id))
}

/// Compares a UCS-2 big-endian identifier with a UTF-8 name; a `;1` version is ignored.
fn joliet_matches(id: &[u8], name: &[u8]) -> bool {
    if !id.len().is_multiple_of(2) {
        return false;
    }
    let mut units = id.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
    let mut chars = Utf8 { bytes: name };
    loop {
        match (units.next(), chars.next()) {
            (None, None) => return true,
            (Some(u), Some(Some(c))) if u32::from(u) == c => {}
            // A version suffix after the whole name.
            (Some(0x3b), None) => return units.all(|u| (0x30..=0x39).contains(&u)),
            _ => return false,
        }
    }
}

/// Compares a primary identifier (`NAME.EXT;1`, upper case) with a name, ignoring case, the
/// version and a trailing dot.
fn primary_matches(id: &[u8], name: &[u8]) -> bool {
    let id = match id.iter().position(|&b| b == b';') {
        Some(i) => &id[..i],
        None => id,
    };
    let id = id.strip_suffix(b".").unwrap_or(id);
    id.eq_ignore_ascii_case(name)
}

/// Decodes UTF-8 code points; `Some(None)` for an invalid sequence.
struct Utf8<'a> {
    bytes: &'a [u8],
}

impl Iterator for Utf8<'_> {
    type Item = Option<u32>;

    fn next(&mut self) -> Option<Option<u32>> {
        let (&first, rest) = self.bytes.split_first()?;
        let (len, init) = match first {
            0x00..=0x7f => (1, u32::from(first)),
            0xc2..=0xdf => (2, u32::from(first & 0x1f)),
            0xe0..=0xef => (3, u32::from(first & 0x0f)),
            0xf0..=0xf4 => (4, u32::from(first & 0x07)),
            _ => {
                self.bytes = rest;
                return Some(None);
            }
        };
        let Some(tail) = rest.get(..len - 1) else {
            self.bytes = &[];
            return Some(None);
        };
        self.bytes = &rest[len - 1..];
        let mut c = init;
        for &b in tail {
            if b & 0xc0 != 0x80 {
                return Some(None);
            }
            c = (c << 6) | u32::from(b & 0x3f);
        }
        Some(Some(c))
    }
}
