//! End to end on /dev/kvm: a config drive written by `images::configdrive`, attached read-only
//! to `virga-vmm`, read by the tiny guest, which prints the hostname, the key and the user data
//! and runs the `#tiny` script.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod vmm_support;

use images::configdrive::{CONFIG_DRIVE_LABEL, write_iso};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tiny_guest::MARKER;
use vmm_support::{Vmm, kvm_available};

const T: Duration = Duration::from_secs(20);
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx5gQ9XG1bEHnQr virga@test";

fn meta_data() -> String {
    format!(
        r#"{{"uuid": "0b2f3f1c-5a7e-4d0e-9f31-3c2b7d1e0a11", "name": "vm1", "hostname": "vm1",
  "launch_index": 0, "availability_zone": "nova", "project_id": "p1", "devices": [],
  "keys": [{{"name": "mykey", "type": "ssh", "data": "{KEY}\n"}}],
  "public_keys": {{"mykey": "{KEY}\n"}}, "meta": {{"role": "test"}}}}"#
    )
}

/// Writes a config drive with `meta` and `user` as meta_data.json and user_data.
fn config_drive(dir: &Path, name: &str, label: &str, meta: &[u8], user: &[u8]) -> PathBuf {
    let iso = dir.join(name);
    let network = br#"{"links": [], "networks": [], "services": []}"#;
    write_iso(
        &iso,
        label,
        &[
            ("openstack/latest/meta_data.json", meta),
            ("openstack/latest/user_data", user),
            ("openstack/latest/network_data.json", network),
            ("openstack/latest/vendor_data.json", b"{}"),
        ],
    )
    .unwrap();
    iso
}

fn drive(id: &str, path: &Path) -> String {
    // format=raw: an ISO is plain data to the block layer (probing would refuse it).
    format!("id={id},path={},format=raw,ro=on", path.display())
}

#[test]
fn tiny_guest_reads_hostname_key_and_runs_user_data() {
    if !kvm_available("tiny_guest_reads_hostname_key_and_runs_user_data") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let user = b"#tiny\n# a comment, skipped\necho hello from user-data\n\nhostname\nconfigdrive\n";
    let iso = config_drive(
        dir.path(),
        "disk.config",
        CONFIG_DRIVE_LABEL,
        meta_data().as_bytes(),
        user,
    );
    // A blank data disk first: the guest must look past it.
    let data = dir.path().join("data.raw");
    std::fs::write(&data, vec![0u8; 1 << 20]).unwrap();
    let (d0, d1) = (drive("data", &data), drive("config", &iso));
    let mut vm = Vmm::tiny(&["--drive", &d0, "--drive", &d1]);
    vm.wait_prefix(MARKER);
    vm.wait_for(T, |l| l == "config-drive: found on drive 1 (joliet)");
    vm.wait_for(T, |l| l == "config-drive: hostname vm1");
    vm.wait_for(T, |l| l == format!("config-drive: public key mykey {KEY}"));
    vm.wait_for(T, |l| l == "config-drive: network-data 45 bytes");
    vm.wait_for(T, |l| {
        l == format!("config-drive: user-data {} bytes: #tiny", user.len())
    });
    vm.wait_for(T, |l| l == "config-drive: run echo hello from user-data");
    vm.wait_for(T, |l| l == "hello from user-data");
    vm.wait_for(T, |l| l == "hostname: vm1");
    // A script that reads the drive again does not recurse.
    vm.wait_for(T, |l| l == "config-drive: run configdrive");
    vm.wait_for(T, |l| l == "config-drive: already being read");
    vm.wait_for(T, |l| l == "config-drive: done");
    // The console still answers, and remembers the hostname.
    vm.send("hostname");
    vm.wait_for(T, |l| l == "hostname: vm1");
    vm.send("poweroff");
    assert_eq!(vm.exit_code(), Some(0));
}

#[test]
fn other_user_data_is_shown_not_run() {
    if !kvm_available("other_user_data_is_shown_not_run") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let user = b"#cloud-config\nruncmd:\n  - [poweroff]\n";
    let iso = config_drive(
        dir.path(),
        "disk.config",
        "CONFIG-2",
        meta_data().as_bytes(),
        user,
    );
    let d = drive("config", &iso);
    let mut vm = Vmm::tiny(&["--drive", &d]);
    vm.wait_prefix(MARKER);
    vm.wait_for(T, |l| l == "config-drive: found on drive 0 (joliet)");
    vm.wait_for(T, |l| {
        l == "config-drive: user-data 37 bytes: #cloud-config"
    });
    vm.wait_for(T, |l| {
        l == "config-drive: user-data not run (only #tiny scripts run in this guest)"
    });
    vm.wait_for(T, |l| l == "config-drive: done");
    vm.send("poweroff");
    assert_eq!(vm.exit_code(), Some(0));
}

#[test]
fn bad_config_drives_give_messages_not_faults() {
    if !kvm_available("bad_config_drives_give_messages_not_faults") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Truncated JSON, and no user data.
    let bad_json = config_drive(
        dir.path(),
        "bad-json.iso",
        CONFIG_DRIVE_LABEL,
        br#"{"hostname": "vm1", "public_keys": {"k": }"#,
        b"",
    );
    let d = drive("config", &bad_json);
    let mut vm = Vmm::tiny(&["--drive", &d]);
    vm.wait_for(T, |l| {
        l == "config-drive: meta_data.json: bad JSON: unexpected character at byte 41"
    });
    vm.wait_for(T, |l| l == "config-drive: user-data 0 bytes");
    vm.wait_for(T, |l| l == "config-drive: done");
    vm.send("echo still alive");
    vm.wait_for(T, |l| l == "still alive");
    vm.send("poweroff");
    assert_eq!(vm.exit_code(), Some(0));

    // A damaged ISO: the Joliet root directory points past the end of the volume.
    let mut image = std::fs::read(&bad_json).unwrap();
    let svd_root = 17 * 2048 + 156;
    image[svd_root + 2..svd_root + 6].copy_from_slice(&0x00ff_0000u32.to_le_bytes());
    image[svd_root + 6..svd_root + 10].copy_from_slice(&0x00ff_0000u32.to_be_bytes());
    let damaged = dir.path().join("damaged.iso");
    std::fs::write(&damaged, image).unwrap();
    let d = drive("config", &damaged);
    let mut vm = Vmm::tiny(&["--drive", &d]);
    vm.wait_for(T, |l| {
        l == "config-drive: drive 0: extent past the end of the volume"
    });
    vm.wait_for(T, |l| l == "config-drive: none found");
    vm.send("echo still alive");
    vm.wait_for(T, |l| l == "still alive");
    vm.send("poweroff");
    assert_eq!(vm.exit_code(), Some(0));
}

#[test]
fn no_config_drive_and_other_labels_are_ignored() {
    if !kvm_available("no_config_drive_and_other_labels_are_ignored") {
        return;
    }
    let mut vm = Vmm::tiny(&["--cmdline", "hostname;poweroff"]);
    vm.wait_for(T, |l| l == "config-drive: none found");
    vm.wait_for(T, |l| l == "hostname: (none)");
    assert_eq!(vm.exit_code(), Some(0));

    let dir = tempfile::tempdir().unwrap();
    let other = config_drive(dir.path(), "other.iso", "cidata", b"{}", b"");
    let d = drive("other", &other);
    let mut vm = Vmm::tiny(&["--drive", &d, "--cmdline", "poweroff"]);
    vm.wait_for(T, |l| l == "config-drive: none found");
    assert_eq!(vm.exit_code(), Some(0));
}
