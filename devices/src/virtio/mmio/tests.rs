use std::sync::{Arc, Mutex};

use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::EventFd;

use super::*;
use crate::virtio::test_utils::{CountingInterrupt, MmioDriver, TestQueue, test_memory};
use crate::virtio::{ActivateError, Counters, status};

/// Test double: a device that records what the transport tells it and does nothing else.
struct Recorder {
    sizes: Vec<u16>,
    events: Vec<EventFd>,
    config: [u8; 8],
    activations: Vec<(u64, Vec<bool>)>,
    resets: usize,
    fail_activate: bool,
}

impl Recorder {
    fn new(sizes: Vec<u16>) -> Self {
        let events = crate::virtio::new_queue_events(sizes.len()).unwrap();
        Self {
            sizes,
            events,
            config: *b"virgacfg",
            activations: vec![],
            resets: 0,
            fail_activate: false,
        }
    }
}

const OFFERED: u64 = features::VERSION_1 | features::RING_EVENT_IDX | 1;

impl VirtioDevice for Recorder {
    fn device_type(&self) -> u32 {
        42
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.sizes
    }
    fn avail_features(&self) -> u64 {
        OFFERED
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        crate::virtio::read_config_bytes(&self.config, offset, data);
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        if let Some(dst) = self
            .config
            .get_mut(offset as usize..offset as usize + data.len())
        {
            dst.copy_from_slice(data);
        }
    }
    fn queue_events(&self) -> &[EventFd] {
        &self.events
    }
    fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
        if self.fail_activate {
            return Err(ActivateError::Backend("refused by the test".into()));
        }
        let ready = a
            .queues
            .iter()
            .map(|q| q.ready() && q.event_idx_enabled())
            .collect();
        self.activations.push((a.acked_features, ready));
        Ok(())
    }
    fn reset(&mut self) {
        self.resets += 1;
    }
    fn is_activated(&self) -> bool {
        !self.activations.is_empty()
    }
    fn counters(&self) -> Arc<Counters> {
        Arc::default()
    }
}

fn transport(sizes: Vec<u16>) -> (MmioTransport, Arc<Mutex<Recorder>>, Arc<CountingInterrupt>) {
    let dev = Arc::new(Mutex::new(Recorder::new(sizes)));
    let line = Arc::new(CountingInterrupt::default());
    let t = MmioTransport::new(test_memory(), dev.clone(), line.clone()).unwrap();
    (t, dev, line)
}

#[test]
fn identifies_itself() {
    let (mut t, _, _) = transport(vec![16]);
    let mut d = MmioDriver(&mut t);
    assert_eq!(d.read(0x0), 0x7472_6976);
    assert_eq!(d.read(0x4), 2);
    assert_eq!(d.read(0x8), 42);
    assert_eq!(d.read(0xc), VENDOR_ID);
    assert_eq!(d.device_features(), OFFERED);
    d.write(0x14, 7);
    assert_eq!(d.read(0x10), 0);
    d.write(0x30, 0);
    assert_eq!(d.read(0x34), 16);
    d.write(0x30, 5);
    assert_eq!(
        d.read(0x34),
        0,
        "a queue that does not exist has max size 0"
    );
    assert_eq!(d.read(0xb0), u32::MAX, "no shared memory regions");
}

#[test]
fn full_bring_up_activates_with_the_negotiated_queues() {
    let (mut t, dev, _) = transport(vec![16, 16]);
    let mem = t.mem.clone();
    let tq = TestQueue::at(&mem, GuestAddress(0x1000), 16);
    let mut d = MmioDriver(&mut t);
    let acked = features::VERSION_1 | features::RING_EVENT_IDX;
    assert_eq!(d.negotiate(acked), 1 | 2 | 8);
    d.setup_queue(0, 16, &tq);
    assert_eq!(d.read(0x44), 1);
    assert_eq!(d.driver_ok(), 1 | 2 | 8 | 4);
    let rec = dev.lock().unwrap();
    assert_eq!(rec.activations, vec![(acked, vec![true, false])]);
}

#[test]
fn config_space_reads_and_writes_any_width() {
    let (mut t, _, _) = transport(vec![16]);
    let mut b = [0u8; 2];
    t.read(0x102, &mut b);
    assert_eq!(&b, b"rg");
    t.write(0x100, b"V");
    let mut all = [0u8; 8];
    t.read(0x100, &mut all);
    assert_eq!(&all, b"Virgacfg");
    let mut past = [0xffu8; 4];
    t.read(0x100 + 8, &mut past);
    assert_eq!(past, [0; 4]);
}

#[test]
fn odd_width_register_accesses_are_ignored() {
    let (mut t, _, _) = transport(vec![16]);
    let mut b = [0xffu8; 2];
    t.read(0x0, &mut b);
    assert_eq!(b, [0, 0]);
    t.write(0x70, &[1]);
    t.write(0x71, &[1, 0, 0, 0]);
    assert_eq!(MmioDriver(&mut t).read(0x70), 0);
}

#[test]
fn legacy_driver_is_refused() {
    let (mut t, _, _) = transport(vec![16]);
    let mut d = MmioDriver(&mut t);
    // No VERSION_1: FEATURES_OK does not stick.
    assert_eq!(d.negotiate(1), 1 | 2);
}

#[test]
fn features_never_offered_are_refused() {
    let (mut t, _, _) = transport(vec![16]);
    let mut d = MmioDriver(&mut t);
    assert_eq!(d.negotiate(features::VERSION_1 | (1 << 5)), 1 | 2);
}

#[test]
fn status_bits_out_of_order_are_ignored() {
    let (mut t, dev, _) = transport(vec![16]);
    let mut d = MmioDriver(&mut t);
    d.write(0x70, 1 | 2 | 8 | 4);
    assert_eq!(d.read(0x70), 0);
    d.write(0x70, 1);
    d.write(0x70, 1 | 4);
    assert_eq!(d.read(0x70), 1);
    d.write(0x70, 1 | 0x20);
    assert_eq!(d.read(0x70), 1);
    assert!(dev.lock().unwrap().activations.is_empty());
}

#[test]
fn features_written_after_features_ok_are_ignored() {
    let (mut t, _, _) = transport(vec![16]);
    let mut d = MmioDriver(&mut t);
    d.negotiate(features::VERSION_1);
    d.write(0x24, 0);
    d.write(0x20, 1);
    assert_eq!(d.0.acked_features(), features::VERSION_1);
}

#[test]
fn queue_size_not_a_power_of_two_breaks_the_device() {
    let (mut t, _, line) = transport(vec![16]);
    let mut d = MmioDriver(&mut t);
    d.negotiate(features::VERSION_1);
    d.write(0x30, 0);
    d.write(0x38, 12);
    assert_eq!(
        d.read(0x70) & status::DEVICE_NEEDS_RESET,
        status::DEVICE_NEEDS_RESET
    );
    assert_eq!(
        d.read(0x60) & 2,
        2,
        "config-change interrupt for NEEDS_RESET"
    );
    assert_eq!(line.count(), 1);
    // Too large (and a value that truncates to a valid u16) too.
    d.write(0x70, 0);
    d.negotiate(features::VERSION_1);
    d.write(0x38, 0x1_0008);
    assert_eq!(
        d.read(0x70) & status::DEVICE_NEEDS_RESET,
        status::DEVICE_NEEDS_RESET
    );
}

#[test]
fn rings_outside_memory_break_the_device_at_driver_ok() {
    let (mut t, dev, _) = transport(vec![16]);
    let mut d = MmioDriver(&mut t);
    d.negotiate(features::VERSION_1);
    d.write(0x30, 0);
    d.write(0x80, 0xffff_f000);
    d.write(0x84, 0xffff);
    d.write(0x44, 1);
    let st = d.driver_ok();
    assert_eq!(st & status::DEVICE_NEEDS_RESET, status::DEVICE_NEEDS_RESET);
    assert!(dev.lock().unwrap().activations.is_empty());
    // A reset brings it back.
    d.write(0x70, 0);
    assert_eq!(d.read(0x70), 0);
    assert_eq!(dev.lock().unwrap().resets, 1);
}

#[test]
fn activation_failure_breaks_the_device() {
    let (mut t, dev, _) = transport(vec![16]);
    dev.lock().unwrap().fail_activate = true;
    let mut d = MmioDriver(&mut t);
    d.negotiate(features::VERSION_1);
    assert_eq!(
        d.driver_ok() & status::DEVICE_NEEDS_RESET,
        status::DEVICE_NEEDS_RESET
    );
}

#[test]
fn queue_registers_locked_once_ready_or_running() {
    let (mut t, _, _) = transport(vec![16]);
    let mem = t.mem.clone();
    let tq = TestQueue::at(&mem, GuestAddress(0x1000), 16);
    let mut d = MmioDriver(&mut t);
    // Before FEATURES_OK the queue cannot be touched.
    d.write(0x30, 0);
    d.write(0x44, 1);
    assert_eq!(d.read(0x44), 0);
    d.negotiate(features::VERSION_1);
    d.setup_queue(0, 8, &tq);
    d.write(0x80, 0x5000);
    assert_eq!(d.read(0x80), 0x1000, "address of a ready queue is frozen");
    d.driver_ok();
    d.write(0x44, 0);
    assert_eq!(d.read(0x44), 1, "a live queue stays ready");
}

#[test]
fn notifications_reach_the_queue_eventfd_only_after_driver_ok() {
    let (mut t, dev, _) = transport(vec![16, 16]);
    let evt = dev.lock().unwrap().events[1].try_clone().unwrap();
    let mut d = MmioDriver(&mut t);
    d.write(0x50, 1);
    assert!(
        evt.read().is_err(),
        "notification before DRIVER_OK must not reach the device"
    );
    d.negotiate(features::VERSION_1);
    d.driver_ok();
    d.write(0x50, 1);
    assert_eq!(evt.read().unwrap(), 1);
    d.write(0x50, 9);
    // The same eventfd is what the VMM registers as an ioeventfd.
    let io = d.0.ioevents().unwrap();
    assert_eq!(io.len(), 2);
    assert_eq!((io[1].0, io[1].1), (QUEUE_NOTIFY_OFFSET, 1));
    io[1].2.write(1).unwrap();
    assert_eq!(evt.read().unwrap(), 1);
}

#[test]
fn interrupt_status_and_ack() {
    let (mut t, _, line) = transport(vec![16]);
    t.interrupt().signal_used();
    let mut d = MmioDriver(&mut t);
    assert_eq!(d.read(0x60), 1);
    d.write(0x64, 1);
    assert_eq!(d.read(0x60), 0);
    assert_eq!(line.count(), 1);
    let gen0 = d.read(0xfc);
    d.0.interrupt().signal_config();
    assert_eq!(d.read(0xfc), gen0 + 1);
}

#[test]
fn reset_clears_everything() {
    let (mut t, dev, _) = transport(vec![16]);
    let mem = t.mem.clone();
    let tq = TestQueue::at(&mem, GuestAddress(0x1000), 16);
    let mut d = MmioDriver(&mut t);
    d.negotiate(features::VERSION_1);
    d.setup_queue(0, 8, &tq);
    d.driver_ok();
    d.0.interrupt().signal_used();
    d.write(0x70, 0);
    assert_eq!(d.read(0x70), 0);
    assert_eq!(d.read(0x60), 0);
    d.write(0x30, 0);
    assert_eq!(d.read(0x44), 0);
    assert_eq!(d.0.acked_features(), 0);
    assert_eq!(dev.lock().unwrap().resets, 1);
    // And it comes up again.
    d.negotiate(features::VERSION_1);
    d.setup_queue(0, 16, &tq);
    assert_eq!(d.driver_ok(), 1 | 2 | 8 | 4);
    assert_eq!(dev.lock().unwrap().activations.len(), 2);
}

#[test]
fn bad_device_queue_sizes_are_refused() {
    let dev = Arc::new(Mutex::new(Recorder::new(vec![12])));
    let line = Arc::new(CountingInterrupt::default());
    assert!(matches!(
        MmioTransport::new(test_memory(), dev, line),
        Err(MmioError::QueueMaxSize { index: 0, size: 12 })
    ));
}

#[test]
fn transport_and_devices_fit_the_vmm_containers() {
    // The bus wants Arc<Mutex<dyn BusDevice>> (Send); the event loop wants Send subscribers.
    fn send<T: Send>() {}
    send::<MmioTransport>();
    send::<crate::virtio::block::Block>();
    send::<crate::virtio::net::Net>();
    send::<crate::virtio::balloon::Balloon>();
    send::<crate::virtio::rng::Rng>();
    let (t, _, _) = transport(vec![16]);
    let _: crate::bus::SharedDevice = Arc::new(Mutex::new(t));
}
