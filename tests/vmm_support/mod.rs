//! Helpers for tests that run `virga-vmm` on /dev/kvm: skip (or fail under CI=true) without
//! KVM, spawn the VMM with its console on pipes, wait for console lines, and always kill the
//! process on drop.

#![allow(dead_code)]

pub mod netns;
pub mod virtio;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// The VMM binary built with these tests.
pub const VMM: &str = env!("CARGO_BIN_EXE_virga-vmm");

/// Whether KVM tests can run. Without /dev/kvm: a plain skip message, or a failure in CI.
pub fn kvm_available(test: &str) -> bool {
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: /dev/kvm is not usable, and CI=true requires the KVM tests to run"
        );
        eprintln!("SKIPPED {test}: /dev/kvm is missing or not accessible");
    }
    ok
}

/// A running VMM whose console is on pipes; killed when dropped.
pub struct Vmm {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every console line seen so far.
    pub seen: Vec<String>,
    stderr: Receiver<String>,
}

impl Vmm {
    /// Spawns `virga-vmm` with `args`.
    pub fn spawn<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Self::spawn_command(Command::new(VMM).args(args))
    }

    /// Spawns `virga-vmm` inside network namespace `ns` (`ip netns exec`, which execs it: the
    /// child is the VMM itself).
    pub fn spawn_in_netns(ns: &str, args: &[&str]) -> Self {
        Self::spawn_command(
            Command::new("ip")
                .args(["netns", "exec", ns, VMM])
                .args(args),
        )
    }

    fn spawn_command(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning virga-vmm");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        Self {
            stdin: child.stdin.take(),
            child,
            lines: lines_of(stdout),
            seen: Vec::new(),
            stderr: lines_of(stderr),
        }
    }

    /// Spawns the tiny guest with `extra` flags.
    pub fn tiny(extra: &[&str]) -> Self {
        let mut args = vec!["--kernel", tiny_guest::PATH];
        args.extend_from_slice(extra);
        Self::spawn(args)
    }

    /// Waits for a console line satisfying `pred`; panics with the console so far on timeout.
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no matching console line within {timeout:?}; console so far:\n{}\nstderr:\n{}",
                    self.seen.join("\n"),
                    self.stderr_text()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "console closed before a matching line; console:\n{}\nstderr:\n{}",
                    self.seen.join("\n"),
                    self.stderr_text()
                ),
            }
        }
    }

    /// Like [`Vmm::wait_for`], but returns `None` on timeout or end of output.
    pub fn try_wait_for(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).ok()?;
            self.seen.push(line.clone());
            if pred(&line) {
                return Some(line);
            }
        }
    }

    /// Waits for a line that starts with `prefix`.
    pub fn wait_prefix(&mut self, prefix: &str) -> String {
        self.wait_for(Duration::from_secs(20), |l| l.starts_with(prefix))
    }

    /// Lines arriving within `window` (none expected to be missed).
    pub fn lines_during(&mut self, window: Duration) -> Vec<String> {
        let deadline = Instant::now() + window;
        let mut got = Vec::new();
        while let Ok(l) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(l.clone());
            got.push(l);
        }
        got
    }

    /// Types a line on the console.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("writing to the console");
        stdin.flush().expect("flushing the console");
    }

    /// Waits for the process to end.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for virga-vmm") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "virga-vmm still running after {timeout:?}; console:\n{}",
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The exit code, waiting up to 20 s.
    pub fn exit_code(&mut self) -> Option<i32> {
        self.wait_exit(Duration::from_secs(20)).code()
    }

    /// The VMM's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the VMM wrote on stderr so far.
    pub fn stderr_text(&self) -> String {
        let mut v = Vec::new();
        while let Ok(l) = self.stderr.try_recv() {
            v.push(l);
        }
        v.join("\n")
    }
}

impl Drop for Vmm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines_of<R: std::io::Read + Send + 'static>(r: R) -> Receiver<String> {
    let (tx, rx) = channel();
    // VIRGA_TEST_CONSOLE=1 echoes guest output as it arrives (for watching long Linux boots).
    let echo = std::env::var_os("VIRGA_TEST_CONSOLE").is_some();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if echo {
                eprintln!("| {line}");
            }
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Runs `virga-vmm` to completion with `args`; returns (status, stderr).
pub fn run_to_end(args: &[&str], timeout: Duration) -> (ExitStatus, String) {
    let mut v = Vmm::spawn(args);
    let status = v.wait_exit(timeout);
    std::thread::sleep(Duration::from_millis(20));
    (status, v.stderr_text())
}

/// SIGKILL to `pid`.
pub fn kill9(pid: u32) {
    // SAFETY: kill only sends a signal.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}

/// Sends one control request and returns the response.
pub fn control(path: &Path, req: vmm::control::Request) -> vmm::control::Response {
    vmm::control::send(path, &req).expect("control socket request")
}

/// Waits until `path` exists (a socket the VMM is about to create).
pub fn wait_for_path(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
