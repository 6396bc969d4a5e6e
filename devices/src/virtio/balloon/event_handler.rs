//! The thin part of virtio-balloon: an event-manager subscriber owning the queue eventfds.

use event_manager::{EventOps, Events, MutEventSubscriber};

use super::Balloon;
use crate::virtio::lifecycle::Fired;

impl MutEventSubscriber for Balloon {
    fn init(&mut self, ops: &mut EventOps) {
        self.life.register(ops);
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        match self.life.which(&events) {
            Some(Fired::Queue(i)) => {
                let served = self.process_queue(i);
                self.life.requeue(i, served);
            }
            // Buffers queued before DRIVER_OK (the first stats buffer) are picked up now.
            Some(Fired::Activate) => {
                for i in 0..4 {
                    let served = self.process_queue(i);
                    self.life.requeue(i, served);
                }
            }
            None => {}
        }
    }
}
