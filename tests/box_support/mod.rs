//! What the Linux tests in the box share: the guest artifacts put in, `virga-vmm` started in
//! the background inside the box, its control socket (socat), its console log and exit status.

#![allow(dead_code)] // each test uses its own part

#[path = "../kvmbox/mod.rs"]
pub mod kvmbox;
#[path = "../linux_guest/mod.rs"]
pub mod linux_guest;

pub use kvmbox::Spec;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Guest artifacts in the box: our minimal kernel (both entry points), its initramfs and root
/// disks under `/g`, and Debian's cloud kernel with its virtio modules.
pub const VMLINUX: &str = "/g/vmlinux";
pub const BZIMAGE: &str = "/g/bzImage";
pub const INITRAMFS: &str = "/g/initramfs.cpio.gz";
pub const ROOTFS_RAW: &str = "/g/rootfs.ext4";
pub const ROOTFS_QCOW2: &str = "/g/rootfs.qcow2";
/// Debian's kernel (the box's own) and our initramfs with its virtio modules appended.
pub const DEBIAN_KERNEL: &str = "/g/debian-vmlinuz";
pub const DEBIAN_INITRAMFS: &str = "/g/debian-initramfs";

/// The minimal kernel's command line: console, and a panic reboots at once.
pub const CMDLINE: &str = "console=ttyS0 panic=-1";

/// A box run's budget: TCG is slow, and two boxes may share the two cores.
pub const T: Duration = Duration::from_secs(300);

/// The box spec with the VMM and every guest artifact, or `None` (SKIPPED, a failure under
/// CI=true) when set-up has not built them.
pub fn spec_with_guests() -> Option<Spec> {
    let dir = linux_guest::artifacts(&["vmlinux", "bzImage", "initramfs.cpio.gz", "rootfs.ext4"])?;
    let boxdir = box_dir()?;
    // Our initramfs followed by Debian's virtio modules, in one gzip stream (the VMM checks a
    // gzip initrd whole): the kernel unpacks both archives.
    let debian_initrd = std::env::temp_dir().join(format!(
        "virga-debian-initramfs-{}.cpio.gz",
        std::process::id()
    ));
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"{ gzip -dc "$1" && cat "$2"; } | gzip -1 >"$3""#)
        .arg("sh")
        .arg(dir.join("initramfs.cpio.gz"))
        .arg(boxdir.join("guest-modules.cpio"))
        .arg(&debian_initrd)
        .status()
        .expect("sh");
    assert!(status.success(), "making {}", debian_initrd.display());
    let spec = Spec::default()
        .file(dir.join("vmlinux"), VMLINUX)
        .file(dir.join("bzImage"), BZIMAGE)
        .file(dir.join("initramfs.cpio.gz"), INITRAMFS)
        .file(dir.join("rootfs.ext4"), ROOTFS_RAW)
        .file(dir.join("rootfs.qcow2"), ROOTFS_QCOW2)
        .file(boxdir.join("vmlinuz"), DEBIAN_KERNEL)
        .file(&debian_initrd, DEBIAN_INITRAMFS)
        .file(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/box_support/lib.sh"),
            "/kvmbox/lib.sh",
        );
    Some(spec)
}

/// The box's build directory (`scripts/kvmbox build`), or `None` as for missing artifacts.
pub fn box_dir() -> Option<PathBuf> {
    let out = std::process::Command::new(kvmbox::script())
        .arg("build")
        .output();
    match out {
        Ok(o) if o.status.success() => Some(PathBuf::from(
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
        )),
        other => {
            let why = format!("scripts/kvmbox build failed: {other:?}");
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

/// What a box script's helpers (lib.sh) printed about one guest.
pub trait GuestOutput {
    /// NAME's console, as `vm_log NAME` printed it.
    fn log(&self, name: &str) -> String;
    /// NAME's exit status and exit-status file, as `vm_exit NAME` printed them.
    fn exit(&self, name: &str) -> (i32, serde_json::Value);
    /// NAME's control answers, in order, as `vm_ctl NAME ...` printed them.
    fn answers(&self, name: &str) -> Vec<serde_json::Value>;
    /// The value printed after `KEY ` on a line of its own (`echo "KEY value"`).
    fn value(&self, key: &str) -> Option<String>;
}

impl GuestOutput for kvmbox::Run {
    fn log(&self, name: &str) -> String {
        self.section(
            &format!("BOX-LOG-BEGIN {name}\n"),
            &format!("BOX-LOG-END {name}"),
        )
    }

    fn exit(&self, name: &str) -> (i32, serde_json::Value) {
        let line = self
            .value(&format!("BOX-EXIT {name}"))
            .unwrap_or_else(|| panic!("no exit of {name}:\n{}", self.output));
        let (code, file) = line.split_once(' ').unwrap_or((&line, ""));
        (
            code.parse().unwrap_or(-1),
            serde_json::from_str(file).unwrap_or(serde_json::Value::Null),
        )
    }

    fn answers(&self, name: &str) -> Vec<serde_json::Value> {
        let prefix = format!("BOX-CTL {name} ");
        self.output
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|a| serde_json::from_str(a).unwrap_or(serde_json::Value::Null))
            .collect()
    }

    fn value(&self, key: &str) -> Option<String> {
        let prefix = format!("{key} ");
        self.output
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(str::to_string)
    }
}

/// Runs `script` after sourcing lib.sh in a box with every guest artifact; asserts it ended
/// with status 0 (the output is in the message otherwise). `None`: SKIPPED.
pub fn run_guests(test: &str, script: &str, timeout: Duration) -> Option<kvmbox::Run> {
    let spec = spec_with_guests()?;
    let run = kvmbox::run(test, &spec, &format!(". /kvmbox/lib.sh\n{script}"), timeout)?;
    assert_eq!(
        run.status, 0,
        "{test}: the box script failed:\n{}",
        run.output
    );
    Some(run)
}

/// `virga.cmd=` for our init: `cmd` base64-encoded (init runs it, output between
/// VIRGA-CMD-BEGIN and VIRGA-CMD-END <status>).
pub fn guest_cmd(cmd: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::from("virga.cmd=");
    for chunk in cmd.as_bytes().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Lines between VIRGA-CMD-BEGIN and VIRGA-CMD-END in a console log.
pub fn cmd_output(log: &str) -> String {
    log.split("VIRGA-CMD-BEGIN")
        .nth(1)
        .and_then(|rest| rest.split("VIRGA-CMD-END").next())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// An ed25519 public key in OpenSSH's format with `comment` (its 32 key bytes made up:
/// cloud-init only copies and fingerprints it).
pub fn made_up_public_key(comment: &str) -> String {
    use base64::Engine;
    let mut blob = Vec::new();
    blob.extend_from_slice(&11u32.to_be_bytes());
    blob.extend_from_slice(b"ssh-ed25519");
    blob.extend_from_slice(&32u32.to_be_bytes());
    blob.extend((0..32u8).map(|i| b'a' + i % 26));
    let b64 = base64::engine::general_purpose::STANDARD.encode(&blob);
    format!("ssh-ed25519 {b64} {comment}")
}
