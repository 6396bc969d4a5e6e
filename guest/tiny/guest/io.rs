//! Port I/O and the platform's fixed ports (see ARCHITECTURE.md, "I/O ports").

use core::arch::asm;

/// Boot-progress port: the VMM timestamps every byte written here.
pub const BOOT_PROGRESS: u16 = 0x3f0;
/// ACPI sleep control register (hardware-reduced ACPI).
pub const ACPI_SLEEP_CONTROL: u16 = 0x600;
/// pvpanic.
pub const PVPANIC: u16 = 0x505;
/// i8042 data and command/status ports.
pub const I8042_DATA: u16 = 0x60;
pub const I8042_COMMAND: u16 = 0x64;

/// Writes one byte to an I/O port.
pub fn outb(port: u16, value: u8) {
    // SAFETY: port I/O has no memory effects the compiler must know about; the ports used
    // here are the platform's, and a wrong one only exits to the VMM.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) }
}

/// Writes `bytes` to one I/O port with `rep outsb`.
pub fn outsb(port: u16, bytes: &[u8]) {
    // SAFETY: reads `bytes.len()` bytes from the slice and writes them to the port; the
    // direction flag is clear (the ABI guarantees it).
    unsafe {
        asm!("rep outsb", in("dx") port, inout("rsi") bytes.as_ptr() => _,
             inout("rcx") bytes.len() => _, options(readonly, nostack, preserves_flags))
    }
}

/// Reads one byte from an I/O port.
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as for `outb`.
    unsafe { asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags)) }
    value
}

/// Writes a boot-progress code.
pub fn progress(code: u8) {
    outb(BOOT_PROGRESS, code);
}

/// Reads a little-endian value of type `T` at physical address `addr` (identity mapped).
pub fn read_phys<T: Copy>(addr: u64) -> T {
    // SAFETY: the first 4 GiB are identity mapped; callers read tables the VMM placed in RAM,
    // and an unaligned read is fine on x86.
    unsafe { core::ptr::read_unaligned(addr as *const T) }
}
