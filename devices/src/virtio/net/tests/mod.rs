use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use virtio_bindings::virtio_net::*;
use vm_memory::{Address, Bytes, GuestAddress};

use super::device::{RX, TX};
use super::*;
use crate::virtio::test_utils::{TestQueue, rdesc, test_interrupt, test_memory, wdesc};
use crate::virtio::{Activation, Counters, Memory, VirtioDevice, features};

mod netns;

/// Test double for a tap: one end of an AF_UNIX SOCK_SEQPACKET pair, which keeps frame
/// boundaries like a tap does. The other end plays the host network.
pub(super) struct SocketFrames(OwnedFd);

pub(super) fn socket_pair() -> (SocketFrames, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two fds into `fds`, which has room for them.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0, "socketpair: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just created and are owned by nothing else.
    unsafe {
        (
            SocketFrames(OwnedFd::from_raw_fd(fds[0])),
            OwnedFd::from_raw_fd(fds[1]),
        )
    }
}

fn sys(r: isize) -> std::io::Result<usize> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

pub(super) fn recv(fd: RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length during the call.
    sys(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) })
}

pub(super) fn send(fd: RawFd, buf: &[u8]) -> std::io::Result<usize> {
    // SAFETY: `buf` is valid for reads of its length during the call.
    sys(unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), 0) })
}

impl AsRawFd for SocketFrames {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl FrameIo for SocketFrames {
    fn read_frame(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        recv(self.0.as_raw_fd(), buf)
    }
    fn write_frame(&mut self, frame: &[u8]) -> std::io::Result<()> {
        send(self.0.as_raw_fd(), frame).map(|_| ())
    }
    fn offloads_supported(&self) -> bool {
        false
    }
    fn set_offloads(&mut self, _: u32) -> std::io::Result<()> {
        Ok(())
    }
}

const BUF: u64 = 0x10_0000;

pub(super) struct Rig<'m> {
    pub rx: TestQueue<'m>,
    pub tx: TestQueue<'m>,
    pub q: NetQueues,
    pub counters: Arc<Counters>,
}

pub(super) fn rig(mem: &Memory, mrg: bool) -> Rig<'_> {
    let rx = TestQueue::at(mem, GuestAddress(0), 16);
    let tx = TestQueue::at(mem, GuestAddress(0x8000), 16);
    let (irq, _) = test_interrupt();
    let counters = Arc::new(Counters::default());
    let q = NetQueues::new(
        rx.queue_event_idx(),
        tx.queue(),
        mem.clone(),
        irq,
        counters.clone(),
        mrg,
    );
    Rig {
        rx,
        tx,
        q,
        counters,
    }
}

fn frame(payload_len: usize, seed: u8) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend((0..payload_len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    f
}

fn read(mem: &Memory, at: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    mem.read_slice(&mut v, GuestAddress(at)).unwrap();
    v
}

#[test]
fn tx_sends_the_chain_as_one_frame() {
    let mem = test_memory();
    let mut r = rig(&mem, false);
    let (mut io, host) = socket_pair();
    let f = frame(100, 1);
    mem.write_slice(&f, GuestAddress(BUF)).unwrap();
    r.tx.add_chain(&[rdesc(BUF, 12), rdesc(BUF + 12, 40), rdesc(BUF + 52, 60)]);
    assert_eq!(r.q.process_tx(&mut io).unwrap().completed, 1);
    let mut got = vec![0u8; 4096];
    let n = recv(host.as_raw_fd(), &mut got).unwrap();
    assert_eq!(&got[..n], &f[..]);
    assert_eq!(r.tx.used(0), (0, 0));
    let c = r.counters.snapshot();
    assert_eq!((c.requests, c.bytes_from_guest, c.errors), (1, 100, 0));
}

#[test]
fn tx_drops_malformed_frames_and_goes_on() {
    let mem = test_memory();
    let mut r = rig(&mem, false);
    let (mut io, host) = socket_pair();
    mem.write_slice(&frame(60, 2), GuestAddress(BUF)).unwrap();
    r.tx.add_chain(&[rdesc(BUF, 8)]); // shorter than the header
    r.tx.add_chain(&[rdesc(BUF, MAX_FRAME_LEN as u32 + 1)]); // too long
    r.tx.add_chain(&[rdesc(BUF, 72), wdesc(BUF + 0x1000, 4)]); // writable part in tx
    r.tx.add_chain(&[rdesc(0x7000_0000, 72)]); // outside memory
    r.tx.add_chain(&[rdesc(BUF, 72)]);
    assert_eq!(r.q.process_tx(&mut io).unwrap().completed, 5);
    let mut got = vec![0u8; 4096];
    assert_eq!(recv(host.as_raw_fd(), &mut got).unwrap(), 72);
    assert!(
        recv(host.as_raw_fd(), &mut got).is_err(),
        "exactly one frame went out"
    );
    assert_eq!(r.counters.snapshot().errors, 4);
}

#[test]
fn rx_fills_one_chain_per_frame() {
    let mem = test_memory();
    let mut r = rig(&mem, false);
    let (mut io, host) = socket_pair();
    let f = frame(200, 3);
    send(host.as_raw_fd(), &f).unwrap();
    r.rx.add_chain(&[wdesc(BUF, 100), wdesc(BUF + 0x1000, 1500)]);
    assert_eq!(r.q.process_rx(&mut io).unwrap().completed, 1);
    assert_eq!(r.rx.used(0), (0, 212));
    let got = [read(&mem, BUF, 100), read(&mem, BUF + 0x1000, 112)].concat();
    assert_eq!(u16::from_le_bytes([got[10], got[11]]), 1, "num_buffers");
    assert_eq!(&got[12..], &f[12..]);
    assert_eq!(r.counters.snapshot().bytes_to_guest, 200);
}

#[test]
fn rx_merges_buffers_when_negotiated() {
    let mem = test_memory();
    let mut r = rig(&mem, true);
    let (mut io, host) = socket_pair();
    let f = frame(3000, 4);
    send(host.as_raw_fd(), &f).unwrap();
    for i in 0..3 {
        r.rx.add_chain(&[wdesc(BUF + i * 0x1000, 1526)]);
    }
    assert_eq!(r.q.process_rx(&mut io).unwrap().completed, 2);
    assert_eq!(r.rx.used(0), (0, 1526));
    assert_eq!(r.rx.used(1), (1, 3012 - 1526));
    let got = [read(&mem, BUF, 1526), read(&mem, BUF + 0x1000, 3012 - 1526)].concat();
    assert_eq!(u16::from_le_bytes([got[10], got[11]]), 2);
    assert_eq!(&got[12..], &f[12..]);
}

#[test]
fn rx_waits_for_buffers_and_asks_to_be_notified() {
    let mem = test_memory();
    let mut r = rig(&mem, true);
    let (mut io, host) = socket_pair();
    send(host.as_raw_fd(), &frame(3000, 5)).unwrap();
    r.rx.add_chain(&[wdesc(BUF, 1526)]);
    assert_eq!(r.q.process_rx(&mut io).unwrap().completed, 0);
    assert!(r.q.rx_pending(), "frame kept until buffers come");
    // EVENT_IDX: avail_event (after the used ring) asks for a kick at the next buffer.
    let (_, _, used) = r.rx.addrs();
    let avail_event: u16 = mem.read_obj(used.unchecked_add(4 + 8 * 16)).unwrap();
    assert_eq!(avail_event, 1);
    r.rx.add_chain(&[wdesc(BUF + 0x1000, 1526)]);
    assert_eq!(r.q.process_rx(&mut io).unwrap().completed, 2);
    assert!(!r.q.rx_pending());
    assert_eq!(r.rx.used_idx(), 2);
}

#[test]
fn rx_drops_frames_too_big_without_merging() {
    let mem = test_memory();
    let mut r = rig(&mem, false);
    let (mut io, host) = socket_pair();
    send(host.as_raw_fd(), &frame(3000, 6)).unwrap();
    send(host.as_raw_fd(), &frame(50, 7)).unwrap();
    r.rx.add_chain(&[wdesc(BUF, 1526)]);
    r.rx.add_chain(&[wdesc(BUF + 0x1000, 1526)]);
    r.q.process_rx(&mut io).unwrap();
    assert_eq!(
        r.rx.used(0),
        (0, 0),
        "first chain returned empty with the big frame"
    );
    assert_eq!(r.rx.used(1), (1, 62));
    assert_eq!(r.counters.snapshot().errors, 1);
}

#[test]
fn rx_returns_malformed_chains_empty_and_uses_the_next() {
    let mem = test_memory();
    let mut r = rig(&mem, false);
    let (mut io, host) = socket_pair();
    send(host.as_raw_fd(), &frame(50, 8)).unwrap();
    r.rx.add_chain(&[rdesc(BUF, 1526)]); // device-readable: useless for rx
    r.rx.add_chain(&[wdesc(0x7000_0000, 1526)]); // outside memory
    r.rx.add_chain(&[wdesc(BUF + 0x1000, 1526)]);
    assert_eq!(r.q.process_rx(&mut io).unwrap().completed, 3);
    assert_eq!([r.rx.used(0).1, r.rx.used(1).1, r.rx.used(2).1], [0, 0, 62]);
    // Short frames from the back end are dropped too.
    send(host.as_raw_fd(), &[1, 2, 3]).unwrap();
    r.rx.add_chain(&[wdesc(BUF, 1526)]);
    r.q.process_rx(&mut io).unwrap();
    assert_eq!(r.rx.used_idx(), 3);
}

#[test]
fn bad_avail_index_breaks_the_device() {
    let mem = test_memory();
    let (io, _host) = socket_pair();
    let mut dev = Net::new(Box::new(io), NetConfig::default()).unwrap();
    let rx = TestQueue::at(&mem, GuestAddress(0), 16);
    let tx = TestQueue::at(&mem, GuestAddress(0x8000), 16);
    let (irq, _) = test_interrupt();
    let a = Activation {
        mem: mem.clone(),
        queues: vec![rx.queue(), tx.queue()],
        acked_features: features::VERSION_1,
        interrupt: irq.clone(),
    };
    dev.activate(a).unwrap();
    tx.set_avail_idx(40);
    dev.process_tx();
    assert!(irq.needs_reset());
    assert_eq!(
        dev.process_rx().completed,
        0,
        "a broken device serves nothing"
    );
}

#[test]
fn features_config_and_dependencies() {
    let mem = test_memory();
    let (io, _host) = socket_pair();
    let mac = MacAddr([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
    let mut dev = Net::new(
        Box::new(io),
        NetConfig {
            mac: Some(mac),
            queue_size: 16,
        },
    )
    .unwrap();
    let f = dev.avail_features();
    assert_ne!(f & (1 << VIRTIO_NET_F_MRG_RXBUF), 0);
    assert_eq!(
        f & (1 << VIRTIO_NET_F_CSUM),
        0,
        "no offloads over a back end without them"
    );
    let mut cfg = [0u8; 10];
    dev.read_config(0, &mut cfg);
    assert_eq!(&cfg[..6], &mac.0);
    assert_eq!(
        u16::from_le_bytes([cfg[6], cfg[7]]),
        VIRTIO_NET_S_LINK_UP as u16
    );
    assert_eq!(u16::from_le_bytes([cfg[8], cfg[9]]), 1);

    let rx = TestQueue::at(&mem, GuestAddress(0), 16);
    let tx = TestQueue::at(&mem, GuestAddress(0x8000), 16);
    let (irq, _) = test_interrupt();
    let bad = features::VERSION_1 | (1 << VIRTIO_NET_F_HOST_TSO4);
    let a = Activation {
        mem: mem.clone(),
        queues: vec![rx.queue(), tx.queue()],
        acked_features: bad,
        interrupt: irq,
    };
    assert!(dev.activate(a).is_err(), "HOST_TSO4 without CSUM");

    let multicast = MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]);
    let (io, _h) = socket_pair();
    assert!(matches!(
        Net::new(
            Box::new(io),
            NetConfig {
                mac: Some(multicast),
                queue_size: 16
            }
        ),
        Err(NetError::MulticastMac(_))
    ));
    let (io, _h) = socket_pair();
    let generated = Net::new(Box::new(io), NetConfig::default()).unwrap().mac();
    assert!(generated.is_local() && !generated.is_multicast());
}

#[test]
fn both_queues_must_be_ready() {
    let mem = test_memory();
    let (io, _host) = socket_pair();
    let mut dev = Net::new(Box::new(io), NetConfig::default()).unwrap();
    let rx = TestQueue::at(&mem, GuestAddress(0), 16);
    let (irq, _) = test_interrupt();
    let idle = <virtio_queue::Queue as virtio_queue::QueueT>::new(16).unwrap();
    let a = Activation {
        mem: mem.clone(),
        queues: vec![rx.queue(), idle],
        acked_features: features::VERSION_1,
        interrupt: irq,
    };
    assert!(matches!(
        dev.activate(a),
        Err(crate::virtio::ActivateError::QueueNotReady(TX))
    ));
    assert_eq!(RX, 0);
}

/// The whole path: registers, notifications, the event loop watching the back end.
#[test]
fn end_to_end_through_transport_and_event_manager() {
    use crate::virtio::mmio::MmioTransport;
    use crate::virtio::test_utils::{CountingInterrupt, MmioDriver};
    use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
    use std::sync::Mutex;

    let mem = test_memory();
    let (io, host) = socket_pair();
    let dev = Arc::new(Mutex::new(
        Net::new(
            Box::new(io),
            NetConfig {
                mac: None,
                queue_size: 16,
            },
        )
        .unwrap(),
    ));
    let line = Arc::new(CountingInterrupt::default());
    let mut t = MmioTransport::new(mem.clone(), dev.clone(), line.clone()).unwrap();
    let mut em = EventManager::<Arc<Mutex<dyn MutEventSubscriber + Send>>>::new().unwrap();
    em.add_subscriber(dev.clone());
    let rx = TestQueue::at(&mem, GuestAddress(0), 16);
    let tx = TestQueue::at(&mem, GuestAddress(0x8000), 16);
    let mut d = MmioDriver(&mut t);
    assert_eq!(d.read(0x8), 1);
    let f = d.device_features();
    assert_eq!(d.negotiate(f), 1 | 2 | 8);
    d.setup_queue(0, 16, &rx);
    d.setup_queue(1, 16, &tx);
    d.driver_ok();
    em.run_with_timeout(50).unwrap();

    // Host to guest: the back end's fd wakes the loop.
    rx.add_chain(&[wdesc(BUF, 2048)]);
    d.write(0x50, 0);
    em.run_with_timeout(50).unwrap();
    send(host.as_raw_fd(), &frame(64, 9)).unwrap();
    em.run_with_timeout(100).unwrap();
    assert_eq!(rx.used(0).1, 76);
    // Guest to host: QueueNotify on the tx queue.
    mem.write_slice(&frame(80, 10), GuestAddress(BUF + 0x10000))
        .unwrap();
    tx.add_chain(&[rdesc(BUF + 0x10000, 92)]);
    d.write(0x50, 1);
    em.run_with_timeout(100).unwrap();
    let mut got = [0u8; 256];
    assert_eq!(recv(host.as_raw_fd(), &mut got).unwrap(), 92);
    assert!(line.count() >= 2);
}

#[test]
fn tap_names_and_fds_are_checked() {
    for bad in ["", "a-name-longer-than-15", "nul\0"] {
        assert!(matches!(Tap::open(bad), Err(TapError::Name(_))), "{bad:?}");
    }
    // A socket is no tap: TUNGETIFF fails and says on which fd.
    let (sock, _peer) = socket_pair();
    let err = Tap::from_fd(sock.0).unwrap_err();
    assert!(
        matches!(
            err,
            TapError::Ioctl {
                op: "TUNGETIFF",
                ..
            }
        ),
        "{err}"
    );
}
