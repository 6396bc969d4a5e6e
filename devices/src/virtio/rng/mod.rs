//! virtio-rng (virtio 1.2 section 5.4), fed from the host's getrandom(2).

mod device;
mod event_handler;
mod handler;
#[cfg(test)]
mod tests;

pub use device::{Rng, RngError};
pub use handler::{MAX_BYTES_PER_REQUEST, RngQueue, fill_random};
