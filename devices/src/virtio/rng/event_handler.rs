//! The thin part of virtio-rng: an event-manager subscriber that owns the queue eventfd.

use event_manager::{EventOps, Events, MutEventSubscriber};

use super::Rng;
use crate::virtio::lifecycle::Fired;

impl MutEventSubscriber for Rng {
    fn init(&mut self, ops: &mut EventOps) {
        self.life.register(ops);
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        // Activation also serves: requests may have been queued before DRIVER_OK.
        if let Some(Fired::Activate | Fired::Queue(_)) = self.life.which(&events) {
            let served = self.process_queue();
            self.life.requeue(0, served);
        }
    }
}
