//! Device models for `virga-vmm`. No KVM calls here: a device sees guest memory and the
//! interrupt lines the VMM hands it, and is reached through a [`bus::Bus`].

pub mod bus;
pub mod legacy;
pub mod virtio;

/// An edge-triggered interrupt line into the guest (an irqfd in the VMM, a counter in tests).
pub trait Interrupt: Send + Sync {
    /// Raises the interrupt once.
    fn trigger(&self) -> std::io::Result<()>;
}
