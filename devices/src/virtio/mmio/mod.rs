//! The virtio-mmio transport, version 2 (virtio 1.2 section 4.2.2): one 4 KiB window per
//! device on the MMIO bus, registers below 0x100, device configuration space from 0x100.

use locks::Unpoisoned;
use std::sync::{Arc, Mutex, MutexGuard};

use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::{Activation, Memory, VirtioDevice, VirtioInterrupt, features, status};
use crate::Interrupt;
use crate::bus::BusDevice;

#[cfg(test)]
mod tests;

/// Size of one device's MMIO window.
pub const MMIO_WINDOW: u64 = 0x1000;
/// Offset of the QueueNotify register, where the VMM may place ioeventfds.
pub const QUEUE_NOTIFY_OFFSET: u64 = 0x50;
/// Offset of the device-specific configuration space.
pub const CONFIG_OFFSET: u64 = 0x100;

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
/// Our vendor id, "VRGA" in little-endian.
pub const VENDOR_ID: u32 = 0x4147_5256;

mod reg {
    pub const MAGIC: u64 = 0x00;
    pub const VERSION: u64 = 0x04;
    pub const DEVICE_ID: u64 = 0x08;
    pub const VENDOR_ID: u64 = 0x0c;
    pub const DEVICE_FEATURES: u64 = 0x10;
    pub const DEVICE_FEATURES_SEL: u64 = 0x14;
    pub const DRIVER_FEATURES: u64 = 0x20;
    pub const DRIVER_FEATURES_SEL: u64 = 0x24;
    pub const QUEUE_SEL: u64 = 0x30;
    pub const QUEUE_NUM_MAX: u64 = 0x34;
    pub const QUEUE_NUM: u64 = 0x38;
    pub const QUEUE_READY: u64 = 0x44;
    pub const QUEUE_NOTIFY: u64 = 0x50;
    pub const INTERRUPT_STATUS: u64 = 0x60;
    pub const INTERRUPT_ACK: u64 = 0x64;
    pub const STATUS: u64 = 0x70;
    pub const QUEUE_DESC_LOW: u64 = 0x80;
    pub const QUEUE_DESC_HIGH: u64 = 0x84;
    pub const QUEUE_DRIVER_LOW: u64 = 0x90;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x94;
    pub const QUEUE_DEVICE_LOW: u64 = 0xa0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0xa4;
    pub const SHM_SEL: u64 = 0xac;
    pub const SHM_LEN_LOW: u64 = 0xb0;
    pub const SHM_LEN_HIGH: u64 = 0xb4;
    pub const SHM_BASE_LOW: u64 = 0xb8;
    pub const SHM_BASE_HIGH: u64 = 0xbc;
    pub const QUEUE_RESET: u64 = 0xc0;
    pub const CONFIG_GENERATION: u64 = 0xfc;
}

/// Why a transport cannot be built around a device.
#[derive(Debug, thiserror::Error)]
pub enum MmioError {
    /// The device advertises a queue size virtio-queue refuses (zero, above 32768, or not a
    /// power of two).
    #[error("device queue {index} has invalid maximum size {size}")]
    QueueMaxSize { index: usize, size: u16 },
    /// The device has fewer queue eventfds than queues.
    #[error("device has {events} queue eventfds for {queues} queues")]
    QueueEvents { events: usize, queues: usize },
    /// Duplicating a queue eventfd failed.
    #[error("cannot duplicate a queue eventfd: {0}")]
    EventFd(std::io::Error),
}

/// A virtio device behind its virtio-mmio registers. Put it on the MMIO bus with
/// [`MMIO_WINDOW`] bytes at its base address.
pub struct MmioTransport {
    device: Arc<Mutex<dyn VirtioDevice>>,
    mem: Memory,
    interrupt: Arc<VirtioInterrupt>,
    device_type: u32,
    avail_features: u64,
    queue_events: Vec<EventFd>,
    queues: Vec<Queue>,
    device_features_sel: u32,
    driver_features_sel: u32,
    acked_features: u64,
    queue_sel: u32,
    status: u32,
    shm_sel: u32,
}

impl MmioTransport {
    /// Wraps `device`, whose interrupts go to `line` (the irqfd of the device's IRQ).
    pub fn new(
        mem: Memory,
        device: Arc<Mutex<dyn VirtioDevice>>,
        line: Arc<dyn Interrupt>,
    ) -> Result<Self, MmioError> {
        let (device_type, avail_features, queues, queue_events) = {
            let d = lock(&device);
            let queues = d
                .queue_max_sizes()
                .iter()
                .enumerate()
                .map(|(index, &size)| {
                    Queue::new(size).map_err(|_| MmioError::QueueMaxSize { index, size })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if d.queue_events().len() < queues.len() {
                return Err(MmioError::QueueEvents {
                    events: d.queue_events().len(),
                    queues: queues.len(),
                });
            }
            let events = d
                .queue_events()
                .iter()
                .map(EventFd::try_clone)
                .collect::<Result<Vec<_>, _>>()
                .map_err(MmioError::EventFd)?;
            (d.device_type(), d.avail_features(), queues, events)
        };
        Ok(Self {
            device,
            mem,
            interrupt: Arc::new(VirtioInterrupt::new(line)),
            device_type,
            avail_features,
            queue_events,
            queues,
            device_features_sel: 0,
            driver_features_sel: 0,
            acked_features: 0,
            queue_sel: 0,
            status: 0,
            shm_sel: 0,
        })
    }

    /// The device behind the transport.
    pub fn device(&self) -> &Arc<Mutex<dyn VirtioDevice>> {
        &self.device
    }

    /// The interrupt state shared with the device.
    pub fn interrupt(&self) -> &Arc<VirtioInterrupt> {
        &self.interrupt
    }

    /// For each queue: the register offset, the value to match and the eventfd to signal, for the
    /// VMM to register ioeventfds at `base + offset` that bypass the transport.
    pub fn ioevents(&self) -> Result<Vec<(u64, u32, EventFd)>, MmioError> {
        self.queue_events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                Ok((
                    QUEUE_NOTIFY_OFFSET,
                    i as u32,
                    e.try_clone().map_err(MmioError::EventFd)?,
                ))
            })
            .collect()
    }

    /// The Status register as the driver reads it.
    pub fn status(&self) -> u32 {
        let broken = if self.interrupt.needs_reset() {
            status::DEVICE_NEEDS_RESET
        } else {
            0
        };
        self.status | broken
    }

    /// Features the driver accepted so far.
    pub fn acked_features(&self) -> u64 {
        self.acked_features
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    /// Queue registers may change only between FEATURES_OK and DRIVER_OK, on a queue that is
    /// not live yet.
    fn queue_config_allowed(&self) -> bool {
        self.status & (status::FEATURES_OK | status::DRIVER_OK | status::FAILED)
            == status::FEATURES_OK
    }

    fn read_reg(&self, offset: u64) -> u32 {
        let features_page = |sel: u32, f: u64| match sel {
            0 => f as u32,
            1 => (f >> 32) as u32,
            _ => 0,
        };
        let queue = self.queues.get(self.queue_sel as usize);
        match offset {
            reg::MAGIC => MAGIC,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => self.device_type,
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => features_page(self.device_features_sel, self.avail_features),
            reg::QUEUE_NUM_MAX => queue.map_or(0, |q| u32::from(q.max_size())),
            reg::QUEUE_READY => queue.map_or(0, |q| u32::from(q.ready())),
            reg::INTERRUPT_STATUS => self.interrupt.status(),
            reg::STATUS => self.status(),
            reg::QUEUE_DESC_LOW => queue.map_or(0, |q| q.desc_table() as u32),
            reg::QUEUE_DESC_HIGH => queue.map_or(0, |q| (q.desc_table() >> 32) as u32),
            reg::QUEUE_DRIVER_LOW => queue.map_or(0, |q| q.avail_ring() as u32),
            reg::QUEUE_DRIVER_HIGH => queue.map_or(0, |q| (q.avail_ring() >> 32) as u32),
            reg::QUEUE_DEVICE_LOW => queue.map_or(0, |q| q.used_ring() as u32),
            reg::QUEUE_DEVICE_HIGH => queue.map_or(0, |q| (q.used_ring() >> 32) as u32),
            // No shared memory regions: every one reads as length (and base) -1.
            reg::SHM_LEN_LOW | reg::SHM_LEN_HIGH | reg::SHM_BASE_LOW | reg::SHM_BASE_HIGH => {
                u32::MAX
            }
            reg::SHM_SEL => self.shm_sel,
            reg::QUEUE_RESET => 0,
            reg::CONFIG_GENERATION => self.interrupt.config_generation(),
            _ => {
                tracing::debug!(offset, "virtio-mmio read of an unknown register");
                0
            }
        }
    }

    fn write_reg(&mut self, offset: u64, v: u32) {
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = v,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            reg::DRIVER_FEATURES => self.write_driver_features(v),
            reg::QUEUE_SEL => self.queue_sel = v,
            reg::QUEUE_NUM => self
                .write_queue(|q| u16::try_from(v).is_ok_and(|size| q.try_set_size(size).is_ok())),
            reg::QUEUE_READY => self.write_queue_ready(v),
            reg::QUEUE_NOTIFY => self.notify(v),
            reg::INTERRUPT_ACK => self.interrupt.ack(v),
            reg::STATUS => self.write_status(v),
            reg::QUEUE_DESC_LOW => self.write_queue(|q| {
                q.set_desc_table_address(Some(v), None);
                true
            }),
            reg::QUEUE_DESC_HIGH => self.write_queue(|q| {
                q.set_desc_table_address(None, Some(v));
                true
            }),
            reg::QUEUE_DRIVER_LOW => self.write_queue(|q| {
                q.set_avail_ring_address(Some(v), None);
                true
            }),
            reg::QUEUE_DRIVER_HIGH => self.write_queue(|q| {
                q.set_avail_ring_address(None, Some(v));
                true
            }),
            reg::QUEUE_DEVICE_LOW => self.write_queue(|q| {
                q.set_used_ring_address(Some(v), None);
                true
            }),
            reg::QUEUE_DEVICE_HIGH => self.write_queue(|q| {
                q.set_used_ring_address(None, Some(v));
                true
            }),
            reg::SHM_SEL => self.shm_sel = v,
            // VIRTIO_F_RING_RESET is not offered: per-queue reset is not ours to honour.
            reg::QUEUE_RESET => tracing::debug!("virtio-mmio QueueReset ignored"),
            _ => tracing::debug!(
                offset,
                v,
                "virtio-mmio write to an unknown register ignored"
            ),
        }
    }

    fn write_driver_features(&mut self, v: u32) {
        let s = self.status;
        if s & status::DRIVER == 0 || s & (status::FEATURES_OK | status::FAILED) != 0 {
            tracing::warn!(
                status = s,
                "driver features written outside feature negotiation"
            );
            return;
        }
        match self.driver_features_sel {
            0 => self.acked_features = (self.acked_features & !0xffff_ffff) | u64::from(v),
            1 => self.acked_features = (self.acked_features & 0xffff_ffff) | (u64::from(v) << 32),
            sel => tracing::warn!(sel, "driver features page out of range ignored"),
        }
    }

    /// Applies `f` to the selected queue if its registers may change; `f` returns false when the
    /// driver wrote a value no device could accept, which breaks the device.
    fn write_queue(&mut self, f: impl FnOnce(&mut Queue) -> bool) {
        if !self.queue_config_allowed() {
            tracing::warn!(
                status = self.status,
                "queue register written outside queue set-up"
            );
            return;
        }
        let sel = self.queue_sel;
        let Some(q) = self.selected_queue() else {
            tracing::warn!(
                sel,
                "queue register written for a queue that does not exist"
            );
            return;
        };
        if q.ready() {
            tracing::warn!(sel, "queue register written while the queue is ready");
            return;
        }
        if !f(q) {
            tracing::warn!(sel, "invalid queue size written");
            self.interrupt.set_needs_reset();
        }
    }

    fn write_queue_ready(&mut self, v: u32) {
        if !self.queue_config_allowed() {
            tracing::warn!(
                status = self.status,
                "QueueReady written outside queue set-up"
            );
            return;
        }
        if let Some(q) = self.selected_queue() {
            q.set_ready(v == 1);
        }
    }

    fn notify(&self, v: u32) {
        if self.status & status::DRIVER_OK == 0 || self.interrupt.needs_reset() {
            tracing::debug!(
                queue = v,
                status = self.status(),
                "notification before DRIVER_OK ignored"
            );
            return;
        }
        match self.queue_events.get(v as usize) {
            Some(evt) => {
                if let Err(e) = evt.write(1) {
                    tracing::error!(queue = v, error = %e, "cannot signal queue eventfd");
                }
            }
            None => tracing::warn!(queue = v, "notification for a queue that does not exist"),
        }
    }

    fn write_status(&mut self, v: u32) {
        if v == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        if v & old != old {
            tracing::warn!(
                old,
                new = v,
                "driver cleared status bits without a reset; ignored"
            );
            return;
        }
        let added = v & !old;
        // FEATURES_OK and DRIVER_OK each need the step before already taken (the features are
        // checked on FEATURES_OK, so skipping it must not reach DRIVER_OK); ACKNOWLEDGE and
        // DRIVER may come in one write.
        let requires = [
            (status::ACKNOWLEDGE, 0, v),
            (status::DRIVER, status::ACKNOWLEDGE, v),
            (status::FEATURES_OK, status::DRIVER, old),
            (status::DRIVER_OK, status::FEATURES_OK, old),
            (status::FAILED, 0, v),
        ];
        let known = requires.iter().fold(0, |m, (b, _, _)| m | b);
        if added & !known != 0 {
            tracing::warn!(new = v, "driver set status bits it may not set; ignored");
            return;
        }
        for (bit, needs, have) in requires {
            if added & bit != 0 && have & needs != needs {
                tracing::warn!(
                    old,
                    new = v,
                    "status bit {bit:#x} set out of order; ignored"
                );
                return;
            }
        }
        if added & status::FEATURES_OK != 0 && !self.features_acceptable() {
            // Leaving FEATURES_OK clear is how the device says no (virtio 1.2 section 3.1.1).
            self.status = v & !status::FEATURES_OK;
            return;
        }
        self.status = v;
        if added & status::DRIVER_OK != 0 {
            self.activate();
        }
    }

    fn features_acceptable(&self) -> bool {
        let f = self.acked_features;
        if f & !self.avail_features != 0 {
            tracing::warn!(
                acked = f,
                offered = self.avail_features,
                "driver accepted features never offered"
            );
            return false;
        }
        if f & features::VERSION_1 == 0 {
            tracing::warn!(acked = f, "legacy (pre-1.0) driver refused");
            return false;
        }
        true
    }

    fn activate(&mut self) {
        for (i, q) in self.queues.iter().enumerate() {
            if q.ready() && !q.is_valid(&self.mem) {
                tracing::warn!(queue = i, "queue rings outside guest memory or misaligned");
                self.interrupt.set_needs_reset();
                return;
            }
        }
        let event_idx = self.acked_features & features::RING_EVENT_IDX != 0;
        let queues = self
            .queues
            .iter()
            .map(|q| {
                let mut q = Queue::try_from(q.state())?;
                q.set_event_idx(event_idx);
                Ok(q)
            })
            .collect::<Result<Vec<_>, virtio_queue::Error>>();
        let queues = match queues {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(error = %e, "queue state refused at activation");
                self.interrupt.set_needs_reset();
                return;
            }
        };
        let activation = Activation {
            mem: self.mem.clone(),
            queues,
            acked_features: self.acked_features,
            interrupt: self.interrupt.clone(),
        };
        if let Err(e) = lock(&self.device).activate(activation) {
            tracing::warn!(error = %e, device = self.device_type, "virtio device activation failed");
            self.interrupt.set_needs_reset();
        }
    }

    fn reset(&mut self) {
        lock(&self.device).reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.acked_features = 0;
        self.queue_sel = 0;
        self.status = 0;
        self.shm_sel = 0;
        self.interrupt.reset();
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG_OFFSET {
            lock(&self.device).read_config(offset - CONFIG_OFFSET, data);
            return;
        }
        if data.len() != 4 || !offset.is_multiple_of(4) {
            tracing::warn!(
                offset,
                len = data.len(),
                "virtio-mmio register read not 32-bit aligned"
            );
            data.fill(0);
            return;
        }
        data.copy_from_slice(&self.read_reg(offset).to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= CONFIG_OFFSET {
            if self.status & status::FAILED != 0 {
                return;
            }
            lock(&self.device).write_config(offset - CONFIG_OFFSET, data);
            return;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            tracing::warn!(
                offset,
                len = data.len(),
                "virtio-mmio register write not 32-bit"
            );
            return;
        };
        if !offset.is_multiple_of(4) {
            tracing::warn!(offset, "virtio-mmio register write misaligned");
            return;
        }
        self.write_reg(offset, u32::from_le_bytes(bytes));
    }
}

/// A device whose handler panicked is still reachable: the guest can reset it.
fn lock(d: &Arc<Mutex<dyn VirtioDevice>>) -> MutexGuard<'_, dyn VirtioDevice + 'static> {
    d.lock().unpoisoned()
}
