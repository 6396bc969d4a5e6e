//! VMMs outlive the process that started them (as they outlive a restarted virgad): a child
//! process creates instances and exits; this process adopts the VMMs with a fresh agent and
//! tells how each ends although it cannot wait for them: a guest panic and a triple fault are
//! crashes with their statuses (from the VMM's exit-status file), a guest power-off is a
//! clean stop, and a kill -9 (no file) is a crash "killed by a signal or crashed".
//!
//! This test process makes itself a child subreaper so the orphaned VMMs are reparented to it
//! (not to PID 1, which does not reap here) and can be reaped at the end.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod agent_support;

use agent_support::{Host, alive, kill, kvm_available};
use orchestrator::agent::Agent;
use orchestrator::compute::driver::{Driver, PowerState};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use uuid::Uuid;

const ROOT_ENV: &str = "VIRGA_AGENT_ORPHAN_ROOT";

/// The orphans: (name, tiny guest commands). The panic and the triple fault come about 4 s of
/// guest time after boot (`ticks 40`), well after this process adopted them; `ticks` output
/// shows on the console meanwhile.
const ORPHANS: [(&str, &str); 4] = [
    ("killed", "echo started by another process"),
    ("off", "echo started by another process"),
    (
        "panicky",
        "echo started by another process; ticks 40; panic",
    ),
    (
        "triple",
        "echo started by another process; ticks 40; triplefault",
    ),
];

/// Runs only when re-executed by [`vmms_outlive_the_process_that_started_them`] (which sets
/// the variable): starts the [`ORPHANS`], then the process exits with their VMMs running.
#[test]
fn orphan_maker() {
    let Some(root) = std::env::var_os(ROOT_ENV) else {
        return;
    };
    let agent = Agent::new(Host::config_for(std::path::Path::new(&root))).unwrap();
    let host = Host::new();
    for (name, cmdline) in ORPHANS {
        let spec = host.tiny(name, cmdline);
        let seen = agent.spawn(&spec).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !agent.observe(spec.id).unwrap().ready {
            assert!(Instant::now() < deadline, "not ready");
            std::thread::sleep(Duration::from_millis(2));
        }
        println!("VMM {name} {} {}", spec.id, seen.pid.unwrap());
    }
    // `host` (an empty host of its own) is dropped; `agent`'s VMMs are left running on purpose.
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
    let orphans: HashMap<String, (Uuid, u32)> = stdout
        .lines()
        .filter_map(|l| {
            // The harness may print "test orphan_maker ... " on the same line.
            let mut w = l.split_once("VMM ")?.1.split_whitespace();
            let name = w.next()?.to_owned();
            Some((name, (w.next()?.parse().ok()?, w.next()?.parse().ok()?)))
        })
        .collect();
    assert_eq!(orphans.len(), ORPHANS.len(), "{stdout}");
    let _guards: Vec<_> = orphans.values().map(|&(_, pid)| KillOnDrop(pid)).collect();
    for (name, &(_, pid)) in &orphans {
        assert!(
            alive(pid),
            "{name}: the VMM died with the process that started it"
        );
        assert_eq!(
            ppid(pid),
            Some(std::process::id()),
            "{name}: reparented to us"
        );
    }

    let agent = Agent::new(Host::config_for(root.path())).unwrap();
    let events = agent.subscribe();
    let listed = agent.list();
    assert_eq!(listed.len(), ORPHANS.len());
    for (id, seen) in &listed {
        let (name, &(_, pid)) = orphans.iter().find(|(_, (i, _))| i == id).unwrap();
        assert_eq!(
            (seen.power, seen.pid, seen.ready),
            (PowerState::Running, Some(pid), true),
            "{name} is adopted while it runs"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let console = agent.console_output(*id, None).unwrap();
            if console.contains("started by another process") {
                break;
            }
            assert!(Instant::now() < deadline, "{console}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let (id_of, pid_of) = (|n: &str| orphans[n].0, |n: &str| orphans[n].1);

    // kill -9: no exit-status file, so a crash "killed by a signal or crashed".
    kill(pid_of("killed"));
    // The guest powers off (Ctrl-Alt-Del, which the tiny guest answers by ACPI S5): clean.
    let shutdown = vmm::control::send(
        &agent.instance_dir(id_of("off")).control_socket(),
        &vmm::control::Request::Shutdown,
    )
    .unwrap();
    assert!(shutdown.ok, "{shutdown:?}");
    // The panic and the triple fault come on their own.
    let mut ended = HashSet::new();
    while ended.len() < ORPHANS.len() {
        let id = events
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("only {ended:?} ended: {e}"));
        ended.insert(id);
    }
    for name in ORPHANS.map(|(n, _)| n) {
        let (id, pid) = orphans[name];
        assert!(!alive(pid), "{name}");
        // SAFETY: waitpid on our (adopted) child; a null status pointer is allowed.
        unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0) };
        let seen = agent.observe(id).unwrap();
        let fault = seen.fault.clone().unwrap_or_default();
        let want = match name {
            "killed" => "killed by a signal or crashed",
            "off" => "",
            "panicky" => "status 4 (guest panic)",
            _ => "status 3 (triple fault)",
        };
        if want.is_empty() {
            assert_eq!(
                (seen.power, seen.fault),
                (PowerState::Shutdown, None),
                "{name}"
            );
        } else {
            assert_eq!(seen.power, PowerState::Crashed, "{name}: {fault}");
            assert!(fault.contains(want), "{name}: {fault}");
        }
    }
    let file = agent.instance_dir(id_of("panicky")).vmm_exit_file();
    let written = vmm::exit_status::ExitStatus::read(&file).unwrap().unwrap();
    assert_eq!(
        (written.pid, written.status, written.reason),
        (
            pid_of("panicky"),
            4,
            vmm::exit_status::ExitReason::GuestPanic
        )
    );

    // One starts again, now as this agent's own child; all are removed without a trace.
    let again = agent.start(id_of("killed")).unwrap();
    assert_ne!(again.pid, Some(pid_of("killed")));
    for (id, _) in agent.list() {
        agent.destroy(id).unwrap();
    }
    assert!(
        std::fs::read_dir(root.path().join("instances"))
            .unwrap()
            .next()
            .is_none()
    );
}
