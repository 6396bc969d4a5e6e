//! The pure part of virtio-blk: serve the request queue against a block back end. No eventfds
//! here; [`BlockQueue::process_queue`] is what the device thread calls on a notification, and
//! what the tests and the fuzz target call directly.

use std::sync::Arc;

use disk::BlockBackend;
use virtio_bindings::virtio_blk::{VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK};
use virtio_queue::Queue;

use super::request::{
    self, HEADER_SIZE, ID_BYTES, Limits, Request, RequestError, RequestType, SECTOR_SIZE,
};
use crate::virtio::chain::Segments;
use crate::virtio::queue::{self, Chain, QueueError, Served};
use crate::virtio::{Counters, Memory, VirtioInterrupt};

/// Largest piece of a request moved through the bounce buffer at once: one back-end call each.
pub const CHUNK: usize = 1 << 20;

/// A back-end failure, reported to the guest as IOERR.
#[derive(Debug, thiserror::Error)]
#[error("block back end: {op} at byte {offset}: {source}")]
pub struct BackendError {
    op: &'static str,
    offset: u64,
    source: std::io::Error,
}

/// The request queue of one virtio-blk device, live between activation and reset.
pub struct BlockQueue {
    queue: Queue,
    mem: Memory,
    interrupt: Arc<VirtioInterrupt>,
    exec: Executor,
}

/// Everything a request needs but the queue, so the queue and the executor borrow apart.
struct Executor {
    backend: Arc<dyn BlockBackend>,
    limits: Limits,
    serial: [u8; ID_BYTES],
    counters: Arc<Counters>,
    segs: Segments,
    buf: Vec<u8>,
}

impl BlockQueue {
    /// A handler for `queue`, reading and writing `backend`.
    pub fn new(
        queue: Queue,
        mem: Memory,
        interrupt: Arc<VirtioInterrupt>,
        backend: Arc<dyn BlockBackend>,
        limits: Limits,
        serial: [u8; ID_BYTES],
        counters: Arc<Counters>,
    ) -> Self {
        let segs = Segments::with_capacity(limits.segs.seg_max as usize + 2);
        let exec = Executor {
            backend,
            limits,
            serial,
            counters,
            segs,
            buf: Vec::new(),
        };
        Self {
            queue,
            mem,
            interrupt,
            exec,
        }
    }

    /// Serves every available request (up to a budget); on `Err` the device must be reset.
    pub fn process_queue(&mut self) -> Result<Served, QueueError> {
        let budget = queue::default_budget(&self.queue);
        let exec = &mut self.exec;
        let mem = &self.mem;
        queue::serve(&mut self.queue, mem, &self.interrupt, budget, |chain| {
            exec.handle(chain, mem)
        })
    }

    /// Swaps the disk behind the queue (the capacity in `limits` comes with it).
    pub fn set_backend(&mut self, backend: Arc<dyn BlockBackend>, limits: Limits) {
        self.exec.backend = backend;
        self.exec.limits = limits;
    }
}

impl Executor {
    /// Runs one request; returns the bytes written into the chain (data and status).
    fn handle(&mut self, chain: Chain<'_>, mem: &Memory) -> u32 {
        self.counters.request();
        let max_descs = self.limits.segs.seg_max as usize + 2;
        if let Err(e) = self.segs.parse(chain, mem, max_descs) {
            self.counters.error();
            tracing::debug!(error = %e, "virtio-blk malformed chain");
            // Returned with nothing written: where its status byte would be is not known.
            return 0;
        }
        let req = match request::parse(&self.segs, mem, &self.limits) {
            Ok(r) => r,
            Err(RequestError::NoStatus) => {
                self.counters.error();
                tracing::debug!("virtio-blk request without a status byte");
                return 0;
            }
            Err(e) => {
                tracing::debug!(error = %e, "virtio-blk request refused");
                return self.finish(mem, None, e.status());
            }
        };
        match self.execute(&req, mem) {
            Ok(written) => self.finish(mem, Some(&req), VIRTIO_BLK_S_OK as u8) + written,
            Err(Failure::Request(e)) => {
                tracing::debug!(error = %e, "virtio-blk request failed");
                self.finish(mem, Some(&req), e.status())
            }
            Err(Failure::Backend(e)) => {
                tracing::warn!(error = %e, "virtio-blk I/O error");
                self.finish(mem, Some(&req), VIRTIO_BLK_S_IOERR as u8)
            }
        }
    }

    /// Writes the status byte (the last writable byte); returns 1, or 0 when even that failed.
    fn finish(&mut self, mem: &Memory, req: Option<&Request>, status: u8) -> u32 {
        if status != VIRTIO_BLK_S_OK as u8 {
            self.counters.error();
        }
        let offset = req.map_or(self.segs.writable_len().saturating_sub(1), |r| {
            r.status_offset
        });
        match self.segs.write_at(mem, offset, &[status]) {
            Ok(()) => 1,
            Err(_) => 0,
        }
    }

    /// Returns the data bytes written into the guest (In and GetId), the status excluded.
    fn execute(&mut self, req: &Request, mem: &Memory) -> Result<u32, Failure> {
        // Only In/Out use the sector, and parsing checked it lies inside the disk for them; the
        // others may carry anything there.
        let offset = req.sector.wrapping_mul(SECTOR_SIZE);
        match req.kind {
            RequestType::In => {
                self.move_data(mem, offset, req.data_len, true)?;
                self.counters.to_guest(req.data_len);
                // Bounded by the u32 lengths the descriptors carry.
                Ok(req.data_len as u32)
            }
            RequestType::Out => {
                self.move_data(mem, offset, req.data_len, false)?;
                self.counters.from_guest(req.data_len);
                Ok(0)
            }
            RequestType::Flush => {
                self.backend.flush().map_err(backend_err("flush", 0))?;
                Ok(0)
            }
            RequestType::GetId => {
                let n = (req.data_len as usize).min(ID_BYTES);
                self.segs
                    .write_at(mem, 0, &self.serial[..n])
                    .map_err(RequestError::from)?;
                Ok(n as u32)
            }
            RequestType::Discard | RequestType::WriteZeroes => {
                for i in 0..req.data_len / request::RANGE_SIZE {
                    let r = request::range(&self.segs, mem, req, i, &self.limits)?;
                    let (off, len) = (
                        r.sector * SECTOR_SIZE,
                        u64::from(r.num_sectors) * SECTOR_SIZE,
                    );
                    let res = if req.kind == RequestType::Discard {
                        self.backend.discard(off, len)
                    } else {
                        self.backend.write_zeroes(off, len, r.unmap)
                    };
                    res.map_err(backend_err("discard/write-zeroes", off))?;
                }
                Ok(0)
            }
        }
    }

    /// Moves `len` bytes between the guest and the disk at byte `offset` through the reused
    /// bounce buffer, [`CHUNK`] bytes per back-end call. `to_guest`: a read (disk to guest).
    fn move_data(
        &mut self,
        mem: &Memory,
        offset: u64,
        len: u64,
        to_guest: bool,
    ) -> Result<(), Failure> {
        let want = (len as usize).min(CHUNK);
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        let mut done = 0u64;
        while done < len {
            let n = ((len - done) as usize).min(CHUNK);
            let piece = &mut self.buf[..n];
            let at = offset + done;
            if to_guest {
                self.backend
                    .read_at(piece, at)
                    .map_err(backend_err("read", at))?;
                self.segs
                    .write_at(mem, done, piece)
                    .map_err(RequestError::from)?;
            } else {
                self.segs
                    .read_at(mem, HEADER_SIZE + done, piece)
                    .map_err(RequestError::from)?;
                self.backend
                    .write_at(piece, at)
                    .map_err(backend_err("write", at))?;
            }
            done += n as u64;
        }
        Ok(())
    }
}

fn backend_err(op: &'static str, offset: u64) -> impl FnOnce(std::io::Error) -> BackendError {
    move |source| BackendError { op, offset, source }
}

/// A request that failed after parsing.
enum Failure {
    Request(RequestError),
    Backend(BackendError),
}

impl From<RequestError> for Failure {
    fn from(e: RequestError) -> Self {
        Self::Request(e)
    }
}

impl From<BackendError> for Failure {
    fn from(e: BackendError) -> Self {
        Self::Backend(e)
    }
}
