//! The pure part of virtio-balloon: the inflate, deflate, statistics and reporting queues.

use std::sync::Arc;

use virtio_queue::Queue;
use vm_memory::{GuestAddress, GuestMemoryBackend};

use super::stats::{GuestMemoryStats, STAT_SIZE};
use super::{PAGE_SIZE, PageReleaser};
use crate::virtio::chain::Segments;
use crate::virtio::queue::{self, Chain, QueueError, Served};
use crate::virtio::{Counters, Memory, VirtioInterrupt};

/// Most descriptors in one balloon chain.
const MAX_DESCRIPTORS: usize = 256;
/// PFNs read from guest memory at once.
const PFN_BATCH: usize = 256;
/// Largest statistics buffer read (far above the ten tags virtio 1.2 defines).
const MAX_STATS_BYTES: u64 = 64 * STAT_SIZE as u64;

/// What the queues did to the guest's memory, for [`super::Balloon::status`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PageCounts {
    /// Pages inflated (released) minus pages deflated, never below zero.
    pub inflated: u64,
    /// Bytes handed back by free page reporting, in total.
    pub reported_bytes: u64,
    /// PFNs refused (outside guest memory) or releases that failed.
    pub errors: u64,
    /// Statistics buffers received from the guest (so a caller can wait for a fresh one).
    pub stats_updates: u64,
}

/// The queues of a live balloon. Which queue index is which depends on the features the
/// driver accepted (see [`super::Balloon`]).
pub struct BalloonQueues {
    mem: Memory,
    interrupt: Arc<VirtioInterrupt>,
    work: Work,
    inflate: Queue,
    deflate: Queue,
    stats: Option<Queue>,
    reporting: Option<Queue>,
    stats_head: Option<u16>,
    latest_stats: Option<GuestMemoryStats>,
}

impl BalloonQueues {
    /// Handlers over the given queues; `stats` and `reporting` exist when negotiated.
    pub fn new(
        mem: Memory,
        interrupt: Arc<VirtioInterrupt>,
        releaser: Arc<dyn PageReleaser>,
        counters: Arc<Counters>,
        [inflate, deflate]: [Queue; 2],
        stats: Option<Queue>,
        reporting: Option<Queue>,
    ) -> Self {
        let work = Work {
            releaser,
            counters,
            pages: PageCounts::default(),
            segs: Segments::default(),
            pfns: vec![0; (PFN_BATCH * 4).max(MAX_STATS_BYTES as usize)],
        };
        Self {
            mem,
            interrupt,
            work,
            inflate,
            deflate,
            stats,
            reporting,
            stats_head: None,
            latest_stats: None,
        }
    }

    /// Releases the pages in every inflate buffer.
    pub fn process_inflate(&mut self) -> Result<Served, QueueError> {
        self.pfn_queue(true)
    }

    /// Counts the pages in every deflate buffer (they come back on the guest's next touch).
    pub fn process_deflate(&mut self) -> Result<Served, QueueError> {
        self.pfn_queue(false)
    }

    fn pfn_queue(&mut self, inflate: bool) -> Result<Served, QueueError> {
        let q = if inflate {
            &mut self.inflate
        } else {
            &mut self.deflate
        };
        let budget = queue::default_budget(q);
        let (w, mem) = (&mut self.work, &self.mem);
        queue::serve(q, mem, &self.interrupt, budget, |chain| {
            w.pfn_chain(chain, mem, inflate);
            0
        })
    }

    /// Releases every range in every free-page-reporting buffer.
    pub fn process_reporting(&mut self) -> Result<Served, QueueError> {
        let Some(q) = &mut self.reporting else {
            return Ok(Served::default());
        };
        let budget = queue::default_budget(q);
        let (w, mem) = (&mut self.work, &self.mem);
        queue::serve(q, mem, &self.interrupt, budget, |chain| {
            w.reported_chain(chain, mem);
            0
        })
    }

    /// Takes the statistics buffer the driver offers and keeps it until the next
    /// [`BalloonQueues::request_stats`]; an older buffer still held is returned first.
    pub fn process_stats(&mut self) -> Result<Served, QueueError> {
        let mut served = Served::default();
        let Some(q) = &mut self.stats else {
            return Ok(served);
        };
        while let Some(chain) = queue::pop(q, &self.mem)? {
            if let Some(old) = self.stats_head.take() {
                served.completed += usize::from(queue::complete(q, &self.mem, old, 0)?);
            }
            self.work.counters.request();
            let head = chain.head_index();
            match self.work.segs.parse(chain, &self.mem, MAX_DESCRIPTORS) {
                Ok(()) => {
                    // Bounded by MAX_STATS_BYTES.
                    let n = self.work.segs.readable_len().min(MAX_STATS_BYTES) as usize;
                    let raw = &mut self.work.pfns[..n];
                    if self.work.segs.read_at(&self.mem, 0, raw).is_ok() {
                        self.latest_stats = Some(GuestMemoryStats::parse(raw));
                        self.work.pages.stats_updates += 1;
                    }
                    self.stats_head = Some(head);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "virtio-balloon malformed stats buffer");
                    self.work.counters.error();
                    served.completed += usize::from(queue::complete(q, &self.mem, head, 0)?);
                }
            }
        }
        if served.completed > 0 {
            queue::notify(q, &self.mem, &self.interrupt)?;
        }
        Ok(served)
    }

    /// Gives the statistics buffer back so the driver refills it; false when the driver has
    /// not offered one (statistics not negotiated, or the previous request still pending).
    pub fn request_stats(&mut self) -> Result<bool, QueueError> {
        let (Some(q), Some(head)) = (&mut self.stats, self.stats_head.take()) else {
            return Ok(false);
        };
        queue::complete(q, &self.mem, head, 0)?;
        self.interrupt.signal_used();
        Ok(true)
    }

    /// The statistics the driver last sent.
    pub fn latest_stats(&self) -> Option<GuestMemoryStats> {
        self.latest_stats
    }

    /// Pages inflated and reported so far.
    pub fn pages(&self) -> PageCounts {
        self.work.pages
    }
}

/// What the chains work on, apart from the queues so both can be borrowed at once.
struct Work {
    releaser: Arc<dyn PageReleaser>,
    counters: Arc<Counters>,
    pages: PageCounts,
    segs: Segments,
    pfns: Vec<u8>,
}

impl Work {
    fn pfn_chain(&mut self, chain: Chain<'_>, mem: &Memory, inflate: bool) {
        self.counters.request();
        if let Err(e) = self.segs.parse(chain, mem, MAX_DESCRIPTORS) {
            tracing::debug!(error = %e, "virtio-balloon malformed pfn buffer");
            self.counters.error();
            return;
        }
        let total = self.segs.readable_len() / 4;
        // Coalesce runs of consecutive PFNs into one release.
        let mut run: Option<(u64, u64)> = None;
        let mut done = 0u64;
        while done < total {
            // Bounded by PFN_BATCH.
            let n = (total - done).min(PFN_BATCH as u64) as usize;
            if self
                .segs
                .read_at(mem, done * 4, &mut self.pfns[..n * 4])
                .is_err()
            {
                self.counters.error();
                return;
            }
            for j in 0..n {
                let p = &self.pfns[j * 4..j * 4 + 4];
                let pfn = u64::from(u32::from_le_bytes([p[0], p[1], p[2], p[3]]));
                if !inflate {
                    self.pages.inflated = self.pages.inflated.saturating_sub(1);
                    continue;
                }
                run = match run {
                    Some((start, len)) if start + len == pfn => Some((start, len + 1)),
                    Some((start, len)) => {
                        self.release_pages(mem, start, len);
                        Some((pfn, 1))
                    }
                    None => Some((pfn, 1)),
                };
            }
            done += n as u64;
        }
        if let Some((start, len)) = run {
            self.release_pages(mem, start, len);
        }
    }

    fn release_pages(&mut self, mem: &Memory, pfn: u64, count: u64) {
        if self.release(mem, pfn * PAGE_SIZE, count * PAGE_SIZE) {
            self.pages.inflated += count;
        }
    }

    fn reported_chain(&mut self, chain: Chain<'_>, mem: &Memory) {
        self.counters.request();
        if let Err(e) = self.segs.parse(chain, mem, MAX_DESCRIPTORS) {
            tracing::debug!(error = %e, "virtio-balloon malformed reporting buffer");
            self.counters.error();
            return;
        }
        // Linux offers the ranges device-writable; either direction is taken.
        let readable = self.segs.readable().len();
        for i in 0..readable + self.segs.writable().len() {
            let s = match i.checked_sub(readable) {
                None => self.segs.readable()[i],
                Some(w) => self.segs.writable()[w],
            };
            let len = u64::from(s.len);
            if s.addr.0 % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 {
                tracing::debug!(
                    addr = s.addr.0,
                    len,
                    "reported range not page-aligned; skipped"
                );
                self.pages.errors += 1;
                continue;
            }
            if self.release(mem, s.addr.0, len) {
                self.pages.reported_bytes += len;
            }
        }
    }

    /// Releases one range; false (and counted) when it lies outside memory or madvise fails.
    fn release(&mut self, mem: &Memory, addr: u64, len: u64) -> bool {
        let gpa = GuestAddress(addr);
        let inside =
            usize::try_from(len).is_ok_and(|l| GuestMemoryBackend::check_range(mem, gpa, l));
        if !inside {
            tracing::debug!(addr, len, "balloon range outside guest memory; skipped");
            self.pages.errors += 1;
            return false;
        }
        match self.releaser.release(mem, gpa, len) {
            Ok(()) => {
                self.counters.from_guest(len);
                true
            }
            Err(e) => {
                tracing::warn!(addr, len, error = %e, "cannot release balloon pages");
                self.pages.errors += 1;
                false
            }
        }
    }
}
