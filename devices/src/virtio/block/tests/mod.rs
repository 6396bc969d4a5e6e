use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use disk::{BlockBackend, BlockResult};
use virtio_bindings::virtio_blk::*;
use vm_memory::{Bytes, GuestAddress};

use super::request::{ID_BYTES, Limits, SegmentLimits};
use super::*;
use crate::virtio::test_utils::{TestQueue, rdesc, test_interrupt, test_memory, wdesc};
use crate::virtio::{Counters, Memory};

/// Test double: a disk in a `Vec`, recording the calls that have no data to show.
#[derive(Default)]
struct MemDisk {
    data: Mutex<Vec<u8>>,
    read_only: bool,
    flushes: AtomicUsize,
    discards: Mutex<Vec<(u64, u64)>>,
    zeroes: Mutex<Vec<(u64, u64, bool)>>,
    fail: bool,
}

impl MemDisk {
    fn new(size: usize) -> Arc<Self> {
        Arc::new(Self {
            data: Mutex::new(vec![0; size]),
            ..Self::default()
        })
    }
}

fn io_err() -> std::io::Error {
    std::io::Error::other("test back end fails on purpose")
}

impl BlockBackend for MemDisk {
    fn size(&self) -> u64 {
        self.data.lock().unwrap().len() as u64
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> BlockResult<()> {
        if self.fail {
            return Err(io_err());
        }
        let d = self.data.lock().unwrap();
        buf.copy_from_slice(&d[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> BlockResult<()> {
        if self.fail {
            return Err(io_err());
        }
        self.data.lock().unwrap()[offset as usize..offset as usize + buf.len()]
            .copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> BlockResult<()> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn discard(&self, offset: u64, len: u64) -> BlockResult<()> {
        self.discards.lock().unwrap().push((offset, len));
        Ok(())
    }
    fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> BlockResult<()> {
        self.zeroes.lock().unwrap().push((offset, len, unmap));
        self.data.lock().unwrap()[offset as usize..(offset + len) as usize].fill(0);
        Ok(())
    }
}

/// Test double over a real file: pread/pwrite/fdatasync, to check data reaches the file.
struct FileDisk(std::fs::File);

impl BlockBackend for FileDisk {
    fn size(&self) -> u64 {
        self.0.metadata().unwrap().len()
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> BlockResult<()> {
        self.0.read_exact_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> BlockResult<()> {
        self.0.write_all_at(buf, offset)
    }
    fn flush(&self) -> BlockResult<()> {
        self.0.sync_data()
    }
    fn discard(&self, _: u64, _: u64) -> BlockResult<()> {
        Ok(())
    }
    fn write_zeroes(&self, offset: u64, len: u64, _: bool) -> BlockResult<()> {
        self.0.write_all_at(&vec![0; len as usize], offset)
    }
}

const HDR: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;
const STATUS: u64 = 0xf0_0000;

fn limits(capacity: u64) -> Limits {
    let segs = SegmentLimits {
        max_discard_sectors: 64,
        max_discard_seg: 2,
        max_write_zeroes_sectors: 64,
        max_write_zeroes_seg: 2,
        ..SegmentLimits::default()
    };
    Limits {
        capacity,
        read_only: false,
        segs,
    }
}

fn header(mem: &Memory, at: u64, ty: u32, sector: u64) {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&ty.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    mem.write_slice(&h, GuestAddress(at)).unwrap();
}

fn status_at(mem: &Memory, at: u64) -> u8 {
    mem.read_obj::<u8>(GuestAddress(at)).unwrap()
}

struct Rig<'m> {
    mem: &'m Memory,
    tq: TestQueue<'m>,
    q: BlockQueue,
    counters: Arc<Counters>,
}

fn rig<'m>(mem: &'m Memory, disk: Arc<dyn BlockBackend>, l: Limits) -> Rig<'m> {
    let tq = TestQueue::new(mem, 16);
    let (irq, _) = test_interrupt();
    let counters = Arc::new(Counters::default());
    let mut serial = [0u8; ID_BYTES];
    serial[..6].copy_from_slice(b"virga0");
    let q = BlockQueue::new(
        tq.queue(),
        mem.clone(),
        irq,
        disk,
        l,
        serial,
        counters.clone(),
    );
    Rig {
        mem,
        tq,
        q,
        counters,
    }
}

impl Rig<'_> {
    /// Publishes a chain, serves the queue, returns (used len, status byte).
    fn run(&mut self, descs: &[virtio_queue::desc::RawDescriptor]) -> (u32, u8) {
        self.mem.write_obj(0xeeu8, GuestAddress(STATUS)).unwrap();
        let before = self.tq.used_idx();
        self.tq.add_chain(descs);
        self.q.process_queue().unwrap();
        assert_eq!(
            self.tq.used_idx(),
            before.wrapping_add(1),
            "request returned to used ring"
        );
        (self.tq.used(before).1, status_at(self.mem, STATUS))
    }
}

#[test]
fn write_then_read_back_across_segments() {
    let mem = test_memory();
    let disk = MemDisk::new(1 << 20);
    let mut r = rig(&mem, disk.clone(), limits(2048));
    let pattern: Vec<u8> = (0..1536u32).map(|i| (i * 7) as u8).collect();
    mem.write_slice(&pattern, GuestAddress(DATA)).unwrap();
    header(&mem, HDR, VIRTIO_BLK_T_OUT, 3);
    let st = r.run(&[
        rdesc(HDR, 16),
        rdesc(DATA, 1000),
        rdesc(DATA + 1000, 536),
        wdesc(STATUS, 1),
    ]);
    assert_eq!(st, (1, VIRTIO_BLK_S_OK as u8));
    assert_eq!(
        &disk.data.lock().unwrap()[3 * 512..3 * 512 + 1536],
        &pattern[..]
    );

    header(&mem, HDR, VIRTIO_BLK_T_IN, 3);
    let back = DATA + 0x10000;
    // Status folded into the last data descriptor: any framing is allowed.
    let st = r.run(&[
        rdesc(HDR, 16),
        wdesc(back, 512),
        wdesc(back + 512, 1024),
        wdesc(STATUS, 1),
    ]);
    assert_eq!(st, (1537, VIRTIO_BLK_S_OK as u8));
    let mut got = vec![0u8; 1536];
    mem.read_slice(&mut got, GuestAddress(back)).unwrap();
    assert_eq!(got, pattern);
    let c = r.counters.snapshot();
    assert_eq!(
        (c.requests, c.bytes_from_guest, c.bytes_to_guest, c.errors),
        (2, 1536, 1536, 0)
    );
}

#[test]
fn header_and_data_in_one_descriptor() {
    let mem = test_memory();
    let disk = MemDisk::new(1 << 20);
    let mut r = rig(&mem, disk.clone(), limits(2048));
    header(&mem, HDR, VIRTIO_BLK_T_OUT, 0);
    mem.write_slice(&[0xab; 512], GuestAddress(HDR + 16))
        .unwrap();
    // Header split over two descriptors, the second carrying data too.
    let st = r.run(&[rdesc(HDR, 4), rdesc(HDR + 4, 12 + 512), wdesc(STATUS, 1)]);
    assert_eq!(st.1, VIRTIO_BLK_S_OK as u8);
    assert_eq!(disk.data.lock().unwrap()[..512], [0xab; 512]);
}

#[test]
fn large_requests_go_through_the_bounce_buffer_in_chunks() {
    let mem = test_memory();
    let disk = MemDisk::new(8 << 20);
    let mut r = rig(&mem, disk.clone(), limits((8 << 20) / 512));
    let len = CHUNK * 2 + 4096;
    let pattern: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    mem.write_slice(&pattern, GuestAddress(DATA)).unwrap();
    header(&mem, HDR, VIRTIO_BLK_T_OUT, 8);
    let c = CHUNK as u64;
    let st = r.run(&[
        rdesc(HDR, 16),
        rdesc(DATA, c as u32),
        rdesc(DATA + c, c as u32),
        rdesc(DATA + 2 * c, 4096),
        wdesc(STATUS, 1),
    ]);
    assert_eq!(st.1, VIRTIO_BLK_S_OK as u8);
    assert_eq!(&disk.data.lock().unwrap()[4096..4096 + len], &pattern[..]);
}

#[test]
fn flush_reaches_the_file() {
    let mem = test_memory();
    let file = tempfile::tempfile().unwrap();
    file.set_len(1 << 20).unwrap();
    let check = file.try_clone().unwrap();
    let mut r = rig(&mem, Arc::new(FileDisk(file)), limits(2048));
    mem.write_slice(&[0x5a; 512], GuestAddress(DATA)).unwrap();
    header(&mem, HDR, VIRTIO_BLK_T_OUT, 1);
    assert_eq!(
        r.run(&[rdesc(HDR, 16), rdesc(DATA, 512), wdesc(STATUS, 1)])
            .1,
        0
    );
    header(&mem, HDR, VIRTIO_BLK_T_FLUSH, 0);
    assert_eq!(r.run(&[rdesc(HDR, 16), wdesc(STATUS, 1)]), (1, 0));
    let mut b = [0u8; 512];
    check.read_exact_at(&mut b, 512).unwrap();
    assert_eq!(b, [0x5a; 512]);
}

#[test]
fn flush_calls_the_back_end() {
    let mem = test_memory();
    let disk = MemDisk::new(1 << 20);
    let mut r = rig(&mem, disk.clone(), limits(2048));
    header(&mem, HDR, VIRTIO_BLK_T_FLUSH, 0);
    r.run(&[rdesc(HDR, 16), wdesc(STATUS, 1)]);
    assert_eq!(disk.flushes.load(Ordering::SeqCst), 1);
}

#[test]
fn get_id_returns_the_serial() {
    let mem = test_memory();
    let mut r = rig(&mem, MemDisk::new(4096), limits(8));
    header(&mem, HDR, VIRTIO_BLK_T_GET_ID, 0);
    mem.write_slice(&[0xff; 20], GuestAddress(DATA)).unwrap();
    let st = r.run(&[rdesc(HDR, 16), wdesc(DATA, 20), wdesc(STATUS, 1)]);
    assert_eq!(st, (21, 0));
    let mut id = [0u8; 20];
    mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
    assert_eq!(&id[..6], b"virga0");
    assert_eq!(id[6..], [0; 14]);
}

fn ranges(mem: &Memory, at: u64, r: &[(u64, u32, u32)]) {
    for (i, &(sector, n, flags)) in r.iter().enumerate() {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&sector.to_le_bytes());
        b[8..12].copy_from_slice(&n.to_le_bytes());
        b[12..].copy_from_slice(&flags.to_le_bytes());
        mem.write_slice(&b, GuestAddress(at + 16 * i as u64))
            .unwrap();
    }
}

#[test]
fn discard_and_write_zeroes_with_their_limits() {
    let mem = test_memory();
    let disk = MemDisk::new(1 << 20);
    disk.data.lock().unwrap().fill(0x11);
    let mut r = rig(&mem, disk.clone(), limits(2048));
    header(&mem, HDR, VIRTIO_BLK_T_DISCARD, 0);
    ranges(&mem, DATA, &[(8, 16, 0), (100, 1, 0)]);
    assert_eq!(
        r.run(&[rdesc(HDR, 16), rdesc(DATA, 32), wdesc(STATUS, 1)])
            .1,
        0
    );
    assert_eq!(
        *disk.discards.lock().unwrap(),
        vec![(8 * 512, 16 * 512), (100 * 512, 512)]
    );

    header(&mem, HDR, VIRTIO_BLK_T_WRITE_ZEROES, 0);
    ranges(&mem, DATA, &[(2, 2, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)]);
    assert_eq!(
        r.run(&[rdesc(HDR, 16), rdesc(DATA, 16), wdesc(STATUS, 1)])
            .1,
        0
    );
    assert_eq!(*disk.zeroes.lock().unwrap(), vec![(1024, 1024, true)]);
    assert_eq!(disk.data.lock().unwrap()[1024..2048], [0; 1024]);

    let ioerr = VIRTIO_BLK_S_IOERR as u8;
    // Too many ranges, too long a range, past the end, a ragged array: IOERR.
    header(&mem, HDR, VIRTIO_BLK_T_DISCARD, 0);
    ranges(&mem, DATA, &[(0, 1, 0), (1, 1, 0), (2, 1, 0)]);
    assert_eq!(
        r.run(&[rdesc(HDR, 16), rdesc(DATA, 48), wdesc(STATUS, 1)])
            .1,
        ioerr
    );
    ranges(&mem, DATA, &[(0, 65, 0)]);
    assert_eq!(
        r.run(&[rdesc(HDR, 16), rdesc(DATA, 16), wdesc(STATUS, 1)])
            .1,
        ioerr
    );
    ranges(&mem, DATA, &[(u64::MAX, 2, 0)]);
    assert_eq!(
        r.run(&[rdesc(HDR, 16), rdesc(DATA, 16), wdesc(STATUS, 1)])
            .1,
        ioerr
    );
    assert_eq!(
        r.run(&[rdesc(HDR, 16), rdesc(DATA, 15), wdesc(STATUS, 1)])
            .1,
        ioerr
    );
    // Flags on a discard, unknown flags on write-zeroes: UNSUPP.
    ranges(&mem, DATA, &[(0, 1, 1)]);
    assert_eq!(
        r.run(&[rdesc(HDR, 16), rdesc(DATA, 16), wdesc(STATUS, 1)])
            .1,
        VIRTIO_BLK_S_UNSUPP as u8
    );
    header(&mem, HDR, VIRTIO_BLK_T_WRITE_ZEROES, 0);
    ranges(&mem, DATA, &[(0, 1, 4)]);
    assert_eq!(
        r.run(&[rdesc(HDR, 16), rdesc(DATA, 16), wdesc(STATUS, 1)])
            .1,
        VIRTIO_BLK_S_UNSUPP as u8
    );
    assert_eq!(disk.discards.lock().unwrap().len(), 2);
}

#[test]
fn read_only_refuses_writes() {
    let mem = test_memory();
    let disk = MemDisk::new(4096);
    let mut l = limits(8);
    l.read_only = true;
    let mut r = rig(&mem, disk.clone(), l);
    mem.write_slice(&[1; 512], GuestAddress(DATA)).unwrap();
    header(&mem, HDR, VIRTIO_BLK_T_OUT, 0);
    assert_eq!(
        r.run(&[rdesc(HDR, 16), rdesc(DATA, 512), wdesc(STATUS, 1)])
            .1,
        VIRTIO_BLK_S_IOERR as u8
    );
    header(&mem, HDR, VIRTIO_BLK_T_WRITE_ZEROES, 0);
    ranges(&mem, DATA, &[(0, 1, 0)]);
    assert_eq!(
        r.run(&[rdesc(HDR, 16), rdesc(DATA, 16), wdesc(STATUS, 1)])
            .1,
        VIRTIO_BLK_S_IOERR as u8
    );
    assert_eq!(disk.data.lock().unwrap()[..512], [0; 512]);
    assert!(disk.zeroes.lock().unwrap().is_empty());
    assert_eq!(r.counters.snapshot().errors, 2);
}

#[test]
fn bad_headers_and_ranges_fail_the_request_only() {
    let mem = test_memory();
    let mut r = rig(&mem, MemDisk::new(4096), limits(8));
    let ioerr = VIRTIO_BLK_S_IOERR as u8;
    // Past the end, overflowing sector, unaligned length.
    header(&mem, HDR, VIRTIO_BLK_T_IN, 8);
    assert_eq!(
        r.run(&[rdesc(HDR, 16), wdesc(DATA, 512), wdesc(STATUS, 1)]),
        (1, ioerr)
    );
    header(&mem, HDR, VIRTIO_BLK_T_IN, u64::MAX);
    assert_eq!(
        r.run(&[rdesc(HDR, 16), wdesc(DATA, 512), wdesc(STATUS, 1)]),
        (1, ioerr)
    );
    header(&mem, HDR, VIRTIO_BLK_T_IN, 0);
    assert_eq!(
        r.run(&[rdesc(HDR, 16), wdesc(DATA, 100), wdesc(STATUS, 1)]),
        (1, ioerr)
    );
    // Short header.
    assert_eq!(r.run(&[rdesc(HDR, 8), wdesc(STATUS, 1)]), (1, ioerr));
    // A sector nobody uses may hold anything (found by the fuzzer: it overflowed).
    header(&mem, HDR, VIRTIO_BLK_T_FLUSH, u64::MAX);
    assert_eq!(r.run(&[rdesc(HDR, 16), wdesc(STATUS, 1)]), (1, 0));
    header(&mem, HDR, VIRTIO_BLK_T_GET_ID, u64::MAX);
    assert_eq!(
        r.run(&[rdesc(HDR, 16), wdesc(DATA, 20), wdesc(STATUS, 1)]),
        (21, 0)
    );
    // Unknown type.
    header(&mem, HDR, 77, 0);
    assert_eq!(
        r.run(&[rdesc(HDR, 16), wdesc(STATUS, 1)]),
        (1, VIRTIO_BLK_S_UNSUPP as u8)
    );
    // No status byte at all: returned with nothing written.
    header(&mem, HDR, VIRTIO_BLK_T_FLUSH, 0);
    assert_eq!(r.run(&[rdesc(HDR, 16)]), (0, 0xee));
    // A good request still works after all that.
    header(&mem, HDR, VIRTIO_BLK_T_IN, 7);
    assert_eq!(
        r.run(&[rdesc(HDR, 16), wdesc(DATA, 512), wdesc(STATUS, 1)]),
        (513, 0)
    );
    assert_eq!(r.counters.snapshot().errors, 6);
}

#[test]
fn segment_limits_are_enforced() {
    let mem = test_memory();
    let mut l = limits(2048);
    l.segs.seg_max = 2;
    l.segs.size_max = 1024;
    let mut r = rig(&mem, MemDisk::new(1 << 20), l);
    header(&mem, HDR, VIRTIO_BLK_T_IN, 0);
    let four = [
        rdesc(HDR, 16),
        wdesc(DATA, 512),
        wdesc(DATA + 512, 512),
        wdesc(DATA + 1024, 512),
        wdesc(DATA + 2048, 512),
        wdesc(STATUS, 1),
    ];
    assert_eq!(
        r.run(&four).0,
        0,
        "more descriptors than SEG_MAX+2: malformed"
    );
    assert_eq!(
        r.run(&[rdesc(HDR, 16), wdesc(DATA, 4096), wdesc(STATUS, 1)])
            .1,
        VIRTIO_BLK_S_IOERR as u8
    );
}

#[test]
fn back_end_errors_are_ioerr() {
    let mem = test_memory();
    let disk = Arc::new(MemDisk {
        data: Mutex::new(vec![0; 4096]),
        fail: true,
        ..MemDisk::default()
    });
    let mut r = rig(&mem, disk, limits(8));
    header(&mem, HDR, VIRTIO_BLK_T_IN, 0);
    assert_eq!(
        r.run(&[rdesc(HDR, 16), wdesc(DATA, 512), wdesc(STATUS, 1)]),
        (1, VIRTIO_BLK_S_IOERR as u8)
    );
}

#[test]
fn malformed_chains_fail_alone() {
    let mem = test_memory();
    let mut r = rig(&mem, MemDisk::new(4096), limits(8));
    header(&mem, HDR, VIRTIO_BLK_T_IN, 0);
    // Buffer outside guest memory, huge length, and a length that wraps the address space.
    assert_eq!(
        r.run(&[rdesc(HDR, 16), wdesc(0x4000_0000, 512), wdesc(STATUS, 1)])
            .0,
        0
    );
    assert_eq!(
        r.run(&[rdesc(HDR, 16), wdesc(DATA, u32::MAX), wdesc(STATUS, 1)])
            .0,
        0
    );
    assert_eq!(
        r.run(&[rdesc(HDR, 16), wdesc(u64::MAX - 10, 512), wdesc(STATUS, 1)])
            .0,
        0
    );
    // Wrong direction: a writable header then a readable status.
    assert_eq!(r.run(&[wdesc(HDR, 16), rdesc(STATUS, 1)]).0, 0);
    // Zero-length everything.
    assert_eq!(r.run(&[rdesc(HDR, 0), wdesc(STATUS, 0)]).0, 0);
    assert_eq!(status_at(&mem, STATUS), 0xee);
    assert_eq!(r.counters.snapshot().errors, 5);
}

#[test]
fn loops_in_a_chain_fail_alone() {
    let mem = test_memory();
    let mut r = rig(&mem, MemDisk::new(4096), limits(8));
    let next = virtio_bindings::virtio_ring::VRING_DESC_F_NEXT as u16;
    r.tq.store(0, crate::virtio::test_utils::desc(HDR, 16, next, 1));
    r.tq.store(1, crate::virtio::test_utils::desc(DATA, 512, next | 2, 0));
    r.tq.publish(&[0]);
    r.q.process_queue().unwrap();
    assert_eq!(r.tq.used_idx(), 1);
    assert_eq!(r.tq.used(0), (0, 0));
}

#[test]
fn avail_index_far_ahead_breaks_the_queue_not_the_vmm() {
    let mem = test_memory();
    let mut r = rig(&mem, MemDisk::new(4096), limits(8));
    r.tq.set_avail_idx(1000);
    assert!(r.q.process_queue().is_err());
}

#[test]
fn scribbled_used_ring_does_not_confuse_the_device() {
    let mem = test_memory();
    let mut r = rig(&mem, MemDisk::new(4096), limits(8));
    header(&mem, HDR, VIRTIO_BLK_T_FLUSH, 0);
    r.run(&[rdesc(HDR, 16), wdesc(STATUS, 1)]);
    r.tq.scribble_used_idx(0x7777);
    r.tq.add_chain(&[rdesc(HDR, 16), wdesc(STATUS, 1)]);
    r.q.process_queue().unwrap();
    // The device keeps its own index: entry 1, and used idx 2 again.
    assert_eq!(r.tq.used_idx(), 2);
    assert_eq!(r.tq.used(1).1, 1);
}

mod device;
