//! Per-device counters the VMM reads for the control socket, without taking the device lock.

use std::sync::atomic::{AtomicU64, Ordering};

/// Running totals for one device (or one direction of a net device).
#[derive(Debug, Default)]
pub struct Counters {
    requests: AtomicU64,
    bytes_to_guest: AtomicU64,
    bytes_from_guest: AtomicU64,
    errors: AtomicU64,
}

/// A copy of [`Counters`] at one instant.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Requests (blk, rng, balloon buffers) or frames (net) completed, failed ones included.
    pub requests: u64,
    /// Bytes the device wrote into guest memory (blk reads, net rx, rng).
    pub bytes_to_guest: u64,
    /// Bytes the device took from guest memory (blk writes, net tx).
    pub bytes_from_guest: u64,
    /// Requests that failed, malformed ones included.
    pub errors: u64,
}

impl Counters {
    /// Counts one completed request.
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts bytes written into the guest.
    pub fn to_guest(&self, n: u64) {
        self.bytes_to_guest.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts bytes taken from the guest.
    pub fn from_guest(&self, n: u64) {
        self.bytes_from_guest.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one failed request.
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The current totals.
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            bytes_to_guest: self.bytes_to_guest.load(Ordering::Relaxed),
            bytes_from_guest: self.bytes_from_guest.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}
