//! Catches a truncated initrd before boot: the kernel would otherwise panic minutes later
//! (here, where Linux boots slowly) with "junk in compressed archive" or a missing /init.
//! gzip archives are decompressed to nowhere; plain cpio (newc) archives are walked to their
//! trailer. Other compressions (xz, zstd, lz4) are passed through unchecked.

use std::io::{self, Read, Seek, SeekFrom};

const CPIO_MAGIC: &[u8] = b"07070";
const CPIO_HEADER: usize = 110;
const CPIO_TRAILER: &[u8] = b"TRAILER!!!";

/// Why an initrd was refused.
#[derive(Debug, thiserror::Error)]
pub enum InitrdError {
    /// Reading the file failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The gzip stream ends early or is corrupt.
    #[error("gzip data is truncated or corrupt ({0})")]
    Gzip(io::Error),
    /// The cpio archive ends before its trailer.
    #[error("cpio archive is truncated (no TRAILER!!! entry)")]
    CpioTruncated,
    /// A cpio header field is not hexadecimal.
    #[error("cpio archive has a malformed header at offset {0}")]
    CpioHeader(u64),
}

/// Checks the initrd at the start of `f`; leaves the position unspecified.
pub fn check<F: Read + Seek>(f: &mut F) -> Result<(), InitrdError> {
    let mut magic = [0u8; 6];
    f.rewind()?;
    let n = read_up_to(f, &mut magic)?;
    f.rewind()?;
    if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        let mut gz = flate2::read::MultiGzDecoder::new(io::BufReader::new(f));
        io::copy(&mut gz, &mut io::sink()).map_err(InitrdError::Gzip)?;
        Ok(())
    } else if n == 6 && magic.starts_with(CPIO_MAGIC) {
        walk_cpio(f)
    } else {
        Ok(())
    }
}

fn read_up_to<F: Read>(f: &mut F, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn hex_field(h: &[u8], at: usize, offset: u64) -> Result<u64, InitrdError> {
    std::str::from_utf8(&h[at..at + 8])
        .ok()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .ok_or(InitrdError::CpioHeader(offset))
}

fn align4(n: u64) -> u64 {
    (n + 3) & !3
}

fn walk_cpio<F: Read + Seek>(f: &mut F) -> Result<(), InitrdError> {
    let len = f.seek(SeekFrom::End(0))?;
    let mut offset = 0u64;
    let mut header = [0u8; CPIO_HEADER];
    loop {
        if offset + CPIO_HEADER as u64 > len {
            return Err(InitrdError::CpioTruncated);
        }
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(&mut header)?;
        if !header.starts_with(CPIO_MAGIC) {
            return Err(InitrdError::CpioHeader(offset));
        }
        let file_size = hex_field(&header, 54, offset)?;
        let name_size = hex_field(&header, 94, offset)?;
        let name_end = offset + CPIO_HEADER as u64 + name_size;
        if name_end > len {
            return Err(InitrdError::CpioTruncated);
        }
        let mut name = vec![0u8; name_size.min(4096) as usize];
        f.read_exact(&mut name)?;
        let data_end = align4(name_end) + file_size;
        if data_end > len {
            return Err(InitrdError::CpioTruncated);
        }
        if name.strip_suffix(b"\0").unwrap_or(&name) == CPIO_TRAILER {
            return Ok(());
        }
        offset = align4(data_end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    fn entry(name: &str, data: &[u8]) -> Vec<u8> {
        let mut v = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            1,
            0o100644,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        )
        .into_bytes();
        v.extend_from_slice(name.as_bytes());
        v.push(0);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v.extend_from_slice(data);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    fn archive() -> Vec<u8> {
        let mut a = entry("init", b"#!/bin/sh\necho hi\n");
        a.extend(entry("TRAILER!!!", b""));
        a
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn whole_archives_pass() {
        check(&mut Cursor::new(archive())).unwrap();
        check(&mut Cursor::new(gzip(&archive()))).unwrap();
        check(&mut Cursor::new(b"\xfd7zXZ\0 anything".to_vec())).unwrap();
    }

    #[test]
    fn truncated_archives_fail() {
        let a = archive();
        let cut = a[..a.len() - 20].to_vec();
        assert!(matches!(
            check(&mut Cursor::new(cut)),
            Err(InitrdError::CpioTruncated)
        ));
        let g = gzip(&archive());
        let cut = g[..g.len() / 2].to_vec();
        assert!(matches!(
            check(&mut Cursor::new(cut)),
            Err(InitrdError::Gzip(_))
        ));
    }
}
