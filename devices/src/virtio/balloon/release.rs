//! Handing guest pages back to the host: madvise on the VMM's own mapping of guest memory.

use vm_memory::{
    Address, GuestAddress, GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress,
};

use crate::virtio::Memory;

/// Frees the host memory behind a guest range; the guest sees zeroes (or the file's content)
/// when it touches the range again. The VMM may supply its own (e.g. to also drop hugepages).
pub trait PageReleaser: Send + Sync {
    /// Releases `[gpa, gpa + len)`; both page-aligned and inside guest memory.
    fn release(&self, mem: &Memory, gpa: GuestAddress, len: u64) -> std::io::Result<()>;
}

/// madvise(MADV_DONTNEED) on private mappings, MADV_REMOVE on shared ones (where DONTNEED
/// would keep the pages in the shared file).
#[derive(Debug, Default, Clone, Copy)]
pub struct MadviseReleaser;

impl PageReleaser for MadviseReleaser {
    fn release(&self, mem: &Memory, gpa: GuestAddress, len: u64) -> std::io::Result<()> {
        let mut addr = gpa;
        let mut left = len;
        while left > 0 {
            let region = mem.find_region(addr).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{:#x} is not guest memory", addr.0),
                )
            })?;
            let offset = addr.unchecked_offset_from(region.start_addr());
            let n = left.min(region.len() - offset);
            let host = region
                .get_host_address(MemoryRegionAddress(offset))
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let advice = if region.flags() & libc::MAP_SHARED != 0 {
                libc::MADV_REMOVE
            } else {
                libc::MADV_DONTNEED
            };
            // SAFETY: [host, host + n) lies inside one mapping this process owns for guest
            // memory (bounded by the region above). Guest memory is only ever reached through
            // volatile accesses, so no Rust reference observes the pages being replaced.
            let r = unsafe { libc::madvise(host.cast(), n as usize, advice) };
            if r != 0 {
                return Err(std::io::Error::last_os_error());
            }
            addr = addr.unchecked_add(n);
            left -= n;
        }
        Ok(())
    }
}
