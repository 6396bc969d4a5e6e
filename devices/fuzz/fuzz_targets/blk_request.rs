//! virtio-blk: any memory image (descriptor table, rings, headers, data) must be served
//! without a panic, and the device must keep going.
#![no_main]

use std::sync::{Arc, Mutex};

use devices::virtio::block::request::{Limits, SegmentLimits};
use devices::virtio::block::BlockQueue;
use devices_fuzz::{interrupt, memory, queue};
use disk::{BlockBackend, BlockResult};
use libfuzzer_sys::fuzz_target;

/// A 64 KiB disk in memory (fuzz double for a raw file).
struct MemDisk(Mutex<Vec<u8>>);

fn range(d: &[u8], off: u64, len: usize) -> BlockResult<std::ops::Range<usize>> {
    let start = usize::try_from(off).map_err(std::io::Error::other)?;
    let end = start.checked_add(len).filter(|&e| e <= d.len());
    end.map(|e| start..e).ok_or_else(|| std::io::Error::other("past the end"))
}

impl BlockBackend for MemDisk {
    fn size(&self) -> u64 {
        self.0.lock().unwrap().len() as u64
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> BlockResult<()> {
        let d = self.0.lock().unwrap();
        buf.copy_from_slice(&d[range(&d, off, buf.len())?]);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], off: u64) -> BlockResult<()> {
        let mut d = self.0.lock().unwrap();
        let r = range(&d, off, buf.len())?;
        d[r].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> BlockResult<()> {
        Ok(())
    }
    fn discard(&self, off: u64, len: u64) -> BlockResult<()> {
        self.write_zeroes(off, len, true)
    }
    fn write_zeroes(&self, off: u64, len: u64, _: bool) -> BlockResult<()> {
        let mut d = self.0.lock().unwrap();
        let len = usize::try_from(len).map_err(std::io::Error::other)?;
        let r = range(&d, off, len)?;
        d[r].fill(0);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, image)) = data.split_first() else { return };
    let mem = memory(image);
    let disk = Arc::new(MemDisk(Mutex::new(vec![0; 0x1_0000])));
    let limits = Limits {
        capacity: 0x1_0000 / 512,
        read_only: flags & 1 != 0,
        segs: SegmentLimits { seg_max: 8, size_max: 0x4000, ..SegmentLimits::default() },
    };
    let mut q = BlockQueue::new(queue(0, flags & 2 != 0), mem, interrupt(), disk, limits, *b"fuzz-serial-00000000", Arc::default());
    // Twice: the second pass sees whatever state the first left behind.
    let _ = q.process_queue();
    let _ = q.process_queue();
});
