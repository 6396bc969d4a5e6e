//! What every Linux boot in the tests and benches shares: the guest artifacts that
//! `images/guest/build.sh` (run by `scripts/setup.sh`) leaves in `~/.cache/virga/guest/current/`,
//! and the kernel command line a stock kernel needs on this machine's KVM.

#![allow(dead_code)] // each test and bench uses its own part

use std::path::PathBuf;

/// The crutches MACHINE.md lists for a non-PVM kernel on kvm_pvm, plus the console.
/// `clocksource=jiffies` keeps the boot clocksource: the switch to kvm-clock (a stop_machine)
/// is where most boots here stalled for minutes. Callers add `panic=`, `root=`, `ip=`.
pub const CMDLINE: &str = "console=ttyS0 noxsave clearcpuid=smap,smep,popcnt,fsgsbase,rdpid,pku,\
xsave,xsaves,xsaveopt,xsavec,clflushopt,clwb,avx,avx2,bmi1,bmi2,movbe,rdrand,rdseed,pcid,invpcid,\
erms,fsrm,sha_ni,aes,pclmulqdq,vaes,vpclmulqdq,adx,f16c,fma,umip clocksource=jiffies";

/// `${VIRGA_CACHE:-~/.cache/virga}/guest/current`.
pub fn artifacts_dir() -> Option<PathBuf> {
    let base = std::env::var_os("VIRGA_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/virga")))?;
    Some(base.join("guest/current"))
}

/// The artifacts directory when every file in `needed` is there. When one is missing: a
/// failure under `CI=true` (set-up must have built them), else `SKIPPED` on stderr and `None`.
pub fn artifacts(needed: &[&str]) -> Option<PathBuf> {
    let dir = artifacts_dir()?;
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

/// kvm_pvm emulates a non-PVM guest's kernel and cannot run its user mode (MACHINE.md).
pub fn kvm_pvm() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}
