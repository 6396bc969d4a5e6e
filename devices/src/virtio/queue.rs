//! Serving a split virtqueue: the loop every device shares, with the notification-suppression
//! dance, a work budget, and the rule that a guest's ring errors break the device, not the VMM.

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};

use super::{Memory, VirtioInterrupt};

/// A chain popped from a queue.
pub type Chain<'a> = DescriptorChain<&'a Memory>;

/// A fault in the rings themselves: the device stops serving the queue and asks for a reset.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The driver published an available index more than a queue size ahead, or a ring lies
    /// outside guest memory.
    #[error("virtqueue ring error: {0}")]
    Ring(#[from] virtio_queue::Error),
}

/// What one call to [`serve`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// Chains returned to the used ring.
    pub completed: usize,
    /// The budget ran out with chains still available: call again (after other devices had a
    /// turn) rather than let one guest queue monopolise the device thread.
    pub more: bool,
}

/// Budget for one [`serve`] call, in chains: a few rings' worth.
pub fn default_budget(queue: &Queue) -> usize {
    usize::from(queue.size()) * 4
}

/// Pops the next available chain; `Ok(None)` when the ring is empty.
pub fn pop<'a>(queue: &mut Queue, mem: &'a Memory) -> Result<Option<Chain<'a>>, QueueError> {
    Ok(queue.iter(mem)?.next())
}

/// Returns `head` to the used ring with `len` bytes written. A head index beyond the queue (which
/// only a driver bug produces) cannot be returned and is dropped with a warning.
pub fn complete(queue: &mut Queue, mem: &Memory, head: u16, len: u32) -> Result<bool, QueueError> {
    if head >= queue.size() {
        tracing::warn!(
            head,
            size = queue.size(),
            "descriptor head beyond the queue; dropped"
        );
        return Ok(false);
    }
    queue.add_used(mem, head, len)?;
    Ok(true)
}

/// Raises the used-ring interrupt unless the driver suppressed it.
pub fn notify(
    queue: &mut Queue,
    mem: &Memory,
    interrupt: &VirtioInterrupt,
) -> Result<(), QueueError> {
    if queue.needs_notification(mem)? {
        interrupt.signal_used();
    }
    Ok(())
}

/// Pops chains until the ring is empty or `budget` chains were served, hands each to `handle`
/// (which returns the number of bytes it wrote into the chain), and returns them to the used
/// ring. Notifications are suppressed while serving and re-enabled before returning, with a
/// re-check so a chain published in between is not missed.
pub fn serve<F>(
    queue: &mut Queue,
    mem: &Memory,
    interrupt: &VirtioInterrupt,
    budget: usize,
    mut handle: F,
) -> Result<Served, QueueError>
where
    F: FnMut(Chain<'_>) -> u32,
{
    let mut served = Served::default();
    let mut popped = 0usize;
    'rounds: loop {
        queue.disable_notification(mem)?;
        loop {
            if popped >= budget {
                served.more = true;
                break 'rounds;
            }
            let Some(chain) = pop(queue, mem)? else { break };
            popped += 1;
            let head = chain.head_index();
            let len = handle(chain);
            if complete(queue, mem, head, len)? {
                served.completed += 1;
            }
        }
        if !queue.enable_notification(mem)? {
            break;
        }
    }
    if served.completed > 0 {
        notify(queue, mem, interrupt)?;
    }
    Ok(served)
}

/// Re-signals a queue eventfd so the event loop calls the device again (after a spent budget).
pub fn kick(evt: &vmm_sys_util::eventfd::EventFd) {
    if let Err(e) = evt.write(1) {
        tracing::error!(error = %e, "cannot re-signal a queue eventfd");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::test_utils::{TestQueue, test_interrupt, test_memory, wdesc};

    #[test]
    fn budget_stops_serving_and_says_there_is_more() {
        let mem = test_memory();
        let tq = TestQueue::new(&mem, 16);
        for i in 0..3 {
            tq.add_chain(&[wdesc(0x10_0000 + i * 0x100, 8)]);
        }
        let mut q = tq.queue();
        let (irq, line) = test_interrupt();
        let s = serve(&mut q, &mem, &irq, 2, |_| 8).unwrap();
        assert_eq!(
            s,
            Served {
                completed: 2,
                more: true
            }
        );
        assert_eq!(line.count(), 1);
        let s = serve(&mut q, &mem, &irq, 2, |_| 8).unwrap();
        assert_eq!(
            s,
            Served {
                completed: 1,
                more: false
            }
        );
        assert_eq!(tq.used_idx(), 3);
        assert_eq!(tq.used(2), (2, 8));
    }

    #[test]
    fn kick_resignals_the_eventfd() {
        let evt = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap();
        kick(&evt);
        assert_eq!(evt.read().unwrap(), 1);
    }
}
