//! One Linux instance through the agent: the guest kernel (`vmlinux`) and the test rootfs as
//! the image's qcow2 disk, grown to the flavor's 1 GiB, plus the config drive. The console log
//! shows a real kernel booting, probing both virtio-blk drives the agent attached, mounting its
//! root file system from the overlay, and its init in user space reading the config drive
//! (hostname and key); the agent sees the guest's ready mark.
//!
//! This machine's kvm_pvm cannot run Linux user space (ARCHITECTURE.md), so there the test
//! runs itself in the box (scripts/kvmbox, a real KVM under TCG) and checks that it passed.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod agent_support;
mod kvmbox;
mod linux_guest;

use agent_support::{Host, kvm_available};
use linux_guest::artifacts;
use orchestrator::compute::driver::{Driver, PowerState};
use std::time::{Duration, Instant};

const BUDGET: Duration = Duration::from_secs(4 * 60);
const TEST: &str = "a_linux_instance_boots_its_root_overlay_and_config_drive";

#[test]
fn a_linux_instance_boots_its_root_overlay_and_config_drive() {
    if !kvm_available("a_linux_instance_boots_its_root_overlay_and_config_drive") {
        return;
    }
    let Some(dir) = artifacts(&["vmlinux", "rootfs.qcow2"]) else {
        return;
    };
    if kvmbox::rerun_in_box(TEST, &[dir.join("vmlinux"), dir.join("rootfs.qcow2")]) {
        return;
    }
    let host = Host::new();
    let mut spec = host.tiny("linux1", "");
    spec.memory_mib = 128;
    spec.root_gb = 1;
    spec.boot.kernel = Some(dir.join("vmlinux"));
    // virga.cmd=`sleep 600` (base64): init stays up after the config drive, so the VMM runs on.
    spec.boot.cmdline =
        Some("console=ttyS0 panic=0 root=/dev/vda ro virga.cmd=c2xlZXAgNjAw".into());
    spec.boot.disk = Some(dir.join("rootfs.qcow2"));
    spec.boot.disk_format = "qcow2".into();
    let id = spec.id;
    let seen = host.agent.spawn(&spec).expect("spawn");
    assert_eq!(seen.power, PowerState::Running);

    let hostname = "VIRGA-HOSTNAME linux1";
    let key = format!("VIRGA-SSH-KEY {}", agent_support::KEY);
    let wanted = [
        "Linux version",
        "[vda]",
        "[vdb]",
        "VFS: Mounted root (ext4 filesystem)",
        "VIRGA-READY",
        hostname,
        &key,
    ];
    let start = Instant::now();
    let console = loop {
        let console = host.agent.console_output(id, None).unwrap();
        if wanted.iter().all(|w| console.contains(w)) {
            break console;
        }
        let seen = host.agent.observe(id).unwrap();
        assert!(
            start.elapsed() < BUDGET && seen.pid.is_some(),
            "after {:?} ({seen:?}) the console lacks one of {wanted:?}:\n{}",
            start.elapsed(),
            host.agent.console_output(id, Some(40)).unwrap()
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    eprintln!(
        "Linux read its config drive in user space after {:?}; last lines:\n{}",
        start.elapsed(),
        agent_support_tail(&console)
    );
    // The agent saw user space's ready mark (information only: ACTIVE does not wait for it).
    let seen = host.agent.observe(id).unwrap();
    assert!(seen.ready_us.is_some(), "no ready mark seen: {seen:?}");
    // vda is the 1 GiB overlay (2097152 sectors of 512 bytes).
    assert!(
        console
            .lines()
            .any(|l| l.contains("[vda]") && l.contains("2097152 512-byte")),
        "{console}"
    );
    // Each device is found once (ACPI alone): announcing it on the command line as well makes
    // Linux register it twice and the second probe fail with EBUSY.
    let twice: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("virtio") && l.contains("error -16"))
        .collect();
    assert!(twice.is_empty(), "devices registered twice: {twice:#?}");
    host.agent.destroy(id).unwrap();
    assert!(!host.agent.instance_dir(id).path().exists());
}

fn agent_support_tail(console: &str) -> String {
    let lines: Vec<&str> = console.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}
