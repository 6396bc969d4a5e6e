//! The guest's memory statistics (virtio 1.2 section 5.5.6.3).

/// Bytes in one statistic: a 16-bit tag and a 64-bit value, packed.
pub const STAT_SIZE: usize = 10;

/// What the guest last reported; a statistic it did not send stays `None`. (The control
/// socket's JSON form is `vmm_contract::control::GuestMemoryStats`.)
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GuestMemoryStats {
    /// Bytes swapped in.
    pub swap_in: Option<u64>,
    /// Bytes swapped out.
    pub swap_out: Option<u64>,
    /// Major page faults.
    pub major_faults: Option<u64>,
    /// Minor page faults.
    pub minor_faults: Option<u64>,
    /// Bytes of unused memory.
    pub free_memory: Option<u64>,
    /// Bytes of memory the guest sees.
    pub total_memory: Option<u64>,
    /// Bytes available without swapping (the kernel's estimate).
    pub available_memory: Option<u64>,
    /// Bytes of disk caches.
    pub disk_caches: Option<u64>,
    /// Successful hugetlb page allocations.
    pub hugetlb_allocations: Option<u64>,
    /// Failed hugetlb page allocations.
    pub hugetlb_failures: Option<u64>,
}

impl GuestMemoryStats {
    /// Records statistic `tag`; unknown tags (newer drivers) are ignored.
    pub fn set(&mut self, tag: u16, value: u64) {
        let slot = match tag {
            0 => &mut self.swap_in,
            1 => &mut self.swap_out,
            2 => &mut self.major_faults,
            3 => &mut self.minor_faults,
            4 => &mut self.free_memory,
            5 => &mut self.total_memory,
            6 => &mut self.available_memory,
            7 => &mut self.disk_caches,
            8 => &mut self.hugetlb_allocations,
            9 => &mut self.hugetlb_failures,
            _ => return,
        };
        *slot = Some(value);
    }

    /// Parses a packed array of statistics; a trailing partial entry is ignored.
    pub fn parse(bytes: &[u8]) -> Self {
        let mut s = Self::default();
        for e in bytes.chunks_exact(STAT_SIZE) {
            let tag = u16::from_le_bytes([e[0], e[1]]);
            let mut v = [0u8; 8];
            v.copy_from_slice(&e[2..]);
            s.set(tag, u64::from_le_bytes(v));
        }
        s
    }
}
