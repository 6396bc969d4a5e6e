//! The interrupt state a virtio-mmio device shares with its transport.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use vmm_sys_util::eventfd::EventFd;

use crate::Interrupt;

/// InterruptStatus bit: a queue's used ring was updated.
pub const INT_USED_RING: u32 = virtio_bindings::virtio_mmio::VIRTIO_MMIO_INT_VRING;
/// InterruptStatus bit: the configuration space changed (or the device needs a reset).
pub const INT_CONFIG: u32 = virtio_bindings::virtio_mmio::VIRTIO_MMIO_INT_CONFIG;

/// The InterruptStatus register, the DEVICE_NEEDS_RESET flag and the interrupt line behind
/// them. The transport reads and acknowledges; the device (on the device thread) raises.
pub struct VirtioInterrupt {
    status: AtomicU32,
    needs_reset: AtomicBool,
    config_generation: AtomicU32,
    line: Arc<dyn Interrupt>,
}

impl VirtioInterrupt {
    /// Wraps the device's interrupt line (an irqfd in the VMM).
    pub fn new(line: Arc<dyn Interrupt>) -> Self {
        Self {
            status: AtomicU32::new(0),
            needs_reset: AtomicBool::new(false),
            config_generation: AtomicU32::new(0),
            line,
        }
    }

    /// Tells the driver a used ring moved.
    pub fn signal_used(&self) {
        self.raise(INT_USED_RING);
    }

    /// Tells the driver the configuration space changed.
    pub fn signal_config(&self) {
        self.config_generation.fetch_add(1, Ordering::AcqRel);
        self.raise(INT_CONFIG);
    }

    /// Marks the device broken (DEVICE_NEEDS_RESET) and tells the driver; the VMM lives on.
    pub fn set_needs_reset(&self) {
        if !self.needs_reset.swap(true, Ordering::AcqRel) {
            tracing::warn!("virtio device needs reset");
            self.signal_config();
        }
    }

    /// True once [`VirtioInterrupt::set_needs_reset`] was called and until the next reset.
    pub fn needs_reset(&self) -> bool {
        self.needs_reset.load(Ordering::Acquire)
    }

    /// The InterruptStatus register.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::Acquire)
    }

    /// The ConfigGeneration register.
    pub fn config_generation(&self) -> u32 {
        self.config_generation.load(Ordering::Acquire)
    }

    /// InterruptACK: clears the acknowledged bits.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::AcqRel);
    }

    /// Device reset: no pending interrupt, no broken flag.
    pub fn reset(&self) {
        self.status.store(0, Ordering::Release);
        self.needs_reset.store(false, Ordering::Release);
    }

    fn raise(&self, bit: u32) {
        self.status.fetch_or(bit, Ordering::AcqRel);
        if let Err(e) = self.line.trigger() {
            // Nothing the device can do about a dead irqfd; the guest will time out.
            tracing::error!(error = %e, "cannot raise virtio interrupt");
        }
    }
}

impl std::fmt::Debug for VirtioInterrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioInterrupt")
            .field("status", &self.status())
            .field("needs_reset", &self.needs_reset())
            .finish()
    }
}

/// An interrupt line that is an eventfd: what the VMM registers with KVM as an irqfd.
pub struct EventFdInterrupt(EventFd);

impl EventFdInterrupt {
    /// Wraps an eventfd (typically registered as an irqfd for the device's IRQ).
    pub fn new(fd: EventFd) -> Self {
        Self(fd)
    }

    /// The eventfd, to register it with KVM.
    pub fn eventfd(&self) -> &EventFd {
        &self.0
    }
}

impl Interrupt for EventFdInterrupt {
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::test_utils::CountingInterrupt;

    #[test]
    fn status_bits_set_and_acknowledged() {
        let line = Arc::new(CountingInterrupt::default());
        let irq = VirtioInterrupt::new(line.clone());
        irq.signal_used();
        irq.signal_config();
        assert_eq!(irq.status(), INT_USED_RING | INT_CONFIG);
        assert_eq!(line.count(), 2);
        assert_eq!(irq.config_generation(), 1);
        irq.ack(INT_USED_RING);
        assert_eq!(irq.status(), INT_CONFIG);
        irq.set_needs_reset();
        irq.set_needs_reset();
        assert!(irq.needs_reset());
        // Raised once only, however often the device reports the same breakage.
        assert_eq!(line.count(), 3);
        irq.reset();
        assert_eq!(irq.status(), 0);
        assert!(!irq.needs_reset());
    }

    #[test]
    fn eventfd_line_counts_triggers() {
        let fd = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let line = EventFdInterrupt::new(fd.try_clone().unwrap());
        line.trigger().unwrap();
        line.trigger().unwrap();
        assert_eq!(fd.read().unwrap(), 2);
    }
}
