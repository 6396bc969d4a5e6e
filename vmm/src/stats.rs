//! KVM's binary statistics (KVM_GET_STATS_FD): per-vCPU counters such as exits by kind, read
//! when a vCPU stops so benchmarks can report what a boot cost in exits.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

/// `_IO(KVMIO, 0xce)`.
const KVM_GET_STATS_FD: libc::c_ulong = 0xaece;
/// Stat type bits of a descriptor's flags: cumulative counters are type 0.
const KVM_STATS_TYPE_MASK: u32 = 0xf;
const KVM_STATS_TYPE_CUMULATIVE: u32 = 0;

/// Errors reading KVM statistics.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The ioctl or a read failed (older kernels have no stats fd).
    #[error("KVM statistics: {0}")]
    Io(#[from] std::io::Error),
    /// The stats header or a descriptor is inconsistent.
    #[error("KVM statistics: malformed {0}")]
    Malformed(&'static str),
}

/// Reads every cumulative single-value counter of the KVM object behind `fd` (a VM or vCPU).
pub fn read(fd: &impl AsRawFd) -> Result<Vec<(String, u64)>, StatsError> {
    // SAFETY: KVM_GET_STATS_FD takes no argument and returns a new fd or -1.
    let raw = unsafe { libc::ioctl(fd.as_raw_fd(), KVM_GET_STATS_FD, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    let mut header = [0u8; 24];
    file.read_exact_at(&mut header, 0)?;
    let word = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let (name_size, count, desc_offset, data_offset) = (
        word(&header, 4) as usize,
        word(&header, 8) as usize,
        word(&header, 16),
        word(&header, 20),
    );
    if name_size == 0 || name_size > 256 || count > 4096 {
        return Err(StatsError::Malformed("header"));
    }
    let desc_len = 16 + name_size;
    let mut descs = vec![0u8; desc_len * count];
    file.read_exact_at(&mut descs, desc_offset.into())?;
    let mut out = Vec::with_capacity(count);
    for d in descs.chunks_exact(desc_len) {
        let flags = word(d, 0);
        let size = u16::from_le_bytes([d[6], d[7]]);
        let offset = word(d, 8);
        let name = &d[16..];
        let name = String::from_utf8_lossy(
            &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())],
        );
        if flags & KVM_STATS_TYPE_MASK != KVM_STATS_TYPE_CUMULATIVE || size != 1 {
            continue;
        }
        let mut v = [0u8; 8];
        file.read_exact_at(&mut v, u64::from(data_offset) + u64::from(offset))?;
        out.push((name.into_owned(), u64::from_le_bytes(v)));
    }
    Ok(out)
}

/// Adds `b` into `a` by name.
pub fn merge(a: &mut Vec<(String, u64)>, b: Vec<(String, u64)>) {
    for (name, v) in b {
        match a.iter_mut().find(|(n, _)| *n == name) {
            Some((_, total)) => *total += v,
            None => a.push((name, v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_sums_by_name() {
        let mut a = vec![("exits".to_string(), 3)];
        merge(&mut a, vec![("exits".into(), 4), ("io_exits".into(), 1)]);
        assert_eq!(
            a,
            vec![("exits".to_string(), 7), ("io_exits".to_string(), 1)]
        );
    }
}
