use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::device::Role;
use super::*;
use crate::virtio::test_utils::{
    CountingInterrupt, TestQueue, rdesc, test_interrupt, test_memory, wdesc,
};
use crate::virtio::{Activation, Memory, VirtioDevice, VirtioInterrupt, features};

const PFNS: u64 = 0x1_0000;
const STATS: u64 = 0x1_8000;
/// Guest pages the tests balloon: 4 MiB and up.
const FIRST_PFN: u32 = 0x400;

fn queues(mem: &Memory) -> Vec<TestQueue<'_>> {
    (0..4)
        .map(|i| TestQueue::at(mem, GuestAddress(i * 0x2000), 16))
        .collect()
}

fn balloon(
    mem: &Memory,
    tqs: &[TestQueue<'_>],
    acked: u64,
) -> (Balloon, Arc<VirtioInterrupt>, Arc<CountingInterrupt>) {
    let mut b = Balloon::new(
        BalloonConfig {
            queue_size: 16,
            ..BalloonConfig::default()
        },
        Arc::new(MadviseReleaser),
    )
    .unwrap();
    let (irq, line) = test_interrupt();
    let a = Activation {
        mem: mem.clone(),
        queues: tqs.iter().map(TestQueue::queue).collect(),
        acked_features: acked,
        interrupt: irq.clone(),
    };
    b.activate(a).unwrap();
    (b, irq, line)
}

const ALL: u64 = features::VERSION_1
    | (1 << feature::STATS_VQ)
    | (1 << feature::PAGE_REPORTING)
    | (1 << feature::DEFLATE_ON_OOM);

fn write_pfns(mem: &Memory, pfns: &[u32]) -> u32 {
    let bytes: Vec<u8> = pfns.iter().flat_map(|p| p.to_le_bytes()).collect();
    mem.write_slice(&bytes, GuestAddress(PFNS)).unwrap();
    bytes.len() as u32
}

fn fill_pages(mem: &Memory, first_pfn: u32, pages: u32) {
    let data = vec![0xa5u8; (pages as u64 * PAGE_SIZE) as usize];
    mem.write_slice(&data, GuestAddress(u64::from(first_pfn) * PAGE_SIZE))
        .unwrap();
}

fn page_is_zero(mem: &Memory, pfn: u32) -> bool {
    let mut b = vec![0u8; PAGE_SIZE as usize];
    mem.read_slice(&mut b, GuestAddress(u64::from(pfn) * PAGE_SIZE))
        .unwrap();
    b.iter().all(|&x| x == 0)
}

/// Pages of `[gpa, gpa+len)` resident in the host, by mincore(2).
fn resident_pages(mem: &Memory, gpa: u64, len: usize) -> usize {
    let host = mem.get_host_address(GuestAddress(gpa)).unwrap();
    let mut vec = vec![0u8; len / PAGE_SIZE as usize];
    // SAFETY: the range is one mapping of guest memory; `vec` has a byte per page.
    let r = unsafe { libc::mincore(host.cast(), len, vec.as_mut_ptr()) };
    assert_eq!(r, 0);
    vec.iter().filter(|&&v| v & 1 != 0).count()
}

#[test]
fn inflate_returns_pages_to_the_host() {
    let mem = test_memory();
    let tqs = queues(&mem);
    let (mut b, _, _) = balloon(&mem, &tqs, ALL);
    fill_pages(&mem, FIRST_PFN, 256);
    assert_eq!(
        resident_pages(&mem, u64::from(FIRST_PFN) * PAGE_SIZE, 1 << 20),
        256
    );
    // 200 contiguous PFNs and a few scattered ones, in two descriptors.
    let mut pfns: Vec<u32> = (FIRST_PFN..FIRST_PFN + 200).collect();
    pfns.extend([FIRST_PFN + 250, FIRST_PFN + 210, FIRST_PFN + 211]);
    let len = write_pfns(&mem, &pfns);
    tqs[0].add_chain(&[rdesc(PFNS, 400), rdesc(PFNS + 400, len - 400)]);
    assert_eq!(b.process_queue(0).completed, 1);
    assert_eq!(
        resident_pages(&mem, u64::from(FIRST_PFN) * PAGE_SIZE, 1 << 20),
        256 - 203
    );
    assert!(page_is_zero(&mem, FIRST_PFN + 17) && page_is_zero(&mem, FIRST_PFN + 250));
    assert!(!page_is_zero(&mem, FIRST_PFN + 249));
    assert_eq!(b.status().pages.inflated, 203);
    assert_eq!(b.counters().snapshot().bytes_from_guest, 203 * PAGE_SIZE);

    write_pfns(&mem, &[FIRST_PFN, FIRST_PFN + 1]);
    tqs[1].add_chain(&[rdesc(PFNS, 8)]);
    b.process_queue(1);
    assert_eq!(b.status().pages.inflated, 201);
}

#[test]
fn bad_pfns_are_skipped_and_counted() {
    let mem = test_memory();
    let tqs = queues(&mem);
    let (mut b, irq, _) = balloon(&mem, &tqs, ALL);
    let beyond = (crate::virtio::test_utils::MEM_SIZE as u64 / PAGE_SIZE) as u32;
    write_pfns(&mem, &[beyond, u32::MAX, FIRST_PFN]);
    // A ragged length (the last 2 bytes are no PFN) is tolerated.
    tqs[0].add_chain(&[rdesc(PFNS, 14)]);
    tqs[0].add_chain(&[rdesc(0x7000_0000, 16)]); // buffer outside memory
    b.process_queue(0);
    let s = b.status();
    assert_eq!((s.pages.inflated, s.pages.errors), (1, 2));
    assert_eq!(b.counters().snapshot().errors, 1);
    assert!(!irq.needs_reset());
    // A hostile avail index breaks the device, not the VMM.
    tqs[0].set_avail_idx(300);
    b.process_queue(0);
    assert!(irq.needs_reset());
}

fn write_stats(mem: &Memory, stats: &[(u16, u64)]) -> u32 {
    let bytes: Vec<u8> = stats
        .iter()
        .flat_map(|(t, v)| [&t.to_le_bytes()[..], &v.to_le_bytes()[..]].concat())
        .collect();
    mem.write_slice(&bytes, GuestAddress(STATS)).unwrap();
    bytes.len() as u32
}

#[test]
fn statistics_are_kept_and_requested_again() {
    let mem = test_memory();
    let tqs = queues(&mem);
    let (mut b, _, line) = balloon(&mem, &tqs, ALL);
    assert_eq!(b.role(2), Some(Role::Stats));
    assert!(
        matches!(b.request_stats(), Err(BalloonError::StatsUnavailable)),
        "no buffer yet"
    );
    let n = write_stats(&mem, &[(4, 1000), (5, 4096), (99, 7)]);
    tqs[2].add_chain(&[rdesc(STATS, n)]);
    b.process_queue(2);
    let s = b.status().stats.unwrap();
    assert_eq!(
        (s.free_memory, s.total_memory, s.swap_in),
        (Some(1000), Some(4096), None)
    );
    assert_eq!(
        tqs[2].used_idx(),
        0,
        "the buffer is held until stats are wanted again"
    );
    b.request_stats().unwrap();
    assert_eq!(tqs[2].used_idx(), 1);
    assert_eq!(line.count(), 1);
    assert!(b.request_stats().is_err(), "buffer already given back");
    let n = write_stats(&mem, &[(4, 500)]);
    tqs[2].add_chain(&[rdesc(STATS, n)]);
    b.process_queue(2);
    assert_eq!(b.status().stats.unwrap().free_memory, Some(500));
}

#[test]
fn reported_free_pages_are_released() {
    let mem = test_memory();
    let tqs = queues(&mem);
    let (mut b, _, _) = balloon(&mem, &tqs, ALL);
    assert_eq!(b.role(3), Some(Role::Reporting));
    fill_pages(&mem, FIRST_PFN, 512);
    let base = u64::from(FIRST_PFN) * PAGE_SIZE;
    // Two ranges (Linux offers them device-writable) and one not page-aligned.
    tqs[3].add_chain(&[
        wdesc(base, 1 << 20),
        wdesc(base + (1 << 20), 4096),
        wdesc(base + (1 << 21) + 8, 4096),
    ]);
    b.process_queue(3);
    assert_eq!(tqs[3].used_idx(), 1);
    assert!(page_is_zero(&mem, FIRST_PFN) && page_is_zero(&mem, FIRST_PFN + 256));
    assert!(!page_is_zero(&mem, FIRST_PFN + 257));
    let s = b.status();
    assert_eq!(
        (s.pages.reported_bytes, s.pages.errors),
        ((1 << 20) + 4096, 1)
    );
}

#[test]
fn queue_layout_follows_the_negotiated_features() {
    let mem = test_memory();
    let tqs = queues(&mem);
    let only_reporting = features::VERSION_1 | (1 << feature::PAGE_REPORTING);
    let (b, _, _) = balloon(&mem, &tqs[..3], only_reporting);
    assert_eq!(
        [b.role(0), b.role(1), b.role(2), b.role(3)],
        [
            Some(Role::Inflate),
            Some(Role::Deflate),
            Some(Role::Reporting),
            None
        ]
    );
    // A queue the features call for must be ready.
    let mut b = Balloon::new(BalloonConfig::default(), Arc::new(MadviseReleaser)).unwrap();
    let (irq, _) = test_interrupt();
    let a = Activation {
        mem: mem.clone(),
        queues: vec![tqs[0].queue(), tqs[1].queue()],
        acked_features: ALL,
        interrupt: irq,
    };
    assert!(b.activate(a).is_err());
}

#[test]
fn target_and_actual_through_config_space() {
    let mem = test_memory();
    let tqs = queues(&mem);
    let (mut b, irq, line) = balloon(&mem, &tqs, ALL);
    b.set_target(16384);
    assert_eq!(line.count(), 1);
    assert_eq!(
        irq.status() & crate::virtio::interrupt::INT_CONFIG,
        crate::virtio::interrupt::INT_CONFIG
    );
    let mut cfg = [0u8; 8];
    b.read_config(0, &mut cfg);
    assert_eq!(u32::from_le_bytes(cfg[..4].try_into().unwrap()), 16384);
    b.write_config(4, &1234u32.to_le_bytes());
    b.write_config(0, &[9, 9, 9, 9]); // num_pages is the host's
    let s = b.status();
    assert_eq!((s.target_pages, s.actual_pages), (16384, 1234));
    let f = b.avail_features();
    for bit in [
        feature::STATS_VQ,
        feature::DEFLATE_ON_OOM,
        feature::PAGE_REPORTING,
    ] {
        assert_ne!(f & (1 << bit), 0);
    }
    b.reset();
    assert_eq!(b.status().pages, handler::PageCounts::default());
}

#[test]
fn shared_memory_is_released_with_madv_remove() {
    let file = tempfile::tempfile().unwrap();
    file.set_len(1 << 20).unwrap();
    let check = file.try_clone().unwrap();
    let mem: Memory = GuestMemoryMmap::from_ranges_with_files([(
        GuestAddress(0),
        1 << 20,
        Some(FileOffset::new(file, 0)),
    )])
    .unwrap();
    mem.write_slice(&[0x5a; 8192], GuestAddress(0x4000))
        .unwrap();
    MadviseReleaser
        .release(&mem, GuestAddress(0x4000), 4096)
        .unwrap();
    let mut b = [0u8; 8192];
    std::os::unix::fs::FileExt::read_exact_at(&check, &mut b, 0x4000).unwrap();
    assert_eq!(
        b[..4096],
        [0; 4096],
        "hole punched in the file behind guest memory"
    );
    assert_eq!(b[4096..], [0x5a; 4096]);
}

#[test]
fn end_to_end_through_transport_and_event_manager() {
    use crate::virtio::mmio::MmioTransport;
    use crate::virtio::test_utils::MmioDriver;
    use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};

    let mem = test_memory();
    let tqs = queues(&mem);
    let dev = Arc::new(Mutex::new(
        Balloon::new(
            BalloonConfig {
                queue_size: 16,
                ..Default::default()
            },
            Arc::new(MadviseReleaser),
        )
        .unwrap(),
    ));
    let line = Arc::new(CountingInterrupt::default());
    let mut t = MmioTransport::new(mem.clone(), dev.clone(), line.clone()).unwrap();
    let mut em = EventManager::<Arc<Mutex<dyn MutEventSubscriber + Send>>>::new().unwrap();
    em.add_subscriber(dev.clone());
    let mut d = MmioDriver(&mut t);
    assert_eq!(d.read(0x8), 5);
    d.negotiate(ALL);
    for (i, tq) in tqs.iter().enumerate() {
        d.setup_queue(i as u32, 16, tq);
    }
    // The driver queues its first stats buffer before DRIVER_OK, as Linux does.
    let n = write_stats(&mem, &[(5, 64 << 20)]);
    tqs[2].add_chain(&[rdesc(STATS, n)]);
    d.driver_ok();
    em.run_with_timeout(50).unwrap();
    dev.lock().unwrap().set_target(8);
    assert_eq!(d.read(0x60) & 2, 2, "config change raised");
    assert_eq!(d.read(0x100), 8);
    fill_pages(&mem, FIRST_PFN, 8);
    let len = write_pfns(&mem, &(FIRST_PFN..FIRST_PFN + 8).collect::<Vec<_>>());
    tqs[0].add_chain(&[rdesc(PFNS, len)]);
    d.write(0x50, 0);
    em.run_with_timeout(50).unwrap();
    d.write(0x104, 8);
    let s = dev.lock().unwrap().status();
    assert_eq!(
        (s.target_pages, s.actual_pages, s.pages.inflated),
        (8, 8, 8)
    );
    assert_eq!(s.stats.unwrap().total_memory, Some(64 << 20));
    assert!(page_is_zero(&mem, FIRST_PFN + 7));
}
