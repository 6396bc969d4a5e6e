//! The box from Rust: `scripts/kvmbox run --interactive` starts Debian's cloud kernel under QEMU's
//! TCG with an emulated SVM CPU, whose kvm-amd gives a real `/dev/kvm` (docs/kvmbox.md). A test
//! puts files in (the VMM, guest kernels, disks), then runs shell commands inside one at a time
//! and reads their output and status. Stock Linux user space runs under `virga-vmm` there, which
//! this machine's kvm_pvm cannot do.
//!
//! A test writes its whole scenario as one shell script (with the helpers of
//! `tests/box_support/lib.sh`), runs it in a fresh box and reads what it printed: one box start
//! per test, no round trips over the emulated console.

#![allow(dead_code)] // each test and bench uses its own part

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Where the VMM lands in the box.
pub const VMM: &str = "/kvmbox/bin/virga-vmm";

/// What goes into a box.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Host file -> path in the box.
    pub files: Vec<(PathBuf, String)>,
    pub mem_mib: u64,
    pub smp: u32,
    /// 127.0.0.1:host -> box:guest TCP forwards (QEMU user networking, restricted).
    pub hostfwd: Vec<(u16, u16)>,
}

impl Default for Spec {
    /// The debug `virga-vmm` of this build at [`VMM`], 6 GiB (room for a guest above 4 GiB: the
    /// VMM refuses more guest memory than its host has), 2 CPUs.
    fn default() -> Self {
        Spec {
            files: vec![(PathBuf::from(env!("CARGO_BIN_EXE_virga-vmm")), VMM.into())],
            mem_mib: 6144,
            smp: 2,
            hostfwd: Vec::new(),
        }
    }
}

impl Spec {
    pub fn file(mut self, host: impl AsRef<Path>, inside: &str) -> Self {
        self.files
            .push((host.as_ref().to_path_buf(), inside.into()));
        self
    }
}

/// What a box run printed and how its script ended.
#[derive(Debug)]
pub struct Run {
    /// The script's exit status (124: timed out, 125: the box did not start).
    pub status: i32,
    /// The box's console: the script's output, with the box kernel's few messages.
    pub output: String,
}

impl Run {
    /// The lines between `BEGIN` and `END` markers, e.g. `section("BOX-LOG-BEGIN vm1", ...)`.
    pub fn section(&self, begin: &str, end: &str) -> String {
        self.output
            .split(begin)
            .nth(1)
            .and_then(|rest| rest.split(end).next())
            .unwrap_or("")
            .trim_matches('\n')
            .to_string()
    }
}

/// The project's `scripts/kvmbox`.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kvmbox")
}

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Runs `shell` (a sh script) in a box made from `spec`, stopping it after `timeout`. A box that
/// cannot start: under `CI=true` a failure; elsewhere `SKIPPED` with the reason and `None`.
pub fn run(test: &str, spec: &Spec, shell: &str, timeout: Duration) -> Option<Run> {
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        let why = "qemu-system-x86_64 is not installed (scripts/setup.sh installs it)";
        assert!(!ci(), "{test}: {why}");
        eprintln!("SKIPPED {test}: {why}");
        return None;
    }
    let mut cmd = Command::new(script());
    cmd.arg("run")
        .args(["--mem", &spec.mem_mib.to_string()])
        .args(["--smp", &spec.smp.to_string()])
        .args(["--timeout", &timeout.as_secs().to_string()]);
    for (host, inside) in &spec.files {
        assert!(host.exists(), "{test}: {} does not exist", host.display());
        cmd.arg("--file")
            .arg(format!("{}:{inside}", host.display()));
    }
    for (h, g) in &spec.hostfwd {
        cmd.arg("--hostfwd").arg(format!("{h}:{g}"));
    }
    cmd.arg("--").arg(shell);
    cmd.stdin(Stdio::null()).stderr(Stdio::piped());
    // SAFETY: prctl in the child between fork and exec touches no memory of the parent; it
    // makes the kernel end the script (which then kills QEMU) if this test process dies.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{test}: {}: {e}", script().display()));
    let status = out.status.code().unwrap_or(-1);
    let output = String::from_utf8_lossy(&out.stdout).into_owned();
    if status == 125 {
        let why = format!(
            "the box did not start:\n{output}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!ci(), "{test}: {why}");
        eprintln!("SKIPPED {test}: {why}");
        return None;
    }
    assert_ne!(
        status, 124,
        "{test}: the box timed out after {timeout:?}:\n{output}"
    );
    Some(Run { status, output })
}

/// `s` as one sh word.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// For a test that needs a real KVM with Linux user space: on a host whose KVM is kvm_pvm,
/// runs this very test binary (only `test`) in a box with `files` at their own absolute paths
/// (the binary's compiled-in paths, such as the VMM's, then hold inside too), asserts that it
/// passed there, and returns true: the caller returns. Inside the box (`VIRGA_IN_BOX=1`) or on
/// a host with a real KVM it returns false and the test goes on. `None` from a box that cannot
/// start outside CI: SKIPPED, also true.
pub fn rerun_in_box(test: &str, files: &[PathBuf]) -> bool {
    if std::env::var("VIRGA_IN_BOX").as_deref() == Ok("1")
        || !Path::new("/sys/module/kvm_pvm").exists()
    {
        return false;
    }
    let exe = std::env::current_exe().unwrap();
    let mut spec = Spec::default().file(&exe, "/kvmbox/bin/test");
    for f in files
        .iter()
        .chain([&PathBuf::from(env!("CARGO_BIN_EXE_virga-vmm"))])
    {
        spec = spec.file(f, f.to_str().unwrap());
    }
    let cache = std::env::var("VIRGA_CACHE")
        .unwrap_or_else(|_| format!("{}/.cache/virga", std::env::var("HOME").unwrap_or_default()));
    let script = format!(
        "VIRGA_IN_BOX=1 VIRGA_CACHE={} CI={} RUST_BACKTRACE=1 /kvmbox/bin/test --exact {test} \
         --nocapture --test-threads=1",
        shell_quote(&cache),
        shell_quote(&std::env::var("CI").unwrap_or_default())
    );
    if let Some(run) = run(test, &spec, &script, Duration::from_secs(600)) {
        eprintln!("{test}, run in the box:\n{}", run.output);
        assert_eq!(run.status, 0, "{test} failed in the box:\n{}", run.output);
        assert!(
            run.output.contains("1 passed"),
            "{test} did not run in the box:\n{}",
            run.output
        );
    }
    true
}
