//! The Debian cloud image (guest/cloud/build.sh, docs/cloud-image.md) booted under
//! `virga-vmm` in the box (a real KVM under QEMU's TCG), the way an image without `kernel_id`
//! boots: the kernel and initrd taken from the image itself on the host (`images::bootdisk`),
//! the root given by its PARTUUID, a qcow2 overlay over the image, and a config drive written by
//! `images::configdrive`. cloud-init must find the drive, set the host name, install the key for
//! the default user `debian` and run the user data's `runcmd`; systemd must reach
//! multi-user.target and start a getty on ttyS0; all of it is read from the console.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod box_support;

use box_support::kvmbox::{self, Spec};
use box_support::linux_guest;
use disk::OpenOptions;
use images::bootdisk::{Limits, find_boot_files};
use images::configdrive::{CONFIG_DRIVE_LABEL, write_iso};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const HOSTNAME: &str = "virga-cloud-test";
const KEY_COMMENT: &str = "virga-box-test";

#[test]
#[ignore = "passed 2 of 5 runs on a loaded machine (a box kernel panic, a silent box, docs/cloud-image.md): \
            run it with `cargo test --test box_cloud_image -- --ignored` until it is steady"]
fn debian_cloud_image_boots_its_own_kernel_and_cloud_init_configures_it_from_the_config_drive() {
    let test = "debian_cloud_image_boots_its_own_kernel_and_cloud_init_configures_it_from_the_config_drive";
    let Some(dir) = linux_guest::artifacts(&["debian.qcow2"]) else {
        return;
    };
    let image = std::fs::canonicalize(dir.join("debian.qcow2")).unwrap();
    let work = tempfile::tempdir().unwrap();

    // Kernel, initrd and root from the image itself, as the compute side will do.
    let t = Instant::now();
    let boot = find_boot_files(
        &image,
        &OpenOptions::new().format(disk::Format::Qcow2),
        &Limits::default(),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", image.display()));
    eprintln!("bootdisk: {boot:?} in {:?}", t.elapsed());
    assert!(boot.kernel_path.starts_with("/boot/vmlinuz-6."), "{boot:?}");
    let root = boot.root_arg();
    assert!(root.starts_with("root=PARTUUID="), "{root}");
    let kernel = work.path().join("vmlinuz");
    let initrd = work.path().join("initrd.img");
    std::fs::write(&kernel, &boot.kernel).unwrap();
    std::fs::write(&initrd, boot.initrd.as_ref().expect("the image's initrd")).unwrap();

    // The instance's disk: a qcow2 overlay naming the image where the box will have it.
    let overlay = work.path().join("overlay.qcow2");
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-u", "-b"])
        .arg("/c/base/debian.qcow2")
        .arg(&overlay)
        .arg("2G")
        .output()
        .expect("qemu-img (qemu-utils)");
    assert!(out.status.success(), "{out:?}");

    // The config drive, as Nova lays it out.
    let key = box_support::made_up_public_key(KEY_COMMENT);
    let meta = serde_json::json!({
        "uuid": "6f4b2c1e-8d3a-4f5b-9c7e-1a2b3c4d5e6f",
        "name": HOSTNAME,
        "hostname": HOSTNAME,
        "launch_index": 0,
        "availability_zone": "nova",
        "project_id": "0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6",
        "public_keys": { "box": key },
        "keys": [{ "name": "box", "type": "ssh", "data": key }],
    })
    .to_string();
    let user_data = "#cloud-config\n\
runcmd:\n\
  - [sh, -c, 'echo \"VIRGA-CLOUD-RUNCMD host=$(hostname) user=$(id -un debian)\" >/dev/console']\n\
  - [sh, -c, 'echo \"VIRGA-CLOUD-KEY $(cat /home/debian/.ssh/authorized_keys)\" >/dev/console']\n";
    let iso = work.path().join("config.iso");
    write_iso(
        &iso,
        CONFIG_DRIVE_LABEL,
        &[
            ("openstack/latest/meta_data.json", meta.as_bytes()),
            ("openstack/latest/user_data", user_data.as_bytes()),
            ("openstack/latest/vendor_data.json", b"{}"),
            (
                "openstack/latest/network_data.json",
                b"{\"links\":[],\"networks\":[],\"services\":[]}",
            ),
        ],
    )
    .unwrap();

    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/box_support/lib.sh");
    let spec = Spec::default()
        .file(&kernel, "/c/vmlinuz")
        .file(&initrd, "/c/initrd.img")
        .file(&image, "/c/base/debian.qcow2")
        .file(&overlay, "/c/overlay.qcow2")
        .file(&iso, "/c/config.iso")
        .file(&lib, "/kvmbox/lib.sh");
    let script = format!(
        r#". /kvmbox/lib.sh
        t0=$(date +%s)
        vm_start cloud --kernel /c/vmlinuz --initrd /c/initrd.img --vcpus 2 --memory 1024 \
          --drive id=root,path=/c/overlay.qcow2,format=qcow2,backing_dirs=/c/base \
          --drive id=cidata,path=/c/config.iso,format=raw,ro=on \
          --no-virtio-cmdline --cmdline 'console=ttyS0 {root} rw'
        # The guest's console on the box's too, as it comes: if the box itself dies, its
        # output still shows how far the guest got.
        sleep 1; tail -f /tmp/cloud.log & tailpid=$!
        vm_wait cloud 'Multi-User System' 1500
        echo; echo "BOX-T multi-user $(( $(date +%s) - t0 ))"
        vm_wait cloud VIRGA-CLOUD-KEY 600
        echo; echo "BOX-T runcmd $(( $(date +%s) - t0 ))"
        vm_wait cloud '{HOSTNAME} login:' 300
        echo; echo "BOX-T login $(( $(date +%s) - t0 ))"
        vm_wait cloud ' finished at ' 600
        echo; echo "BOX-T cloud-init-done $(( $(date +%s) - t0 ))"
        kill $tailpid; sleep 1
        vm_ctl cloud '{{"cmd":"kill"}}'
        vm_exit cloud; vm_log cloud"#
    );
    let started = Instant::now();
    let Some(run) = kvmbox::run(test, &spec, &script, Duration::from_secs(2400)) else {
        return;
    };
    eprintln!("box run: {:?}", started.elapsed());
    let times: Vec<&str> = run
        .output
        .lines()
        .filter(|l| l.starts_with("BOX-T "))
        .collect();
    eprintln!("guest times (s since virga-vmm start): {times:?}");
    assert_eq!(
        run.status, 0,
        "{test}: the box script failed:\n{}",
        run.output
    );
    use box_support::GuestOutput;
    let log = run.log("cloud");

    // The image's kernel, its root found by PARTUUID through the initramfs, checked (the
    // initramfs has e2fsck) and mounted.
    assert!(log.contains("Linux version 6."), "{log}");
    assert!(!log.contains("fsck not present"), "{log}");
    assert!(
        log.contains("EXT4-fs (vda1): mounted filesystem 2c4b3f0e-9a7d-4c61-8e55-0d3b6f1a7e21"),
        "{log}"
    );
    // systemd reached multi-user.target (its status lines carry colour codes) and started a
    // getty on the serial console.
    assert!(
        log.lines()
            .any(|l| l.contains("Reached target") && l.contains("Multi-User System")),
        "multi-user.target:\n{log}"
    );
    assert!(log.contains("Serial Getty on ttyS0"), "{log}");
    let line = |what: &str| log.lines().find(|l| l.contains(what)).map(str::trim);
    // cloud-init read the config drive (the second drive) ...
    assert!(
        log.lines().any(|l| l.contains(" finished at ")
            && l.contains("Datasource DataSourceConfigDrive")
            && l.contains("source=/dev/vdb")),
        "datasource:\n{log}"
    );
    // ... set the host name (the getty's prompt and runcmd both show it) ...
    assert!(log.contains(&format!("{HOSTNAME} login:")), "{log}");
    assert_eq!(
        line("VIRGA-CLOUD-RUNCMD"),
        Some(format!("VIRGA-CLOUD-RUNCMD host={HOSTNAME} user=debian").as_str()),
        "{log}"
    );
    // ... installed the key for the default user (its own table on the console, and the file) ...
    assert!(
        log.lines()
            .any(|l| l.contains("ci-info") && l.contains("ssh-ed25519") && l.contains(KEY_COMMENT)),
        "cloud-init's authorized keys table:\n{log}"
    );
    assert_eq!(
        line("VIRGA-CLOUD-KEY"),
        Some(format!("VIRGA-CLOUD-KEY {key}").as_str()),
        "{log}"
    );
}
