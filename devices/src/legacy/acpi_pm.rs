//! ACPI fixed hardware at ports 0x600-0x60d: the PM1a event block (status and enable, 0x608)
//! and control block (0x60c) that a full (not hardware-reduced) FADT points at, plus the
//! hardware-reduced sleep control (0x600) and status (0x601) registers our tiny guest writes.
//! Writing SLP_EN with SLP_TYP 5 (the DSDT's `_S5_`) to either control register powers off.
//!
//! The FADT is a full one so that kernels keep the legacy PIC and identity-mapped ISA IRQs:
//! under a hardware-reduced FADT Linux drops them, and a kernel that probes COM1 the legacy
//! way (irq 4, no ACPI PNP) gets no serial interrupt and loses user space's console output.

use super::{GuestRequest, RequestSink};
use crate::bus::BusDevice;

/// Offsets from [`super::ACPI_PM_BASE`].
pub const SLEEP_CONTROL: u64 = 0;
/// Hardware-reduced sleep status register.
pub const SLEEP_STATUS: u64 = 1;
/// PM1a event block: status (2 bytes), then enable (2 bytes).
pub const PM1_EVENT: u64 = 8;
/// Length of the PM1a event block.
pub const PM1_EVENT_LEN: u8 = 4;
/// PM1a control block (2 bytes).
pub const PM1_CONTROL: u64 = 12;
/// Length of the PM1a control block.
pub const PM1_CONTROL_LEN: u8 = 2;
/// Ports the device spans.
pub const LEN: u64 = 14;
/// The sleep type the DSDT's `_S5_` object announces.
pub const SLEEP_S5: u8 = 5;

// Hardware-reduced sleep control register (one byte).
const SLP_EN: u8 = 1 << 5;
const SLP_TYP_SHIFT: u8 = 2;
// PM1 control register (16 bits).
const PM1_SCI_EN: u16 = 1;
const PM1_SLP_TYP_SHIFT: u16 = 10;
const PM1_SLP_EN: u16 = 1 << 13;

/// ACPI power-management registers.
pub struct AcpiPm {
    sink: RequestSink,
    /// PM1 enable (PM1 status always reads 0: no fixed event ever happens).
    pm1_enable: u16,
    /// PM1 control as last written, SLP_EN cleared (it is write-only).
    pm1_control: u16,
}

impl AcpiPm {
    /// A device that reports S5 to `sink`.
    pub fn new(sink: RequestSink) -> Self {
        Self {
            sink,
            pm1_enable: 0,
            pm1_control: PM1_SCI_EN,
        }
    }

    fn sleep(&self, sleep_type: u8) {
        if sleep_type == SLEEP_S5 {
            (self.sink)(GuestRequest::PowerOff);
        } else {
            tracing::warn!(
                sleep_type,
                "guest asked for an unsupported ACPI sleep state"
            );
        }
    }

    /// The 16-bit register at `base` (of `value`) with `data` written from `offset` on.
    fn merge(value: u16, base: u64, offset: u64, data: &[u8]) -> u16 {
        let mut bytes = value.to_le_bytes();
        for (i, b) in data.iter().enumerate() {
            if let Some(slot) = (offset + i as u64)
                .checked_sub(base)
                .and_then(|at| bytes.get_mut(at as usize))
            {
                *slot = *b;
            }
        }
        u16::from_le_bytes(bytes)
    }
}

impl BusDevice for AcpiPm {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // Nothing ever sleeps and wakes, so no status bit (WAK_STS among them) is ever set.
        let regs = [
            (PM1_EVENT + 2, self.pm1_enable),
            (PM1_CONTROL, self.pm1_control | PM1_SCI_EN),
        ];
        for (i, b) in data.iter_mut().enumerate() {
            let at = offset + i as u64;
            *b = regs
                .iter()
                .find(|(base, _)| (*base..*base + 2).contains(&at))
                .map_or(0, |(base, v)| v.to_le_bytes()[(at - base) as usize]);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        if offset == SLEEP_CONTROL
            && let Some(value) = data.first().filter(|v| *v & SLP_EN != 0)
        {
            self.sleep((value >> SLP_TYP_SHIFT) & 0x7);
        }
        if offset < PM1_EVENT + 4 && end > PM1_EVENT + 2 {
            self.pm1_enable = Self::merge(self.pm1_enable, PM1_EVENT + 2, offset, data);
        }
        if offset < PM1_CONTROL + 2 && end > PM1_CONTROL {
            let value = Self::merge(self.pm1_control, PM1_CONTROL, offset, data);
            self.pm1_control = value & !PM1_SLP_EN;
            if value & PM1_SLP_EN != 0 {
                self.sleep(((value >> PM1_SLP_TYP_SHIFT) & 0x7) as u8);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn device() -> (AcpiPm, Arc<Mutex<Vec<GuestRequest>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        (
            AcpiPm::new(Arc::new(move |r| s.lock().unwrap().push(r))),
            seen,
        )
    }

    #[test]
    fn hardware_reduced_s5_powers_off_and_other_states_do_not() {
        let (mut dev, seen) = device();
        dev.write(SLEEP_CONTROL, &[SLEEP_S5 << 2]); // SLP_EN clear
        dev.write(SLEEP_CONTROL, &[(3 << 2) | SLP_EN]); // S3
        dev.write(SLEEP_STATUS, &[0x34]); // status register
        assert!(seen.lock().unwrap().is_empty());
        dev.write(SLEEP_CONTROL, &[0x34]);
        assert_eq!(*seen.lock().unwrap(), vec![GuestRequest::PowerOff]);
    }

    #[test]
    fn pm1_control_powers_off_on_s5_as_linux_writes_it() {
        let (mut dev, seen) = device();
        let mut v = [0u8; 2];
        dev.read(PM1_CONTROL, &mut v);
        assert_eq!(
            u16::from_le_bytes(v) & PM1_SCI_EN,
            1,
            "ACPI mode from the start"
        );
        // ACPICA writes SLP_TYP first, then SLP_TYP | SLP_EN, keeping the other bits.
        let typ = (u16::from(SLEEP_S5) << PM1_SLP_TYP_SHIFT) | PM1_SCI_EN;
        dev.write(PM1_CONTROL, &typ.to_le_bytes());
        dev.write(
            PM1_CONTROL,
            &((3 << PM1_SLP_TYP_SHIFT) | PM1_SLP_EN).to_le_bytes(),
        );
        assert!(seen.lock().unwrap().is_empty());
        dev.read(PM1_CONTROL, &mut v);
        assert_eq!(
            u16::from_le_bytes(v) & PM1_SLP_EN,
            0,
            "SLP_EN is write-only"
        );
        // Byte-wise: the high byte carries SLP_EN and SLP_TYP.
        dev.write(PM1_CONTROL + 1, &[(typ | PM1_SLP_EN).to_le_bytes()[1]]);
        assert_eq!(*seen.lock().unwrap(), vec![GuestRequest::PowerOff]);
    }

    #[test]
    fn pm1_enable_reads_back_and_status_stays_clear() {
        let (mut dev, _) = device();
        dev.write(PM1_EVENT, &[0xff, 0xff, 0x21, 0x01]);
        let mut v = [0u8; 4];
        dev.read(PM1_EVENT, &mut v);
        assert_eq!(v, [0, 0, 0x21, 0x01]);
        let mut all = [0xaau8; LEN as usize];
        dev.read(0, &mut all);
        assert_eq!(all[..8], [0; 8]);
    }
}
