//! An image without `kernel_id` boots the kernel it holds: the agent takes the kernel from the
//! image's own partition table and ext4 root (`images::bootdisk`, through the base cache, once
//! per host) and gives it `root=PARTUUID=` of that partition. Shown fast with the tiny guest
//! (an ELF kernel, on this machine's KVM) installed as `/boot/vmlinuz-<version>` in a GPT disk
//! made by `sfdisk` and `mke2fs -d`, as qcow2 by `qemu-img`. The Debian cloud image takes the
//! same path in the box (tests/box_cloud.rs, through virgad; not yet in CI).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod agent_support;

use agent_support::{Host, kvm_available};
use orchestrator::compute::driver::{Driver, DriverError};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const PARTUUID: &str = "3f6d2a1c-7b8e-4c5d-9e0f-1a2b3c4d5e6f";

fn run(cmd: &mut Command) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/packages/cloudimage.txt)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A 16 MiB GPT disk, one Linux partition from 1 MiB with an ext4 file system holding
/// `/boot/vmlinuz-1.0` = `kernel` (no initrd), as qcow2.
fn image_with_kernel(dir: &Path, kernel: &Path) -> PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("boot")).unwrap();
    std::fs::copy(kernel, tree.join("boot/vmlinuz-1.0")).unwrap();
    let raw = dir.join("disk.raw");
    std::fs::File::create(&raw)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let mut sfdisk = Command::new("sfdisk")
        .arg("-q")
        .arg(&raw)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("sfdisk (Debian package fdisk)");
    use std::io::Write;
    let table = format!(
        "label: gpt\nstart=2048, size=28672, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid={PARTUUID}\n"
    );
    sfdisk
        .stdin
        .take()
        .unwrap()
        .write_all(table.as_bytes())
        .unwrap();
    assert!(sfdisk.wait().unwrap().success());
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-E", "offset=1048576", "-d"])
        .arg(&tree)
        .arg(&raw)
        .arg("14336k"));
    let qcow2 = dir.join("disk.qcow2");
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&qcow2));
    qcow2
}

#[test]
fn an_image_without_kernel_id_boots_its_own_kernel_with_its_root_partition() {
    let test = "an_image_without_kernel_id_boots_its_own_kernel_with_its_root_partition";
    if !kvm_available(test) {
        return;
    }
    let host = Host::new();
    let image = image_with_kernel(host.root.path(), Path::new(tiny_guest::PATH));
    let image_id = uuid::Uuid::new_v4();
    let with_image = |name: &str| {
        // `; cmdline`: the image's os_command_line, after the root word; the tiny guest runs
        // it and prints the whole line it was given.
        let mut spec = host.tiny(name, "; cmdline");
        spec.boot.kernel = None;
        spec.boot.kernel_from_disk = true;
        spec.boot.image_id = image_id;
        spec.boot.disk = Some(image.clone());
        spec.boot.disk_format = "qcow2".into();
        spec
    };
    let a = with_image("own-kernel-a");
    host.agent.spawn(&a).expect("spawn");
    let console = host.wait_console(a.id, "VIRGA-TINY READY");
    let words = format!("console=ttyS0 root=PARTUUID={PARTUUID} rw");
    host.wait_console(a.id, &format!("{words} ; cmdline"));
    let vmm_json = std::fs::read(host.file(a.id, "vmm.json")).unwrap();
    let cfg: vmm::config::VmConfig = serde_json::from_slice(&vmm_json).unwrap();
    let cache = host.agent.base_cache();
    assert!(
        cfg.kernel
            .starts_with(cache.bases_dir().parent().unwrap().join("boot")),
        "the kernel comes from the image, unpacked in the cache: {}\n{console}",
        cfg.kernel.display()
    );
    assert_eq!(
        std::fs::read(&cfg.kernel).unwrap(),
        std::fs::read(tiny_guest::PATH).unwrap()
    );
    assert_eq!(cfg.initrd, None);

    // A second server of the image uses what was unpacked.
    let unpacked = std::fs::metadata(&cfg.kernel).unwrap().modified().unwrap();
    let b = with_image("own-kernel-b");
    host.agent.spawn(&b).expect("spawn b");
    host.wait_console(b.id, "VIRGA-TINY READY");
    let modified = std::fs::metadata(&cfg.kernel).unwrap().modified().unwrap();
    assert_eq!(unpacked, modified, "unpacked once per host");
    for s in [&a, &b] {
        host.agent.destroy(s.id).unwrap();
    }

    // A disk without a kernel and no default kernel: refused with both reasons, nothing left.
    let bare = host.root.path().join("bare.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&bare)
        .arg("16M"));
    let mut c = with_image("no-kernel");
    c.boot.image_id = uuid::Uuid::new_v4();
    c.boot.disk = Some(bare);
    match host.agent.spawn(&c) {
        Err(DriverError::Prepare { reason, .. }) => {
            assert!(reason.contains("no kernel of its own"), "{reason}");
            assert!(reason.contains("partition table"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!host.file(c.id, "").exists(), "nothing half-made stays");
    // With a default kernel it boots that one instead.
    c.boot.kernel = Some(tiny_guest::PATH.into());
    host.agent.spawn(&c).expect("spawn with the default kernel");
    host.wait_console(c.id, "VIRGA-TINY READY");
    host.agent.destroy(c.id).unwrap();
}
