//! The Intel MultiProcessor table: how a guest without ACPI (`--no-acpi`) finds its vCPUs,
//! IOAPIC and interrupt wiring. Written at `layout::MPTABLE_START`.

use crate::layout;
use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;
/// Interrupt lines routed 1:1 to IOAPIC pins (KVM's default routing): the 16 ISA ones and
/// the virtio-mmio slots' 16-23, so a kernel without ACPI can use `virtio_mmio.device=` IRQs.
const IOAPIC_PINS: u8 = 24;
/// Largest vCPU count the table describes: xAPIC IDs are 8 bits and the IOAPIC takes one.
pub const MAX_CPUS: u32 = 254;

/// The bytes of the MP floating pointer followed by the configuration table, for a table
/// placed at guest address `base`.
pub fn build(base: u64, cpus: u8) -> Vec<u8> {
    let table_addr = base + 16;
    let ioapic_id = cpus;
    let mut entries = Vec::new();
    let mut count = 0u16;
    for id in 0..cpus {
        let flags = CPU_ENABLED | if id == 0 { CPU_BSP } else { 0 };
        entries.extend([0, id, APIC_VERSION, flags]);
        entries.extend(0x600u32.to_le_bytes()); // signature: family 6
        entries.extend(0x201u32.to_le_bytes()); // features: FPU, APIC
        entries.extend([0u8; 8]);
        count += 1;
    }
    entries.extend([1, 0]);
    entries.extend(b"ISA   ");
    entries.extend([2, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend(layout::IOAPIC_ADDR.to_le_bytes());
    count += 2;
    for irq in 0..IOAPIC_PINS {
        // I/O interrupt: INT type, bus-default polarity/trigger, ISA bus 0 → IOAPIC pin.
        entries.extend([3, 0, 0, 0, 0, irq, ioapic_id, irq]);
        count += 1;
    }
    // Local interrupts: ExtINT on LINT0 of the BSP, NMI on LINT1 of every CPU.
    entries.extend([4, 3, 0, 0, 0, 0, 0, 0]);
    entries.extend([4, 1, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let mut table = Vec::with_capacity(44 + entries.len());
    table.extend(b"PCMP");
    table.extend(((44 + entries.len()) as u16).to_le_bytes());
    table.extend([4, 0]); // spec revision 1.4, checksum (below)
    table.extend(b"VIRGA   ");
    table.extend(b"VIRGA-VMM   ");
    table.extend(0u32.to_le_bytes()); // OEM table pointer
    table.extend(0u16.to_le_bytes()); // OEM table size
    table.extend(count.to_le_bytes());
    table.extend(layout::LAPIC_ADDR.to_le_bytes());
    table.extend([0, 0, 0, 0]); // extended table length, checksum, reserved
    table.extend(entries);
    table[7] = checksum(&table);

    let mut out = Vec::with_capacity(16 + table.len());
    out.extend(b"_MP_");
    out.extend((table_addr as u32).to_le_bytes());
    out.extend([1, 4, 0, 0, 0, 0, 0, 0]); // length 1 (16 bytes), rev 1.4, checksum, features
    out[10] = checksum(&out);
    out.extend(table);
    out
}

/// Writes the MP table for `cpus` vCPUs.
pub fn write(mem: &GuestMemoryMmap, cpus: u8) -> Result<(), GuestMemoryError> {
    mem.write_slice(
        &build(layout::MPTABLE_START, cpus),
        GuestAddress(layout::MPTABLE_START),
    )
}

/// The byte that makes `data` sum to zero.
pub fn checksum(data: &[u8]) -> u8 {
    0u8.wrapping_sub(data.iter().fold(0u8, |a, &b| a.wrapping_add(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(d: &[u8]) -> u8 {
        d.iter().fold(0u8, |a, &b| a.wrapping_add(b))
    }

    #[test]
    fn checksums_and_counts() {
        let t = build(layout::MPTABLE_START, 3);
        assert_eq!(&t[..4], b"_MP_");
        assert_eq!(sum(&t[..16]), 0);
        let table = &t[16..];
        assert_eq!(&table[..4], b"PCMP");
        let len = u16::from_le_bytes([table[4], table[5]]) as usize;
        assert_eq!(len, table.len());
        assert_eq!(sum(table), 0);
        assert_eq!(u16::from_le_bytes([table[34], table[35]]), 3 + 2 + 24 + 2);
        // The BSP is flagged, the others only enabled.
        assert_eq!((table[44 + 3], table[64 + 3]), (3, 1));
    }

    #[test]
    fn the_largest_table_fits_below_one_mib() {
        let t = build(layout::MPTABLE_START, MAX_CPUS as u8);
        assert!(layout::MPTABLE_START + (t.len() as u64) < layout::HIMEM_START);
    }
}
