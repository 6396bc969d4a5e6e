//! Shared set-up for the fuzz targets: a guest memory image taken from the fuzz input, with a
//! hole in it, and queues at fixed places in that image.

use std::sync::Arc;

use devices::Interrupt;
use devices::virtio::{Memory, VirtioInterrupt};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Size of the memory image the input fills (from guest address 0).
pub const IMAGE: usize = 0x1_0000;
/// A second RAM region after a hole, so chains can cross into unmapped space.
pub const HIGH: u64 = 0x2_0000;

/// Memory with `input` copied to address 0 (truncated to [`IMAGE`]).
pub fn memory(input: &[u8]) -> Memory {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), IMAGE), (GuestAddress(HIGH), IMAGE)])
        .expect("fuzz guest memory");
    let n = input.len().min(IMAGE);
    mem.write_slice(&input[..n], GuestAddress(0)).expect("image fits");
    mem
}

/// A ready queue of 16 entries with its rings at `base` (desc), `base + 0x100` (avail),
/// `base + 0x200` (used).
pub fn queue(base: u64, event_idx: bool) -> Queue {
    let mut q = Queue::new(16).expect("queue size");
    // Every address is below 4 GiB: the high halves are zero.
    q.set_desc_table_address(Some(base as u32), Some(0));
    q.set_avail_ring_address(Some((base + 0x100) as u32), Some(0));
    q.set_used_ring_address(Some((base + 0x200) as u32), Some(0));
    q.set_event_idx(event_idx);
    q.set_ready(true);
    q
}

/// An interrupt line that goes nowhere.
pub struct NullLine;

impl Interrupt for NullLine {
    fn trigger(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A device interrupt over [`NullLine`].
pub fn interrupt() -> Arc<VirtioInterrupt> {
    Arc::new(VirtioInterrupt::new(Arc::new(NullLine)))
}
