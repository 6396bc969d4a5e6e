//! The thin part of virtio-blk: an event-manager subscriber that owns the queue eventfd.

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use std::os::fd::AsRawFd;

use super::Block;
use crate::virtio::VirtioDevice;

impl MutEventSubscriber for Block {
    fn init(&mut self, ops: &mut EventOps) {
        for fd in [&self.queue_events()[0], self.activate_event()] {
            if let Err(e) = ops.add(Events::new(fd, EventSet::IN)) {
                tracing::error!(error = %e, "virtio-blk cannot register an eventfd");
            }
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if events.fd() == self.activate_event().as_raw_fd() {
            let _ = self.activate_event().read();
            // Requests may have been queued before the driver said DRIVER_OK.
            self.serve();
        } else if events.fd() == self.queue_events()[0].as_raw_fd() {
            let _ = self.queue_events()[0].read();
            self.serve();
        }
    }
}

impl Block {
    fn serve(&mut self) {
        if !self.is_activated() {
            tracing::debug!("virtio-blk notified before activation; ignored");
            return;
        }
        if self.process_queue().more {
            // Budget spent: come back after the other devices had their turn.
            crate::virtio::queue::kick(&self.queue_events()[0]);
        }
    }
}
