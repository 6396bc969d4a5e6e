//! One Linux boot with virtio devices, ACPI discovery only (`--no-virtio-cmdline`): root on a
//! qcow2 overlay of the guest rootfs (/dev/vda), the raw ext4 rootfs read-only as /dev/vdb, a
//! balloon and a rng. Checks what the kernel prints (virtio-blk probed, root mounted from
//! virtio-blk) and, through the control socket, that the kernel drove the balloon and the rng
//! and inflates the balloon when asked.
//!
//! On kvm_pvm (MACHINE.md) a stock kernel runs in KVM's instruction emulator. Its usual stall
//! right after `PCI: System does not support PCI` is the switch from the boot clocksource to
//! kvm-clock/tsc (a stop_machine); `clocksource=jiffies` keeps the boot clocksource, so there is
//! no switch, and the kernel goes on to probe the devices and mount root within about two
//! minutes here. The boot is bounded to four minutes; the probes and the root mount are
//! required everywhere. The rng being read and the balloon inflating happen in the short window
//! before init dies at its first system call on kvm_pvm (`panic=0` keeps the VMM up for the
//! control socket), so there they are reported, and required only on other KVM hosts. No NIC:
//! the kernel's DHCP would need a DHCP server in the namespace, beyond this bounded boot.

mod vmm_support;

use std::path::PathBuf;
use std::time::{Duration, Instant};
use vmm::control::Request;
use vmm_support::virtio::qemu_img;
use vmm_support::{Vmm, control, kvm_available};

/// The crutches MACHINE.md lists for a non-PVM kernel on kvm_pvm (as tests/vmm_linux.rs).
const CMDLINE: &str = "console=ttyS0 noxsave clearcpuid=smap,smep,popcnt,fsgsbase,rdpid,pku,\
xsave,xsaves,xsaveopt,xsavec,clflushopt,clwb,avx,avx2,bmi1,bmi2,movbe,rdrand,rdseed,pcid,invpcid,\
erms,fsrm,sha_ni,aes,pclmulqdq,vaes,vpclmulqdq,adx,f16c,fma,umip panic=0 clocksource=jiffies \
root=/dev/vda ro";
/// The whole boot's budget (CI runs every Linux boot; this one adds at most this much).
const BUDGET: Duration = Duration::from_secs(4 * 60);

fn artifacts() -> Option<PathBuf> {
    let base = std::env::var_os("VIRGA_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/virga")))?;
    let dir = base.join("guest/current");
    if ["vmlinux", "rootfs.ext4", "rootfs.qcow2"]
        .iter()
        .all(|f| dir.join(f).exists())
    {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "guest artifacts missing in {} (scripts/setup.sh builds them)",
        dir.display()
    );
    eprintln!("SKIPPED: guest artifacts missing in {}", dir.display());
    None
}

#[test]
fn linux_finds_virtio_devices_through_acpi_and_mounts_root_from_virtio_blk() {
    let test = "linux_finds_virtio_devices_through_acpi_and_mounts_root_from_virtio_blk";
    if !kvm_available(test) {
        return;
    }
    let Some(dir) = artifacts() else { return };
    let pvm = std::path::Path::new("/sys/module/kvm_pvm").exists();
    let tmp = tempfile::tempdir().unwrap();
    let overlay = tmp.path().join("root.qcow2");
    let base = std::fs::canonicalize(dir.join("rootfs.qcow2")).unwrap();
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        base.to_str().unwrap(),
        "-F",
        "qcow2",
        overlay.to_str().unwrap(),
    ]);
    let sock = tmp.path().join("ctl.sock");
    let start = Instant::now();
    let mut vm = Vmm::spawn([
        "--kernel",
        dir.join("vmlinux").to_str().unwrap(),
        "--cmdline",
        CMDLINE,
        "--memory",
        "128",
        "--on-reset",
        "exit",
        "--control-socket",
        sock.to_str().unwrap(),
        "--drive",
        &format!("id=root,path={},format=qcow2", overlay.display()),
        "--drive",
        &format!(
            "id=ext4,path={},format=raw,ro=on",
            dir.join("rootfs.ext4").display()
        ),
        "--balloon",
        "--rng",
        "--no-virtio-cmdline",
    ]);
    let left = || BUDGET.saturating_sub(start.elapsed());
    vm.wait_for(left(), |l| l.contains("console [ttyS0] enabled"));
    // The drives, probed through the DSDT alone, in slot order.
    vm.wait_for(left(), |l| {
        l.contains("virtio_blk virtio0: [vda] 131072 512-byte logical blocks")
    });
    // Ask for the balloon now: the driver is bound and the guest has time to inflate it.
    let asked = control(&sock, Request::BalloonSet { target_mib: 8 });
    assert!(asked.ok, "{asked:?}");
    vm.wait_for(left(), |l| l.contains("virtio_blk virtio1: [vdb] 131072"));
    vm.wait_for(left(), |l| l.contains("EXT4-fs (vda): mounted filesystem"));
    vm.wait_for(left(), |l| {
        l.contains("VFS: Mounted root (ext4 filesystem) readonly on device 254:0")
    });
    let mounted = start.elapsed();
    let c = control(&sock, Request::Counters).counters.unwrap();
    assert!(
        c["root"].bytes_to_guest > 0 && c["ext4"].bytes_to_guest > 0,
        "{c:?}"
    );
    let mut soft = Vec::new();
    if c["rng0"].bytes_to_guest > 0 {
        soft.push("rng read by the kernel");
    }
    let deadline = Instant::now() + Duration::from_secs(30).min(left());
    while Instant::now() < deadline {
        let b = control(&sock, Request::BalloonStats).balloon.unwrap();
        if b.actual_pages == 2048 {
            soft.push("balloon inflated to 8 MiB");
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!(
        "{test}: root mounted from virtio-blk after {:.0} s; also {soft:?}; counters {c:?}",
        mounted.as_secs_f64()
    );
    if !pvm {
        assert_eq!(soft.len(), 2, "{soft:?}");
    } else if soft.len() < 2 {
        eprintln!(
            "{test}: NOT REQUIRED on kvm_pvm: {soft:?} of [rng read, balloon inflated] seen \
             before init's first system call ended the kernel's useful life"
        );
    }
    let _ = control(&sock, Request::Kill);
    let _ = vm.wait_exit(Duration::from_secs(30));
    // The overlay took the guest's writes (if any); the shared base stayed read-only.
    let check = qemu_img(&["check", overlay.to_str().unwrap()]);
    assert!(check.contains("No errors"), "{check}");
}
