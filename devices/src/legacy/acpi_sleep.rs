//! The hardware-reduced ACPI sleep control (0x600) and status (0x601) registers. The FADT
//! points at them; writing SLP_EN with SLP_TYP 5 (the DSDT's `_S5_`) powers off.

use super::{GuestRequest, RequestSink};
use crate::bus::BusDevice;

const SLP_EN: u8 = 1 << 5;
const SLP_TYP_SHIFT: u8 = 2;
const SLP_TYP_MASK: u8 = 0x7 << SLP_TYP_SHIFT;
/// The sleep type the DSDT's `_S5_` object announces.
pub const SLEEP_S5: u8 = 5;

/// ACPI sleep registers.
pub struct AcpiSleep {
    sink: RequestSink,
}

impl AcpiSleep {
    /// A device that reports S5 to `sink`.
    pub fn new(sink: RequestSink) -> Self {
        Self { sink }
    }
}

impl BusDevice for AcpiSleep {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Nothing ever sleeps and wakes, so WAK_STS (status bit 7) is never set.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let [value, ..] = data else { return };
        if offset == 0 && value & SLP_EN != 0 {
            let sleep_type = (value & SLP_TYP_MASK) >> SLP_TYP_SHIFT;
            if sleep_type == SLEEP_S5 {
                (self.sink)(GuestRequest::PowerOff);
            } else {
                tracing::warn!(
                    sleep_type,
                    "guest asked for an unsupported ACPI sleep state"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn s5_powers_off_and_other_states_do_not() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let mut dev = AcpiSleep::new(Arc::new(move |r| s.lock().unwrap().push(r)));
        dev.write(0, &[SLEEP_S5 << 2]); // SLP_EN clear
        dev.write(0, &[(3 << 2) | SLP_EN]); // S3
        dev.write(1, &[0x34]); // status register
        assert!(seen.lock().unwrap().is_empty());
        dev.write(0, &[0x34]);
        assert_eq!(*seen.lock().unwrap(), vec![GuestRequest::PowerOff]);
    }
}
