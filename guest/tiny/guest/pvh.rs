//! The PVH `hvm_start_info` the VMM hands over in %ebx: command line, memory map, RSDP.

use crate::io::read_phys;
use crate::serial::{print, print_dec, print_hex};
use core::sync::atomic::{AtomicU64, Ordering};

const MAGIC: u32 = 0x336e_c578;
const MEMMAP_RAM: u32 = 1;

#[derive(Clone, Copy)]
#[repr(C)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

#[derive(Clone, Copy)]
#[repr(C)]
struct MemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

static START_INFO: AtomicU64 = AtomicU64::new(0);

/// Remembers where the start info is; false when it is not a valid one.
pub fn init(addr: u32) -> bool {
    if addr == 0 || read_phys::<StartInfo>(addr.into()).magic != MAGIC {
        return false;
    }
    START_INFO.store(addr.into(), Ordering::Relaxed);
    true
}

fn info() -> Option<StartInfo> {
    match START_INFO.load(Ordering::Relaxed) {
        0 => None,
        addr => Some(read_phys(addr)),
    }
}

/// The RSDP address the VMM gave (0 without ACPI).
pub fn rsdp() -> u64 {
    info().map_or(0, |i| i.rsdp_paddr)
}

/// Calls `f` with each byte of the command line.
pub fn cmdline(mut f: impl FnMut(u8)) {
    let Some(i) = info() else { return };
    if i.cmdline_paddr == 0 {
        return;
    }
    for off in 0..4096u64 {
        match read_phys::<u8>(i.cmdline_paddr + off) {
            0 => break,
            b => f(b),
        }
    }
}

/// Whether `word` is a whole word of the command line (words end at spaces and `;`).
pub fn cmdline_has_word(word: &[u8]) -> bool {
    let mut buf = [0u8; 2048];
    let mut len = 0;
    cmdline(|b| {
        if len < buf.len() {
            buf[len] = b;
            len += 1;
        }
    });
    buf[..len].split(|&b| b == b' ' || b == b';').any(|w| w == word)
}

/// End of the highest RAM range below 4 GiB, the part the guest maps (0 without a memory map).
pub fn ram_end() -> u64 {
    let Some(i) = info() else { return 0 };
    let entries = if i.version >= 1 { i.memmap_entries } else { 0 };
    let mut end = 0u64;
    for n in 0..u64::from(entries.min(128)) {
        let e: MemmapEntry = read_phys(i.memmap_paddr + n * 24);
        if e.kind == MEMMAP_RAM && e.addr + e.size <= 1 << 32 {
            end = end.max(e.addr + e.size);
        }
    }
    end
}

/// Prints `mem: <bytes> bytes in <n> ranges, end <highest RAM address>`.
pub fn report_memory() {
    let Some(i) = info() else {
        print("mem: no PVH start info\n");
        return;
    };
    let (mut total, mut ranges, mut end) = (0u64, 0u64, 0u64);
    // Version 0 of the start info has no memory map.
    let entries = if i.version >= 1 { i.memmap_entries } else { 0 };
    for n in 0..u64::from(entries.min(128)) {
        let e: MemmapEntry = read_phys(i.memmap_paddr + n * 24);
        if e.kind == MEMMAP_RAM {
            total += e.size;
            ranges += 1;
            end = end.max(e.addr + e.size);
        }
    }
    print("mem: ");
    print_dec(total);
    print(" bytes in ");
    print_dec(ranges);
    print(" ranges, end ");
    print_hex(end);
    print("\n");
}
