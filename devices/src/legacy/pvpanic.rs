//! pvpanic (port 0x505): the guest writes bit 0 when it panics.

use super::{GuestRequest, RequestSink};
use crate::bus::BusDevice;

const PANICKED: u8 = 1 << 0;
const CRASH_LOADED: u8 = 1 << 1;

/// The pvpanic I/O port.
pub struct PvPanic {
    sink: RequestSink,
}

impl PvPanic {
    /// A device that reports a panic to `sink`.
    pub fn new(sink: RequestSink) -> Self {
        Self { sink }
    }
}

impl BusDevice for PvPanic {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // The events this device understands.
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = PANICKED | CRASH_LOADED;
        }
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        match data.first() {
            Some(v) if v & PANICKED != 0 => (self.sink)(GuestRequest::Panic),
            // A crash kernel was loaded: the guest carries on, nothing to stop.
            Some(v) if v & CRASH_LOADED != 0 => tracing::info!("guest loaded a crash kernel"),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn panic_bit_reports_and_features_read_back() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let mut dev = PvPanic::new(Arc::new(move |r| s.lock().unwrap().push(r)));
        let mut b = [0u8];
        dev.read(0, &mut b);
        assert_eq!(b, [3]);
        dev.write(0, &[CRASH_LOADED]);
        assert!(seen.lock().unwrap().is_empty());
        dev.write(0, &[PANICKED]);
        assert_eq!(*seen.lock().unwrap(), vec![GuestRequest::Panic]);
    }
}
