//! virtio devices and the virtio-mmio transport (virtio 1.x, modern only).
//!
//! A device model implements [`VirtioDevice`]; [`mmio::MmioTransport`] puts it on the MMIO bus.
//! Each device splits into a pure queue handler (unit-tested over an in-memory guest memory) and
//! a thin event-manager subscriber that owns the eventfds and calls it.

pub mod balloon;
pub mod block;
pub mod chain;
pub mod counters;
pub mod interrupt;
pub mod lifecycle;
pub mod mmio;
pub mod net;
pub mod queue;
pub mod rng;
#[cfg(test)]
pub(crate) mod test_utils;

use std::sync::Arc;

use virtio_queue::Queue;
use vmm_sys_util::eventfd::EventFd;

pub use counters::{Counters, CountersSnapshot};
pub use interrupt::{EventFdInterrupt, VirtioInterrupt};

/// Guest memory as the devices see it (the VMM's anonymous mapping, no dirty bitmap).
pub type Memory = vm_memory::GuestMemoryMmap;

/// Feature bits common to every device (virtio 1.2 section 6).
pub mod features {
    /// The device is virtio 1.x; required, legacy drivers are refused.
    pub const VERSION_1: u64 = 1 << virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
    /// Indirect descriptor tables.
    pub const RING_INDIRECT_DESC: u64 =
        1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_INDIRECT_DESC;
    /// `used_event`/`avail_event` notification suppression.
    pub const RING_EVENT_IDX: u64 = 1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
    /// What every device offers in addition to its own bits.
    pub const COMMON: u64 = VERSION_1 | RING_INDIRECT_DESC | RING_EVENT_IDX;
}

/// Device status bits (virtio 1.2 section 2.1).
pub mod status {
    /// The guest found the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u32 = 2;
    /// The driver is ready: queues are live.
    pub const DRIVER_OK: u32 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u32 = 8;
    /// The device hit an error it cannot recover from without a reset.
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    /// The driver gave up on the device.
    pub const FAILED: u32 = 0x80;
}

/// What a device receives when the driver sets DRIVER_OK.
pub struct Activation {
    /// Guest memory, for the queues and the buffers they point at.
    pub mem: Memory,
    /// One queue per entry of [`VirtioDevice::queue_max_sizes`], as the driver configured it
    /// (a queue the driver left alone is not ready).
    pub queues: Vec<Queue>,
    /// Features the driver accepted (always a subset of the offered ones).
    pub acked_features: u64,
    /// Where to raise used-buffer and configuration-change interrupts.
    pub interrupt: Arc<VirtioInterrupt>,
}

/// Why a device refused to start.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// A queue the device needs was not made ready by the driver.
    #[error("virtio queue {0} is required but the driver did not enable it")]
    QueueNotReady(usize),
    /// The device's own set-up failed (e.g. the tap refused the offloads).
    #[error("device set-up failed: {0}")]
    Backend(String),
    /// Telling the device thread to start polling failed.
    #[error("cannot signal the activation eventfd: {0}")]
    ActivateEvent(std::io::Error),
}

/// A virtio device model, independent of its transport.
pub trait VirtioDevice: Send {
    /// The virtio device id (1 net, 2 block, 4 rng, 5 balloon).
    fn device_type(&self) -> u32;
    /// The largest size of each queue; its length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Feature bits the device offers, including [`features::VERSION_1`].
    fn avail_features(&self) -> u64;
    /// Reads the device-specific configuration space; bytes past its end read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device-specific configuration space; read-only fields ignore the write.
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// One eventfd per queue, signalled on QueueNotify (by the transport, or by KVM through an
    /// ioeventfd that bypasses it).
    fn queue_events(&self) -> &[EventFd];
    /// Starts the device; on error the transport sets DEVICE_NEEDS_RESET.
    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError>;
    /// Returns the device to its pre-activation state (the driver wrote 0 to Status).
    fn reset(&mut self);
    /// True between a successful [`VirtioDevice::activate`] and the next reset.
    fn is_activated(&self) -> bool;
    /// The device's request/byte/error counters, shared: read them without the device lock.
    fn counters(&self) -> Arc<Counters>;
}

/// Copies `config[offset..]` into `data`, zero-filling whatever lies past its end.
pub(crate) fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if let Some(src) = config.get(start..) {
        let n = src.len().min(data.len());
        data[..n].copy_from_slice(&src[..n]);
    }
}

/// Creates `n` non-blocking eventfds, one per queue.
pub(crate) fn new_queue_events(n: usize) -> std::io::Result<Vec<EventFd>> {
    (0..n).map(|_| EventFd::new(libc::EFD_NONBLOCK)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_past_the_end_are_zero() {
        let cfg = [1u8, 2, 3, 4];
        let mut d = [0xffu8; 4];
        read_config_bytes(&cfg, 2, &mut d);
        assert_eq!(d, [3, 4, 0, 0]);
        read_config_bytes(&cfg, 100, &mut d);
        assert_eq!(d, [0; 4]);
        read_config_bytes(&cfg, u64::MAX, &mut d);
        assert_eq!(d, [0; 4]);
    }
}
