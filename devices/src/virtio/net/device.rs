//! The virtio-net device: features and their offloads, configuration space, activation.

use std::os::fd::RawFd;
use std::sync::Arc;

use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use virtio_bindings::virtio_net::*;
use virtio_queue::QueueT;
use vmm_sys_util::eventfd::EventFd;

use super::rxtx::NetQueues;
use super::tap::offload;
use super::{FrameIo, MacAddr};
use crate::virtio::lifecycle::Lifecycle;
use crate::virtio::queue::Served;
use crate::virtio::{
    ActivateError, Activation, Counters, VirtioDevice, features, read_config_bytes,
};

/// Receive queue index.
pub const RX: usize = 0;
/// Transmit queue index.
pub const TX: usize = 1;

const fn bit(b: u32) -> u64 {
    1 << b
}

/// Offloads offered when the back end supports them.
const OFFLOAD_FEATURES: u64 = bit(VIRTIO_NET_F_CSUM)
    | bit(VIRTIO_NET_F_GUEST_CSUM)
    | bit(VIRTIO_NET_F_GUEST_TSO4)
    | bit(VIRTIO_NET_F_GUEST_TSO6)
    | bit(VIRTIO_NET_F_GUEST_ECN)
    | bit(VIRTIO_NET_F_HOST_TSO4)
    | bit(VIRTIO_NET_F_HOST_TSO6)
    | bit(VIRTIO_NET_F_HOST_ECN);

/// Feature pairs (a, b): a needs b (virtio 1.2 section 5.1.3.1).
const DEPENDS: [(u32, u64); 8] = [
    (VIRTIO_NET_F_GUEST_TSO4, bit(VIRTIO_NET_F_GUEST_CSUM)),
    (VIRTIO_NET_F_GUEST_TSO6, bit(VIRTIO_NET_F_GUEST_CSUM)),
    (
        VIRTIO_NET_F_GUEST_ECN,
        bit(VIRTIO_NET_F_GUEST_TSO4) | bit(VIRTIO_NET_F_GUEST_TSO6),
    ),
    (VIRTIO_NET_F_GUEST_UFO, bit(VIRTIO_NET_F_GUEST_CSUM)),
    (VIRTIO_NET_F_HOST_TSO4, bit(VIRTIO_NET_F_CSUM)),
    (VIRTIO_NET_F_HOST_TSO6, bit(VIRTIO_NET_F_CSUM)),
    (
        VIRTIO_NET_F_HOST_ECN,
        bit(VIRTIO_NET_F_HOST_TSO4) | bit(VIRTIO_NET_F_HOST_TSO6),
    ),
    (VIRTIO_NET_F_HOST_UFO, bit(VIRTIO_NET_F_CSUM)),
];

/// How the NIC is presented to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetConfig {
    /// The guest's MAC; a random locally administered one when absent.
    pub mac: Option<MacAddr>,
    /// Size of each queue: a power of two up to 32768.
    pub queue_size: u16,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            mac: None,
            queue_size: 256,
        }
    }
}

/// Why a net device cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// `queue_size` is not a power of two up to 32768.
    #[error("queue size {0} is not a power of two up to 32768")]
    QueueSize(u16),
    /// The MAC given is multicast.
    #[error("MAC {0} is a multicast address")]
    MulticastMac(MacAddr),
    /// Generating a MAC or creating an eventfd failed.
    #[error("cannot set up the device: {0}")]
    Io(std::io::Error),
}

/// A virtio-net device over a [`FrameIo`] (a [`super::Tap`] in the VMM).
pub struct Net {
    io: Box<dyn FrameIo>,
    mac: MacAddr,
    queue_sizes: [u16; 2],
    pub(super) life: Lifecycle,
    counters: Arc<Counters>,
    handler: Option<NetQueues>,
}

impl Net {
    /// A NIC over `io`, presented as `config` says.
    pub fn new(io: Box<dyn FrameIo>, config: NetConfig) -> Result<Self, NetError> {
        if !config.queue_size.is_power_of_two() || config.queue_size > 32768 {
            return Err(NetError::QueueSize(config.queue_size));
        }
        let mac = match config.mac {
            Some(m) if m.is_multicast() => return Err(NetError::MulticastMac(m)),
            Some(m) => m,
            None => MacAddr::random_local().map_err(NetError::Io)?,
        };
        Ok(Self {
            io,
            mac,
            queue_sizes: [config.queue_size; 2],
            life: Lifecycle::new("virtio-net", 2).map_err(NetError::Io)?,
            counters: Arc::default(),
            handler: None,
        })
    }

    /// The guest's MAC address.
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// The back end's fd, watched (edge-triggered) for incoming frames.
    pub fn backend_fd(&self) -> RawFd {
        self.io.as_raw_fd()
    }

    /// Moves waiting frames from the back end to the guest.
    pub fn process_rx(&mut self) -> Served {
        match &mut self.handler {
            Some(h) if !self.life.broken() => {
                let r = h.process_rx(self.io.as_mut());
                self.life.outcome(r)
            }
            _ => Served::default(),
        }
    }

    /// Sends the frames the guest queued.
    pub fn process_tx(&mut self) -> Served {
        match &mut self.handler {
            Some(h) if !self.life.broken() => {
                let r = h.process_tx(self.io.as_mut());
                self.life.outcome(r)
            }
            _ => Served::default(),
        }
    }

    fn config_space(&self) -> [u8; 10] {
        let mut b = [0u8; 10];
        b[..6].copy_from_slice(&self.mac.0);
        b[6..8].copy_from_slice(&(VIRTIO_NET_S_LINK_UP as u16).to_le_bytes());
        b[8..10].copy_from_slice(&1u16.to_le_bytes()); // max_virtqueue_pairs
        b
    }
}

/// The TUNSETOFFLOAD flags matching what the guest accepts on receive.
fn tap_offloads(acked: u64) -> u32 {
    let has = |b: u32| acked & bit(b) != 0;
    let mut f = 0;
    if has(VIRTIO_NET_F_GUEST_CSUM) {
        f |= offload::CSUM;
        if has(VIRTIO_NET_F_GUEST_TSO4) {
            f |= offload::TSO4;
        }
        if has(VIRTIO_NET_F_GUEST_TSO6) {
            f |= offload::TSO6;
        }
        if has(VIRTIO_NET_F_GUEST_ECN) {
            f |= offload::TSO_ECN;
        }
    }
    f
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn avail_features(&self) -> u64 {
        let mut f = features::COMMON
            | bit(VIRTIO_NET_F_MAC)
            | bit(VIRTIO_NET_F_STATUS)
            | bit(VIRTIO_NET_F_MRG_RXBUF);
        if self.io.offloads_supported() {
            f |= OFFLOAD_FEATURES;
        }
        f
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config_space(), offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // The MAC is read-only for a virtio 1.x driver without CTRL_MAC_ADDR.
        tracing::debug!(offset, len = data.len(), "virtio-net config write ignored");
    }

    fn queue_events(&self) -> &[EventFd] {
        self.life.queue_events()
    }

    fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
        for (feature, needs) in DEPENDS {
            if a.acked_features & bit(feature) != 0 && a.acked_features & needs == 0 {
                return Err(ActivateError::Backend(format!(
                    "net feature {feature} accepted without the feature it depends on"
                )));
            }
        }
        if self.io.offloads_supported() {
            let flags = tap_offloads(a.acked_features);
            self.io
                .set_offloads(flags)
                .map_err(|e| ActivateError::Backend(format!("set offloads {flags:#x}: {e}")))?;
        }
        let mut queues = a.queues.into_iter();
        let (Some(rx), Some(tx)) = (queues.next(), queues.next()) else {
            return Err(ActivateError::QueueNotReady(RX));
        };
        for (i, q) in [(RX, &rx), (TX, &tx)] {
            if !q.ready() {
                return Err(ActivateError::QueueNotReady(i));
            }
        }
        let mrg = a.acked_features & bit(VIRTIO_NET_F_MRG_RXBUF) != 0;
        self.handler = Some(NetQueues::new(
            rx,
            tx,
            a.mem,
            a.interrupt.clone(),
            self.counters.clone(),
            mrg,
        ));
        self.life.activated(a.interrupt)
    }

    fn reset(&mut self) {
        self.handler = None;
        self.life.reset();
    }

    fn is_activated(&self) -> bool {
        self.handler.is_some()
    }

    fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }
}
