//! virtio-blk (virtio 1.2 section 5.2) over an [`disk::BlockBackend`].

mod device;
mod event_handler;
mod handler;
pub mod request;
#[cfg(test)]
mod tests;

pub use device::{Block, BlockConfig, BlockError, CONFIG_SIZE};
pub use handler::{BackendError, BlockQueue, CHUNK};
pub use request::SegmentLimits;
