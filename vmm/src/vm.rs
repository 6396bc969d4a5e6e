//! One KVM VM: its memory slots, in-kernel irqchip (PIC, IOAPIC, LAPICs) and PIT.

use crate::layout;
use kvm_bindings::{KVM_PIT_SPEAKER_DUMMY, kvm_pit_config, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// Where KVM keeps its TSS (three pages in the MMIO hole, below the IOAPIC).
const TSS_ADDR: usize = 0xfffb_d000;

/// Environment variable that makes the VMM stop at the first failed instruction emulation.
pub const EXIT_ON_EMULATION_FAILURE: &str = "VIRGA_EXIT_ON_EMULATION_FAILURE";

/// Errors creating a VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A KVM ioctl failed.
    #[error("{what}: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    /// The guest memory could not be mapped.
    #[error("mapping {size} bytes of guest memory: {source}")]
    Memory {
        size: u64,
        source: vm_memory::mmap::FromRangesError,
    },
}

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { what, source }
}

/// A VM with its guest memory.
pub struct Vm {
    /// The VM file descriptor.
    pub fd: VmFd,
    /// Guest RAM.
    pub memory: GuestMemoryMmap,
}

impl Vm {
    /// Creates the VM with `mem_size` bytes of RAM and its interrupt controllers (the PIT
    /// comes from [`Vm::create_pit`]).
    pub fn new(kvm_fd: &Kvm, mem_size: u64) -> Result<Self, VmError> {
        let fd = kvm_fd.create_vm().map_err(kvm("creating the VM"))?;
        let ranges: Vec<_> = layout::ram_regions(mem_size)
            .into_iter()
            .map(|(a, s)| (a, s as usize))
            .collect();
        // Anonymous MAP_NORESERVE mappings: pages cost nothing until the guest touches them.
        let memory = GuestMemoryMmap::from_ranges(&ranges).map_err(|source| VmError::Memory {
            size: mem_size,
            source,
        })?;
        let vm = Self { fd, memory };
        // Memory slots before the irqchip: measured here, a first slot added after
        // KVM_CREATE_IRQCHIP costs 5-30 ms (KVM waits for a grace period), before it 0.1 ms.
        vm.register_memory()?;
        vm.fd
            .set_tss_address(TSS_ADDR)
            .map_err(kvm("KVM_SET_TSS_ADDR"))?;
        vm.fd.create_irq_chip().map_err(kvm("KVM_CREATE_IRQCHIP"))?;
        if std::env::var_os(EXIT_ON_EMULATION_FAILURE).is_some() {
            // Diagnostics: stop at the first instruction KVM cannot emulate, with its bytes,
            // instead of KVM's own handling (docs/vmm.md, "Linux on kvm_pvm").
            let cap = kvm_bindings::kvm_enable_cap {
                cap: kvm_bindings::KVM_CAP_EXIT_ON_EMULATION_FAILURE,
                args: [1, 0, 0, 0],
                ..Default::default()
            };
            if let Err(e) = vm.fd.enable_cap(&cap) {
                tracing::warn!("KVM_CAP_EXIT_ON_EMULATION_FAILURE: {e}");
            }
        }
        Ok(vm)
    }

    /// Creates the in-kernel PIT. Like the irqchip it registers I/O devices with KVM behind an
    /// SRCU grace period (0.1-7 ms here, depending on host load), so callers run it alongside
    /// other set-up; it must exist before the first KVM_RUN.
    pub fn create_pit(&self) -> Result<(), VmError> {
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        self.fd.create_pit2(pit).map_err(kvm("KVM_CREATE_PIT2"))
    }

    fn register_memory(&self) -> Result<(), VmError> {
        for (slot, region) in self.memory.iter().enumerate() {
            let host = region
                .get_host_address(vm_memory::MemoryRegionAddress(0))
                .map_err(|_| VmError::Kvm {
                    what: "guest region host address",
                    source: kvm_ioctls::Error::new(libc::EFAULT),
                })?;
            let r = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host as u64,
            };
            // SAFETY: the region is a live mapping owned by `memory`, which this `Vm` keeps
            // for as long as the VM fd (and so the slot) exists.
            unsafe { self.fd.set_user_memory_region(r) }
                .map_err(kvm("KVM_SET_USER_MEMORY_REGION"))?;
        }
        Ok(())
    }
}
