//! Legacy PC devices: 16550 serial, i8042 (reset and Ctrl-Alt-Del), boot-progress port,
//! pvpanic and the ACPI power-management registers. Port numbers are the platform contract's
//! (ARCHITECTURE.md); each device sees offsets relative to its base.

pub mod acpi_pm;
mod boot_progress;
mod i8042;
mod pvpanic;
mod serial;

use std::sync::Arc;

pub use acpi_pm::{AcpiPm, SLEEP_S5};
pub use boot_progress::{BootProgress, ProgressMark};
pub use i8042::I8042;
pub use pvpanic::PvPanic;
pub use serial::Serial;

/// COM1 ports and interrupt line.
pub const COM1_BASE: u16 = 0x3f8;
/// Number of COM1 ports.
pub const COM1_LEN: u16 = 8;
/// COM1's interrupt line.
pub const COM1_IRQ: u32 = 4;
/// i8042 data port (the command/status port is `I8042_BASE + 4`).
pub const I8042_BASE: u16 = 0x60;
/// i8042 ports span 0x60..=0x64.
pub const I8042_LEN: u16 = 5;
/// i8042 keyboard interrupt line.
pub const I8042_IRQ: u32 = 1;
/// Boot-progress port.
pub const BOOT_PROGRESS_PORT: u16 = 0x3f0;
/// pvpanic port.
pub const PVPANIC_PORT: u16 = 0x505;
/// ACPI power-management registers ([`acpi_pm`]: sleep control/status, PM1a event and control).
pub const ACPI_PM_BASE: u16 = 0x600;
/// The ACPI SCI's interrupt line (as on a PC); virtio-mmio slots skip it. Never raised.
pub const ACPI_SCI_IRQ: u32 = 9;

/// What a guest asks of the machine through a legacy device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestRequest {
    /// ACPI S5: power off.
    PowerOff,
    /// CPU reset through the i8042.
    Reset,
    /// The guest panicked (pvpanic).
    Panic,
}

/// Where devices send [`GuestRequest`]s; the VMM stops or restarts the guest.
pub type RequestSink = Arc<dyn Fn(GuestRequest) + Send + Sync>;
