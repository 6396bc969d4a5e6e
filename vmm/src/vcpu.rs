//! vCPU set-up (CPUID, MSRs, LAPIC, boot registers) and the run loop. A KVM exit becomes a
//! small [`Exit`]; port and MMIO accesses go through a [`Bus`].

use crate::boot::Entry;
use crate::layout;
use crate::state::{Shared, StopReason, set_thread_kvm_run};
use devices::bus::Bus;
use kvm_bindings::{CpuId, Msrs, kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs};
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};
use std::sync::Arc;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Errors setting up a vCPU.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// A KVM ioctl failed.
    #[error("vCPU {id}: {what}: {source}")]
    Kvm {
        id: u32,
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    /// Boot structures could not be written.
    #[error("vCPU {id}: writing {what} to guest memory: {source}")]
    Memory {
        id: u32,
        what: &'static str,
        source: vm_memory::GuestMemoryError,
    },
}

/// What one KVM_RUN came back with, once handled.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// An exit the VMM served (I/O, MMIO); run again.
    Handled,
    /// A kick (signal) or `immediate_exit`: check the shared state, then run again.
    Interrupted,
    /// The guest stopped.
    Stop(StopReason),
}

const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const BOOT_STACK: u64 = 0x8ff0;
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 4;
const APIC_MODE_EXTINT: u32 = 7;

/// One vCPU and the buses its exits dispatch to.
pub struct Vcpu {
    /// Index (and APIC ID).
    pub id: u32,
    fd: VcpuFd,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
}

impl Vcpu {
    /// Creates vCPU `id` and sets up everything but the boot registers.
    pub fn new(
        vm: &VmFd,
        id: u32,
        count: u32,
        cpuid: &CpuId,
        pio: Arc<Bus>,
        mmio: Arc<Bus>,
    ) -> Result<Self, VcpuError> {
        let kvm = |what| move |source| VcpuError::Kvm { id, what, source };
        let fd = vm.create_vcpu(id.into()).map_err(kvm("KVM_CREATE_VCPU"))?;
        let mut cpuid = cpuid.clone();
        crate::cpuid::filter(&mut cpuid, id, count);
        fd.set_cpuid2(&cpuid).map_err(kvm("KVM_SET_CPUID2"))?;
        set_msrs(&fd, id)?;
        let mut lapic = fd.get_lapic().map_err(kvm("KVM_GET_LAPIC"))?;
        set_lvt_mode(&mut lapic.regs, APIC_LVT0, APIC_MODE_EXTINT);
        set_lvt_mode(&mut lapic.regs, APIC_LVT1, APIC_MODE_NMI);
        fd.set_lapic(&lapic).map_err(kvm("KVM_SET_LAPIC"))?;
        let fpu = kvm_fpu {
            fcw: 0x37f,
            mxcsr: 0x1f80,
            ..Default::default()
        };
        fd.set_fpu(&fpu).map_err(kvm("KVM_SET_FPU"))?;
        Ok(Self { id, fd, pio, mmio })
    }

    /// Sets the boot vCPU's registers for `entry` (and writes its GDT and page tables).
    pub fn set_boot_registers(&self, entry: Entry, mem: &GuestMemoryMmap) -> Result<(), VcpuError> {
        let id = self.id;
        let kvm = |what| move |source| VcpuError::Kvm { id, what, source };
        let memerr = |what| move |source| VcpuError::Memory { id, what, source };
        let long_mode = matches!(entry, Entry::Linux64(_));
        let gdt: [u64; 4] = if long_mode {
            [
                0,
                gdt_entry(0xa09b, 0, 0xfffff),
                gdt_entry(0xc093, 0, 0xfffff),
                gdt_entry(0x808b, 0, 0xfffff),
            ]
        } else {
            [
                0,
                gdt_entry(0xc09b, 0, 0xfffff),
                gdt_entry(0xc093, 0, 0xfffff),
                gdt_entry(0x008b, 0, 0x67),
            ]
        };
        for (i, e) in gdt.iter().enumerate() {
            mem.write_obj(*e, GuestAddress(layout::BOOT_GDT + 8 * i as u64))
                .map_err(memerr("GDT"))?;
        }
        mem.write_obj(0u64, GuestAddress(layout::BOOT_IDT))
            .map_err(memerr("IDT"))?;

        let mut sregs: kvm_sregs = self.fd.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
        sregs.cs = segment(gdt[1], 1);
        let data = segment(gdt[2], 2);
        (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
        sregs.tr = segment(gdt[3], 3);
        sregs.gdt.base = layout::BOOT_GDT;
        sregs.gdt.limit = (gdt.len() * 8 - 1) as u16;
        sregs.idt.base = layout::BOOT_IDT;
        sregs.idt.limit = 7;
        sregs.cr0 = CR0_PE | CR0_ET;
        sregs.cr4 = 0;
        sregs.efer = 0;
        let mut regs = kvm_regs {
            rflags: 2,
            ..Default::default()
        };
        match entry {
            Entry::Pvh(addr) => {
                regs.rip = addr.0;
                regs.rbx = layout::PVH_INFO;
            }
            Entry::Linux64(addr) => {
                write_identity_tables(mem).map_err(memerr("page tables"))?;
                sregs.cr3 = layout::PML4;
                sregs.cr4 |= CR4_PAE;
                sregs.cr0 |= CR0_PG;
                sregs.efer |= EFER_LME | EFER_LMA;
                regs.rip = addr.0;
                regs.rsp = BOOT_STACK;
                regs.rbp = BOOT_STACK;
                regs.rsi = layout::ZERO_PAGE;
            }
        }
        self.fd.set_sregs(&sregs).map_err(kvm("KVM_SET_SREGS"))?;
        self.fd.set_regs(&regs).map_err(kvm("KVM_SET_REGS"))?;
        Ok(())
    }

    /// Runs until the guest stops; reports the stop to `shared`. Returns KVM's counters for
    /// this vCPU (empty where the kernel has no stats fd).
    pub fn run(mut self, shared: &Shared, on_first_run: impl FnOnce()) -> Vec<(String, u64)> {
        let run: *const kvm_bindings::kvm_run = self.fd.get_kvm_run();
        set_thread_kvm_run(self.fd.get_kvm_run());
        let mut first = Some(on_first_run);
        while shared.vcpu_may_run() {
            if let Some(f) = first.take() {
                f();
            }
            match self.run_once(run) {
                Exit::Handled | Exit::Interrupted => {}
                Exit::Stop(reason) => {
                    shared.request_stop(reason);
                    break;
                }
            }
        }
        set_thread_kvm_run(std::ptr::null_mut());
        crate::stats::read(&self.fd).unwrap_or_else(|e| {
            tracing::debug!("vCPU {}: {e}", self.id);
            Vec::new()
        })
    }

    /// `run` is this vCPU's `kvm_run` page, read for the access size of string I/O.
    fn run_once(&mut self, run: *const kvm_bindings::kvm_run) -> Exit {
        match self.fd.run() {
            Ok(VcpuExit::IoIn(port, data)) => {
                for access in data.chunks_mut(io_size(run)) {
                    if !self.pio.read(port.into(), access) {
                        access.fill(0xff);
                    }
                }
                Exit::Handled
            }
            Ok(VcpuExit::IoOut(port, data)) => {
                for access in data.chunks(io_size(run)) {
                    self.pio.write(port.into(), access);
                }
                Exit::Handled
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                if !self.mmio.read(addr, data) {
                    data.fill(0xff);
                }
                Exit::Handled
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                self.mmio.write(addr, data);
                Exit::Handled
            }
            Ok(VcpuExit::Shutdown) => Exit::Stop(StopReason::TripleFault),
            Ok(VcpuExit::SystemEvent(kind, _)) => match kind {
                kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => Exit::Stop(StopReason::PowerOff),
                kvm_bindings::KVM_SYSTEM_EVENT_RESET => Exit::Stop(StopReason::Reset),
                kvm_bindings::KVM_SYSTEM_EVENT_CRASH => Exit::Stop(StopReason::Panic),
                other => Exit::Stop(StopReason::Error(format!(
                    "vCPU {}: system event {other}",
                    self.id
                ))),
            },
            Ok(VcpuExit::Hlt) => {
                // With the in-kernel LAPIC, KVM handles HLT itself; this is a halt for good.
                Exit::Stop(StopReason::Error(format!(
                    "vCPU {} halted with no way to wake",
                    self.id
                )))
            }
            Ok(VcpuExit::Intr) => Exit::Interrupted,
            Ok(VcpuExit::InternalError) => Exit::Stop(StopReason::Error(self.internal_error())),
            Ok(other) => {
                let what = format!("{other:?}");
                Exit::Stop(StopReason::Error(format!(
                    "vCPU {}: unexpected KVM exit {what}",
                    self.id
                )))
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                self.fd.set_kvm_immediate_exit(0);
                Exit::Interrupted
            }
            Err(e) => Exit::Stop(StopReason::Error(format!("vCPU {}: KVM_RUN: {e}", self.id))),
        }
    }
}

/// Bytes per access of the current KVM_EXIT_IO: `rep outsb`/`insb` bring `count` accesses in
/// one exit, and kvm-ioctls hands over all `size * count` bytes as one slice.
fn io_size(run: *const kvm_bindings::kvm_run) -> usize {
    // SAFETY: `run` is this vCPU's kvm_run mapping (alive as long as the VcpuFd), and KVM
    // filled its `io` member for the KVM_EXIT_IO being handled.
    let size = unsafe { (*run).__bindgen_anon_1.io.size };
    usize::from(size).max(1)
}

impl Vcpu {
    /// Describes a KVM_EXIT_INTERNAL_ERROR: suberror, RIP and, for an emulation failure
    /// reported with KVM_CAP_EXIT_ON_EMULATION_FAILURE, the instruction bytes.
    fn internal_error(&mut self) -> String {
        // SAFETY: KVM filled the `internal` member of the union for this exit.
        let internal = unsafe { self.fd.get_kvm_run().__bindgen_anon_1.internal };
        let rip = self.fd.get_regs().map(|r| r.rip).unwrap_or(0);
        let mut text = format!(
            "vCPU {}: KVM internal error {} at RIP {rip:#x}",
            self.id, internal.suberror
        );
        let ndata = (internal.ndata as usize).min(internal.data.len());
        if internal.suberror == kvm_bindings::KVM_INTERNAL_ERROR_EMULATION && ndata >= 3 {
            // data[0]: flags, data[1]: instruction length, data[2..]: the bytes.
            let len = (internal.data[1] as usize).min(15);
            let bytes: Vec<u8> = internal.data[2..ndata]
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .take(len)
                .collect();
            let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
            text.push_str(&format!(
                " (instruction emulation failed: {})",
                hex.join(" ")
            ));
        }
        text
    }
}

fn set_msrs(fd: &VcpuFd, id: u32) -> Result<(), VcpuError> {
    const MSRS: [(u32, u64); 11] = [
        (0x174, 0),             // IA32_SYSENTER_CS
        (0x175, 0),             // IA32_SYSENTER_ESP
        (0x176, 0),             // IA32_SYSENTER_EIP
        (0xc000_0081, 0),       // STAR
        (0xc000_0082, 0),       // LSTAR
        (0xc000_0083, 0),       // CSTAR
        (0xc000_0084, 0),       // SYSCALL_MASK
        (0xc000_0102, 0),       // KERNEL_GS_BASE
        (0x10, 0),              // TSC
        (0x1a0, 1),             // MISC_ENABLE: fast strings
        (0x2ff, (1 << 11) | 6), // MTRR default type: enabled, write-back
    ];
    let entries: Vec<_> = MSRS
        .iter()
        .map(|&(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    let msrs = Msrs::from_entries(&entries).map_err(|_| VcpuError::Kvm {
        id,
        what: "building the MSR list",
        source: kvm_ioctls::Error::new(libc::EINVAL),
    })?;
    let set = fd.set_msrs(&msrs).map_err(|source| VcpuError::Kvm {
        id,
        what: "KVM_SET_MSRS",
        source,
    })?;
    if set != entries.len() {
        let index = entries.get(set).map(|e| e.index).unwrap_or(0);
        tracing::warn!(vcpu = id, "KVM refused MSR {index:#x}; later ones not set");
    }
    Ok(())
}

fn set_lvt_mode(regs: &mut [libc::c_char; 1024], offset: usize, mode: u32) {
    let mut b = [0u8; 4];
    for (i, x) in b.iter_mut().enumerate() {
        *x = regs[offset + i] as u8;
    }
    let v = (u32::from_le_bytes(b) & !0x700) | (mode << 8);
    for (i, x) in v.to_le_bytes().iter().enumerate() {
        regs[offset + i] = *x as libc::c_char;
    }
}

/// A GDT descriptor from access/flags (`0xF0FF` layout), base and 20-bit limit.
fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let (flags, base, limit) = (u64::from(flags), u64::from(base), u64::from(limit));
    ((base & 0xff00_0000) << 32)
        | ((flags & 0xf0ff) << 40)
        | ((limit & 0xf_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0xffff)
}

/// The KVM segment register for GDT `entry` at `index`.
fn segment(entry: u64, index: u16) -> kvm_segment {
    let base = ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000);
    let g = ((entry >> 55) & 1) as u8;
    let raw_limit = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
    let limit = if g == 1 {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    let present = ((entry >> 47) & 1) as u8;
    kvm_segment {
        base,
        limit,
        selector: index * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

/// Identity page tables for the first 1 GiB (2 MiB pages), for the Linux 64-bit entry.
fn write_identity_tables(mem: &GuestMemoryMmap) -> Result<(), vm_memory::GuestMemoryError> {
    let (pml4, pdpt, pd) = (layout::PML4, layout::PML4 + 0x1000, layout::PML4 + 0x2000);
    mem.write_obj(pdpt | 0x3, GuestAddress(pml4))?;
    mem.write_obj(pd | 0x3, GuestAddress(pdpt))?;
    let entries: Vec<u8> = (0..512u64)
        .flat_map(|i| ((i << 21) | 0x83).to_le_bytes())
        .collect();
    mem.write_slice(&entries, GuestAddress(pd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_segments_decode() {
        let code = segment(gdt_entry(0xa09b, 0, 0xfffff), 1);
        assert_eq!(
            (code.selector, code.l, code.db, code.limit, code.present),
            (8, 1, 0, 0xffff_ffff, 1)
        );
        let code32 = segment(gdt_entry(0xc09b, 0, 0xfffff), 1);
        assert_eq!((code32.l, code32.db, code32.type_), (0, 1, 0xb));
        let tss = segment(gdt_entry(0x008b, 0, 0x67), 3);
        assert_eq!((tss.limit, tss.g, tss.type_), (0x67, 0, 0xb));
    }

    #[test]
    fn lvt_mode_keeps_other_bits() {
        let mut regs = [0 as libc::c_char; 1024];
        regs[APIC_LVT0] = 0x10;
        regs[APIC_LVT0 + 2] = 0x01; // mask bit 16
        set_lvt_mode(&mut regs, APIC_LVT0, APIC_MODE_EXTINT);
        assert_eq!(
            (
                regs[APIC_LVT0] as u8,
                regs[APIC_LVT0 + 1] as u8,
                regs[APIC_LVT0 + 2]
            ),
            (0x10, 7, 1)
        );
    }
}
