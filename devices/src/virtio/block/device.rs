//! The virtio-blk device: features, configuration space, activation, back-end swap.

use std::sync::Arc;

use disk::BlockBackend;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO,
    VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_WRITE_ZEROES,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use vmm_sys_util::eventfd::EventFd;

use super::handler::BlockQueue;
use super::request::{ID_BYTES, Limits, SECTOR_SIZE, SegmentLimits};
use crate::virtio::lifecycle::Lifecycle;
use crate::virtio::queue::Served;
use crate::virtio::{
    ActivateError, Activation, Counters, VirtioDevice, features, read_config_bytes,
};

/// Bytes of configuration space we expose (through `unused1`, before secure erase).
pub const CONFIG_SIZE: usize = 60;

/// How a drive is presented to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockConfig {
    /// Serial returned by GET_ID; at most 20 bytes are used.
    pub serial: String,
    /// Present the drive read-only even if the back end is writable.
    pub read_only: bool,
    /// Logical block size the guest should use: a power of two from 512 to 65536.
    pub block_size: u32,
    /// Request queue size: a power of two up to 32768.
    pub queue_size: u16,
    /// Per-request limits advertised in configuration space.
    pub limits: SegmentLimits,
}

impl Default for BlockConfig {
    fn default() -> Self {
        Self {
            serial: String::new(),
            read_only: false,
            block_size: 512,
            queue_size: 256,
            limits: SegmentLimits::default(),
        }
    }
}

/// Why a block device cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// `block_size` is not a power of two in 512..=65536.
    #[error("block size {0} is not a power of two between 512 and 65536")]
    BlockSize(u32),
    /// `queue_size` is not a power of two in 1..=32768.
    #[error("queue size {0} is not a power of two up to 32768")]
    QueueSize(u16),
    /// `seg_max` or `size_max` is zero.
    #[error("seg_max {seg_max} and size_max {size_max} must be non-zero")]
    SegLimits { seg_max: u32, size_max: u32 },
    /// Creating an eventfd failed.
    #[error("cannot create an eventfd: {0}")]
    EventFd(std::io::Error),
}

/// A virtio-blk device over an [`disk::BlockBackend`].
pub struct Block {
    backend: Arc<dyn BlockBackend>,
    config: BlockConfig,
    serial: [u8; ID_BYTES],
    queue_sizes: [u16; 1],
    pub(super) life: Lifecycle,
    counters: Arc<Counters>,
    handler: Option<BlockQueue>,
}

impl Block {
    /// A drive over `backend`, presented as `config` says.
    pub fn new(backend: Arc<dyn BlockBackend>, config: BlockConfig) -> Result<Self, BlockError> {
        if !config.block_size.is_power_of_two() || !(512..=65536).contains(&config.block_size) {
            return Err(BlockError::BlockSize(config.block_size));
        }
        if !config.queue_size.is_power_of_two() || config.queue_size > 32768 {
            return Err(BlockError::QueueSize(config.queue_size));
        }
        if config.limits.seg_max == 0 || config.limits.size_max == 0 {
            return Err(BlockError::SegLimits {
                seg_max: config.limits.seg_max,
                size_max: config.limits.size_max,
            });
        }
        let mut serial = [0u8; ID_BYTES];
        let n = config.serial.len().min(ID_BYTES);
        serial[..n].copy_from_slice(&config.serial.as_bytes()[..n]);
        Ok(Self {
            backend,
            serial,
            queue_sizes: [config.queue_size],
            config,
            life: Lifecycle::new("virtio-blk", 1).map_err(BlockError::EventFd)?,
            counters: Arc::default(),
            handler: None,
        })
    }

    /// True when the guest sees the drive read-only.
    pub fn read_only(&self) -> bool {
        self.config.read_only || self.backend.read_only()
    }

    /// The eventfd the device signals when it was activated (the event handler watches it).
    pub fn activate_event(&self) -> &EventFd {
        self.life.activate_event()
    }

    /// Swaps the disk behind the drive ("drive update"): the guest sees the new capacity
    /// through a configuration-change interrupt. The read-only state is the old one's.
    pub fn set_backend(&mut self, backend: Arc<dyn BlockBackend>) {
        self.backend = backend;
        let limits = self.limits();
        if let Some(h) = &mut self.handler {
            h.set_backend(self.backend.clone(), limits);
        }
        if let Some(i) = self.life.interrupt() {
            i.signal_config();
        }
    }

    /// Serves the request queue; called by the event handler on a queue notification. A ring
    /// error marks the device DEVICE_NEEDS_RESET and stops serving it.
    pub fn process_queue(&mut self) -> Served {
        match &mut self.handler {
            Some(h) if !self.life.broken() => {
                let r = h.process_queue();
                self.life.outcome(r)
            }
            _ => Served::default(),
        }
    }

    /// Disk size in 512-byte sectors (a trailing partial sector is not visible).
    fn capacity(&self) -> u64 {
        self.backend.size() / SECTOR_SIZE
    }

    fn limits(&self) -> Limits {
        Limits {
            capacity: self.capacity(),
            read_only: self.read_only(),
            segs: self.config.limits,
        }
    }

    fn config_space(&self) -> [u8; CONFIG_SIZE] {
        let c = &self.config.limits;
        let block_size = self.config.block_size;
        let mut b = [0u8; CONFIG_SIZE];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0, &self.capacity().to_le_bytes());
        put(8, &c.size_max.to_le_bytes());
        put(12, &c.seg_max.to_le_bytes());
        put(20, &block_size.to_le_bytes());
        put(34, &1u16.to_le_bytes()); // num_queues
        put(36, &c.max_discard_sectors.to_le_bytes());
        put(40, &c.max_discard_seg.to_le_bytes());
        put(44, &(block_size / SECTOR_SIZE as u32).to_le_bytes());
        put(48, &c.max_write_zeroes_sectors.to_le_bytes());
        put(52, &c.max_write_zeroes_seg.to_le_bytes());
        put(56, &[1]); // write_zeroes_may_unmap
        b
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn avail_features(&self) -> u64 {
        let bit = |b: u32| 1u64 << b;
        let mut f = features::COMMON
            | bit(VIRTIO_BLK_F_FLUSH)
            | bit(VIRTIO_BLK_F_SEG_MAX)
            | bit(VIRTIO_BLK_F_SIZE_MAX)
            | bit(VIRTIO_BLK_F_BLK_SIZE);
        if self.read_only() {
            f |= bit(VIRTIO_BLK_F_RO);
        } else {
            f |= bit(VIRTIO_BLK_F_DISCARD) | bit(VIRTIO_BLK_F_WRITE_ZEROES);
        }
        f
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config_space(), offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // CONFIG_WCE is not offered: nothing in the space is writable.
        tracing::debug!(offset, len = data.len(), "virtio-blk config write ignored");
    }

    fn queue_events(&self) -> &[EventFd] {
        self.life.queue_events()
    }

    fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
        let Some(queue) = a
            .queues
            .into_iter()
            .next()
            .filter(virtio_queue::QueueT::ready)
        else {
            return Err(ActivateError::QueueNotReady(0));
        };
        self.handler = Some(BlockQueue::new(
            queue,
            a.mem,
            a.interrupt.clone(),
            self.backend.clone(),
            self.limits(),
            self.serial,
            self.counters.clone(),
        ));
        self.life.activated(a.interrupt)
    }

    fn reset(&mut self) {
        self.handler = None;
        self.life.reset();
    }

    fn is_activated(&self) -> bool {
        self.handler.is_some()
    }

    fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }
}
