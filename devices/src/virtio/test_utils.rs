//! Test helpers: an in-memory guest, a counting interrupt line, and a driver-side queue built
//! on virtio-queue's `MockSplitQueue`.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::RawDescriptor;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::mock::{AvailRing, DescriptorTable, UsedRing};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, GuestAddress, GuestMemoryMmap};

use super::{Memory, VirtioInterrupt};
use crate::Interrupt;

/// Size of the test guest's RAM (one region at 0).
pub const MEM_SIZE: usize = 16 << 20;

/// A 16 MiB guest, zeroed.
pub fn test_memory() -> Memory {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()
}

/// An interrupt line that counts how often it was raised.
#[derive(Default)]
pub struct CountingInterrupt(AtomicUsize);

impl CountingInterrupt {
    /// Triggers so far.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Interrupt for CountingInterrupt {
    fn trigger(&self) -> std::io::Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A device interrupt over a counting line, and the line.
pub fn test_interrupt() -> (Arc<VirtioInterrupt>, Arc<CountingInterrupt>) {
    let line = Arc::new(CountingInterrupt::default());
    (Arc::new(VirtioInterrupt::new(line.clone())), line)
}

/// A raw descriptor.
pub fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, flags, next))
}

/// A device-readable buffer (chained by [`TestQueue::add_chain`]).
pub fn rdesc(addr: u64, len: u32) -> RawDescriptor {
    desc(addr, len, 0, 0)
}

/// A device-writable buffer (chained by [`TestQueue::add_chain`]).
pub fn wdesc(addr: u64, len: u32) -> RawDescriptor {
    desc(addr, len, VRING_DESC_F_WRITE as u16, 0)
}

/// The driver's side of one split queue in test memory, built from virtio-queue's mock rings.
///
/// `MockSplitQueue::create` is not used for the layout: in virtio-queue 0.18 it places the used
/// ring `size` bytes after the avail ring start instead of `2 * size + 6`, so the two overlap
/// from entry size/2 on. The rings are placed here with the spec's sizes.
pub struct TestQueue<'a> {
    table: DescriptorTable<'a, Memory>,
    avail: AvailRing<'a, Memory>,
    used: UsedRing<'a, Memory>,
    addrs: (GuestAddress, GuestAddress, GuestAddress),
    next_free: Cell<u16>,
    size: u16,
}

impl<'a> TestQueue<'a> {
    /// A queue of `size` entries with its rings at the start of guest memory.
    pub fn new(mem: &'a Memory, size: u16) -> Self {
        Self::at(mem, GuestAddress(0), size)
    }

    /// A queue of `size` entries with its rings at `addr` (they take `22 * size + 12` bytes,
    /// rounded; keep data buffers at 64 KiB and up).
    pub fn at(mem: &'a Memory, addr: GuestAddress, size: u16) -> Self {
        let n = u64::from(size);
        let avail_addr = addr.unchecked_add(16 * n);
        let used_addr = GuestAddress((avail_addr.0 + 6 + 2 * n).next_multiple_of(4));
        Self {
            table: DescriptorTable::new(mem, addr, size),
            avail: AvailRing::new(mem, avail_addr, size),
            used: UsedRing::new(mem, used_addr, size),
            addrs: (addr, avail_addr, used_addr),
            next_free: Cell::new(0),
            size,
        }
    }

    /// Writes descriptor `index` of the table as is.
    pub fn store(&self, index: u16, d: RawDescriptor) {
        self.table.store(index, d).unwrap();
    }

    /// Writes `descs` as one chain (NEXT flags and indices filled in) at the next free table
    /// slots, publishes it, and returns its head index.
    pub fn add_chain(&self, descs: &[RawDescriptor]) -> u16 {
        let head = self.next_free.get();
        for (i, d) in descs.iter().enumerate() {
            let d = Descriptor::from(*d);
            let idx = (head + i as u16) % self.size;
            let last = i + 1 == descs.len();
            let flags = if last {
                d.flags() & !(VRING_DESC_F_NEXT as u16)
            } else {
                d.flags() | VRING_DESC_F_NEXT as u16
            };
            let next = if last { 0 } else { (idx + 1) % self.size };
            self.store(idx, desc(d.addr().0, d.len(), flags, next));
        }
        self.next_free.set((head + descs.len() as u16) % self.size);
        self.publish(&[head]);
        head
    }

    /// Appends `heads` to the available ring and bumps its index.
    pub fn publish(&self, heads: &[u16]) {
        let avail = &self.avail;
        let mut idx = avail.idx().load();
        for &h in heads {
            avail
                .ring()
                .ref_at(usize::from(idx % self.size))
                .unwrap()
                .store(u16::to_le(h));
            idx = idx.wrapping_add(1);
        }
        avail.idx().store(u16::to_le(idx));
    }

    /// Sets the available index to anything, as a misbehaving driver would.
    pub fn set_avail_idx(&self, idx: u16) {
        self.avail.idx().store(u16::to_le(idx));
    }

    /// The used index the device published.
    pub fn used_idx(&self) -> u16 {
        u16::from_le(self.used.idx().load())
    }

    /// Overwrites the used index, as a driver scribbling on the device's ring would.
    pub fn scribble_used_idx(&self, v: u16) {
        self.used.idx().store(u16::to_le(v));
    }

    /// Used ring entry `i`: (head id, bytes written).
    pub fn used(&self, i: u16) -> (u32, u32) {
        let e = self
            .used
            .ring()
            .ref_at(usize::from(i % self.size))
            .unwrap()
            .load();
        (e.id(), e.len())
    }

    /// The guest physical addresses of the descriptor table, the avail ring, the used ring.
    pub fn addrs(&self) -> (GuestAddress, GuestAddress, GuestAddress) {
        self.addrs
    }

    /// A ready device-side queue over these rings.
    pub fn queue(&self) -> Queue {
        let mut q = Queue::new(self.size).unwrap();
        let (d, a, u) = self.addrs;
        q.set_desc_table_address(Some(d.0 as u32), Some((d.0 >> 32) as u32));
        q.set_avail_ring_address(Some(a.0 as u32), Some((a.0 >> 32) as u32));
        q.set_used_ring_address(Some(u.0 as u32), Some((u.0 >> 32) as u32));
        q.set_ready(true);
        q
    }

    /// Same, with VIRTIO_RING_F_EVENT_IDX negotiated.
    pub fn queue_event_idx(&self) -> Queue {
        let mut q = self.queue();
        q.set_event_idx(true);
        q
    }
}

/// A driver poking a virtio-mmio transport through its registers, as Linux would.
pub struct MmioDriver<'t>(pub &'t mut crate::virtio::mmio::MmioTransport);

impl MmioDriver<'_> {
    /// Reads a 32-bit register.
    pub fn read(&mut self, offset: u64) -> u32 {
        use crate::bus::BusDevice;
        let mut b = [0u8; 4];
        self.0.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    /// Writes a 32-bit register.
    pub fn write(&mut self, offset: u64, v: u32) {
        use crate::bus::BusDevice;
        self.0.write(offset, &v.to_le_bytes());
    }

    /// The offered features, both pages.
    pub fn device_features(&mut self) -> u64 {
        self.write(0x14, 0);
        let lo = self.read(0x10);
        self.write(0x14, 1);
        let hi = self.read(0x10);
        u64::from(lo) | (u64::from(hi) << 32)
    }

    /// ACKNOWLEDGE, DRIVER, features, FEATURES_OK; returns the Status register after.
    pub fn negotiate(&mut self, features: u64) -> u32 {
        self.write(0x70, 1);
        self.write(0x70, 1 | 2);
        self.write(0x24, 0);
        self.write(0x20, features as u32);
        self.write(0x24, 1);
        self.write(0x20, (features >> 32) as u32);
        self.write(0x70, 1 | 2 | 8);
        self.read(0x70)
    }

    /// Configures queue `index` over `tq`'s rings and marks it ready.
    pub fn setup_queue(&mut self, index: u32, size: u16, tq: &TestQueue<'_>) {
        let (d, a, u) = tq.addrs();
        self.write(0x30, index);
        self.write(0x38, u32::from(size));
        for (reg, addr) in [(0x80, d), (0x90, a), (0xa0, u)] {
            self.write(reg, addr.0 as u32);
            self.write(reg + 4, (addr.0 >> 32) as u32);
        }
        self.write(0x44, 1);
    }

    /// Sets DRIVER_OK; returns the Status register after.
    pub fn driver_ok(&mut self) -> u32 {
        self.write(0x70, 1 | 2 | 8 | 4);
        self.read(0x70)
    }
}
