use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::virtio::test_utils::{
    CountingInterrupt, MmioDriver, TestQueue, rdesc, test_interrupt, test_memory, wdesc,
};
use crate::virtio::{Counters, Memory, VirtioDevice};

const BUF: u64 = 0x10_0000;

fn read(mem: &Memory, at: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    mem.read_slice(&mut v, GuestAddress(at)).unwrap();
    v
}

#[test]
fn fills_buffers_with_fresh_random_bytes() {
    let mem = test_memory();
    let tq = TestQueue::new(&mem, 16);
    let (irq, line) = test_interrupt();
    let counters = Arc::new(Counters::default());
    let mut q = RngQueue::new(tq.queue(), mem.clone(), irq, counters.clone());
    tq.add_chain(&[wdesc(BUF, 100), wdesc(BUF + 0x1000, 156)]);
    tq.add_chain(&[wdesc(BUF + 0x2000, 256)]);
    assert_eq!(q.process_queue().unwrap().completed, 2);
    assert_eq!(tq.used(0).1, 256);
    assert_eq!(tq.used(1).1, 256);
    let a = [read(&mem, BUF, 100), read(&mem, BUF + 0x1000, 156)].concat();
    let b = read(&mem, BUF + 0x2000, 256);
    assert_ne!(a, b);
    assert!(a.iter().any(|&x| x != 0) && b.iter().any(|&x| x != 0));
    assert_eq!(line.count(), 1);
    assert_eq!(counters.snapshot().bytes_to_guest, 512);
}

#[test]
fn huge_requests_are_bounded() {
    let mem = test_memory();
    let tq = TestQueue::new(&mem, 16);
    let (irq, _) = test_interrupt();
    let mut q = RngQueue::new(tq.queue(), mem.clone(), irq, Arc::default());
    tq.add_chain(&[wdesc(BUF, 4 << 20)]);
    q.process_queue().unwrap();
    assert_eq!(tq.used(0).1 as usize, MAX_BYTES_PER_REQUEST);
    assert_eq!(
        read(&mem, BUF + MAX_BYTES_PER_REQUEST as u64, 64),
        vec![0; 64]
    );
}

#[test]
fn malformed_requests_fail_alone() {
    let mem = test_memory();
    let tq = TestQueue::new(&mem, 16);
    let (irq, _) = test_interrupt();
    let counters = Arc::new(Counters::default());
    let mut q = RngQueue::new(tq.queue(), mem.clone(), irq, counters.clone());
    tq.add_chain(&[rdesc(BUF, 64)]); // wrong direction: nothing to write into
    tq.add_chain(&[wdesc(0x7000_0000, 64)]); // outside memory
    tq.add_chain(&[wdesc(BUF, 0)]); // zero length
    tq.add_chain(&[wdesc(BUF, 8)]);
    q.process_queue().unwrap();
    assert_eq!(tq.used_idx(), 4);
    assert_eq!(
        [tq.used(0).1, tq.used(1).1, tq.used(2).1, tq.used(3).1],
        [0, 0, 0, 8]
    );
    assert_eq!(counters.snapshot().errors, 1);
}

#[test]
fn bad_avail_index_breaks_the_device() {
    let mem = test_memory();
    let tq = TestQueue::new(&mem, 16);
    let mut dev = Rng::new(16).unwrap();
    let (irq, _) = test_interrupt();
    let a = crate::virtio::Activation {
        mem: mem.clone(),
        queues: vec![tq.queue()],
        acked_features: 0,
        interrupt: irq.clone(),
    };
    dev.activate(a).unwrap();
    tq.set_avail_idx(17);
    dev.process_queue();
    assert!(irq.needs_reset());
}

#[test]
fn queue_size_must_be_a_power_of_two() {
    assert!(matches!(Rng::new(100), Err(RngError::QueueSize(100))));
}

#[test]
fn end_to_end_through_transport_and_event_manager() {
    use crate::virtio::mmio::MmioTransport;
    use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};

    let mem = test_memory();
    let dev = Arc::new(Mutex::new(Rng::new(16).unwrap()));
    let line = Arc::new(CountingInterrupt::default());
    let mut t = MmioTransport::new(mem.clone(), dev.clone(), line.clone()).unwrap();
    let mut em = EventManager::<Arc<Mutex<dyn MutEventSubscriber + Send>>>::new().unwrap();
    em.add_subscriber(dev.clone());
    let tq = TestQueue::new(&mem, 16);
    let mut d = MmioDriver(&mut t);
    assert_eq!(d.read(0x8), 4);
    let f = d.device_features();
    d.negotiate(f);
    d.setup_queue(0, 16, &tq);
    d.driver_ok();
    tq.add_chain(&[wdesc(BUF, 32)]);
    d.write(0x50, 0);
    em.run_with_timeout(100).unwrap();
    assert_eq!(tq.used_idx(), 1);
    assert_eq!(line.count(), 1);
    assert_eq!(dev.lock().unwrap().counters().snapshot().bytes_to_guest, 32);
}
