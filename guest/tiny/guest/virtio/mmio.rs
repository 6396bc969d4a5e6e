//! virtio-mmio (version 2, modern only) from the driver's side: finding devices in the VMM's
//! slots, the status handshake, feature negotiation and queue set-up (virtio 1.2 section 4.2).

use super::queue::Virtq;
use core::ptr::{read_volatile, write_volatile};

/// Slot `n` is at `SLOT_BASE + n * SLOT_SIZE`, IRQ 5 + n (ARCHITECTURE.md).
pub const SLOT_BASE: u64 = 0xd000_0000;
/// Size of one slot.
pub const SLOT_SIZE: u64 = 0x1000;
/// Slots probed (IRQs 5-23).
pub const SLOTS: u64 = 19;

/// Device ids (virtio 1.2 section 5).
pub const ID_NET: u32 = 1;
pub const ID_BLOCK: u32 = 2;
pub const ID_RNG: u32 = 4;
pub const ID_BALLOON: u32 = 5;

const MAGIC: u32 = 0x7472_6976; // "virt"
const DEVICE_FEATURES: u64 = 0x010;
const DEVICE_FEATURES_SEL: u64 = 0x014;
const DRIVER_FEATURES: u64 = 0x020;
const DRIVER_FEATURES_SEL: u64 = 0x024;
const QUEUE_SEL: u64 = 0x030;
const QUEUE_NUM_MAX: u64 = 0x034;
const QUEUE_NUM: u64 = 0x038;
const QUEUE_READY: u64 = 0x044;
const QUEUE_NOTIFY: u64 = 0x050;
const INTERRUPT_STATUS: u64 = 0x060;
const INTERRUPT_ACK: u64 = 0x064;
const STATUS: u64 = 0x070;
const QUEUE_DESC: u64 = 0x080;
const QUEUE_DRIVER: u64 = 0x090;
const QUEUE_DEVICE: u64 = 0x0a0;
const CONFIG: u64 = 0x100;

const ACKNOWLEDGE: u32 = 1;
const DRIVER: u32 = 2;
const DRIVER_OK: u32 = 4;
const FEATURES_OK: u32 = 8;
/// The device hit an error and wants a reset.
pub const NEEDS_RESET: u32 = 0x40;

/// VIRTIO_F_VERSION_1.
pub const F_VERSION_1: u64 = 1 << 32;

/// Why a device could not be brought up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// The device refused the features (FEATURES_OK did not stick).
    Features,
    /// A queue the driver needs is missing or too small.
    Queue,
    /// The device set DEVICE_NEEDS_RESET or did not reach DRIVER_OK.
    Status,
}

/// One virtio-mmio device.
#[derive(Clone, Copy)]
pub struct Device {
    /// Register base.
    pub base: u64,
    /// Slot number.
    pub slot: u64,
}

impl Device {
    fn read(&self, off: u64) -> u32 {
        // SAFETY: `base` is a virtio-mmio slot in the identity-mapped MMIO hole; a read is an
        // MMIO exit the VMM answers (0xff.. where nothing is mapped).
        unsafe { read_volatile((self.base + off) as *const u32) }
    }

    fn write(&self, off: u64, v: u32) {
        // SAFETY: as for `read`; writes to a slot only reach the VMM's transport.
        unsafe { write_volatile((self.base + off) as *mut u32, v) }
    }

    /// The device id (0: the slot holds no device).
    pub fn id(&self) -> u32 {
        if self.read(0) != MAGIC || self.read(4) != 2 {
            return 0;
        }
        self.read(8)
    }

    /// Reads a byte of the device configuration space.
    pub fn config8(&self, off: u64) -> u8 {
        // SAFETY: as for `read`; the config space takes any width.
        unsafe { read_volatile((self.base + CONFIG + off) as *const u8) }
    }

    /// Reads a 32-bit field of the configuration space.
    pub fn config32(&self, off: u64) -> u32 {
        self.read(CONFIG + off)
    }

    /// Reads a 64-bit field of the configuration space (two 32-bit halves, low first).
    pub fn config64(&self, off: u64) -> u64 {
        u64::from(self.read(CONFIG + off)) | (u64::from(self.read(CONFIG + off + 4)) << 32)
    }

    /// Writes a 32-bit field of the configuration space.
    pub fn write_config32(&self, off: u64, v: u32) {
        self.write(CONFIG + off, v)
    }

    /// The device status register.
    pub fn status(&self) -> u32 {
        self.read(STATUS)
    }

    /// Resets the device, then ACKNOWLEDGE | DRIVER, and accepts `wanted & offered` (VERSION_1
    /// always). Returns the accepted features.
    pub fn begin(&self, wanted: u64) -> Result<u64, InitError> {
        self.write(STATUS, 0);
        self.write(STATUS, ACKNOWLEDGE);
        self.write(STATUS, ACKNOWLEDGE | DRIVER);
        self.write(DEVICE_FEATURES_SEL, 0);
        let low = u64::from(self.read(DEVICE_FEATURES));
        self.write(DEVICE_FEATURES_SEL, 1);
        let offered = low | (u64::from(self.read(DEVICE_FEATURES)) << 32);
        let accepted = offered & (wanted | F_VERSION_1);
        if accepted & F_VERSION_1 == 0 {
            return Err(InitError::Features);
        }
        self.write(DRIVER_FEATURES_SEL, 0);
        self.write(DRIVER_FEATURES, accepted as u32);
        self.write(DRIVER_FEATURES_SEL, 1);
        self.write(DRIVER_FEATURES, (accepted >> 32) as u32);
        self.write(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        if self.status() & FEATURES_OK == 0 {
            return Err(InitError::Features);
        }
        Ok(accepted)
    }

    /// Sets up queue `index` over `q`'s rings.
    pub fn setup_queue(&self, index: u32, q: &Virtq) -> Result<(), InitError> {
        self.write(QUEUE_SEL, index);
        let max = self.read(QUEUE_NUM_MAX);
        if max < u32::from(q.size()) {
            return Err(InitError::Queue);
        }
        self.write(QUEUE_NUM, q.size().into());
        let (desc, avail, used) = q.addresses();
        for (reg, addr) in [(QUEUE_DESC, desc), (QUEUE_DRIVER, avail), (QUEUE_DEVICE, used)] {
            self.write(reg, addr as u32);
            self.write(reg + 4, (addr >> 32) as u32);
        }
        self.write(QUEUE_READY, 1);
        Ok(())
    }

    /// DRIVER_OK: the queues are live.
    pub fn finish(&self) -> Result<(), InitError> {
        self.write(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
        let s = self.status();
        if s & NEEDS_RESET != 0 || s & DRIVER_OK == 0 {
            return Err(InitError::Status);
        }
        Ok(())
    }

    /// Tells the device that queue `index` has new buffers.
    pub fn notify(&self, index: u32) {
        self.write(QUEUE_NOTIFY, index);
    }

    /// Reads and acknowledges the interrupt status (bit 0 used ring, bit 1 config change).
    pub fn ack_interrupt(&self) -> u32 {
        let s = self.read(INTERRUPT_STATUS);
        if s != 0 {
            self.write(INTERRUPT_ACK, s);
        }
        s
    }
}

/// Calls `f` with each slot holding a device of type `id`, in slot order.
pub fn each(id: u32, mut f: impl FnMut(Device)) {
    for slot in 0..SLOTS {
        let d = Device { base: SLOT_BASE + slot * SLOT_SIZE, slot };
        if d.id() == id {
            f(d);
        }
    }
}
