//! The virtio-balloon device: configuration space (target and actual size), the queue layout
//! the driver's features decide, and the API the VMM's control socket calls.

use std::sync::Arc;

use virtio_bindings::virtio_ids::VIRTIO_ID_BALLOON;
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::handler::{BalloonQueues, PageCounts};
use super::{GuestMemoryStats, PageReleaser, feature};
use crate::virtio::lifecycle::Lifecycle;
use crate::virtio::queue::Served;
use crate::virtio::{
    ActivateError, Activation, Counters, VirtioDevice, features, read_config_bytes,
};

/// What a queue of the balloon is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Pages the guest gives up.
    Inflate,
    /// Pages the guest takes back.
    Deflate,
    /// The statistics buffer.
    Stats,
    /// Free page reports.
    Reporting,
}

/// Options of a balloon device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalloonConfig {
    /// Offer VIRTIO_BALLOON_F_STATS_VQ.
    pub stats: bool,
    /// Offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM.
    pub deflate_on_oom: bool,
    /// Offer VIRTIO_BALLOON_F_PAGE_REPORTING.
    pub free_page_reporting: bool,
    /// Size of each queue: a power of two up to 32768.
    pub queue_size: u16,
}

impl Default for BalloonConfig {
    fn default() -> Self {
        Self {
            stats: true,
            deflate_on_oom: true,
            free_page_reporting: true,
            queue_size: 256,
        }
    }
}

/// Why a balloon cannot be built or asked something.
#[derive(Debug, thiserror::Error)]
pub enum BalloonError {
    /// `queue_size` is not a power of two up to 32768.
    #[error("queue size {0} is not a power of two up to 32768")]
    QueueSize(u16),
    /// Creating an eventfd failed.
    #[error("cannot create an eventfd: {0}")]
    EventFd(std::io::Error),
    /// Statistics were asked of a device that is not running or has no statistics queue.
    #[error("balloon statistics are not available (device not running or STATS_VQ not negotiated)")]
    StatsUnavailable,
    /// The statistics queue broke (the device now needs a reset).
    #[error("balloon statistics queue broke: {0}")]
    Queue(String),
}

/// The balloon as the control socket reports it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BalloonStatus {
    /// Pages (4 KiB) the host asked the guest to give up.
    pub target_pages: u32,
    /// Pages the driver says it holds (its `actual` field).
    pub actual_pages: u32,
    /// What the queues released and counted.
    pub pages: PageCounts,
    /// The guest's last statistics, if it sent any.
    pub stats: Option<GuestMemoryStats>,
}

/// A memory balloon.
pub struct Balloon {
    config: BalloonConfig,
    releaser: Arc<dyn PageReleaser>,
    queue_sizes: [u16; 4],
    pub(super) life: Lifecycle,
    counters: Arc<Counters>,
    target_pages: u32,
    actual_pages: u32,
    roles: [Option<Role>; 4],
    handler: Option<BalloonQueues>,
    last_pages: PageCounts,
}

impl Balloon {
    /// A balloon that returns pages to the host through `releaser` ([`super::MadviseReleaser`]
    /// in the VMM).
    pub fn new(
        config: BalloonConfig,
        releaser: Arc<dyn PageReleaser>,
    ) -> Result<Self, BalloonError> {
        if !config.queue_size.is_power_of_two() || config.queue_size > 32768 {
            return Err(BalloonError::QueueSize(config.queue_size));
        }
        Ok(Self {
            config,
            releaser,
            // Room for inflate, deflate, stats and reporting; a driver sets up only those
            // its features call for.
            queue_sizes: [config.queue_size; 4],
            life: Lifecycle::new("virtio-balloon", 4).map_err(BalloonError::EventFd)?,
            counters: Arc::default(),
            target_pages: 0,
            actual_pages: 0,
            roles: [None; 4],
            handler: None,
            last_pages: PageCounts::default(),
        })
    }

    /// Asks the guest to hold `pages` 4 KiB pages (inflate when above `actual`, deflate below).
    pub fn set_target(&mut self, pages: u32) {
        self.target_pages = pages;
        if let Some(i) = self.life.interrupt() {
            i.signal_config();
        }
    }

    /// Returns the statistics buffer to the guest so it sends fresh numbers; read them with
    /// [`Balloon::status`] once the guest answered (its next stats-queue notification).
    pub fn request_stats(&mut self) -> Result<(), BalloonError> {
        let h = self
            .handler
            .as_mut()
            .filter(|_| !self.life.broken())
            .ok_or(BalloonError::StatsUnavailable)?;
        match h.request_stats() {
            Ok(true) => Ok(()),
            Ok(false) => Err(BalloonError::StatsUnavailable),
            Err(e) => {
                let msg = e.to_string();
                self.life.outcome(Err(e));
                Err(BalloonError::Queue(msg))
            }
        }
    }

    /// Target, actual size, pages released, and the guest's last statistics.
    pub fn status(&self) -> BalloonStatus {
        let (pages, stats) = match &self.handler {
            Some(h) => (h.pages(), h.latest_stats()),
            None => (self.last_pages, None),
        };
        BalloonStatus {
            target_pages: self.target_pages,
            actual_pages: self.actual_pages,
            pages,
            stats,
        }
    }

    /// The role of queue `index` under the features the driver accepted.
    pub fn role(&self, index: usize) -> Option<Role> {
        self.roles.get(index).copied().flatten()
    }

    /// Serves queue `index` after its notification.
    pub fn process_queue(&mut self, index: usize) -> Served {
        let role = self.role(index);
        let r = match (&mut self.handler, role) {
            (Some(h), Some(role)) if !self.life.broken() => match role {
                Role::Inflate => h.process_inflate(),
                Role::Deflate => h.process_deflate(),
                Role::Stats => h.process_stats(),
                Role::Reporting => h.process_reporting(),
            },
            _ => return Served::default(),
        };
        self.life.outcome(r)
    }

    fn config_space(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&self.target_pages.to_le_bytes());
        b[4..8].copy_from_slice(&self.actual_pages.to_le_bytes());
        b
    }
}

/// Linux's virtio-mmio numbers only the queues that exist: inflate, deflate, then stats and
/// reporting if negotiated, each taking the next index.
fn roles_for(acked: u64) -> [Option<Role>; 4] {
    let mut roles = [Some(Role::Inflate), Some(Role::Deflate), None, None];
    let mut next = 2;
    for (bit, role) in [
        (feature::STATS_VQ, Role::Stats),
        (feature::PAGE_REPORTING, Role::Reporting),
    ] {
        if acked & (1 << bit) != 0 {
            roles[next] = Some(role);
            next += 1;
        }
    }
    roles
}

impl VirtioDevice for Balloon {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BALLOON
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn avail_features(&self) -> u64 {
        let mut f = features::COMMON;
        let c = &self.config;
        for (on, bit) in [
            (c.stats, feature::STATS_VQ),
            (c.deflate_on_oom, feature::DEFLATE_ON_OOM),
            (c.free_page_reporting, feature::PAGE_REPORTING),
        ] {
            if on {
                f |= 1 << bit;
            }
        }
        f
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config_space(), offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // Only `actual` (bytes 4..8) is the driver's to write.
        if offset < 4 || offset.saturating_add(data.len() as u64) > 8 {
            tracing::debug!(
                offset,
                len = data.len(),
                "virtio-balloon write outside `actual` ignored"
            );
            return;
        }
        let mut actual = self.actual_pages.to_le_bytes();
        let start = (offset - 4) as usize;
        actual[start..start + data.len()].copy_from_slice(data);
        self.actual_pages = u32::from_le_bytes(actual);
    }

    fn queue_events(&self) -> &[EventFd] {
        self.life.queue_events()
    }

    fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
        let roles = roles_for(a.acked_features);
        let mut by_role: [Option<Queue>; 4] = Default::default();
        let mut queues = a.queues.into_iter();
        for (i, role) in roles.into_iter().enumerate() {
            let q = queues.next();
            let Some(role) = role else { continue };
            match q {
                Some(q) if q.ready() => by_role[role as usize] = Some(q),
                _ => return Err(ActivateError::QueueNotReady(i)),
            }
        }
        let [Some(inflate), Some(deflate), stats, reporting] = by_role else {
            return Err(ActivateError::QueueNotReady(0));
        };
        self.roles = roles;
        self.handler = Some(BalloonQueues::new(
            a.mem,
            a.interrupt.clone(),
            self.releaser.clone(),
            self.counters.clone(),
            [inflate, deflate],
            stats,
            reporting,
        ));
        self.life.activated(a.interrupt)
    }

    fn reset(&mut self) {
        if let Some(h) = self.handler.take() {
            self.last_pages = h.pages();
        }
        self.roles = [None; 4];
        self.actual_pages = 0;
        self.life.reset();
    }

    fn is_activated(&self) -> bool {
        self.handler.is_some()
    }

    fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }
}
