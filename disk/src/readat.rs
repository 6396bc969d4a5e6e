//! Positional reads over a file or a byte slice, so the parsers run the same on disk and in fuzzing.

use std::io;
use std::os::unix::fs::FileExt;

/// A source of bytes read by offset: a file, or a slice in tests and fuzzing.
pub trait ReadAt {
    /// Reads as much of `buf` as the source holds at `offset`; returns how many bytes were read.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Total length in bytes.
    fn len(&self) -> io::Result<u64>;

    /// True when the source holds no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Reads into `buf` from `offset` until it is full or the source ends; returns how many
    /// bytes were read.
    fn read_until_end_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// Fills all of `buf` from `offset`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let n = self.read_until_end_at(buf, offset)?;
        if n < buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("short read at offset {}", offset + n as u64),
            ));
        }
        Ok(())
    }

    /// Fills all of `buf` from `offset`; bytes past the end of the source read as zeroes.
    fn read_zero_padded_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let n = self.read_until_end_at(buf, offset)?;
        buf[n..].fill(0);
        Ok(())
    }
}

impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        file_len(self)
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        if start >= <[u8]>::len(self) {
            return Ok(0);
        }
        let n = buf.len().min(<[u8]>::len(self) - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(<[u8]>::len(self) as u64)
    }
}

/// Length of a regular file or a block device (whose metadata length is 0).
pub fn file_len(file: &std::fs::File) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::fs::FileTypeExt;
    let meta = file.metadata()?;
    if meta.file_type().is_block_device() {
        // Seeking a shared handle is harmless here: every other access is positional.
        let mut f = file;
        return f.seek(SeekFrom::End(0));
    }
    Ok(meta.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_reads_stop_at_the_end() {
        let data = [1u8, 2, 3, 4];
        let mut buf = [0u8; 3];
        assert_eq!(data[..].read_at(&mut buf, 2).unwrap(), 2);
        assert_eq!(&buf[..2], &[3, 4]);
        assert_eq!(data[..].read_at(&mut buf, 9).unwrap(), 0);
        let err = data[..].read_exact_at(&mut buf, 2).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains("offset 4"), "{err}");
        let mut buf = [9u8; 4];
        data[..].read_zero_padded_at(&mut buf, 1).unwrap();
        assert_eq!(buf, [2, 3, 4, 0]);
        data[..].read_zero_padded_at(&mut buf, 9).unwrap();
        assert_eq!(buf, [0; 4]);
    }
}
