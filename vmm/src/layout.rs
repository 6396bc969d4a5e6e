//! The guest physical memory map (ARCHITECTURE.md, "The guest platform").

use vm_memory::GuestAddress;

/// Boot GDT for both boot protocols.
pub const BOOT_GDT: u64 = 0x500;
/// Empty boot IDT.
pub const BOOT_IDT: u64 = 0x520;
/// PVH `hvm_start_info`, followed by its memory map.
pub const PVH_INFO: u64 = 0x6000;
/// PVH memory map entries.
pub const PVH_MEMMAP: u64 = 0x6040;
/// Linux zero page (`boot_params`).
pub const ZERO_PAGE: u64 = 0x7000;
/// Long-mode page tables for the Linux 64-bit entry: PML4, PDPT, PD.
pub const PML4: u64 = 0x9000;
/// Kernel command line.
pub const CMDLINE: u64 = 0x20000;
/// Longest command line accepted (Linux's COMMAND_LINE_SIZE on x86).
pub const CMDLINE_MAX: usize = 2048;
/// Start of the extended BIOS data area: usable low RAM ends here.
pub const EBDA_START: u64 = 0x9fc00;
/// ACPI tables, RSDP first.
pub const ACPI_START: u64 = 0xe0000;
/// MP floating pointer and table.
pub const MPTABLE_START: u64 = 0xf0000;
/// Kernels load here.
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the 32-bit MMIO hole.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// End of the 32-bit MMIO hole: RAM continues here.
pub const MMIO_HOLE_END: u64 = 0x1_0000_0000;
/// IOAPIC registers.
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// Local APIC registers.
pub const LAPIC_ADDR: u32 = 0xfee0_0000;

/// RAM ranges for `size` bytes of guest memory: below the MMIO hole, then above 4 GiB.
pub fn ram_regions(size: u64) -> Vec<(GuestAddress, u64)> {
    if size <= MMIO_HOLE_START {
        vec![(GuestAddress(0), size)]
    } else {
        vec![
            (GuestAddress(0), MMIO_HOLE_START),
            (GuestAddress(MMIO_HOLE_END), size - MMIO_HOLE_START),
        ]
    }
}

/// Kinds of ranges in the guest's memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeKind {
    /// Usable RAM.
    Ram,
    /// Reserved (firmware tables, the BIOS area).
    Reserved,
}

/// The memory map a guest is told about (e820 / PVH memmap): RAM below the EBDA, the BIOS
/// area with ACPI and MP tables reserved, then RAM from 1 MiB.
pub fn memory_map(size: u64) -> Vec<(u64, u64, RangeKind)> {
    let mut map = vec![
        (0, EBDA_START, RangeKind::Ram),
        (ACPI_START, HIMEM_START - ACPI_START, RangeKind::Reserved),
    ];
    for (start, len) in ram_regions(size) {
        let start = start.0;
        if start == 0 {
            if len > HIMEM_START {
                map.push((HIMEM_START, len - HIMEM_START, RangeKind::Ram));
            }
        } else {
            map.push((start, len, RangeKind::Ram));
        }
    }
    map
}

/// Highest address below which low RAM ends (the initrd goes at its top).
pub fn low_ram_end(size: u64) -> u64 {
    size.min(MMIO_HOLE_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_memory_is_one_region() {
        assert_eq!(ram_regions(128 << 20), vec![(GuestAddress(0), 128 << 20)]);
        assert_eq!(
            ram_regions(MMIO_HOLE_START),
            vec![(GuestAddress(0), MMIO_HOLE_START)]
        );
    }

    #[test]
    fn large_memory_splits_around_the_hole() {
        let size = 4608u64 << 20; // 4.5 GiB
        let r = ram_regions(size);
        assert_eq!(
            r,
            vec![
                (GuestAddress(0), 3 << 30),
                (GuestAddress(4 << 30), 1536 << 20)
            ]
        );
        assert_eq!(r.iter().map(|x| x.1).sum::<u64>(), size);
        let ram: u64 = memory_map(size)
            .iter()
            .filter(|e| e.2 == RangeKind::Ram)
            .map(|e| e.1)
            .sum();
        // Everything but the 384 KiB between the EBDA and 1 MiB.
        assert_eq!(ram, size - (HIMEM_START - EBDA_START));
        assert_eq!(
            memory_map(size).last().unwrap().0 + memory_map(size).last().unwrap().1,
            (4 << 30) + (1536 << 20)
        );
    }
}
