//! The thin part of virtio-net: an event-manager subscriber owning the queue eventfds and
//! watching the back end's fd.

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};

use super::Net;
use super::device::{RX, TX};
use crate::virtio::lifecycle::Fired;
use crate::virtio::queue::kick;

impl MutEventSubscriber for Net {
    fn init(&mut self, ops: &mut EventOps) {
        self.life.register(ops);
        // Edge-triggered: with no rx buffers the frame waits in the tap without waking us
        // again; the guest's rx notification brings us back.
        let ev = Events::new_raw(self.backend_fd(), EventSet::IN | EventSet::EDGE_TRIGGERED);
        if let Err(e) = ops.add(ev) {
            tracing::error!(error = %e, "virtio-net cannot watch its back end");
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if events.fd() == self.backend_fd() {
            let served = self.process_rx();
            if served.more {
                kick(&self.life.queue_events()[RX]);
            }
            return;
        }
        match self.life.which(&events) {
            Some(Fired::Activate) => {
                let tx = self.process_tx();
                self.life.requeue(TX, tx);
                let rx = self.process_rx();
                self.life.requeue(RX, rx);
            }
            Some(Fired::Queue(RX)) => {
                let rx = self.process_rx();
                self.life.requeue(RX, rx);
            }
            Some(Fired::Queue(_)) => {
                let tx = self.process_tx();
                self.life.requeue(TX, tx);
            }
            None => {}
        }
    }
}
