//! Loading a guest: the kernel (ELF with a PVH note, or bzImage), initrd and command line,
//! then the boot structures its protocol wants (PVH start info, or the Linux zero page).

mod initrd;
pub mod mptable;
mod pvh;
mod zeropage;

use crate::config::VmConfig;
use crate::layout;
use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::elf::PvhBootCapability;
use linux_loader::loader::{self, BzImage, Cmdline, Elf, KernelLoader};
use std::fs::File;
use std::path::{Path, PathBuf};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Offset of the 64-bit entry point in a bzImage's protected-mode kernel.
const BZIMAGE_ENTRY_64: u64 = 0x200;

/// How the boot vCPU starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// PVH: 32-bit protected mode, paging off, %ebx = start info.
    Pvh(GuestAddress),
    /// Linux 64-bit boot protocol: long mode with identity page tables, %rsi = zero page.
    Linux64(GuestAddress),
}

/// Errors loading a guest.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The kernel file could not be opened or read.
    #[error("kernel {path}: {source}")]
    KernelFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Neither an ELF nor a bzImage.
    #[error("kernel {path} is neither an ELF vmlinux nor a bzImage ({elf}; {bzimage})")]
    KernelFormat {
        path: PathBuf,
        elf: loader::Error,
        bzimage: loader::Error,
    },
    /// An ELF or bzImage that does not fit or is malformed.
    #[error("kernel {path}: {source}")]
    KernelLoad {
        path: PathBuf,
        source: loader::Error,
    },
    /// The initrd could not be read, is empty, truncated or too big.
    #[error("initrd {path}: {reason}")]
    Initrd { path: PathBuf, reason: String },
    /// The command line is too long or has invalid characters.
    #[error("command line: {0}")]
    Cmdline(String),
    /// Guest memory too small for the boot structures.
    #[error("writing boot structures: {0}")]
    Write(String),
}

/// The initrd as loaded into guest memory.
#[derive(Clone, Copy, Debug)]
pub struct InitrdPlacement {
    /// Guest address.
    pub addr: GuestAddress,
    /// Size in bytes.
    pub size: u64,
}

/// Loads everything and writes the boot structures; returns where the boot vCPU starts.
/// `virtio` (base, IRQ) slots are announced as `virtio_mmio.device=` when the config says so.
pub fn load(
    mem: &GuestMemoryMmap,
    cfg: &VmConfig,
    rsdp: Option<u64>,
    virtio: &[(u64, u32)],
) -> Result<Entry, BootError> {
    let kernel_err = |source| BootError::KernelFile {
        path: cfg.kernel.clone(),
        source,
    };
    let mut kernel = File::open(&cfg.kernel).map_err(kernel_err)?;
    let meta = kernel.metadata().map_err(kernel_err)?;
    if meta.is_dir() {
        return Err(kernel_err(std::io::Error::other("is a directory")));
    }
    if meta.len() == 0 {
        return Err(kernel_err(std::io::Error::other("is empty")));
    }
    let himem = Some(GuestAddress(layout::HIMEM_START));

    let (entry, kernel_end, header) = match Elf::load(mem, None, &mut kernel, himem) {
        Ok(r) => match r.pvh_boot_cap {
            PvhBootCapability::PvhEntryPresent(entry) => (Entry::Pvh(entry), r.kernel_end, None),
            _ => (Entry::Linux64(r.kernel_load), r.kernel_end, None),
        },
        Err(loader::Error::Elf(loader::elf::Error::InvalidElfMagicNumber)) => {
            let elf = loader::Error::Elf(loader::elf::Error::InvalidElfMagicNumber);
            match BzImage::load(mem, None, &mut kernel, himem) {
                Ok(r) => {
                    let entry = r.kernel_load.0 + BZIMAGE_ENTRY_64;
                    (
                        Entry::Linux64(GuestAddress(entry)),
                        r.kernel_end,
                        r.setup_header,
                    )
                }
                Err(bzimage) => {
                    return Err(BootError::KernelFormat {
                        path: cfg.kernel.clone(),
                        elf,
                        bzimage,
                    });
                }
            }
        }
        Err(source) => {
            return Err(BootError::KernelLoad {
                path: cfg.kernel.clone(),
                source,
            });
        }
    };

    let initrd = match &cfg.initrd {
        Some(path) => Some(load_initrd(
            mem,
            path,
            kernel_end,
            cfg.memory_bytes(),
            header.as_ref(),
        )?),
        None => None,
    };

    let mut cmdline =
        Cmdline::new(layout::CMDLINE_MAX).map_err(|e| BootError::Cmdline(e.to_string()))?;
    if !cfg.cmdline.is_empty() {
        cmdline
            .insert_str(&cfg.cmdline)
            .map_err(|e| BootError::Cmdline(e.to_string()))?;
    }
    if cfg.virtio_cmdline {
        for &(base, irq) in virtio {
            cmdline
                .add_virtio_mmio_device(0x1000, GuestAddress(base), irq, None)
                .map_err(|e| BootError::Cmdline(e.to_string()))?;
        }
    }
    loader::load_cmdline(mem, GuestAddress(layout::CMDLINE), &cmdline)
        .map_err(|e| BootError::Cmdline(e.to_string()))?;
    let cmdline_len = cmdline
        .as_cstring()
        .map(|c| c.as_bytes_with_nul().len())
        .unwrap_or(1);

    let map = layout::memory_map(cfg.memory_bytes());
    match entry {
        Entry::Pvh(_) => pvh::write(mem, &map, initrd, rsdp),
        Entry::Linux64(_) => zeropage::write(mem, &map, header, initrd, cmdline_len as u32, rsdp),
    }
    .map_err(|e| BootError::Write(e.to_string()))?;
    Ok(entry)
}

fn load_initrd(
    mem: &GuestMemoryMmap,
    path: &Path,
    kernel_end: u64,
    mem_size: u64,
    header: Option<&setup_header>,
) -> Result<InitrdPlacement, BootError> {
    let fail = |reason: String| BootError::Initrd {
        path: path.into(),
        reason,
    };
    let mut file = File::open(path).map_err(|e| fail(e.to_string()))?;
    let size = file.metadata().map_err(|e| fail(e.to_string()))?.len();
    if size == 0 {
        return Err(fail("is empty".into()));
    }
    initrd::check(&mut file).map_err(|e| fail(e.to_string()))?;

    // At the top of low RAM, below what the kernel says it can reach.
    let max = header
        .map(|h| u64::from(h.initrd_addr_max))
        .filter(|&m| m != 0)
        .unwrap_or(u64::from(u32::MAX))
        .min(layout::low_ram_end(mem_size) - 1);
    let top = max + 1;
    let addr = top.checked_sub(size).map(|a| a & !0xfff);
    let addr = match addr {
        Some(a) if a >= kernel_end.max(layout::HIMEM_START) => a,
        _ => {
            return Err(fail(format!(
                "{size} bytes do not fit in guest memory above the kernel (end {kernel_end:#x})"
            )));
        }
    };
    use std::io::Seek;
    file.rewind().map_err(|e| fail(e.to_string()))?;
    let len = usize::try_from(size).map_err(|e| fail(e.to_string()))?;
    mem.read_exact_volatile_from(GuestAddress(addr), &mut file, len)
        .map_err(|e| fail(format!("reading into guest memory: {e}")))?;
    Ok(InitrdPlacement {
        addr: GuestAddress(addr),
        size,
    })
}
