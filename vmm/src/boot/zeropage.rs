//! The Linux zero page (`boot_params`) for the 64-bit boot protocol.

use super::InitrdPlacement;
use crate::layout::{self, RangeKind};
use linux_loader::loader::bootparam::{
    CAN_USE_HEAP, KEEP_SEGMENTS, boot_e820_entry, boot_params, setup_header,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
const BOOT_FLAG: u16 = 0xaa55;
const HDRS: u32 = 0x5372_6448; // "HdrS"
const LOADER_UNDEFINED: u8 = 0xff;

/// Writes the zero page: setup header from the bzImage (or a minimal one for a plain ELF),
/// command line, initrd, e820 map, RSDP.
pub fn write(
    mem: &GuestMemoryMmap,
    map: &[(u64, u64, RangeKind)],
    header: Option<setup_header>,
    initrd: Option<InitrdPlacement>,
    cmdline_size: u32,
    rsdp: Option<u64>,
) -> Result<(), GuestMemoryError> {
    let mut params = boot_params::default();
    if let Some(h) = header {
        params.hdr = h;
    }
    let hdr = &mut params.hdr;
    hdr.type_of_loader = LOADER_UNDEFINED;
    hdr.boot_flag = BOOT_FLAG;
    hdr.header = HDRS;
    hdr.cmd_line_ptr = layout::CMDLINE as u32;
    hdr.cmdline_size = cmdline_size;
    hdr.loadflags |= CAN_USE_HEAP | KEEP_SEGMENTS;
    hdr.heap_end_ptr = 0xfe00;
    if hdr.kernel_alignment == 0 {
        hdr.kernel_alignment = 0x0100_0000;
    }
    if let Some(initrd) = initrd {
        hdr.ramdisk_image = initrd.addr.0 as u32;
        hdr.ramdisk_size = initrd.size as u32;
    }
    params.acpi_rsdp_addr = rsdp.unwrap_or(0);
    for (i, &(addr, size, kind)) in map.iter().take(params.e820_table.len()).enumerate() {
        let type_ = if kind == RangeKind::Ram {
            E820_RAM
        } else {
            E820_RESERVED
        };
        params.e820_table[i] = boot_e820_entry {
            addr,
            size,
            r#type: type_,
        };
        params.e820_entries = (i + 1) as u8;
    }
    mem.write_obj(params, GuestAddress(layout::ZERO_PAGE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e820_and_initrd_are_filled_in() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        let map = layout::memory_map(2 << 20);
        let initrd = InitrdPlacement {
            addr: GuestAddress(0x10_0000),
            size: 10,
        };
        write(&mem, &map, None, Some(initrd), 5, None).unwrap();
        let p: boot_params = mem.read_obj(GuestAddress(layout::ZERO_PAGE)).unwrap();
        assert_eq!(usize::from(p.e820_entries), map.len());
        let hdr = p.hdr;
        assert_eq!(
            (hdr.ramdisk_image, hdr.ramdisk_size, hdr.boot_flag),
            (0x10_0000, 10, BOOT_FLAG)
        );
    }
}
