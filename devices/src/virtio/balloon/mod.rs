//! virtio-balloon (virtio 1.2 section 5.5): inflate/deflate, statistics, deflate-on-OOM and
//! free page reporting, with inflated and reported pages handed back to the host.

mod device;
mod event_handler;
pub mod handler;
mod release;
pub mod stats;
#[cfg(test)]
mod tests;

pub use device::Role;
pub use device::{Balloon, BalloonConfig, BalloonError, BalloonStatus};
pub use handler::{BalloonQueues, PageCounts};
pub use release::{MadviseReleaser, PageReleaser};
pub use stats::GuestMemoryStats;

/// The balloon's page size: PFNs in the inflate/deflate queues count 4 KiB pages.
pub const PAGE_SIZE: u64 = 4096;

/// Feature bits (virtio 1.2 section 5.5.3).
pub mod feature {
    /// The statistics queue.
    pub const STATS_VQ: u32 = 1;
    /// The guest deflates when it runs out of memory.
    pub const DEFLATE_ON_OOM: u32 = 2;
    /// Free page reporting through the reporting queue.
    pub const PAGE_REPORTING: u32 = 5;
}
