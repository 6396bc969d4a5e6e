//! The pure part of virtio-net: move frames between the rx/tx queues and a [`FrameIo`].
//! Called by the event handler, the tests and the fuzz target alike.

use std::io::ErrorKind;
use std::sync::Arc;

use virtio_queue::{Queue, QueueT};

use super::{FrameIo, MAX_FRAME_LEN, VNET_HDR_LEN};
use crate::virtio::chain::{Segment, Segments, write_segments};
use crate::virtio::queue::{self, Chain, QueueError, Served};
use crate::virtio::{Counters, Memory, VirtioInterrupt};

/// Most descriptors in one rx or tx chain.
pub const MAX_DESCRIPTORS: usize = 1024;
/// Most frames received per call before yielding to other devices.
const RX_BUDGET: usize = 256;
/// Offset of `num_buffers` in the header.
const NUM_BUFFERS_OFFSET: usize = 10;

/// An rx chain held for the frame being delivered.
#[derive(Debug, Clone, Copy)]
struct Reserved {
    head: u16,
    first_seg: usize,
    segs: usize,
    capacity: u64,
}

/// What became of one received frame.
enum Delivery {
    /// Written into this many chains (plus any malformed ones returned empty).
    Done(usize),
    /// Did not fit a chain (no MRG_RXBUF) and was dropped; chains returned.
    Dropped(usize),
    /// Not enough rx buffers yet: the frame waits, and so do the chains already reserved.
    NoBuffers(usize),
}

/// The rx and tx queues of a live virtio-net device.
pub struct NetQueues {
    rx: Queue,
    tx: Queue,
    mem: Memory,
    interrupt: Arc<VirtioInterrupt>,
    counters: Arc<Counters>,
    mrg_rxbuf: bool,
    rx_buf: Vec<u8>,
    rx_pending: Option<usize>,
    reserved: Vec<Reserved>,
    reserved_segs: Vec<Segment>,
    reserved_capacity: u64,
    segs: Segments,
    tx_buf: Vec<u8>,
}

impl NetQueues {
    /// Handlers for `rx` and `tx`; `mrg_rxbuf` when VIRTIO_NET_F_MRG_RXBUF was negotiated.
    pub fn new(
        rx: Queue,
        tx: Queue,
        mem: Memory,
        interrupt: Arc<VirtioInterrupt>,
        counters: Arc<Counters>,
        mrg_rxbuf: bool,
    ) -> Self {
        Self {
            rx,
            tx,
            mem,
            interrupt,
            counters,
            mrg_rxbuf,
            rx_buf: vec![0; MAX_FRAME_LEN],
            rx_pending: None,
            reserved: Vec::new(),
            reserved_segs: Vec::new(),
            reserved_capacity: 0,
            segs: Segments::default(),
            tx_buf: Vec::with_capacity(MAX_FRAME_LEN),
        }
    }

    /// Sends every frame the guest queued for transmission (up to a budget).
    pub fn process_tx(&mut self, io: &mut dyn FrameIo) -> Result<Served, QueueError> {
        let budget = queue::default_budget(&self.tx);
        let (mem, counters, segs, buf) =
            (&self.mem, &self.counters, &mut self.segs, &mut self.tx_buf);
        queue::serve(&mut self.tx, mem, &self.interrupt, budget, |chain| {
            send(chain, mem, counters, segs, buf, io);
            0
        })
    }

    /// Moves frames from `io` into rx buffers until `io` is empty, the guest has no buffers
    /// left (the frame then waits for the next rx notification), or the budget is spent.
    pub fn process_rx(&mut self, io: &mut dyn FrameIo) -> Result<Served, QueueError> {
        let mut served = Served::default();
        let mut frames = 0;
        loop {
            if frames >= RX_BUDGET {
                served.more = true;
                break;
            }
            let len = match self.rx_pending {
                Some(n) => n,
                None => match io.read_frame(&mut self.rx_buf) {
                    // A back end cannot hand over more than the buffer holds; clamp anyway.
                    Ok(n) => n.min(self.rx_buf.len()),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "virtio-net cannot read from the back end");
                        self.counters.error();
                        break;
                    }
                },
            };
            frames += 1;
            if len < VNET_HDR_LEN {
                self.counters.error();
                self.rx_pending = None;
                continue;
            }
            self.rx_pending = Some(len);
            match self.deliver(len)? {
                Delivery::Done(n) => {
                    served.completed += n;
                    self.rx_pending = None;
                    self.counters.request();
                    self.counters.to_guest((len - VNET_HDR_LEN) as u64);
                }
                Delivery::Dropped(n) => {
                    served.completed += n;
                    self.rx_pending = None;
                    self.counters.error();
                }
                Delivery::NoBuffers(n) => {
                    served.completed += n;
                    // Ask for a kick when buffers come, then look again to close the race.
                    if !self.rx.enable_notification(&self.mem)? {
                        break;
                    }
                }
            }
        }
        if served.completed > 0 {
            queue::notify(&mut self.rx, &self.mem, &self.interrupt)?;
        }
        Ok(served)
    }

    /// True while a received frame waits for rx buffers.
    pub fn rx_pending(&self) -> bool {
        self.rx_pending.is_some()
    }

    fn deliver(&mut self, len: usize) -> Result<Delivery, QueueError> {
        let mut returned = 0;
        while self.reserved_capacity < len as u64 {
            let Some(chain) = queue::pop(&mut self.rx, &self.mem)? else {
                return Ok(Delivery::NoBuffers(returned));
            };
            let head = chain.head_index();
            let ok = self.segs.parse(chain, &self.mem, MAX_DESCRIPTORS).is_ok()
                && self.segs.readable_len() == 0
                && self.segs.writable_len() > 0;
            if !ok {
                tracing::debug!(head, "virtio-net malformed rx chain returned empty");
                self.counters.error();
                returned += usize::from(queue::complete(&mut self.rx, &self.mem, head, 0)?);
                continue;
            }
            if !self.mrg_rxbuf && self.segs.writable_len() < len as u64 {
                tracing::debug!(
                    len,
                    room = self.segs.writable_len(),
                    "virtio-net frame too big for rx buffer"
                );
                returned += usize::from(queue::complete(&mut self.rx, &self.mem, head, 0)?);
                return Ok(Delivery::Dropped(returned));
            }
            self.reserved.push(Reserved {
                head,
                first_seg: self.reserved_segs.len(),
                segs: self.segs.writable().len(),
                capacity: self.segs.writable_len(),
            });
            self.reserved_segs.extend_from_slice(self.segs.writable());
            self.reserved_capacity += self.segs.writable_len();
        }
        // Bounded by the queue size (at most 32768 chains).
        let count = self.reserved.len() as u16;
        self.rx_buf[NUM_BUFFERS_OFFSET..VNET_HDR_LEN].copy_from_slice(&count.to_le_bytes());
        let mut off = 0usize;
        for r in self.reserved.drain(..) {
            let n = (len - off).min(r.capacity as usize);
            let segs = &self.reserved_segs[r.first_seg..r.first_seg + r.segs];
            let written =
                match write_segments(&self.mem, segs, r.capacity, 0, &self.rx_buf[off..off + n]) {
                    Ok(()) => n,
                    Err(e) => {
                        tracing::warn!(error = %e, "virtio-net rx write into guest failed");
                        self.counters.error();
                        0
                    }
                };
            off += n;
            // Bounded by the chain's capacity, itself a sum of u32 lengths under 4 GiB.
            returned += usize::from(queue::complete(
                &mut self.rx,
                &self.mem,
                r.head,
                written as u32,
            )?);
        }
        self.reserved_segs.clear();
        self.reserved_capacity = 0;
        Ok(Delivery::Done(returned))
    }
}

/// Sends one tx chain's frame; a malformed chain or a refused frame is counted and dropped.
fn send(
    chain: Chain<'_>,
    mem: &Memory,
    counters: &Counters,
    segs: &mut Segments,
    buf: &mut Vec<u8>,
    io: &mut dyn FrameIo,
) {
    counters.request();
    let fail = |why: &dyn std::fmt::Display| {
        tracing::debug!(reason = %why, "virtio-net tx frame dropped");
        counters.error();
    };
    if let Err(e) = segs.parse(chain, mem, MAX_DESCRIPTORS) {
        return fail(&e);
    }
    let len = segs.readable_len();
    if segs.writable_len() != 0 {
        return fail(&"device-writable buffer in a tx chain");
    }
    if len < VNET_HDR_LEN as u64 || len > MAX_FRAME_LEN as u64 {
        return fail(&format_args!("frame of {len} bytes"));
    }
    // Bounded by MAX_FRAME_LEN.
    buf.resize(len as usize, 0);
    if let Err(e) = segs.read_at(mem, 0, buf) {
        return fail(&e);
    }
    match io.write_frame(buf) {
        Ok(()) => counters.from_guest(len - VNET_HDR_LEN as u64),
        Err(e) => fail(&e),
    }
}
