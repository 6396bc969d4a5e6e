//! Boot-progress port (0x3f0): every byte the guest writes is timestamped against the VMM's
//! start, so boot latency can be measured from inside. 123 means "ready".

use crate::bus::BusDevice;
use locks::Unpoisoned;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One byte written to the port, with its time since VMM start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgressMark {
    /// The value written.
    pub code: u8,
    /// Microseconds since the VMM process started.
    pub micros: u64,
}

/// Most marks kept: a guest that writes in a loop must not grow VMM memory without bound.
const MAX_MARKS: usize = 1024;

/// The boot-progress port; clones share the same list of marks.
#[derive(Clone)]
pub struct BootProgress {
    start: Instant,
    marks: Arc<Mutex<Vec<ProgressMark>>>,
}

impl BootProgress {
    /// A port whose timestamps count from `start`.
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            marks: Arc::default(),
        }
    }

    /// The marks so far.
    pub fn marks(&self) -> Vec<ProgressMark> {
        self.marks.lock().unpoisoned().clone()
    }
}

impl BusDevice for BootProgress {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        let micros = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut marks = self.marks.lock().unpoisoned();
        for &code in data {
            tracing::debug!(code, micros, "boot progress");
            if marks.len() < MAX_MARKS {
                marks.push(ProgressMark { code, micros });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_kept_in_order_and_bounded() {
        let mut port = BootProgress::new(Instant::now());
        let view = port.clone();
        port.write(0, &[1]);
        port.write(0, &[123]);
        let marks = view.marks();
        assert_eq!(
            marks.iter().map(|m| m.code).collect::<Vec<_>>(),
            vec![1, 123]
        );
        assert!(marks[0].micros <= marks[1].micros);
        for _ in 0..2 * MAX_MARKS {
            port.write(0, &[7]);
        }
        assert_eq!(view.marks().len(), MAX_MARKS);
    }
}
