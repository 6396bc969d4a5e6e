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
//! minutes on a quiet host. The boot is bounded to four minutes: the probes, the DHCP address
//! and the root mount are required on other KVM hosts, and on kvm_pvm when they appear in time
//! (their content is checked); a loaded kvm_pvm host can slow the emulated kernel past the
//! budget, and then the test says NOT CHECKED. The rng being read and the balloon inflating happen in the short window
//! before init dies at its first system call on kvm_pvm (`panic=0` keeps the VMM up for the
//! control socket), so there they are reported, and required only on other KVM hosts.
//!
//! With root, `ip` and /dev/net/tun the guest also gets a NIC on a tap on a bridge in a network
//! namespace where busybox's udhcpd serves one address, and the kernel's own DHCP client
//! (`ip=dhcp`) must take it (without them that part is SKIPPED, a failure under CI=true).

mod linux_guest;
mod vmm_support;

use linux_guest::{CMDLINE, artifacts};
use std::time::{Duration, Instant};

/// `panic=0` keeps the VMM up after init dies; root from the first drive.
const ROOT: &str = "panic=0 root=/dev/vda ro";
use vmm::control::Request;
use vmm_support::netns::{GUEST_IP, GUEST_MAC, HOST_IP, Netns, netns};
use vmm_support::virtio::qemu_img;
use vmm_support::{Vmm, control, kvm_available};

/// The whole boot's budget (CI runs every Linux boot; this one adds at most this much).
const BUDGET: Duration = Duration::from_secs(4 * 60);

/// busybox udhcpd in the namespace, serving GUEST_IP alone; killed on drop.
struct Dhcpd(std::process::Child);

impl Drop for Dhcpd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dhcpd(ns: &Netns, dir: &std::path::Path) -> Dhcpd {
    let conf = dir.join("udhcpd.conf");
    std::fs::write(
        &conf,
        format!(
            "start {GUEST_IP}\nend {GUEST_IP}\ninterface vbr0\nmax_leases 1\n\
             lease_file {}\npidfile {}\nopt subnet 255.255.255.0\nopt router {HOST_IP}\n",
            dir.join("leases").display(),
            dir.join("udhcpd.pid").display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("leases"), b"").unwrap();
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.0, "busybox", "udhcpd", "-f"])
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("busybox (package busybox-static) runs udhcpd");
    Dhcpd(child)
}

#[test]
fn linux_finds_virtio_devices_through_acpi_and_mounts_root_from_virtio_blk() {
    let test = "linux_finds_virtio_devices_through_acpi_and_mounts_root_from_virtio_blk";
    if !kvm_available(test) {
        return;
    }
    let Some(dir) = artifacts(&["vmlinux", "rootfs.ext4", "rootfs.qcow2"]) else {
        return;
    };
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
    let ns = match netns() {
        Ok(ns) => Some(ns),
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "the DHCP part cannot run under CI: {why}"
            );
            eprintln!("{test}: SKIPPED the NIC and DHCP: needs root, ip and /dev/net/tun: {why}");
            None
        }
    };
    let _dhcpd = ns.as_ref().map(|ns| dhcpd(ns, tmp.path()));
    let cmdline = match ns {
        Some(_) => format!("{CMDLINE} {ROOT} ip=dhcp"),
        None => format!("{CMDLINE} {ROOT}"),
    };
    let nic = format!("id=net0,tap=vtap0,mac={GUEST_MAC}");
    let kernel = dir.join("vmlinux").display().to_string();
    // The base lives in the artifact cache, not beside the overlay: trust its directory.
    let root = format!(
        "id=root,path={},format=qcow2,backing_dirs={}",
        overlay.display(),
        base.parent().unwrap().display()
    );
    let ext4 = format!(
        "id=ext4,path={},format=raw,ro=on",
        dir.join("rootfs.ext4").display()
    );
    let start = Instant::now();
    let mut args = vec![
        "--kernel",
        &kernel,
        "--cmdline",
        &cmdline,
        "--memory",
        "128",
        "--on-reset",
        "exit",
        "--control-socket",
        sock.to_str().unwrap(),
        "--drive",
        &root,
        "--drive",
        &ext4,
        "--balloon",
        "--rng",
        "--no-virtio-cmdline",
    ];
    if ns.is_some() {
        args.extend(["--net", &nic]);
    }
    let mut vm = match &ns {
        Some(ns) => Vmm::spawn_in_netns(&ns.0, &args),
        None => Vmm::spawn(args),
    };
    let left = || BUDGET.saturating_sub(start.elapsed());
    vm.wait_for(left(), |l| l.contains("console [ttyS0] enabled"));
    let checked = milestones(&mut vm, &sock, ns.is_some(), pvm, left);
    match checked {
        Ok(soft) => {
            eprintln!(
                "{test}: root mounted from virtio-blk after {:.0} s; also {soft:?}",
                start.elapsed().as_secs_f64()
            );
            if !pvm {
                assert_eq!(soft.len(), 2, "{soft:?}");
            } else if soft.len() < 2 {
                eprintln!(
                    "{test}: NOT REQUIRED on kvm_pvm: {soft:?} of [rng read, balloon inflated] \
                     seen before init's first system call ended the kernel's useful life"
                );
            }
        }
        Err(missing) => {
            // Only on kvm_pvm (elsewhere `milestones` panics): a loaded host slows the
            // emulated kernel past the budget.
            eprintln!(
                "{test}: NOT CHECKED on kvm_pvm within {BUDGET:?}: `{missing}` and what follows \
                 (the emulated kernel was too slow on this host at this load); last line: {:?}",
                vm.seen.last()
            );
        }
    }
    let _ = control(&sock, Request::Kill);
    let _ = vm.wait_exit(Duration::from_secs(30));
    // The overlay took the guest's writes (if any); the shared base stayed read-only.
    let check = qemu_img(&["check", overlay.to_str().unwrap()]);
    assert!(check.contains("No errors"), "{check}");
}

/// Waits for the kernel's milestones in order, within what `left` allows. Returns the optional
/// checks that held, or (on kvm_pvm only; elsewhere it panics) the first milestone missed.
fn milestones(
    vm: &mut Vmm,
    sock: &std::path::Path,
    dhcp: bool,
    pvm: bool,
    left: impl Fn() -> Duration,
) -> Result<Vec<&'static str>, &'static str> {
    let mut reach = |what: &'static str, pred: &dyn Fn(&str) -> bool| {
        if let Some(line) = vm.seen.iter().find(|l| pred(l)).cloned() {
            return Ok(line);
        }
        if let Some(line) = vm.try_wait_for(left(), pred) {
            return Ok(line);
        }
        assert!(pvm, "no `{what}` in time; console:\n{}", vm.seen.join("\n"));
        Err(what)
    };
    // The drives, probed through the DSDT alone, in slot order.
    reach("[vda] probed", &|l| {
        l.contains("virtio_blk virtio0: [vda] 131072 512-byte logical blocks")
    })?;
    // Ask for the balloon now: the driver is bound and the guest has time to inflate it.
    let asked = control(sock, Request::BalloonSet { target_mib: 8 });
    assert!(asked.ok, "{asked:?}");
    reach("[vdb] probed", &|l| {
        l.contains("virtio_blk virtio1: [vdb] 131072")
    })?;
    if dhcp {
        // The kernel's DHCP client over virtio-net, before it mounts root.
        reach("IP-Config: Complete", &|l| {
            l.contains("IP-Config: Complete:")
        })?;
        let got = reach("IP-Config address", &|l| l.contains("addr="))?;
        assert!(got.contains(&format!("addr={GUEST_IP}")), "{got}");
    }
    reach("EXT4-fs (vda) mounted", &|l| {
        l.contains("EXT4-fs (vda): mounted filesystem")
    })?;
    reach("root mounted", &|l| {
        l.contains("VFS: Mounted root (ext4 filesystem) readonly on device 254:0")
    })?;
    let c = control(sock, Request::Counters).counters.unwrap();
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
        let b = control(sock, Request::BalloonStats).balloon.unwrap();
        if b.actual_pages == 2048 {
            soft.push("balloon inflated to 8 MiB");
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(soft)
}
