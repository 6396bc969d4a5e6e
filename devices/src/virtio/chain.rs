//! A descriptor chain flattened into its device-readable and device-writable parts, checked
//! against guest memory once, then read and written at byte offsets whatever the framing.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::Memory;
use super::queue::Chain;

/// Why a chain cannot be used; the request fails, the device lives on.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    /// The chain had no descriptor at all (head index beyond the table, or unreadable table).
    #[error("descriptor chain with head {0} is empty or unreadable")]
    Empty(u16),
    /// The chain ended on a descriptor that still says NEXT: a loop, a `next` beyond the table,
    /// or a descriptor outside guest memory.
    #[error("descriptor chain with head {0} is cut short (loop or bad next index)")]
    Truncated(u16),
    /// A buffer does not lie in guest memory.
    #[error("descriptor buffer {addr:#x}+{len:#x} is outside guest memory")]
    OutOfMemory { addr: u64, len: u32 },
    /// A device-readable descriptor after a device-writable one (virtio 1.2 section 2.7.4.2).
    #[error("device-readable descriptor after a device-writable one in chain {0}")]
    ReadableAfterWritable(u16),
    /// More descriptors than the device accepts (its SEG_MAX or a fixed bound).
    #[error("descriptor chain with head {head} has more than {max} descriptors")]
    TooManyDescriptors { head: u16, max: usize },
    /// A read or write past the end of the part of the chain it targets.
    #[error("access of {len} bytes at offset {offset} past the end of a {avail}-byte buffer")]
    OutOfBounds { offset: u64, len: usize, avail: u64 },
    /// Guest memory refused an access that was checked before (should not happen).
    #[error("guest memory access failed at {0:#x}")]
    Memory(u64),
}

/// One guest buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Guest physical address.
    pub addr: GuestAddress,
    /// Length in bytes (never zero: empty descriptors are skipped).
    pub len: u32,
}

/// A chain's buffers, split by direction. Reused across requests so serving a queue does not
/// allocate once the vectors reached their working size.
#[derive(Debug, Default)]
pub struct Segments {
    head: u16,
    readable: Vec<Segment>,
    writable: Vec<Segment>,
    readable_len: u64,
    writable_len: u64,
}

impl Segments {
    /// Empty segments, with room for `capacity` descriptors before the first reallocation.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            readable: Vec::with_capacity(capacity),
            writable: Vec::with_capacity(capacity),
            ..Self::default()
        }
    }

    /// Replaces the contents with `chain`'s descriptors, checking every buffer against `mem`.
    /// At most `max_descriptors` non-empty descriptors are accepted.
    pub fn parse(
        &mut self,
        chain: Chain<'_>,
        mem: &Memory,
        max_descriptors: usize,
    ) -> Result<(), ChainError> {
        self.head = chain.head_index();
        self.readable.clear();
        self.writable.clear();
        self.readable_len = 0;
        self.writable_len = 0;
        let head = self.head;
        let mut seen_any = false;
        let mut last_has_next = false;
        for desc in chain {
            seen_any = true;
            last_has_next = desc.has_next();
            if desc.len() == 0 {
                continue;
            }
            if self.readable.len() + self.writable.len() >= max_descriptors {
                return Err(ChainError::TooManyDescriptors {
                    head,
                    max: max_descriptors,
                });
            }
            let seg = Segment {
                addr: desc.addr(),
                len: desc.len(),
            };
            if !GuestMemoryBackend::check_range(mem, seg.addr, seg.len as usize) {
                return Err(ChainError::OutOfMemory {
                    addr: seg.addr.0,
                    len: seg.len,
                });
            }
            if desc.is_write_only() {
                self.writable_len += u64::from(seg.len);
                self.writable.push(seg);
            } else {
                if !self.writable.is_empty() {
                    return Err(ChainError::ReadableAfterWritable(head));
                }
                self.readable_len += u64::from(seg.len);
                self.readable.push(seg);
            }
        }
        if !seen_any {
            return Err(ChainError::Empty(head));
        }
        if last_has_next {
            return Err(ChainError::Truncated(head));
        }
        Ok(())
    }

    /// The chain's head index.
    pub fn head(&self) -> u16 {
        self.head
    }

    /// Total bytes the device may read.
    pub fn readable_len(&self) -> u64 {
        self.readable_len
    }

    /// Total bytes the device may write.
    pub fn writable_len(&self) -> u64 {
        self.writable_len
    }

    /// The device-readable buffers.
    pub fn readable(&self) -> &[Segment] {
        &self.readable
    }

    /// The device-writable buffers.
    pub fn writable(&self) -> &[Segment] {
        &self.writable
    }

    /// Fills `buf` from the readable part, starting `offset` bytes in.
    pub fn read_at(&self, mem: &Memory, offset: u64, buf: &mut [u8]) -> Result<(), ChainError> {
        copy(
            &self.readable,
            self.readable_len,
            offset,
            buf.len(),
            |addr, start, n| mem.read_slice(&mut buf[start..start + n], addr),
        )
    }

    /// Writes `buf` into the writable part, starting `offset` bytes in.
    pub fn write_at(&self, mem: &Memory, offset: u64, buf: &[u8]) -> Result<(), ChainError> {
        write_segments(mem, &self.writable, self.writable_len, offset, buf)
    }
}

/// Writes `buf` into `segs` (holding `total` bytes), starting `offset` bytes in.
pub fn write_segments(
    mem: &Memory,
    segs: &[Segment],
    total: u64,
    offset: u64,
    buf: &[u8],
) -> Result<(), ChainError> {
    copy(segs, total, offset, buf.len(), |addr, start, n| {
        mem.write_slice(&buf[start..start + n], addr)
    })
}

/// Walks `segs` from byte `offset` for `len` bytes, calling `f(guest_addr, buf_offset, n)` for
/// each piece.
fn copy<F>(
    segs: &[Segment],
    total: u64,
    offset: u64,
    len: usize,
    mut f: F,
) -> Result<(), ChainError>
where
    F: FnMut(GuestAddress, usize, usize) -> Result<(), vm_memory::GuestMemoryError>,
{
    let oob = ChainError::OutOfBounds {
        offset,
        len,
        avail: total,
    };
    let end = offset.checked_add(len as u64).ok_or(oob.clone())?;
    if end > total {
        return Err(oob);
    }
    let mut skip = offset;
    let mut done = 0usize;
    for seg in segs {
        if done == len {
            break;
        }
        let seg_len = u64::from(seg.len);
        if skip >= seg_len {
            skip -= seg_len;
            continue;
        }
        // Both bounded by a u32 descriptor length and by `len`.
        let n = ((seg_len - skip) as usize).min(len - done);
        let addr = GuestAddress(seg.addr.0 + skip);
        f(addr, done, n).map_err(|_| ChainError::Memory(addr.0))?;
        done += n;
        skip = 0;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::test_utils::{TestQueue, desc, rdesc, test_memory, wdesc};
    use virtio_queue::desc::RawDescriptor;

    fn parse(descs: &[RawDescriptor], max: usize) -> Result<Segments, ChainError> {
        let mem = test_memory();
        let tq = TestQueue::new(&mem, 16);
        tq.add_chain(descs);
        let mut q = tq.queue();
        let chain = crate::virtio::queue::pop(&mut q, &mem).unwrap().unwrap();
        let mut s = Segments::default();
        s.parse(chain, &mem, max).map(|_| s)
    }

    #[test]
    fn splits_by_direction_and_copies_across_segments() {
        let mem = test_memory();
        let tq = TestQueue::new(&mem, 16);
        tq.add_chain(&[
            rdesc(0x10000, 3),
            rdesc(0x20000, 5),
            wdesc(0x30000, 4),
            wdesc(0x40000, 4),
        ]);
        mem.write_slice(&[1, 2, 3], GuestAddress(0x10000)).unwrap();
        mem.write_slice(&[4, 5, 6, 7, 8], GuestAddress(0x20000))
            .unwrap();
        let mut q = tq.queue();
        let chain = crate::virtio::queue::pop(&mut q, &mem).unwrap().unwrap();
        let mut s = Segments::default();
        s.parse(chain, &mem, 8).unwrap();
        assert_eq!((s.readable_len(), s.writable_len()), (8, 8));
        let mut b = [0u8; 4];
        s.read_at(&mem, 2, &mut b).unwrap();
        assert_eq!(b, [3, 4, 5, 6]);
        s.write_at(&mem, 2, &[9, 9, 9, 9]).unwrap();
        let mut out = [0u8; 8];
        mem.read_slice(&mut out[..4], GuestAddress(0x30000))
            .unwrap();
        mem.read_slice(&mut out[4..], GuestAddress(0x40000))
            .unwrap();
        assert_eq!(out, [0, 0, 9, 9, 9, 9, 0, 0]);
        assert!(matches!(
            s.read_at(&mem, 6, &mut b),
            Err(ChainError::OutOfBounds { .. })
        ));
        assert!(matches!(
            s.write_at(&mem, u64::MAX, &b),
            Err(ChainError::OutOfBounds { .. })
        ));
    }

    #[test]
    fn rejects_buffers_outside_memory() {
        let err = parse(&[rdesc(0x10000, 16), wdesc(u64::MAX - 4, 16)], 8).unwrap_err();
        assert!(matches!(err, ChainError::OutOfMemory { .. }));
        // Straddling the end of guest RAM is outside too.
        let end = crate::virtio::test_utils::MEM_SIZE as u64;
        let err = parse(&[wdesc(end - 8, 16)], 8).unwrap_err();
        assert!(matches!(err, ChainError::OutOfMemory { .. }));
    }

    #[test]
    fn rejects_readable_after_writable() {
        let err = parse(&[wdesc(0x10000, 16), rdesc(0x20000, 16)], 8).unwrap_err();
        assert_eq!(err, ChainError::ReadableAfterWritable(0));
    }

    #[test]
    fn rejects_too_many_descriptors_and_skips_empty_ones() {
        let err = parse(
            &[rdesc(0x10000, 1), rdesc(0x10001, 1), rdesc(0x10002, 1)],
            2,
        )
        .unwrap_err();
        assert!(matches!(err, ChainError::TooManyDescriptors { max: 2, .. }));
        let s = parse(
            &[rdesc(0x10000, 0), wdesc(0x10000, 0), wdesc(0x20000, 1)],
            1,
        )
        .unwrap();
        assert_eq!(s.writable().len(), 1);
        assert_eq!(s.readable_len(), 0);
    }

    #[test]
    fn detects_loops_and_bad_next_indices() {
        let mem = test_memory();
        let tq = TestQueue::new(&mem, 16);
        // 0 -> 1 -> 0 -> ...: a loop the ring's TTL cuts short.
        let f = virtio_bindings::virtio_ring::VRING_DESC_F_NEXT as u16;
        tq.store(0, desc(0x10000, 8, f, 1));
        tq.store(1, desc(0x20000, 8, f, 0));
        // 2 -> 200: next beyond a 16-entry table.
        tq.store(2, desc(0x10000, 8, f, 200));
        tq.publish(&[0, 2, 99]);
        let mut q = tq.queue();
        let mut s = Segments::default();
        for expected in [
            ChainError::Truncated(0),
            ChainError::Truncated(2),
            ChainError::Empty(99),
        ] {
            let chain = crate::virtio::queue::pop(&mut q, &mem).unwrap().unwrap();
            assert_eq!(s.parse(chain, &mem, 64).unwrap_err(), expected);
        }
    }
}
