//! virtio-rng: one queue, the device fills the buffers it is given.

use super::mmio::{self, Device};
use super::queue::{Buf, Virtq, spin_until};
use super::parse_num;
use crate::serial::{print, print_dec, print_hex};

const SPIN_LIMIT: u64 = 1 << 32;

/// `rng [bytes]`: asks the first virtio-rng for up to 64 bytes (default 32); prints how many
/// came back, the first 8 as a number, and how many were zero.
pub fn cmd_read(args: &[u8]) {
    let want = parse_num(args).unwrap_or(32).clamp(1, 64) as usize;
    let mut dev: Option<Device> = None;
    mmio::each(mmio::ID_RNG, |d| {
        if dev.is_none() {
            dev = Some(d);
        }
    });
    let Some(dev) = dev else { return print("rng: no device\n") };
    let Some(mut q) = Virtq::new(8) else { return print("rng: out of memory\n") };
    if dev.begin(0).is_err() || dev.setup_queue(0, &q).is_err() || dev.finish().is_err() {
        return print("rng: device did not start\n");
    }
    let mut buf = [0u8; 64];
    if q.push(&[Buf::inp(&mut buf[..want])]).is_none() {
        return print("rng: queue full\n");
    }
    dev.notify(0);
    let mut got = None;
    if !spin_until(SPIN_LIMIT, || {
        got = q.pop_used();
        got.is_some()
    }) {
        return print("rng: timeout\n");
    }
    // SAFETY: the device wrote `buf` (volatile read: the compiler did not see that write).
    let buf = unsafe { core::ptr::read_volatile(&buf) };
    let len = got.map_or(0, |(_, l)| l as usize).min(want);
    let mut first = [0u8; 8];
    first.copy_from_slice(&buf[..8]);
    print("rng: ");
    print_dec(len as u64);
    print(" bytes, first ");
    print_hex(u64::from_le_bytes(first));
    print(", zero bytes ");
    print_dec(buf[..len].iter().filter(|&&b| b == 0).count() as u64);
    print("\n");
    // Leave the device reset so the next `rng` starts clean.
    dev.begin(0).ok();
}
