//! Minimal ACPI tables so a stock kernel finds its vCPUs and can power off: RSDP, XSDT,
//! FADT (a full one: PM1a event and control blocks at ports 0x608/0x60c, SCI on IRQ 9; not
//! hardware-reduced, so kernels keep the PIC and ISA IRQs 0-15 identity-mapped, as on a PC,
//! which a kernel probing COM1 the legacy way needs: devices/src/legacy/acpi_pm.rs), MADT,
//! and a DSDT with `_S5_`, COM1, the i8042 and the virtio-mmio devices (`LNRO0005`). Written
//! from `layout::ACPI_START`.

pub mod aml;

use crate::boot::mptable::checksum;
use crate::layout;
use devices::legacy;
use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

const OEM_ID: &[u8; 6] = b"VIRGA ";
const OEM_TABLE_ID: &[u8; 8] = b"VIRGAVMM";
const CREATOR_ID: &[u8; 4] = b"VRGA";

const FADT_REVISION: u8 = 6;
const FADT_LEN: usize = 276;
const FADT_FLAG_PWR_BUTTON: u32 = 1 << 4;
const FADT_FLAG_SLP_BUTTON: u32 = 1 << 5;
const IAPC_8042: u16 = 1 << 1;
const IAPC_NO_VGA: u16 = 1 << 2;
const IAPC_NO_CMOS_RTC: u16 = 1 << 5;
const GAS_SYSTEM_IO: u8 = 1;
const GAS_ACCESS_WORD: u8 = 2;
const MADT_PCAT_COMPAT: u32 = 1;
/// MPS INTI flags: active high, level-triggered (the SCI's).
const INTI_HIGH_LEVEL: u16 = 0b1101;

/// An ACPI table header followed by `body`, with length and checksum filled in.
fn table(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(36 + body.len());
    t.extend(signature);
    t.extend(((36 + body.len()) as u32).to_le_bytes());
    t.extend([revision, 0]);
    t.extend(OEM_ID);
    t.extend(OEM_TABLE_ID);
    t.extend(1u32.to_le_bytes());
    t.extend(CREATOR_ID);
    t.extend(1u32.to_le_bytes());
    t.extend(body);
    t[9] = checksum(&t);
    t
}

/// A Generic Address Structure for an I/O register block of `len` bytes, read in words.
fn gas_io(port: u16, len: u8) -> [u8; 12] {
    let mut g = [0u8; 12];
    g[0] = GAS_SYSTEM_IO;
    g[1] = len * 8;
    g[3] = GAS_ACCESS_WORD;
    g[4..12].copy_from_slice(&u64::from(port).to_le_bytes());
    g
}

/// The DSDT's definition block; `virtio` lists each virtio-mmio slot's (base, GSI).
pub fn dsdt_body(virtio: &[(u64, u32)]) -> Vec<u8> {
    use aml::{device, eisa_id, integer, name, package, resource, resources, scope, string};
    let com1 = device(
        "COM1",
        &[
            name("_HID", eisa_id("PNP0501")),
            name("_UID", integer(0)),
            name(
                "_CRS",
                resources(&[
                    resource::io(legacy::COM1_BASE, legacy::COM1_LEN as u8),
                    resource::irq(legacy::COM1_IRQ as u8),
                ]),
            ),
        ],
    );
    let ps2 = device(
        "PS2K",
        &[
            name("_HID", eisa_id("PNP0303")),
            name(
                "_CRS",
                resources(&[
                    resource::io(legacy::I8042_BASE, 1),
                    resource::io(legacy::I8042_BASE + 4, 1),
                    resource::irq(legacy::I8042_IRQ as u8),
                ]),
            ),
        ],
    );
    // QEMU's pvpanic ISA device: Linux's pvpanic driver finds the port through this id.
    let pvpanic = device(
        "PEVT",
        &[
            name("_HID", string("QEMU0001")),
            name("_CRS", resources(&[resource::io(legacy::PVPANIC_PORT, 1)])),
        ],
    );
    [
        // SLP_TYPa/SLP_TYPb for S5, matching what the sleep control register accepts.
        name(
            "\\_S5_",
            package(&[integer(legacy::SLEEP_S5.into()), integer(0)]),
        ),
        scope(
            "\\_SB_",
            &[vec![com1, ps2, pvpanic], virtio_devices(virtio)].concat(),
        ),
    ]
    .concat()
}

/// `Device (VRxx) { _HID "LNRO0005", _UID n, _CRS { Memory32Fixed, Interrupt } }` per slot:
/// what Linux's virtio-mmio platform driver binds to.
fn virtio_devices(virtio: &[(u64, u32)]) -> Vec<Vec<u8>> {
    use aml::{device, integer, name, resource, resources, string};
    virtio
        .iter()
        .enumerate()
        .map(|(n, &(base, gsi))| {
            device(
                &format!("VR{n:02X}"),
                &[
                    name("_HID", string("LNRO0005")),
                    name("_UID", integer(n as u64)),
                    name(
                        "_CRS",
                        resources(&[
                            resource::memory32(base as u32, 0x1000),
                            resource::interrupt(gsi),
                        ]),
                    ),
                ],
            )
        })
        .collect()
}

fn fadt(dsdt: u64) -> Vec<u8> {
    use legacy::acpi_pm::{PM1_CONTROL, PM1_CONTROL_LEN, PM1_EVENT, PM1_EVENT_LEN};
    let evt = legacy::ACPI_PM_BASE + PM1_EVENT as u16;
    let cnt = legacy::ACPI_PM_BASE + PM1_CONTROL as u16;
    let mut b = vec![0u8; FADT_LEN - 36];
    let at = |off: usize| off - 36;
    b[at(40)..at(44)].copy_from_slice(&(dsdt as u32).to_le_bytes());
    b[at(46)..at(48)].copy_from_slice(&(legacy::ACPI_SCI_IRQ as u16).to_le_bytes());
    // SMI_CMD 0: no SMM to hand over from, the machine is in ACPI mode from the start.
    b[at(56)..at(60)].copy_from_slice(&u32::from(evt).to_le_bytes());
    b[at(64)..at(68)].copy_from_slice(&u32::from(cnt).to_le_bytes());
    b[at(88)] = PM1_EVENT_LEN;
    b[at(89)] = PM1_CONTROL_LEN;
    // C2 and C3 latencies above the maximum: no such states.
    b[at(96)..at(98)].copy_from_slice(&0x0fffu16.to_le_bytes());
    b[at(98)..at(100)].copy_from_slice(&0x0fffu16.to_le_bytes());
    let iapc = IAPC_8042 | IAPC_NO_VGA | IAPC_NO_CMOS_RTC;
    b[at(109)..at(111)].copy_from_slice(&iapc.to_le_bytes());
    let flags = FADT_FLAG_PWR_BUTTON | FADT_FLAG_SLP_BUTTON;
    b[at(112)..at(116)].copy_from_slice(&flags.to_le_bytes());
    b[at(131)] = 5; // FADT minor version: ACPI 6.5
    b[at(140)..at(148)].copy_from_slice(&dsdt.to_le_bytes()); // X_DSDT
    b[at(148)..at(160)].copy_from_slice(&gas_io(evt, PM1_EVENT_LEN));
    b[at(172)..at(184)].copy_from_slice(&gas_io(cnt, PM1_CONTROL_LEN));
    b[at(268)..at(276)].copy_from_slice(b"VIRGAVMM");
    table(b"FACP", FADT_REVISION, &b)
}

fn madt(cpus: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(layout::LAPIC_ADDR.to_le_bytes());
    b.extend(MADT_PCAT_COMPAT.to_le_bytes());
    for id in 0..cpus {
        // Processor local APIC: UID, APIC ID, flags (enabled).
        b.extend([0, 8, id as u8, id as u8]);
        b.extend(1u32.to_le_bytes());
    }
    // IOAPIC: ID after the vCPUs', address, GSI base 0.
    b.extend([1, 12, cpus as u8, 0]);
    b.extend(layout::IOAPIC_ADDR.to_le_bytes());
    b.extend(0u32.to_le_bytes());
    // Interrupt source override: the SCI (ISA IRQ 9 -> GSI 9) is level-triggered, active high.
    b.extend([2, 10, 0, legacy::ACPI_SCI_IRQ as u8]);
    b.extend(legacy::ACPI_SCI_IRQ.to_le_bytes());
    b.extend(INTI_HIGH_LEVEL.to_le_bytes());
    // Local APIC NMI on LINT1 of every processor.
    b.extend([4, 6, 0xff, 0, 0, 1]);
    table(b"APIC", 5, &b)
}

fn rsdp(xsdt: u64) -> Vec<u8> {
    let mut r = Vec::with_capacity(36);
    r.extend(b"RSD PTR ");
    r.push(0);
    r.extend(OEM_ID);
    r.push(2); // revision: ACPI 2.0+ (XSDT)
    r.extend(0u32.to_le_bytes()); // no RSDT
    r.extend(36u32.to_le_bytes());
    r.extend(xsdt.to_le_bytes());
    r.extend([0, 0, 0, 0]);
    r[8] = checksum(&r[..20]);
    r[32] = checksum(&r);
    r
}

fn align8(a: u64) -> u64 {
    (a + 7) & !7
}

/// The tables and where each goes, RSDP first at `layout::ACPI_START`; `virtio` as for
/// [`dsdt_body`].
pub fn build(cpus: u32, virtio: &[(u64, u32)]) -> Vec<(u64, Vec<u8>)> {
    let dsdt_addr = layout::ACPI_START + 64;
    let dsdt = table(b"DSDT", 2, &dsdt_body(virtio));
    let fadt_addr = align8(dsdt_addr + dsdt.len() as u64);
    let fadt = fadt(dsdt_addr);
    let madt_addr = align8(fadt_addr + fadt.len() as u64);
    let madt = madt(cpus);
    let xsdt_addr = align8(madt_addr + madt.len() as u64);
    let xsdt_body: Vec<u8> = [fadt_addr, madt_addr]
        .iter()
        .flat_map(|a| a.to_le_bytes())
        .collect();
    let xsdt = table(b"XSDT", 1, &xsdt_body);
    vec![
        (layout::ACPI_START, rsdp(xsdt_addr)),
        (dsdt_addr, dsdt),
        (fadt_addr, fadt),
        (madt_addr, madt),
        (xsdt_addr, xsdt),
    ]
}

/// Writes the tables for `cpus` vCPUs and the `virtio` slots; returns the RSDP address.
pub fn write(
    mem: &GuestMemoryMmap,
    cpus: u32,
    virtio: &[(u64, u32)],
) -> Result<u64, GuestMemoryError> {
    for (addr, bytes) in build(cpus, virtio) {
        mem.write_slice(&bytes, GuestAddress(addr))?;
    }
    Ok(layout::ACPI_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(d: &[u8]) -> u8 {
        d.iter().fold(0u8, |a, &b| a.wrapping_add(b))
    }

    #[test]
    fn tables_have_valid_checksums_and_fit_below_the_mp_table() {
        let all_slots: Vec<_> = (0..crate::config::devices::MAX_VIRTIO_DEVICES)
            .map(|n| (0xd000_0000 + n as u64 * 0x1000, crate::virtio::slot_gsi(n)))
            .collect();
        let tables = build(crate::boot::mptable::MAX_CPUS, &all_slots);
        let (_, rsdp) = &tables[0];
        assert_eq!(sum(&rsdp[..20]), 0);
        assert_eq!(sum(rsdp), 0);
        for (_, t) in &tables[1..] {
            assert_eq!(sum(t), 0, "{}", String::from_utf8_lossy(&t[..4]));
            assert_eq!(
                u32::from_le_bytes(t[4..8].try_into().unwrap()) as usize,
                t.len()
            );
        }
        let (addr, last) = tables.last().unwrap();
        assert!(addr + last.len() as u64 <= layout::MPTABLE_START);
    }

    #[test]
    fn fadt_points_at_dsdt_sci_and_pm1_blocks() {
        let tables = build(2, &[]);
        let dsdt_addr = tables[1].0;
        let fadt = &tables[2].1;
        assert_eq!(&fadt[..4], b"FACP");
        assert_eq!(
            u64::from_le_bytes(fadt[140..148].try_into().unwrap()),
            dsdt_addr
        );
        let word = |at: usize| u16::from_le_bytes(fadt[at..at + 2].try_into().unwrap());
        assert_eq!(word(46), 9, "SCI_INT");
        assert_eq!(
            (word(56), word(64)),
            (0x608, 0x60c),
            "PM1a event and control blocks"
        );
        assert_eq!((fadt[88], fadt[89]), (4, 2));
        assert_eq!((word(152), word(176)), (0x608, 0x60c), "X_PM1a blocks");
        let flags = u32::from_le_bytes(fadt[112..116].try_into().unwrap());
        assert_eq!(flags & (1 << 20), 0, "not hardware-reduced");
        let madt = &tables[3].1;
        assert!(
            madt.windows(10)
                .any(|w| w == [2, 10, 0, 9, 9, 0, 0, 0, 0x0d, 0]),
            "the SCI's interrupt source override"
        );
        let xsdt = &tables[4].1;
        assert_eq!(u64::from_le_bytes(rsdp_xsdt(&tables[0].1)), tables[4].0);
        assert_eq!(xsdt.len(), 36 + 16);
    }

    #[test]
    fn dsdt_describes_each_virtio_slot() {
        let plain = dsdt_body(&[]);
        let two = dsdt_body(&[(0xd000_0000, 5), (0xd000_1000, 17)]);
        let hits =
            |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).filter(|w| *w == needle).count();
        assert_eq!(hits(&plain, b"LNRO0005"), 0);
        assert_eq!(hits(&two, b"LNRO0005\0"), 2);
        assert_eq!(hits(&two, b"VR00"), 1);
        assert_eq!(hits(&two, b"VR01"), 1);
        // Memory32Fixed at the slot base, then an extended interrupt with the GSI.
        assert_eq!(
            hits(&two, &[0x86, 9, 0, 1, 0, 0x10, 0, 0xd0, 0, 0x10, 0, 0]),
            1
        );
        assert_eq!(hits(&two, &[0x89, 6, 0, 3, 1, 17, 0, 0, 0]), 1);
    }

    fn rsdp_xsdt(r: &[u8]) -> [u8; 8] {
        r[24..32].try_into().unwrap()
    }
}
