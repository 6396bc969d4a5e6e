//! Address-range dispatch for port I/O and MMIO exits.

use locks::Unpoisoned;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A device reachable through a bus; `offset` is relative to the range it was inserted at.
pub trait BusDevice: Send {
    /// Guest reads `data.len()` bytes at `offset`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Guest writes `data` at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// Errors from building a bus.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// A range of zero length.
    #[error("bus range at {0:#x} has zero length")]
    ZeroLength(u64),
    /// A range that wraps around the address space.
    #[error("bus range {base:#x}+{len:#x} overflows")]
    Overflow { base: u64, len: u64 },
    /// A range that overlaps one already inserted.
    #[error("bus range {base:#x}+{len:#x} overlaps an existing device")]
    Overlap { base: u64, len: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Range {
    base: u64,
    len: u64,
}

/// Shared handle to a device on a bus.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// A set of non-overlapping address ranges, each owned by one device.
#[derive(Default, Clone)]
pub struct Bus {
    devices: BTreeMap<Range, SharedDevice>,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Places `device` at `[base, base + len)`.
    pub fn insert(&mut self, device: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        if len == 0 {
            return Err(BusError::ZeroLength(base));
        }
        let end = base
            .checked_add(len)
            .ok_or(BusError::Overflow { base, len })?;
        let overlaps = self
            .devices
            .keys()
            .any(|r| base < r.base + r.len && r.base < end);
        if overlaps {
            return Err(BusError::Overlap { base, len });
        }
        self.devices.insert(Range { base, len }, device);
        Ok(())
    }

    fn resolve(&self, addr: u64, size: usize) -> Option<(u64, &SharedDevice)> {
        let (range, dev) = self
            .devices
            .range(
                ..=Range {
                    base: addr,
                    len: u64::MAX,
                },
            )
            .next_back()?;
        let offset = addr - range.base;
        (offset.checked_add(size as u64)? <= range.len).then_some((offset, dev))
    }

    /// Dispatches a read; returns false (and leaves `data` untouched) when nothing is mapped there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.resolve(addr, data.len()) {
            Some((offset, dev)) => {
                lock(dev).read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Dispatches a write; returns false when nothing is mapped there.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.resolve(addr, data.len()) {
            Some((offset, dev)) => {
                lock(dev).write(offset, data);
                true
            }
            None => false,
        }
    }
}

/// A device that panicked while holding its lock is still served: the VMM must outlive it.
fn lock(dev: &SharedDevice) -> std::sync::MutexGuard<'_, dyn BusDevice + 'static> {
    dev.lock().unpoisoned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Rec {
        last: Option<(u64, Vec<u8>)>,
    }
    impl BusDevice for Rec {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.last = Some((offset, data.to_vec()));
        }
    }

    #[test]
    fn dispatches_by_range_and_offset() {
        let mut bus = Bus::new();
        let a = Arc::new(Mutex::new(Rec::default()));
        bus.insert(a.clone(), 0x3f8, 8).unwrap();
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fa, &mut b));
        assert_eq!(b, [2]);
        assert!(bus.write(0x3ff, &[7]));
        assert_eq!(a.lock().unwrap().last, Some((7, vec![7])));
        assert!(!bus.read(0x400, &mut b));
        assert!(!bus.read(0x3f7, &mut b));
        // An access straddling the end of the range is not the device's.
        let mut w = [0u8; 2];
        assert!(!bus.read(0x3ff, &mut w));
    }

    #[test]
    fn refuses_bad_ranges() {
        let mut bus = Bus::new();
        let d = || Arc::new(Mutex::new(Rec::default())) as SharedDevice;
        bus.insert(d(), 0x10, 0x10).unwrap();
        assert_eq!(
            bus.insert(d(), 0x1f, 2),
            Err(BusError::Overlap { base: 0x1f, len: 2 })
        );
        assert_eq!(
            bus.insert(d(), 0x8, 9),
            Err(BusError::Overlap { base: 0x8, len: 9 })
        );
        assert_eq!(bus.insert(d(), 0x40, 0), Err(BusError::ZeroLength(0x40)));
        assert!(matches!(
            bus.insert(d(), u64::MAX, 2),
            Err(BusError::Overflow { .. })
        ));
        bus.insert(d(), 0x20, 1).unwrap();
    }
}
