//! Bad input to `virga-vmm`: each gets one line on stderr naming the problem and exit
//! status 1; never a panic or a hang.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod vmm_support;

use std::io::Write;
use std::time::Duration;
use vmm_support::{kvm_available, run_to_end};

/// Runs the VMM, expects status 1 and a single error line containing every `needles`.
fn refused(args: &[&str], needles: &[&str]) {
    let (status, stderr) = run_to_end(args, Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "args {args:?}; stderr:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "one line expected for {args:?}, got:\n{stderr}"
    );
    assert!(lines[0].starts_with("virga-vmm: error: "), "{stderr}");
    for n in needles {
        assert!(lines[0].contains(n), "{n:?} missing from {:?}", lines[0]);
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn missing_empty_and_garbage_kernels() {
    if !kvm_available("missing_empty_and_garbage_kernels") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-vmlinux");
    refused(
        &["--kernel", missing.to_str().unwrap()],
        &["no-such-vmlinux", "No such file"],
    );

    let garbage = dir.path().join("garbage");
    let bytes: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&garbage, bytes).unwrap();
    refused(
        &["--kernel", garbage.to_str().unwrap()],
        &["garbage", "neither an ELF vmlinux nor a bzImage"],
    );

    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    refused(&["--kernel", empty.to_str().unwrap()], &["empty: is empty"]);

    refused(
        &["--kernel", dir.path().to_str().unwrap()],
        &["is a directory"],
    );
    refused(&[], &["no kernel given"]);
}

#[test]
fn truncated_initrd() {
    if !kvm_available("truncated_initrd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A real gzip stream (made with the system's gzip), cut in half.
    let plain = dir.path().join("init.cpio");
    let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(&plain, &data).unwrap();
    let gz = std::process::Command::new("gzip")
        .arg("-kf")
        .arg(&plain)
        .status()
        .unwrap();
    assert!(gz.success());
    let whole = std::fs::read(dir.path().join("init.cpio.gz")).unwrap();
    let cut = dir.path().join("cut.cpio.gz");
    std::fs::File::create(&cut)
        .unwrap()
        .write_all(&whole[..whole.len() / 2])
        .unwrap();
    refused(
        &[
            "--kernel",
            tiny_guest::PATH,
            "--initrd",
            cut.to_str().unwrap(),
        ],
        &["initrd", "cut.cpio.gz", "truncated"],
    );
    let missing = dir.path().join("nope.img");
    refused(
        &[
            "--kernel",
            tiny_guest::PATH,
            "--initrd",
            missing.to_str().unwrap(),
        ],
        &["initrd", "nope.img"],
    );
    // The whole archive is accepted: the guest boots and powers off.
    let (status, stderr) = run_to_end(
        &[
            "--kernel",
            tiny_guest::PATH,
            "--initrd",
            dir.path().join("init.cpio.gz").to_str().unwrap(),
            "--cmdline",
            "poweroff",
            "--serial",
            "none",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(0), "{stderr}");
}

#[test]
fn vcpu_counts() {
    if !kvm_available("vcpu_counts") {
        return;
    }
    refused(
        &["--kernel", tiny_guest::PATH, "--vcpus", "0"],
        &["vcpus must be at least 1"],
    );
    refused(
        &["--kernel", tiny_guest::PATH, "--vcpus", "100000"],
        &["vcpus 100000 exceeds the maximum"],
    );
    refused(
        &["--kernel", tiny_guest::PATH, "--vcpus", "two"],
        &["--vcpus", "two"],
    );
}

#[test]
fn memory_sizes() {
    if !kvm_available("memory_sizes") {
        return;
    }
    refused(
        &["--kernel", tiny_guest::PATH, "--memory", "0"],
        &["memory 0 MiB is too small"],
    );
    refused(
        &["--kernel", tiny_guest::PATH, "--memory", "1"],
        &["memory 1 MiB is too small"],
    );
    let huge = (1u64 << 40).to_string();
    refused(
        &["--kernel", tiny_guest::PATH, "--memory", &huge],
        &["exceeds the host's"],
    );
    refused(
        &["--kernel", tiny_guest::PATH, "--memory=-5"],
        &["--memory", "-5"],
    );
}

#[test]
fn socket_paths_that_exist() {
    if !kvm_available("socket_paths_that_exist") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let taken = dir.path().join("taken");
    std::fs::write(&taken, b"").unwrap();
    let t = taken.to_str().unwrap();
    refused(
        &["--kernel", tiny_guest::PATH, "--control-socket", t],
        &["control socket", "already exists"],
    );
    let serial = format!("socket:{t}");
    refused(
        &["--kernel", tiny_guest::PATH, "--serial", &serial],
        &["serial socket", "already exists"],
    );
    // Refusing must not delete what was there.
    assert!(taken.exists());
}

#[test]
fn bad_flags_and_config_files() {
    if !kvm_available("bad_flags_and_config_files") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    refused(
        &["--kernel", tiny_guest::PATH, "--serial", "tty:/dev/x"],
        &["tty:/dev/x"],
    );
    refused(
        &["--kernel", tiny_guest::PATH, "--on-reset", "explode"],
        &["explode"],
    );
    let cfg = dir.path().join("bad.json");
    std::fs::write(&cfg, r#"{"kernel": "/k", "vcpu": 2}"#).unwrap();
    refused(&["--config", cfg.to_str().unwrap()], &["bad.json", "vcpu"]);
    std::fs::write(&cfg, "{not json").unwrap();
    refused(&["--config", cfg.to_str().unwrap()], &["bad.json"]);
    let missing = dir.path().join("missing.json");
    refused(&["--config", missing.to_str().unwrap()], &["missing.json"]);
}
