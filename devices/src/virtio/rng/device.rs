//! The virtio-rng device: one request queue, no configuration space, no features of its own.

use std::sync::Arc;

use virtio_bindings::virtio_ids::VIRTIO_ID_RNG;
use virtio_queue::QueueT;
use vmm_sys_util::eventfd::EventFd;

use super::handler::RngQueue;
use crate::virtio::lifecycle::Lifecycle;
use crate::virtio::queue::Served;
use crate::virtio::{ActivateError, Activation, Counters, VirtioDevice, features};

/// Why an rng device cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum RngError {
    /// `queue_size` is not a power of two up to 32768.
    #[error("queue size {0} is not a power of two up to 32768")]
    QueueSize(u16),
    /// Creating an eventfd failed.
    #[error("cannot create an eventfd: {0}")]
    EventFd(std::io::Error),
}

/// An entropy device.
pub struct Rng {
    queue_sizes: [u16; 1],
    pub(super) life: Lifecycle,
    counters: Arc<Counters>,
    handler: Option<RngQueue>,
}

impl Rng {
    /// An rng device with a request queue of `queue_size` entries.
    pub fn new(queue_size: u16) -> Result<Self, RngError> {
        if !queue_size.is_power_of_two() || queue_size > 32768 {
            return Err(RngError::QueueSize(queue_size));
        }
        Ok(Self {
            queue_sizes: [queue_size],
            life: Lifecycle::new("virtio-rng", 1).map_err(RngError::EventFd)?,
            counters: Arc::default(),
            handler: None,
        })
    }

    /// Serves the request queue; a ring error marks the device DEVICE_NEEDS_RESET.
    pub fn process_queue(&mut self) -> Served {
        match &mut self.handler {
            Some(h) if !self.life.broken() => {
                let r = h.process_queue();
                self.life.outcome(r)
            }
            _ => Served::default(),
        }
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_RNG
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn avail_features(&self) -> u64 {
        features::COMMON
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        tracing::debug!(
            offset,
            "virtio-rng has no configuration space; write ignored"
        );
    }

    fn queue_events(&self) -> &[EventFd] {
        self.life.queue_events()
    }

    fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
        let Some(queue) = a.queues.into_iter().next().filter(QueueT::ready) else {
            return Err(ActivateError::QueueNotReady(0));
        };
        self.handler = Some(RngQueue::new(
            queue,
            a.mem,
            a.interrupt.clone(),
            self.counters.clone(),
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
