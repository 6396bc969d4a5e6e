//! Linux boots with the minimal kernel and initramfs that `images/guest/build.sh` (run by
//! `scripts/setup.sh`) leaves in ~/.cache/virga/guest/current/: once through PVH (vmlinux) and
//! once through the 64-bit boot protocol (bzImage), each with 2 vCPUs and 4.5 GiB, checking what
//! the kernel itself prints. Here /dev/kvm is kvm_pvm: a stock kernel runs in KVM's
//! instruction emulator (minutes per boot) and its init dies at the first system call, so the
//! userspace checks (VIRGA-READY, the init's answers) run only where KVM allows them.

mod vmm_support;

use std::path::PathBuf;
use std::time::Duration;
use vmm_support::{Vmm, kvm_available};

/// The crutches MACHINE.md lists for a non-PVM kernel on kvm_pvm, plus the console.
const CMDLINE: &str = "console=ttyS0 noxsave clearcpuid=smap,smep,popcnt,fsgsbase,rdpid,pku,\
xsave,xsaves,xsaveopt,xsavec,clflushopt,clwb,avx,avx2,bmi1,bmi2,movbe,rdrand,rdseed,pcid,invpcid,\
erms,fsrm,sha_ni,aes,pclmulqdq,vaes,vpclmulqdq,adx,f16c,fma,umip panic=-1";
const MEMORY_MIB: u64 = 4608;
/// Boots take minutes under the emulator; this bounds a hung one.
const BOOT_TIMEOUT: Duration = Duration::from_secs(40 * 60);

fn artifacts() -> Option<PathBuf> {
    let base = std::env::var_os("VIRGA_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/virga")))?;
    let dir = base.join("guest/current");
    let needed = ["bzImage", "vmlinux", "initramfs.cpio.gz"];
    if needed.iter().all(|f| dir.join(f).exists()) {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "guest artifacts missing in {} (scripts/setup.sh builds them)",
        dir.display()
    );
    eprintln!(
        "SKIPPED: guest artifacts missing in {} (run scripts/setup.sh)",
        dir.display()
    );
    None
}

/// kvm_pvm runs non-PVM guests without user mode working (MACHINE.md).
fn userspace_possible() -> bool {
    !std::path::Path::new("/sys/module/kvm_pvm").exists()
}

fn boot_and_check(kernel: &str, test: &str) {
    if !kvm_available(test) {
        return;
    }
    let Some(dir) = artifacts() else { return };
    let kernel = dir.join(kernel);
    let initrd = dir.join("initramfs.cpio.gz");
    let mem = MEMORY_MIB.to_string();
    let mut vm = Vmm::spawn([
        "--kernel",
        kernel.to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
        "--cmdline",
        CMDLINE,
        "--vcpus",
        "2",
        "--memory",
        &mem,
        "--on-reset",
        "exit",
    ]);
    // The console: the kernel's first line on ttyS0 names the console it enabled.
    vm.wait_for(BOOT_TIMEOUT, |l| l.contains("console [ttyS0] enabled"));
    vm.wait_for(BOOT_TIMEOUT, |l| l.contains("Run /init as init process"));
    let log = vm.seen.join("\n");
    assert!(
        log.contains("Brought up 1 node, 2 CPUs"),
        "2 vCPUs not brought up:\n{log}"
    );
    // "Memory: 4480000K/4718188K available": the second figure is the RAM the kernel saw.
    let total_k = log
        .lines()
        .find_map(|l| l.split("Memory: ").nth(1))
        .and_then(|m| m.split('/').nth(1))
        .and_then(|m| m.split('K').next())
        .and_then(|k| k.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no Memory: line in the kernel log:\n{log}"));
    let expected_k = MEMORY_MIB * 1024;
    assert!(
        total_k <= expected_k && total_k + 4096 >= expected_k,
        "kernel saw {total_k} KiB of RAM, expected about {expected_k} KiB"
    );
    if userspace_possible() {
        vm.wait_for(BOOT_TIMEOUT, |l| l.contains("VIRGA-READY"));
    } else {
        eprintln!(
            "{test}: host KVM is kvm_pvm: userspace checks (VIRGA-READY, init's answers) skipped; \
             a non-PVM kernel's init cannot make system calls here (MACHINE.md)"
        );
    }
}

#[test]
fn linux_pvh_vmlinux_boots_to_init() {
    boot_and_check("vmlinux", "linux_pvh_vmlinux_boots_to_init");
}

#[test]
fn linux_bzimage_boots_to_init() {
    boot_and_check("bzImage", "linux_bzimage_boots_to_init");
}
