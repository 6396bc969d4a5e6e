//! The pure part of virtio-rng: fill each writable chain with random bytes.

use std::sync::Arc;

use virtio_queue::Queue;

use crate::virtio::chain::Segments;
use crate::virtio::queue::{self, Chain, QueueError, Served};
use crate::virtio::{Counters, Memory, VirtioInterrupt};

/// At most this many bytes go into one request, however large the guest's buffers: a guest
/// must not make the device thread spend unbounded time in getrandom.
pub const MAX_BYTES_PER_REQUEST: usize = 64 * 1024;
/// Most descriptors in one request.
const MAX_DESCRIPTORS: usize = 64;

/// Fills `buf` from getrandom(2), retrying on short reads and EINTR.
pub fn fill_random(buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is a valid, writable buffer of `rest.len()` bytes for the whole call.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

/// The request queue of a live virtio-rng device.
pub struct RngQueue {
    queue: Queue,
    mem: Memory,
    interrupt: Arc<VirtioInterrupt>,
    counters: Arc<Counters>,
    segs: Segments,
    buf: Vec<u8>,
}

impl RngQueue {
    /// A handler for `queue`.
    pub fn new(
        queue: Queue,
        mem: Memory,
        interrupt: Arc<VirtioInterrupt>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            queue,
            mem,
            interrupt,
            counters,
            segs: Segments::default(),
            buf: Vec::new(),
        }
    }

    /// Serves every available request (up to a budget); on `Err` the device must be reset.
    pub fn process_queue(&mut self) -> Result<Served, QueueError> {
        let budget = queue::default_budget(&self.queue);
        let (mem, counters, segs, buf) = (&self.mem, &self.counters, &mut self.segs, &mut self.buf);
        queue::serve(&mut self.queue, mem, &self.interrupt, budget, |chain| {
            fill(chain, mem, counters, segs, buf)
        })
    }
}

fn fill(
    chain: Chain<'_>,
    mem: &Memory,
    counters: &Counters,
    segs: &mut Segments,
    buf: &mut Vec<u8>,
) -> u32 {
    counters.request();
    if let Err(e) = segs.parse(chain, mem, MAX_DESCRIPTORS) {
        counters.error();
        tracing::debug!(error = %e, "virtio-rng malformed chain");
        return 0;
    }
    // Bounded by MAX_BYTES_PER_REQUEST.
    let n = (segs.writable_len() as usize).min(MAX_BYTES_PER_REQUEST);
    buf.resize(n, 0);
    let result = fill_random(buf)
        .map_err(|e| e.to_string())
        .and_then(|()| segs.write_at(mem, 0, buf).map_err(|e| e.to_string()));
    match result {
        Ok(()) => {
            counters.to_guest(n as u64);
            n as u32
        }
        Err(e) => {
            counters.error();
            tracing::warn!(error = %e, "virtio-rng request failed");
            0
        }
    }
}
