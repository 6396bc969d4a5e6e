//! PVH start info (`hvm_start_info`) with its memory map and the initrd as module 0.

use super::InitrdPlacement;
use crate::layout::{self, RangeKind};
use linux_loader::loader::elf::start_info::{
    XEN_HVM_MEMMAP_TYPE_RAM, XEN_HVM_MEMMAP_TYPE_RESERVED, XEN_HVM_START_MAGIC_VALUE,
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

/// Where the module list goes: after the memory map (at most a few entries).
const MODLIST: u64 = layout::PVH_INFO + 0x400;

/// Writes the start info, memory map and module list.
pub fn write(
    mem: &GuestMemoryMmap,
    map: &[(u64, u64, RangeKind)],
    initrd: Option<InitrdPlacement>,
    rsdp: Option<u64>,
) -> Result<(), GuestMemoryError> {
    for (i, &(addr, size, kind)) in map.iter().enumerate() {
        let type_ = match kind {
            RangeKind::Ram => XEN_HVM_MEMMAP_TYPE_RAM,
            RangeKind::Reserved => XEN_HVM_MEMMAP_TYPE_RESERVED,
        };
        let entry = hvm_memmap_table_entry {
            addr,
            size,
            type_,
            reserved: 0,
        };
        let at = layout::PVH_MEMMAP + (i * std::mem::size_of::<hvm_memmap_table_entry>()) as u64;
        mem.write_obj(entry, GuestAddress(at))?;
    }
    let mut info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: 1,
        cmdline_paddr: layout::CMDLINE,
        rsdp_paddr: rsdp.unwrap_or(0),
        memmap_paddr: layout::PVH_MEMMAP,
        memmap_entries: map.len() as u32,
        ..Default::default()
    };
    if let Some(initrd) = initrd {
        let module = hvm_modlist_entry {
            paddr: initrd.addr.0,
            size: initrd.size,
            ..Default::default()
        };
        mem.write_obj(module, GuestAddress(MODLIST))?;
        info.nr_modules = 1;
        info.modlist_paddr = MODLIST;
    }
    mem.write_obj(info, GuestAddress(layout::PVH_INFO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_info_and_memmap_land_where_the_guest_looks() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        let map = layout::memory_map(2 << 20);
        let initrd = InitrdPlacement {
            addr: GuestAddress(0x18_0000),
            size: 0x1234,
        };
        write(&mem, &map, Some(initrd), Some(layout::ACPI_START)).unwrap();
        let info: hvm_start_info = mem.read_obj(GuestAddress(layout::PVH_INFO)).unwrap();
        assert_eq!(info.magic, XEN_HVM_START_MAGIC_VALUE);
        assert_eq!(info.memmap_entries as usize, map.len());
        assert_eq!(info.rsdp_paddr, layout::ACPI_START);
        let last: hvm_memmap_table_entry = mem
            .read_obj(GuestAddress(
                layout::PVH_MEMMAP + 24 * (map.len() as u64 - 1),
            ))
            .unwrap();
        assert_eq!(
            (last.addr, last.addr + last.size),
            (layout::HIMEM_START, 2 << 20)
        );
        let m: hvm_modlist_entry = mem.read_obj(GuestAddress(info.modlist_paddr)).unwrap();
        assert_eq!((m.paddr, m.size), (0x18_0000, 0x1234));
    }
}
