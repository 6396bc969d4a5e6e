//! Raw disks: the guest's bytes are the file's bytes.

use super::{BlockBackend, BlockResult, BlockStatus, check_range, read_only_err};
use crate::readat::file_len;
use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Zeroes written where the file system cannot zero a range itself.
static ZEROES: [u8; 65536] = [0; 65536];

/// A raw file or block device.
#[derive(Debug)]
pub struct RawBackend {
    file: File,
    size: u64,
    read_only: bool,
}

impl RawBackend {
    /// Opens `path` as a raw disk. Callers that take a path from a user should use
    /// [`crate::open_disk`], which checks the content is not another format.
    pub fn open(path: &Path, read_only: bool) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)?;
        Self::from_file(file, read_only)
    }

    /// Wraps an open file.
    pub fn from_file(file: File, read_only: bool) -> io::Result<Self> {
        let size = file_len(&file)?;
        Ok(RawBackend {
            file,
            size,
            read_only,
        })
    }

    /// Runs `fallocate`, reporting `Unsupported` when the file system cannot do `mode`.
    fn fallocate(&self, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
        let (Ok(off), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "range too large",
            ));
        };
        loop {
            // SAFETY: fallocate only reads its integer arguments; the descriptor is owned by
            // `self.file` and stays open for the call.
            let rc = unsafe { libc::fallocate(self.file.as_raw_fd(), mode, off, len) };
            if rc == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EOPNOTSUPP) | Some(libc::ENODEV) | Some(libc::ENOSYS) => {
                    return Err(io::Error::new(io::ErrorKind::Unsupported, err));
                }
                _ => return Err(err),
            }
        }
    }

    /// lseek with SEEK_DATA or SEEK_HOLE. The file position is never used for I/O here (every
    /// access is positional), so moving it is harmless.
    fn seek(&self, whence: libc::c_int, offset: u64) -> io::Result<u64> {
        let off = libc::off_t::try_from(offset).map_err(io::Error::other)?;
        // SAFETY: lseek takes integers only; the descriptor is owned by `self.file`.
        let rc = unsafe { libc::lseek(self.file.as_raw_fd(), off, whence) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc as u64)
        }
    }

    fn write_zero_bytes(&self, mut offset: u64, len: u64) -> io::Result<()> {
        let end = offset + len;
        while offset < end {
            let n = (end - offset).min(ZEROES.len() as u64) as usize;
            self.file.write_all_at(&ZEROES[..n], offset)?;
            offset += n as u64;
        }
        Ok(())
    }

    fn writable(&self, offset: u64, len: u64, what: &str) -> io::Result<()> {
        if self.read_only {
            return Err(read_only_err());
        }
        check_range(self.size, offset, len, what)
    }
}

impl BlockBackend for RawBackend {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> BlockResult<()> {
        check_range(self.size, offset, buf.len() as u64, "read")?;
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> BlockResult<()> {
        self.writable(offset, buf.len() as u64, "write")?;
        self.file.write_all_at(buf, offset)
    }

    fn read_vectored_at(
        &self,
        mut bufs: &mut [IoSliceMut<'_>],
        mut offset: u64,
    ) -> BlockResult<()> {
        let total: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        check_range(self.size, offset, total, "read")?;
        while !bufs.is_empty() {
            let iov_count = bufs.len().min(1024) as libc::c_int;
            let off = libc::off_t::try_from(offset).map_err(io::Error::other)?;
            // SAFETY: IoSliceMut is ABI-compatible with iovec and each one borrows a live,
            // writable buffer for the duration of the call; the descriptor is open.
            let n = retry(|| unsafe {
                libc::preadv(self.file.as_raw_fd(), bufs.as_ptr().cast(), iov_count, off)
            })?;
            if n == 0 {
                let msg = "raw disk shrank under us";
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, msg));
            }
            offset += n as u64;
            IoSliceMut::advance_slices(&mut bufs, n);
        }
        Ok(())
    }

    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], mut offset: u64) -> BlockResult<()> {
        let total: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        self.writable(offset, total, "write")?;
        // advance_slices needs the list mutable; copy it to the stack when short (the usual
        // virtio request) so the hot path does not allocate.
        let mut local = [IoSlice::new(&[]); 16];
        let mut owned = Vec::new();
        let mut list: &mut [IoSlice<'_>] = if bufs.len() <= local.len() {
            local[..bufs.len()].copy_from_slice(bufs);
            &mut local[..bufs.len()]
        } else {
            owned.extend_from_slice(bufs);
            &mut owned[..]
        };
        while !list.is_empty() {
            let iov_count = list.len().min(1024) as libc::c_int;
            let off = libc::off_t::try_from(offset).map_err(io::Error::other)?;
            // SAFETY: IoSlice is ABI-compatible with iovec and each one borrows a live buffer
            // for the duration of the call; the descriptor is open.
            let n = retry(|| unsafe {
                libc::pwritev(self.file.as_raw_fd(), list.as_ptr().cast(), iov_count, off)
            })?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            offset += n as u64;
            IoSlice::advance_slices(&mut list, n);
        }
        Ok(())
    }

    fn block_status(&self, offset: u64, len: u64) -> BlockResult<(BlockStatus, u64)> {
        check_range(self.size, offset, len, "block status")?;
        let end = offset + len;
        let data = match self.seek(libc::SEEK_DATA, offset) {
            Ok(d) => d,
            // ENXIO: no data after `offset`; other errors: the file system cannot tell.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => return Ok((BlockStatus::Zero, len)),
            Err(_) => return Ok((BlockStatus::Data, len)),
        };
        if data > offset {
            return Ok((BlockStatus::Zero, data.min(end) - offset));
        }
        let hole = self.seek(libc::SEEK_HOLE, offset).unwrap_or(end);
        Ok((BlockStatus::Data, hole.clamp(offset + 1, end) - offset))
    }

    fn flush(&self) -> BlockResult<()> {
        self.file.sync_data()
    }

    fn discard(&self, offset: u64, len: u64) -> BlockResult<()> {
        self.writable(offset, len, "discard")?;
        match self.fallocate(
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        ) {
            // Discard is advisory: a file system that cannot punch holes keeps the data.
            Err(e) if e.kind() == io::ErrorKind::Unsupported => Ok(()),
            other => other,
        }
    }

    fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> BlockResult<()> {
        self.writable(offset, len, "write-zeroes")?;
        let mode = if unmap {
            libc::FALLOC_FL_PUNCH_HOLE
        } else {
            libc::FALLOC_FL_ZERO_RANGE
        };
        match self.fallocate(mode | libc::FALLOC_FL_KEEP_SIZE, offset, len) {
            Err(e) if e.kind() == io::ErrorKind::Unsupported => self.write_zero_bytes(offset, len),
            other => other,
        }
    }
}

/// Runs a system call returning a byte count until it is not interrupted.
fn retry(mut call: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
