//! Device-level tests: features, configuration space, activation, breakage and recovery,
//! back-end swap, EVENT_IDX, and the whole path through the transport and an event loop.

use std::sync::{Arc, Mutex};

use disk::BlockBackend;
use virtio_bindings::virtio_blk::*;
use vm_memory::{Address, Bytes, GuestAddress};

use super::super::*;
use super::{DATA, HDR, MemDisk, STATUS, header, limits, status_at};
use crate::virtio::test_utils::{TestQueue, rdesc, test_interrupt, test_memory, wdesc};
use crate::virtio::{Activation, Memory, VirtioDevice, status};

fn block_device(disk: Arc<dyn BlockBackend>, cfg: BlockConfig) -> Block {
    Block::new(disk, cfg).unwrap()
}

#[test]
fn features_and_config_space() {
    use std::mem::offset_of;
    use virtio_bindings::virtio_blk::virtio_blk_config as C;
    let cfg = BlockConfig {
        block_size: 4096,
        ..BlockConfig::default()
    };
    let dev = block_device(MemDisk::new((1 << 20) + 100), cfg.clone());
    let f = dev.avail_features();
    for b in [
        VIRTIO_BLK_F_FLUSH,
        VIRTIO_BLK_F_DISCARD,
        VIRTIO_BLK_F_WRITE_ZEROES,
        VIRTIO_BLK_F_SEG_MAX,
    ] {
        assert_ne!(f & (1 << b), 0, "feature {b}");
    }
    assert_eq!(f & (1 << VIRTIO_BLK_F_RO), 0);
    assert_ne!(f & crate::virtio::features::VERSION_1, 0);
    let read = |off: usize, n: usize| {
        let mut b = vec![0u8; n];
        dev.read_config(off as u64, &mut b);
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(&b);
        u64::from_le_bytes(v)
    };
    assert_eq!(
        read(offset_of!(C, capacity), 8),
        2048,
        "partial trailing sector hidden"
    );
    assert_eq!(
        read(offset_of!(C, seg_max), 4),
        u64::from(cfg.limits.seg_max)
    );
    assert_eq!(
        read(offset_of!(C, size_max), 4),
        u64::from(cfg.limits.size_max)
    );
    assert_eq!(read(offset_of!(C, blk_size), 4), 4096);
    assert_eq!(read(offset_of!(C, num_queues), 2), 1);
    assert_eq!(
        read(offset_of!(C, max_discard_sectors), 4),
        u64::from(cfg.limits.max_discard_sectors)
    );
    assert_eq!(
        read(offset_of!(C, max_discard_seg), 4),
        u64::from(cfg.limits.max_discard_seg)
    );
    assert_eq!(read(offset_of!(C, discard_sector_alignment), 4), 8);
    assert_eq!(
        read(offset_of!(C, max_write_zeroes_sectors), 4),
        u64::from(cfg.limits.max_write_zeroes_sectors)
    );
    assert_eq!(
        read(offset_of!(C, max_write_zeroes_seg), 4),
        u64::from(cfg.limits.max_write_zeroes_seg)
    );
    assert_eq!(read(offset_of!(C, write_zeroes_may_unmap), 1), 1);
    assert_eq!(offset_of!(C, max_secure_erase_sectors), CONFIG_SIZE);

    let ro = block_device(
        MemDisk::new(4096),
        BlockConfig {
            read_only: true,
            ..BlockConfig::default()
        },
    );
    let f = ro.avail_features();
    assert_ne!(f & (1 << VIRTIO_BLK_F_RO), 0);
    assert_eq!(f & (1 << VIRTIO_BLK_F_DISCARD), 0);
}

#[test]
fn bad_configs_are_refused() {
    let d = || MemDisk::new(4096) as Arc<dyn BlockBackend>;
    assert!(matches!(
        Block::new(
            d(),
            BlockConfig {
                block_size: 1000,
                ..Default::default()
            }
        ),
        Err(BlockError::BlockSize(1000))
    ));
    assert!(matches!(
        Block::new(
            d(),
            BlockConfig {
                queue_size: 100,
                ..Default::default()
            }
        ),
        Err(BlockError::QueueSize(100))
    ));
    assert!(matches!(
        Block::new(
            d(),
            BlockConfig {
                limits: SegmentLimits {
                    seg_max: 0,
                    ..Default::default()
                },
                ..Default::default()
            }
        ),
        Err(BlockError::SegLimits { .. })
    ));
}

fn activation(
    mem: &Memory,
    tq: &TestQueue<'_>,
) -> (
    Activation,
    Arc<crate::virtio::test_utils::CountingInterrupt>,
) {
    let (irq, line) = test_interrupt();
    (
        Activation {
            mem: mem.clone(),
            queues: vec![tq.queue()],
            acked_features: 0,
            interrupt: irq,
        },
        line,
    )
}

#[test]
fn device_breaks_on_ring_errors_and_recovers_after_reset() {
    let mem = test_memory();
    let mut dev = block_device(MemDisk::new(4096), BlockConfig::default());
    let tq = TestQueue::new(&mem, 16);
    let (a, line) = activation(&mem, &tq);
    let irq = a.interrupt.clone();
    dev.activate(a).unwrap();
    assert!(dev.is_activated());
    assert_eq!(dev.activate_event().read().unwrap(), 1);
    tq.set_avail_idx(500);
    dev.process_queue();
    assert!(irq.needs_reset());
    assert_eq!(line.count(), 1);
    // Broken: nothing served even once the ring looks sane again.
    tq.set_avail_idx(0);
    header(&mem, HDR, VIRTIO_BLK_T_FLUSH, 0);
    tq.add_chain(&[rdesc(HDR, 16), wdesc(STATUS, 1)]);
    assert_eq!(dev.process_queue().completed, 0);
    dev.reset();
    assert!(!dev.is_activated());
    let tq = TestQueue::new(&mem, 16);
    tq.add_chain(&[rdesc(HDR, 16), wdesc(STATUS, 1)]);
    dev.activate(activation(&mem, &tq).0).unwrap();
    assert_eq!(dev.process_queue().completed, 1);
}

#[test]
fn activation_needs_a_ready_queue() {
    let mem = test_memory();
    let mut dev = block_device(MemDisk::new(4096), BlockConfig::default());
    let (irq, _) = test_interrupt();
    let q = <virtio_queue::Queue as virtio_queue::QueueT>::new(16).unwrap();
    let a = Activation {
        mem,
        queues: vec![q],
        acked_features: 0,
        interrupt: irq,
    };
    assert!(matches!(
        dev.activate(a),
        Err(crate::virtio::ActivateError::QueueNotReady(0))
    ));
}

#[test]
fn backend_swap_changes_capacity_and_signals() {
    let mem = test_memory();
    let mut dev = block_device(MemDisk::new(4096), BlockConfig::default());
    let tq = TestQueue::new(&mem, 16);
    let (a, line) = activation(&mem, &tq);
    dev.activate(a).unwrap();
    let bigger = MemDisk::new(8192);
    bigger.data.lock().unwrap()[4096..4608].fill(0x42);
    dev.set_backend(bigger);
    let mut cap = [0u8; 8];
    dev.read_config(0, &mut cap);
    assert_eq!(u64::from_le_bytes(cap), 16);
    assert_eq!(line.count(), 1);
    header(&mem, HDR, VIRTIO_BLK_T_IN, 8);
    tq.add_chain(&[rdesc(HDR, 16), wdesc(DATA, 512), wdesc(STATUS, 1)]);
    dev.process_queue();
    assert_eq!(status_at(&mem, STATUS), 0);
    assert_eq!(mem.read_obj::<u8>(GuestAddress(DATA)).unwrap(), 0x42);
}

#[test]
fn event_idx_suppresses_interrupts() {
    let mem = test_memory();
    let tq = TestQueue::new(&mem, 16);
    let (irq, line) = test_interrupt();
    let mut q = BlockQueue::new(
        tq.queue_event_idx(),
        mem.clone(),
        irq,
        MemDisk::new(4096),
        limits(8),
        [0; 20],
        Arc::default(),
    );
    header(&mem, HDR, VIRTIO_BLK_T_FLUSH, 0);
    // used_event (after the avail ring) = 5: the driver wants an interrupt only past entry 5.
    let (_, avail, _) = tq.addrs();
    mem.write_obj(5u16, avail.unchecked_add(4 + 2 * 16))
        .unwrap();
    tq.add_chain(&[rdesc(HDR, 16), wdesc(STATUS, 1)]);
    q.process_queue().unwrap();
    assert_eq!(line.count(), 0);
    for _ in 0..5 {
        tq.add_chain(&[rdesc(HDR, 16), wdesc(STATUS, 1)]);
    }
    q.process_queue().unwrap();
    assert_eq!(line.count(), 1);
}

/// The whole path: registers, QueueNotify, the event loop, the queue handler, the interrupt.
#[test]
fn end_to_end_through_transport_and_event_manager() {
    use crate::virtio::mmio::MmioTransport;
    use crate::virtio::test_utils::{CountingInterrupt, MmioDriver};
    use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};

    let mem = test_memory();
    let disk = MemDisk::new(1 << 20);
    let dev = Arc::new(Mutex::new(block_device(
        disk.clone(),
        BlockConfig {
            serial: "e2e".into(),
            ..Default::default()
        },
    )));
    let line = Arc::new(CountingInterrupt::default());
    let mut t = MmioTransport::new(mem.clone(), dev.clone(), line.clone()).unwrap();
    let mut em = EventManager::<Arc<Mutex<dyn MutEventSubscriber + Send>>>::new().unwrap();
    em.add_subscriber(dev.clone());

    let tq = TestQueue::new(&mem, 16);
    let mut d = MmioDriver(&mut t);
    let feats = d.device_features();
    assert_eq!(d.negotiate(feats), 1 | 2 | 8);
    d.setup_queue(0, 16, &tq);
    assert_eq!(d.driver_ok() & status::DEVICE_NEEDS_RESET, 0);
    em.run_with_timeout(100).unwrap();

    mem.write_slice(&[0x77; 512], GuestAddress(DATA)).unwrap();
    header(&mem, HDR, VIRTIO_BLK_T_OUT, 2);
    tq.add_chain(&[rdesc(HDR, 16), rdesc(DATA, 512), wdesc(STATUS, 1)]);
    d.write(0x50, 0);
    em.run_with_timeout(100).unwrap();
    assert_eq!(tq.used_idx(), 1);
    assert_eq!(status_at(&mem, STATUS), 0);
    assert_eq!(disk.data.lock().unwrap()[1024..1536], [0x77; 512]);
    assert!(line.count() >= 1);
    assert_eq!(d.read(0x60) & 1, 1);
    assert_eq!(
        dev.lock().unwrap().counters().snapshot().bytes_from_guest,
        512
    );
}

/// An ioeventfd bypasses the transport: a notification can reach the device thread before
/// DRIVER_OK. It must be drained and ignored.
#[test]
fn queue_event_before_activation_is_ignored() {
    use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};

    let mem = test_memory();
    let dev = Arc::new(Mutex::new(block_device(
        MemDisk::new(4096),
        BlockConfig::default(),
    )));
    let mut em = EventManager::<Arc<Mutex<dyn MutEventSubscriber + Send>>>::new().unwrap();
    em.add_subscriber(dev.clone());
    let tq = TestQueue::new(&mem, 16);
    header(&mem, HDR, VIRTIO_BLK_T_FLUSH, 0);
    tq.add_chain(&[rdesc(HDR, 16), wdesc(STATUS, 1)]);
    dev.lock().unwrap().queue_events()[0].write(1).unwrap();
    assert_eq!(em.run_with_timeout(50).unwrap(), 1);
    assert_eq!(tq.used_idx(), 0);
    // Drained: the loop does not spin on it.
    assert_eq!(em.run_with_timeout(10).unwrap(), 0);
}
