//! What every device does alike around its queue handlers: the queue and activation eventfds,
//! the interrupt kept from activation, the broken flag, and the event-loop dispatch.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events};
use vmm_sys_util::eventfd::EventFd;

use super::queue::{QueueError, Served, kick};
use super::{ActivateError, VirtioInterrupt};

/// Per-device state shared by every device model.
pub struct Lifecycle {
    name: &'static str,
    queue_events: Vec<EventFd>,
    activate_event: EventFd,
    interrupt: Option<Arc<VirtioInterrupt>>,
    broken: bool,
}

impl Lifecycle {
    /// Eventfds for `queues` queues and for activation; `name` is for logs.
    pub fn new(name: &'static str, queues: usize) -> std::io::Result<Self> {
        Ok(Self {
            name,
            queue_events: super::new_queue_events(queues)?,
            activate_event: EventFd::new(libc::EFD_NONBLOCK)?,
            interrupt: None,
            broken: false,
        })
    }

    /// One eventfd per queue.
    pub fn queue_events(&self) -> &[EventFd] {
        &self.queue_events
    }

    /// Signalled once per activation, so the device thread starts serving.
    pub fn activate_event(&self) -> &EventFd {
        &self.activate_event
    }

    /// The interrupt, between activation and reset.
    pub fn interrupt(&self) -> Option<&Arc<VirtioInterrupt>> {
        self.interrupt.as_ref()
    }

    /// True once a ring error stopped the device (until the driver resets it).
    pub fn broken(&self) -> bool {
        self.broken
    }

    /// Records a successful activation and wakes the device thread.
    pub fn activated(&mut self, interrupt: Arc<VirtioInterrupt>) -> Result<(), ActivateError> {
        self.interrupt = Some(interrupt);
        self.broken = false;
        self.activate_event
            .write(1)
            .map_err(ActivateError::ActivateEvent)
    }

    /// Forgets the activation.
    pub fn reset(&mut self) {
        self.interrupt = None;
        self.broken = false;
    }

    /// Turns a queue handler's result into what was served; a ring error breaks the device
    /// (DEVICE_NEEDS_RESET) and nothing more is served until a reset.
    pub fn outcome(&mut self, r: Result<Served, QueueError>) -> Served {
        match r {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(device = self.name, error = %e, "virtio queue broken; device needs reset");
                self.broken = true;
                if let Some(i) = &self.interrupt {
                    i.set_needs_reset();
                }
                Served::default()
            }
        }
    }

    /// Registers the queue and activation eventfds with the event loop.
    pub fn register(&self, ops: &mut EventOps) {
        for fd in self.queue_events.iter().chain([&self.activate_event]) {
            if let Err(e) = ops.add(Events::new(fd, EventSet::IN)) {
                tracing::error!(device = self.name, error = %e, "cannot register an eventfd");
            }
        }
    }

    /// Which of our eventfds fired, after draining it.
    pub fn which(&self, events: &Events) -> Option<Fired> {
        let fd = events.fd();
        if fd == self.activate_event.as_raw_fd() {
            let _ = self.activate_event.read();
            return Some(Fired::Activate);
        }
        let i = self.queue_events.iter().position(|e| e.as_raw_fd() == fd)?;
        let _ = self.queue_events[i].read();
        Some(Fired::Queue(i))
    }

    /// After serving queue `i`: if the budget ran out, come back after the other devices.
    pub fn requeue(&self, i: usize, served: Served) {
        if let Some(e) = self.queue_events.get(i).filter(|_| served.more) {
            kick(e);
        }
    }
}

/// An eventfd of ours that fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    /// The device was activated.
    Activate,
    /// Queue `n` was notified.
    Queue(usize),
}
