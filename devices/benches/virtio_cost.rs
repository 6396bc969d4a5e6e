//! Host-side cost of serving virtio requests, independent of how fast the guest runs: the
//! handlers are driven over an in-memory guest exactly as in the unit tests, and timed.
//! Run: `cargo bench -p devices --bench virtio_cost`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devices::Interrupt;
use devices::virtio::block::BlockQueue;
use devices::virtio::block::request::{Limits, SegmentLimits};
use devices::virtio::net::{FrameIo, NetQueues};
use devices::virtio::rng::RngQueue;
use devices::virtio::{Memory, VirtioInterrupt};
use disk::{BlockBackend, BlockResult};
use virtio_queue::desc::RawDescriptor;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::mock::{AvailRing, DescriptorTable};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const QSIZE: u16 = 256;
const NEXT: u16 = 1;
const WRITE: u16 = 2;

struct Null;
impl Interrupt for Null {
    fn trigger(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bench double: a disk in memory, so the figure is the device's cost, not the page cache's.
struct MemDisk(Mutex<Vec<u8>>);
impl BlockBackend for MemDisk {
    fn size(&self) -> u64 {
        self.0.lock().unwrap().len() as u64
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> BlockResult<()> {
        let d = self.0.lock().unwrap();
        buf.copy_from_slice(&d[off as usize..off as usize + buf.len()]);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], off: u64) -> BlockResult<()> {
        self.0.lock().unwrap()[off as usize..off as usize + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> BlockResult<()> {
        Ok(())
    }
    fn discard(&self, _: u64, _: u64) -> BlockResult<()> {
        Ok(())
    }
    fn write_zeroes(&self, _: u64, _: u64, _: bool) -> BlockResult<()> {
        Ok(())
    }
}

fn d(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, flags, next))
}

/// The driver side of a ring at `addr` (laid out by hand: virtio-queue 0.18's
/// `MockSplitQueue::create` overlaps the avail and used rings).
struct Ring<'a> {
    table: DescriptorTable<'a, Memory>,
    avail: AvailRing<'a, Memory>,
    queue: Option<Queue>,
}

fn ring(mem: &Memory, addr: u64) -> Ring<'_> {
    let n = u64::from(QSIZE);
    let (avail, used) = (
        addr + 16 * n,
        (addr + 16 * n + 6 + 2 * n).next_multiple_of(4),
    );
    let mut q = Queue::new(QSIZE).unwrap();
    q.set_desc_table_address(Some(addr as u32), Some(0));
    q.set_avail_ring_address(Some(avail as u32), Some(0));
    q.set_used_ring_address(Some(used as u32), Some(0));
    q.set_ready(true);
    Ring {
        table: DescriptorTable::new(mem, GuestAddress(addr), QSIZE),
        avail: AvailRing::new(mem, GuestAddress(avail), QSIZE),
        queue: Some(q),
    }
}

/// Puts `heads` (chains already in the table, re-used every round) back in the avail ring.
fn publish(r: &Ring<'_>, heads: &[u16]) {
    let mut idx = r.avail.idx().load();
    for &h in heads {
        r.avail
            .ring()
            .ref_at(usize::from(idx % QSIZE))
            .unwrap()
            .store(h);
        idx = idx.wrapping_add(1);
    }
    r.avail.idx().store(idx);
}

fn report(name: &str, requests: u64, bytes: u64, t: Duration) {
    let ns = t.as_nanos() as f64 / requests as f64;
    let mib_s = bytes as f64 / t.as_secs_f64() / (1 << 20) as f64;
    println!("{name:<28} {ns:>9.0} ns/request {mib_s:>9.0} MiB/s ({requests} requests)");
}

fn bench_blk(name: &str, ty: u32, len: u32) {
    let mem: Memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 128 << 20)]).unwrap();
    let mut mock = ring(&mem, 0);
    // Each request: header, data, status; 64 requests in flight, reusing descriptors.
    let per = 3u16;
    let inflight = 64u16;
    for r in 0..inflight {
        let base = u64::from(r) * 0x12_0000 + 0x10_0000;
        let hdr = [ty.to_le_bytes(), [0; 4]].concat();
        mem.write_slice(&hdr, GuestAddress(base)).unwrap();
        mem.write_obj(u64::from(r) * u64::from(len / 512), GuestAddress(base + 8))
            .unwrap();
        let data_flags = if ty == 0 { WRITE | NEXT } else { NEXT };
        let i = r * per;
        mock.table.store(i, d(base, 16, NEXT, i + 1)).unwrap();
        mock.table
            .store(i + 1, d(base + 0x1000, len, data_flags, i + 2))
            .unwrap();
        mock.table
            .store(i + 2, d(base + 0x100, 1, WRITE, 0))
            .unwrap();
    }
    let heads: Vec<u16> = (0..inflight).map(|r| r * per).collect();
    let disk = Arc::new(MemDisk(Mutex::new(vec![0; 64 << 20])));
    let limits = Limits {
        capacity: (64 << 20) / 512,
        read_only: false,
        segs: SegmentLimits::default(),
    };
    let irq = Arc::new(VirtioInterrupt::new(Arc::new(Null)));
    let q = mock.queue.take().unwrap();
    let mut h = BlockQueue::new(q, mem.clone(), irq, disk, limits, [0; 20], Arc::default());
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        publish(&mock, &heads);
        n += h.process_queue().unwrap().completed as u64;
    }
    report(name, n, n * u64::from(len), start.elapsed());
}

struct Sock(OwnedFd);
impl AsRawFd for Sock {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
impl FrameIo for Sock {
    fn read_frame(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // SAFETY: `buf` is valid for writes of its length.
        let r = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }
    fn write_frame(&mut self, f: &[u8]) -> std::io::Result<()> {
        // SAFETY: `f` is valid for reads of its length.
        let r = unsafe { libc::send(self.0.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
    fn offloads_supported(&self) -> bool {
        false
    }
    fn set_offloads(&mut self, _: u32) -> std::io::Result<()> {
        Ok(())
    }
}

fn pair() -> (Sock, Sock) {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two fds into `fds`.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0);
    // SAFETY: freshly created fds, owned by nothing else.
    unsafe {
        (
            Sock(OwnedFd::from_raw_fd(fds[0])),
            Sock(OwnedFd::from_raw_fd(fds[1])),
        )
    }
}

fn bench_net(frame_len: u32) {
    let mem: Memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
    let mut rx = ring(&mem, 0);
    let mut tx = ring(&mem, 0x10_0000);
    let inflight = 32u16;
    for i in 0..inflight {
        let buf = 0x20_0000 + u64::from(i) * 0x1_0000;
        tx.table.store(i, d(buf, frame_len, 0, 0)).unwrap();
        let rx_buf = 0x80_0000 + u64::from(i) * 0x1_0000;
        rx.table.store(i, d(rx_buf, 0x1_0000, WRITE, 0)).unwrap();
    }
    let heads: Vec<u16> = (0..inflight).collect();
    let irq = Arc::new(VirtioInterrupt::new(Arc::new(Null)));
    let mut q = NetQueues::new(
        rx.queue.take().unwrap(),
        tx.queue.take().unwrap(),
        mem.clone(),
        irq,
        Arc::default(),
        false,
    );
    let (mut dev_end, mut host_end) = pair();
    let mut buf = vec![0u8; 65562];
    let (mut tx_t, mut rx_t, mut n_tx, mut n_rx) = (Duration::ZERO, Duration::ZERO, 0u64, 0u64);
    let frame = vec![0u8; frame_len as usize];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        publish(&tx, &heads);
        let t = Instant::now();
        q.process_tx(&mut dev_end).unwrap();
        tx_t += t.elapsed();
        // The socket may refuse some big frames when its buffer is full: count what got through.
        let mut got = 0u16;
        while host_end.read_frame(&mut buf).is_ok() {
            got += 1;
        }
        let mut sent = 0u16;
        while sent < inflight && host_end.write_frame(&frame).is_ok() {
            sent += 1;
        }
        publish(&rx, &heads[..usize::from(sent)]);
        let t = Instant::now();
        q.process_rx(&mut dev_end).unwrap();
        rx_t += t.elapsed();
        n_tx += u64::from(got);
        n_rx += u64::from(sent);
    }
    let payload = u64::from(frame_len - 12);
    report(
        &format!("net tx {frame_len} B frames"),
        n_tx,
        n_tx * payload,
        tx_t,
    );
    report(
        &format!("net rx {frame_len} B frames"),
        n_rx,
        n_rx * payload,
        rx_t,
    );
}

fn bench_rng() {
    let mem: Memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
    let mut mock = ring(&mem, 0);
    for i in 0..64u16 {
        mock.table
            .store(i, d(0x10_0000 + u64::from(i) * 0x1000, 4096, WRITE, 0))
            .unwrap();
    }
    let heads: Vec<u16> = (0..64).collect();
    let irq = Arc::new(VirtioInterrupt::new(Arc::new(Null)));
    let mut q = RngQueue::new(mock.queue.take().unwrap(), mem.clone(), irq, Arc::default());
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        publish(&mock, &heads);
        n += q.process_queue().unwrap().completed as u64;
    }
    report("rng 4 KiB", n, n * 4096, start.elapsed());
}

fn main() {
    bench_blk("blk read 4 KiB", 0, 4096);
    bench_blk("blk write 4 KiB", 1, 4096);
    bench_blk("blk read 1 MiB", 0, 1 << 20);
    bench_blk("blk write 1 MiB", 1, 1 << 20);
    bench_net(1514);
    bench_net(65000);
    bench_rng();
}
