//! Counts the vCPUs the platform announces: in the ACPI MADT when there is an RSDP, else in
//! the MP table.

use crate::io::read_phys;
use crate::serial::{print, print_dec};

/// Prints `cpus: <n> (madt|mptable)`, or says that neither table was found.
pub fn report() {
    let rsdp = crate::pvh::rsdp();
    let (n, source) = if rsdp != 0 {
        (madt_cpus(rsdp), "madt")
    } else {
        (mptable_cpus(), "mptable")
    };
    match n {
        Some(n) => {
            print("cpus: ");
            print_dec(n);
            print(" (");
            print(source);
            print(")\n");
        }
        None => {
            print("cpus: no ");
            print(source);
            print(" found\n");
        }
    }
}

fn signature(addr: u64) -> [u8; 4] {
    read_phys(addr)
}

fn madt_cpus(rsdp: u64) -> Option<u64> {
    if read_phys::<[u8; 8]>(rsdp) != *b"RSD PTR " {
        return None;
    }
    let xsdt: u64 = read_phys(rsdp + 24);
    let xsdt_len: u32 = read_phys(xsdt + 4);
    let entries = (u64::from(xsdt_len).saturating_sub(36)) / 8;
    for n in 0..entries.min(64) {
        let table: u64 = read_phys(xsdt + 36 + n * 8);
        if signature(table) != *b"APIC" {
            continue;
        }
        let len = u64::from(read_phys::<u32>(table + 4));
        let (mut off, mut cpus) = (44u64, 0u64);
        while off + 2 <= len {
            let kind: u8 = read_phys(table + off);
            let entry_len = u64::from(read_phys::<u8>(table + off + 1));
            if entry_len < 2 {
                break;
            }
            // Type 0: processor local APIC; flags bit 0: enabled.
            if kind == 0 && read_phys::<u32>(table + off + 4) & 1 != 0 {
                cpus += 1;
            }
            off += entry_len;
        }
        return Some(cpus);
    }
    None
}

fn mptable_cpus() -> Option<u64> {
    // The VMM puts the floating pointer at the start of the BIOS area (ARCHITECTURE.md).
    let fp = (0xf_0000u64..0x10_0000).step_by(16).find(|&a| signature(a) == *b"_MP_")?;
    let table = u64::from(read_phys::<u32>(fp + 4));
    if signature(table) != *b"PCMP" {
        return None;
    }
    let count: u16 = read_phys(table + 34);
    let (mut off, mut cpus) = (44u64, 0u64);
    for _ in 0..count {
        let kind: u8 = read_phys(table + off);
        if kind == 0 {
            // Processor entry: CPU flags at offset 3, bit 0 enabled.
            if read_phys::<u8>(table + off + 3) & 1 != 0 {
                cpus += 1;
            }
            off += 20;
        } else {
            off += 8;
        }
    }
    Some(cpus)
}
