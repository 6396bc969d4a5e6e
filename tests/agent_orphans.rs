//! VMMs outlive the process that started them (as they outlive a restarted virgad): a child
//! process creates an instance and exits; this process adopts the VMM with a fresh agent,
//! notices its kill -9 at once and reports the crash with the exit status it cannot know.
//!
//! This test process makes itself a child subreaper so the orphaned VMM is reparented to it
//! (not to PID 1, which does not reap here) and can be reaped at the end.

mod agent_support;

use agent_support::{Host, alive, kill, kvm_available};
use orchestrator::agent::Agent;
use orchestrator::compute::driver::{Driver, PowerState};
use std::time::{Duration, Instant};

const ROOT_ENV: &str = "VIRGA_AGENT_ORPHAN_ROOT";

/// Runs only when re-executed by [`vmms_outlive_the_process_that_started_them`] (which sets
/// the variable): starts one instance, then the process exits with its VMM still running.
#[test]
fn orphan_maker() {
    let Some(root) = std::env::var_os(ROOT_ENV) else {
        return;
    };
    let agent = Agent::new(Host::config_for(std::path::Path::new(&root))).unwrap();
    let host = Host::new();
    let spec = host.tiny("orphan", "echo started by another process");
    let seen = agent.spawn(&spec).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !agent.observe(spec.id).unwrap().ready {
        assert!(Instant::now() < deadline, "not ready");
        std::thread::sleep(Duration::from_millis(2));
    }
    println!("VMM pid {}", seen.pid.unwrap());
    // `host` (an empty host of its own) is dropped; `agent`'s VMM is left running on purpose.
}

/// Kills the orphan if the test fails before it does (the VMM is nobody's child to clean up).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if alive(self.0) {
            kill(self.0);
            // SAFETY: waitpid on our (adopted) child; a null status pointer is allowed.
            unsafe { libc::waitpid(self.0 as libc::pid_t, std::ptr::null_mut(), 0) };
        }
    }
}

/// Destroys every instance under the root at the end, whatever happened in between.
struct DestroyAll<'a>(&'a std::path::Path);

impl Drop for DestroyAll<'_> {
    fn drop(&mut self) {
        if let Ok(agent) = Agent::new(Host::config_for(self.0)) {
            for (id, _) in agent.list() {
                let _ = agent.destroy(id);
            }
        }
    }
}

fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn vmms_outlive_the_process_that_started_them() {
    if !kvm_available("vmms_outlive_the_process_that_started_them") {
        return;
    }
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only sets a flag on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let root = tempfile::tempdir().unwrap();
    let _cleanup = DestroyAll(root.path());
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "orphan_maker", "--nocapture", "--test-threads=1"])
        .env(ROOT_ENV, root.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: u32 = stdout
        .lines()
        .find_map(|l| l.split_once("VMM pid "))
        .and_then(|(_, p)| p.trim().parse().ok())
        .expect("the child printed its VMM's pid");
    let _guard = KillOnDrop(pid);
    assert!(alive(pid), "the VMM died with the process that started it");
    assert_eq!(ppid(pid), Some(std::process::id()), "reparented to us");

    let agent = Agent::new(Host::config_for(root.path())).unwrap();
    let listed = agent.list();
    assert_eq!(listed.len(), 1);
    let (id, seen) = listed[0].clone();
    assert_eq!(
        (seen.power, seen.pid, seen.ready),
        (PowerState::Running, Some(pid), true)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let console = agent.console_output(id, None).unwrap();
        if console.contains("started by another process") {
            break;
        }
        assert!(Instant::now() < deadline, "{console}");
        std::thread::sleep(Duration::from_millis(5));
    }

    let events = agent.subscribe();
    kill(pid);
    assert_eq!(events.recv_timeout(Duration::from_secs(5)), Ok(id));
    let seen = agent.observe(id).unwrap();
    assert_eq!(seen.power, PowerState::Crashed);
    let fault = seen.fault.unwrap();
    assert!(fault.contains("exit status unknown"), "{fault}");
    // SAFETY: waitpid on our (adopted) child; a null status pointer is allowed.
    unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0) };

    // It starts again, now as this agent's own child, and is removed without a trace.
    let again = agent.start(id).unwrap();
    assert_ne!(again.pid, Some(pid));
    agent.destroy(id).unwrap();
    assert!(
        std::fs::read_dir(root.path().join("instances"))
            .unwrap()
            .next()
            .is_none()
    );
}
