//! Helpers for the compute agent tests: a host (temporary instances dir and base cache, an
//! [`Agent`] running the real `virga-vmm`), specs for the tiny guest, waits, and a guard that
//! kills every VMM a test started and removes its files.

#![allow(dead_code)]

use orchestrator::agent::{Agent, AgentConfig};
use orchestrator::compute::driver::{
    BootSource, ConfigDriveData, Driver, InstanceSpec, Observed, PowerState,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use uuid::Uuid;

#[path = "../vmm_support/mod.rs"]
mod vmm_support;
pub use vmm_support::{VMM, kvm_available};

/// The public key the test instances get on their config drive.
pub const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHZpcmdhLXRlc3Qta2V5LW9ubHk virga@test";

/// A temporary compute host. Dropping it kills every VMM of its instances (through the
/// agent, then by pid for any left) and removes the directory.
pub struct Host {
    pub root: tempfile::TempDir,
    pub agent: Agent,
}

impl Host {
    pub fn new() -> Self {
        let root = tempfile::tempdir().expect("temporary directory");
        let agent = Agent::new(Self::config_for(root.path())).expect("agent");
        Self { root, agent }
    }

    /// The agent config of a host rooted at `root`.
    pub fn config_for(root: &Path) -> AgentConfig {
        AgentConfig {
            vmm_binary: VMM.into(),
            stop_grace_secs: 5,
            ..AgentConfig::under(root)
        }
    }

    /// A second agent over the same directories (what a restarted daemon does).
    pub fn fresh_agent(&self) -> Agent {
        Agent::new(Self::config_for(self.root.path())).expect("fresh agent")
    }

    /// The tiny guest with `cmdline` (its `;`-separated start-up commands).
    pub fn tiny(&self, name: &str, cmdline: &str) -> InstanceSpec {
        let id = Uuid::new_v4();
        InstanceSpec {
            id,
            name: name.into(),
            vcpus: 1,
            memory_mib: 32,
            root_gb: 0,
            boot: BootSource {
                image_id: Uuid::new_v4(),
                disk: None,
                disk_format: "raw".into(),
                kernel: Some(tiny_guest::PATH.into()),
                initrd: None,
                kernel_from_disk: false,
                cmdline: Some(cmdline.into()),
            },
            config_drive: ConfigDriveData {
                meta_data: serde_json::json!({
                    "uuid": id.to_string(),
                    "name": name,
                    "hostname": name,
                    "public_keys": {"testkey": KEY},
                }),
                ..Default::default()
            },
        }
    }

    /// Path of a file of instance `id`.
    pub fn file(&self, id: Uuid, name: &str) -> PathBuf {
        self.agent.instance_dir(id).path().join(name)
    }

    /// Waits until `observe` satisfies `pred`; panics with the last observation and console.
    pub fn wait(&self, id: Uuid, what: &str, pred: impl Fn(&Observed) -> bool) -> Observed {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let seen = self.agent.observe(id).expect("observe");
            if pred(&seen) {
                return seen;
            }
            if Instant::now() > deadline {
                panic!(
                    "{id}: not {what} after 20 s: {seen:?}\nconsole:\n{}",
                    self.agent.console_output(id, Some(30)).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until the console log holds `text`; returns the log.
    pub fn wait_console(&self, id: Uuid, text: &str) -> String {
        self.wait_console_for(id, text, |c| c.contains(text))
    }

    /// Waits until `text` occurs `n` times on the console; returns the log.
    pub fn wait_lines(&self, id: Uuid, text: &str, n: usize) -> String {
        self.wait_console_for(id, &format!("{n} x {text:?}"), |c| count(c, text) >= n)
    }

    /// Waits until the console log satisfies `pred`; returns the log.
    pub fn wait_console_for(&self, id: Uuid, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let console = self.agent.console_output(id, None).expect("console");
            if pred(&console) {
                return console;
            }
            assert!(
                Instant::now() < deadline,
                "{id}: no {what} on the console after 20 s:\n{console}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the guest's ready mark (and its time).
    pub fn wait_ready(&self, id: Uuid) -> Observed {
        self.wait(id, "ready", |o| {
            o.power == PowerState::Running && o.ready && o.ready_us.is_some()
        })
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for (id, seen) in self.agent.list() {
            if self.agent.destroy(id).is_err()
                && let Some(pid) = seen.pid
            {
                kill(pid);
            }
        }
    }
}

/// SIGKILL to `pid`.
pub fn kill(pid: u32) {
    // SAFETY: kill only sends a signal.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}

/// Whether `pid` is a live process (a zombie counts as gone).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next().map(str::to_owned))
        })
        .is_some_and(|state| state != "Z" && state != "X")
}

/// How often `text` occurs on the console (not per line: a VMM killed mid-line leaves the
/// next boot's first line glued to the last one).
pub fn count(console: &str, text: &str) -> usize {
    console.matches(text).count()
}
