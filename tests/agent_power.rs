//! VMMs outlive the agent and are adopted by a new one with the same pids; a VMM that dies is
//! noticed at once (subscription) and classified: power-off, crash with its cause, boot failure.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod agent_support;

use agent_support::{Host, alive, kill, kvm_available};
use orchestrator::compute::driver::{Driver, DriverError, PowerState};
use std::time::{Duration, Instant};

#[test]
fn a_fresh_agent_adopts_running_vmms_with_the_same_pids() {
    if !kvm_available("a_fresh_agent_adopts_running_vmms_with_the_same_pids") {
        return;
    }
    let host = Host::new();
    let mut pids = Vec::new();
    for name in ["a1", "a2", "a3"] {
        let spec = host.tiny(name, "");
        let pid = host.agent.spawn(&spec).unwrap().pid.unwrap();
        host.wait_ready(spec.id);
        pids.push((spec.id, pid));
    }
    host.agent.pause(pids[2].0).unwrap();

    let fresh = host.fresh_agent();
    let listed = fresh.list();
    assert_eq!(listed.len(), 3);
    for (id, pid) in &pids {
        let seen = &listed.iter().find(|(i, _)| i == id).expect("listed").1;
        assert_eq!(seen.pid, Some(*pid), "same VMM after adoption");
        assert!(seen.ready && seen.fault.is_none(), "{seen:?}");
    }
    let powers: Vec<PowerState> = pids
        .iter()
        .map(|(id, _)| fresh.observe(*id).unwrap().power)
        .collect();
    assert_eq!(
        powers,
        [PowerState::Running, PowerState::Running, PowerState::Paused]
    );
    // The adopted VMMs answer the fresh agent: stop one, unpause another.
    fresh.stop(pids[0].0, Duration::from_secs(5)).unwrap();
    assert!(!alive(pids[0].1));
    assert_eq!(
        fresh.observe(pids[0].0).unwrap().power,
        PowerState::Shutdown
    );
    fresh.unpause(pids[2].0).unwrap();
    assert_eq!(fresh.observe(pids[2].0).unwrap().power, PowerState::Running);
    fresh.destroy(pids[1].0).unwrap();
    assert!(!alive(pids[1].1));
}

#[test]
fn kill_9_is_noticed_at_once_as_a_crash_with_its_cause() {
    if !kvm_available("kill_9_is_noticed_at_once_as_a_crash_with_its_cause") {
        return;
    }
    let host = Host::new();
    let spec = host.tiny("victim", "");
    let id = spec.id;
    let pid = host.agent.spawn(&spec).unwrap().pid.unwrap();
    host.wait_ready(id);
    let events = host.agent.subscribe();
    // A fresh agent (a restarted daemon) hears of it too, through its pidfd watcher.
    let fresh = host.fresh_agent();
    let fresh_events = fresh.subscribe();

    let t = Instant::now();
    kill(pid);
    assert_eq!(events.recv_timeout(Duration::from_secs(5)), Ok(id));
    assert_eq!(fresh_events.recv_timeout(Duration::from_secs(5)), Ok(id));
    let noticed = t.elapsed();
    let seen = host.agent.observe(id).unwrap();
    assert_eq!(seen.power, PowerState::Crashed, "{seen:?}");
    let fault = seen.fault.unwrap();
    assert!(fault.contains("signal 9 (SIGKILL)"), "{fault}");
    assert_eq!(fresh.observe(id).unwrap(), host.agent.observe(id).unwrap());
    eprintln!("kill -9 noticed after {noticed:?}");

    // It starts again on the same files.
    let again = host.agent.start(id).unwrap();
    assert_ne!(again.pid, Some(pid));
    host.wait_ready(id);
    assert_eq!(host.agent.observe(id).unwrap().fault, None);
}

#[test]
fn guest_power_off_and_guest_panic_are_told_apart() {
    if !kvm_available("guest_power_off_and_guest_panic_are_told_apart") {
        return;
    }
    let host = Host::new();
    let off = host.tiny("off", "poweroff");
    let panic = host.tiny("panicky", "panic");
    let triple = host.tiny("triple", "triplefault");
    for spec in [&off, &panic, &triple] {
        // The guest may end before or after spawn returns: either is fine here.
        match host.agent.spawn(spec) {
            Ok(_) | Err(DriverError::BootFailed { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let ended = |id| host.wait(id, "ended", |o| o.pid.is_none());
    let seen = ended(off.id);
    assert_eq!((seen.power, seen.fault), (PowerState::Shutdown, None));
    let seen = ended(panic.id);
    assert_eq!(seen.power, PowerState::Crashed);
    assert!(
        seen.fault
            .as_deref()
            .unwrap()
            .contains("status 4 (guest panic)")
    );
    let seen = ended(triple.id);
    assert_eq!(seen.power, PowerState::Crashed);
    assert!(
        seen.fault
            .as_deref()
            .unwrap()
            .contains("status 3 (triple fault)"),
        "{seen:?}"
    );
}

#[test]
fn a_kernel_that_does_not_boot_fails_with_the_reason_and_keeps_the_console() {
    if !kvm_available("a_kernel_that_does_not_boot_fails_with_the_reason_and_keeps_the_console") {
        return;
    }
    let host = Host::new();
    let junk = host.root.path().join("not-a-kernel");
    std::fs::write(&junk, b"this is not a kernel image at all").unwrap();
    let mut spec = host.tiny("bad", "");
    spec.boot.kernel = Some(junk.clone());
    let err = host.agent.spawn(&spec).unwrap_err();
    let DriverError::BootFailed { id, reason } = &err else {
        panic!("not a boot failure: {err}");
    };
    assert_eq!(*id, spec.id);
    assert!(reason.contains("status 1 (VMM error)"), "{reason}");
    assert!(
        reason.contains("not-a-kernel"),
        "names the kernel: {reason}"
    );
    assert!(
        reason.contains("virga-vmm: error: kernel"),
        "the VMM's own line: {reason}"
    );
    // The instance stays (ERROR with a fault), its console log readable.
    let seen = host.agent.observe(spec.id).unwrap();
    assert_eq!(seen.power, PowerState::Crashed);
    assert!(seen.fault.unwrap().contains("virga-vmm: error: kernel"));
    assert!(host.file(spec.id, "console.log").exists());
    assert_eq!(host.agent.console_output(spec.id, Some(10)).unwrap(), "");

    // A missing kernel likewise.
    let mut spec = host.tiny("missing", "");
    spec.boot.kernel = Some(host.root.path().join("no-such-kernel"));
    let err = host.agent.spawn(&spec).unwrap_err();
    assert!(err.to_string().contains("no-such-kernel"), "{err}");
}
