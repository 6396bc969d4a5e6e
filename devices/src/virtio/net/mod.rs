//! virtio-net (virtio 1.2 section 5.1) over a tap, one rx/tx queue pair.

mod device;
mod event_handler;
mod mac;
pub mod rxtx;
pub mod tap;
#[cfg(test)]
mod tests;

use std::os::fd::AsRawFd;

pub use device::{Net, NetConfig, NetError};
pub use mac::MacAddr;
pub use rxtx::NetQueues;
pub use tap::{Tap, TapError};

/// Bytes of `virtio_net_hdr_v1` in front of every frame (virtio 1.x always has num_buffers).
pub const VNET_HDR_LEN: usize = 12;
/// Largest frame with its header: a 64 KiB GSO packet plus Ethernet and VLAN headers.
pub const MAX_FRAME_LEN: usize = VNET_HDR_LEN + 65550;

/// Where frames go and come from: a tap in the VMM, a socketpair in tests. Each frame starts
/// with a [`VNET_HDR_LEN`]-byte virtio-net header. The fd is non-blocking.
pub trait FrameIo: AsRawFd + Send {
    /// Reads one frame; `WouldBlock` when none is waiting.
    fn read_frame(&mut self, buf: &mut [u8]) -> std::io::Result<usize>;
    /// Writes one whole frame.
    fn write_frame(&mut self, frame: &[u8]) -> std::io::Result<()>;
    /// True when checksum and segmentation offloads can be negotiated with the guest.
    fn offloads_supported(&self) -> bool;
    /// Tells the back end which offloaded frames the guest accepts ([`tap::offload`] bits).
    fn set_offloads(&mut self, flags: u32) -> std::io::Result<()>;
}
