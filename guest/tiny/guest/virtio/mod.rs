//! Polling virtio-mmio drivers: no interrupts (the lines stay masked), the driver notifies and
//! then watches the used ring. Guest physical = virtual (identity map), so buffers anywhere in
//! the guest (stack, statics) go into descriptors as they are.
//!
//! `mmio.rs` transport, `queue.rs` split virtqueues and a page pool, one file per device.

pub mod balloon;
pub mod blk;
pub mod mmio;
pub mod net;
pub mod queue;
pub mod rng;

use crate::serial::{print, print_dec};

/// Lists the virtio devices in the slots (`virtio` command).
pub fn list(_: &[u8]) {
    for slot in 0..mmio::SLOTS {
        let d = mmio::Device { base: mmio::SLOT_BASE + slot * mmio::SLOT_SIZE, slot };
        let id = d.id();
        if id != 0 {
            print("virtio: slot ");
            print_dec(slot);
            print(" device ");
            print_dec(id.into());
            print("\n");
        }
    }
}

/// The block test pattern, cheap for a guest whose every instruction is emulated: each 8-byte
/// word of 512-byte sector `s` holds `(s << 16) | seed` (little endian). One `rep stosq` per
/// sector writes it and one `repe scasq` checks it. The tests compute the same on the host.
pub fn sector_word(sector: u64, seed: u16) -> u64 {
    (sector << 16) | u64::from(seed)
}

/// Fills `buf` (whole sectors, 8-byte aligned) with the pattern of sectors `first..`.
pub fn fill_sectors(buf: &mut [u8], first: u64, seed: u16) {
    for (i, sector) in buf.chunks_exact_mut(512).enumerate() {
        // SAFETY: writes exactly the 64 words of this 512-byte chunk; the direction flag is
        // clear (ABI).
        unsafe {
            core::arch::asm!("rep stosq", inout("rdi") sector.as_mut_ptr() => _,
                inout("rcx") 64usize => _, in("rax") sector_word(first + i as u64, seed),
                options(nostack, preserves_flags))
        };
    }
}

/// Counts the sectors of `buf` that are not the pattern of sectors `first..`.
pub fn check_sectors(buf: &[u8], first: u64, seed: u16) -> u64 {
    let mut bad = 0;
    for (i, sector) in buf.chunks_exact(512).enumerate() {
        let left: usize;
        // SAFETY: reads at most the 64 words of this chunk; `repe scasq` stops at the first
        // word that differs, leaving rcx > 0 (or the last word differing, caught below).
        unsafe {
            core::arch::asm!("repe scasq", inout("rdi") sector.as_ptr() => _,
                inout("rcx") 64usize => left, in("rax") sector_word(first + i as u64, seed),
                options(nostack, readonly))
        };
        let last = u64::from_le_bytes([sector[504], sector[505], sector[506], sector[507],
            sector[508], sector[509], sector[510], sector[511]]);
        if left != 0 || last != sector_word(first + i as u64, seed) {
            bad += 1;
        }
    }
    bad
}

/// Parses a decimal or `0x` hexadecimal number.
pub fn parse_num(s: &[u8]) -> Option<u64> {
    let (digits, radix) = match s.strip_prefix(b"0x") {
        Some(h) => (h, 16),
        None => (s, 10),
    };
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let d = (b as char).to_digit(radix)?;
        n.checked_mul(radix.into())?.checked_add(d.into())
    })
}

/// Splits `args` into whitespace-separated words, up to `N`.
pub fn words<const N: usize>(args: &[u8]) -> ([&[u8]; N], usize) {
    let mut out = [&[][..]; N];
    let mut n = 0;
    for w in args.split(|&b| b == b' ').filter(|w| !w.is_empty()) {
        if n == N {
            break;
        }
        out[n] = w;
        n += 1;
    }
    (out, n)
}
