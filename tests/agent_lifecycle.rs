//! The compute agent over real `virga-vmm` processes on /dev/kvm with the tiny guest as the
//! kernel: spawn to ready, stop/start, soft and hard reboot, pause and suspend (the guest really
//! stops), console output, destroy leaving nothing behind.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod agent_support;

use agent_support::{Host, alive, count, kvm_available};
use orchestrator::compute::driver::{Driver, DriverError, PowerState};
use std::time::{Duration, Instant};
use tiny_guest::MARKER;

#[test]
fn spawn_ready_stop_start_destroy() {
    if !kvm_available("spawn_ready_stop_start_destroy") {
        return;
    }
    let host = Host::new();
    let spec = host.tiny("vm1", "echo hello from vm1");
    let id = spec.id;
    let first = host.agent.spawn(&spec).expect("spawn");
    assert_eq!(first.power, PowerState::Running);
    let pid = first.pid.expect("a VMM pid");
    let seen = host.wait_ready(id);
    assert_eq!(seen.pid, Some(pid));
    // The mark's time stays put while the guest runs on (it is that boot's time).
    let at = seen.ready_us.expect("the ready mark's time");
    assert!(at > 0, "{seen:?}");
    let console = host.wait_console(id, "hello from vm1");
    assert_eq!(host.agent.observe(id).unwrap().ready_us, Some(at));
    assert!(console.contains(MARKER), "{console}");
    // The guest found its config drive (the agent attached it read-only, label config-2).
    let console = host.wait_console(id, "config-drive: done");
    assert!(console.contains("config-drive: hostname vm1"), "{console}");
    assert!(
        console.contains(&format!(
            "config-drive: public key testkey {}",
            agent_support::KEY
        )),
        "{console}"
    );
    assert_eq!(
        host.agent
            .console_output(id, Some(1))
            .unwrap()
            .lines()
            .count(),
        1
    );
    for file in [
        "vmm.json",
        "console.log",
        "control.sock",
        "vmm.pid",
        "instance.json",
    ] {
        assert!(host.file(id, file).exists(), "{file} missing");
    }

    // The tiny guest powers off on Ctrl-Alt-Del: a clean stop well within the grace.
    let t = Instant::now();
    host.agent.stop(id, Duration::from_secs(5)).expect("stop");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    let off = host.agent.observe(id).unwrap();
    assert_eq!(
        (off.power, off.pid, off.fault),
        (PowerState::Shutdown, None, None)
    );
    assert!(!alive(pid), "VMM {pid} still alive after stop");
    // The guest saw the power button.
    host.wait_console(id, "ctrl-alt-del: powering off");
    // Stopping a stopped instance is a no-op; pausing it is refused.
    host.agent.stop(id, Duration::from_secs(1)).unwrap();
    assert!(matches!(
        host.agent.pause(id),
        Err(DriverError::InvalidState {
            state: PowerState::Shutdown,
            ..
        })
    ));

    let again = host.agent.start(id).expect("start");
    let pid2 = again.pid.unwrap();
    assert_ne!(pid2, pid);
    host.wait_ready(id);
    assert!(matches!(
        host.agent.start(id),
        Err(DriverError::InvalidState { .. })
    ));
    let console = host.agent.console_output(id, None).unwrap();
    assert_eq!(count(&console, MARKER), 2, "console kept across boots");

    host.agent.destroy(id).expect("destroy");
    assert!(!alive(pid2), "VMM {pid2} survived destroy");
    assert!(!host.agent.instance_dir(id).path().exists());
    assert!(matches!(
        host.agent.observe(id),
        Err(DriverError::NotFound(_))
    ));
    assert!(matches!(
        host.agent.destroy(id),
        Err(DriverError::NotFound(_))
    ));
    assert!(host.agent.list().is_empty());
}

#[test]
fn stop_kills_a_guest_that_ignores_the_power_button() {
    if !kvm_available("stop_kills_a_guest_that_ignores_the_power_button") {
        return;
    }
    let host = Host::new();
    // While printing ticks the tiny guest does not look at its keyboard.
    let spec = host.tiny("deaf", "ticks");
    let id = spec.id;
    let pid = host.agent.spawn(&spec).unwrap().pid.unwrap();
    host.wait_ready(id);
    let t = Instant::now();
    host.agent.stop(id, Duration::from_millis(300)).unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(!alive(pid));
    let off = host.agent.observe(id).unwrap();
    assert_eq!(
        (off.power, off.fault),
        (PowerState::Shutdown, None),
        "a stop that had to kill is still a stop, not a crash"
    );
}

#[test]
fn soft_and_hard_reboot() {
    if !kvm_available("soft_and_hard_reboot") {
        return;
    }
    let host = Host::new();
    let spec = host.tiny("rb", "");
    let id = spec.id;
    let pid = host.agent.spawn(&spec).unwrap().pid.unwrap();
    host.wait_ready(id);

    // Soft: the tiny guest answers Ctrl-Alt-Del by powering off, so the agent boots it again.
    let soft = host
        .agent
        .reboot(id, false, Duration::from_secs(5))
        .expect("soft reboot");
    assert_eq!(soft.power, PowerState::Running);
    host.wait_ready(id);
    let console = host.wait_lines(id, MARKER, 2);
    assert!(console.contains("ctrl-alt-del"), "{console}");

    // Hard: the VMM is replaced without asking the guest.
    let before = host.agent.observe(id).unwrap().pid.unwrap();
    let hard = host
        .agent
        .reboot(id, true, Duration::from_secs(5))
        .expect("hard reboot");
    let after = hard.pid.unwrap();
    assert_ne!(after, before);
    assert!(!alive(before) && !alive(pid));
    host.wait_ready(id);
    let console = host.wait_lines(id, MARKER, 3);
    assert_eq!(
        count(&console, "ctrl-alt-del"),
        1,
        "hard reboot does not ask the guest"
    );

    // Soft reboot of a stopped instance is refused; hard reboot starts it.
    host.agent.stop(id, Duration::from_secs(5)).unwrap();
    assert!(matches!(
        host.agent.reboot(id, false, Duration::from_secs(1)),
        Err(DriverError::InvalidState { .. })
    ));
    let started = host.agent.reboot(id, true, Duration::ZERO).unwrap();
    assert_eq!(started.power, PowerState::Running);
    host.wait_ready(id);
}

/// Size of the console log now.
fn console_len(host: &Host, id: uuid::Uuid) -> u64 {
    std::fs::metadata(host.file(id, "console.log"))
        .map(|m| m.len())
        .unwrap_or(0)
}

#[test]
fn pause_and_suspend_really_stop_the_guest() {
    if !kvm_available("pause_and_suspend_really_stop_the_guest") {
        return;
    }
    let host = Host::new();
    let spec = host.tiny("ticker", "ticks");
    let id = spec.id;
    host.agent.spawn(&spec).unwrap();
    host.wait_ready(id);
    let grows = |what: &str| {
        let start = console_len(&host, id);
        let deadline = Instant::now() + Duration::from_secs(5);
        while console_len(&host, id) == start {
            assert!(Instant::now() < deadline, "{what}: console did not grow");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    grows("running");

    for (suspend, state) in [(false, PowerState::Paused), (true, PowerState::Suspended)] {
        if suspend {
            host.agent.suspend(id).unwrap();
        } else {
            host.agent.pause(id).unwrap();
        }
        assert_eq!(host.agent.observe(id).unwrap().power, state);
        // Ten ticks a second when running; nothing for a whole second when paused.
        std::thread::sleep(Duration::from_millis(200));
        let frozen = console_len(&host, id);
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(
            console_len(&host, id),
            frozen,
            "{state:?} guest made progress"
        );
        // The other verb does not undo it.
        let wrong = if suspend {
            host.agent.unpause(id)
        } else {
            host.agent.resume(id)
        };
        assert!(matches!(wrong, Err(DriverError::InvalidState { .. })));
        if suspend {
            host.agent.resume(id).unwrap();
        } else {
            host.agent.unpause(id).unwrap();
        }
        assert_eq!(host.agent.observe(id).unwrap().power, PowerState::Running);
        grows("resumed");
    }
    assert!(matches!(
        host.agent.unpause(id),
        Err(DriverError::InvalidState {
            state: PowerState::Running,
            ..
        })
    ));
    // A paused guest is stopped without waiting for a power button it cannot see.
    host.agent.pause(id).unwrap();
    let t = Instant::now();
    host.agent.stop(id, Duration::from_secs(10)).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(host.agent.observe(id).unwrap().power, PowerState::Shutdown);
}

#[test]
fn soft_reboot_completes_inside_the_vmm_when_the_guest_reboots() {
    if !kvm_available("soft_reboot_completes_inside_the_vmm_when_the_guest_reboots") {
        return;
    }
    let host = Host::new();
    // This guest ignores the button while it ticks and then resets itself (the VMM boots it
    // again in the same process), over and over: the agent sees the boot count grow, as with a
    // Linux guest whose init reboots on Ctrl-Alt-Del.
    let spec = host.tiny("self-reset", "ticks 3; reset");
    let id = spec.id;
    let pid = host.agent.spawn(&spec).unwrap().pid.unwrap();
    host.wait_ready(id);
    let seen = host
        .agent
        .reboot(id, false, Duration::from_secs(10))
        .expect("soft reboot");
    assert_eq!(seen.pid, Some(pid), "rebooted inside the same VMM");
    assert_eq!(seen.power, PowerState::Running);
    let console = host.wait_lines(id, MARKER, 2);
    assert!(!console.contains("ctrl-alt-del"), "{console}");
}

/// A guest that never writes the ready mark (as a stock image would not) runs as any other:
/// the agent reports it Running, and not ready, with no mark time.
#[test]
fn a_guest_without_the_ready_mark_runs_unready() {
    if !kvm_available("a_guest_without_the_ready_mark_runs_unready") {
        return;
    }
    let host = Host::new();
    let cmdline = format!("{}; echo up without a mark", tiny_guest::NO_READY_MARK);
    let spec = host.tiny("stock", &cmdline);
    let id = spec.id;
    let first = host.agent.spawn(&spec).expect("spawn");
    assert_eq!(first.power, PowerState::Running);
    let console = host.wait_console(id, "up without a mark");
    assert!(console.contains(MARKER), "{console}");
    assert!(console.contains("ready mark skipped"), "{console}");
    assert!(!console.contains("unknown command"), "{console}");
    let seen = host.agent.observe(id).unwrap();
    assert_eq!(
        (seen.power, seen.pid, seen.ready, seen.ready_us),
        (PowerState::Running, first.pid, false, None)
    );
    // A hard reboot boots it again, still without a mark.
    let again = host.agent.reboot(id, true, Duration::from_secs(1)).unwrap();
    assert_eq!((again.power, again.ready_us), (PowerState::Running, None));
    host.wait_lines(id, "up without a mark", 2);
    assert_eq!(host.agent.observe(id).unwrap().ready_us, None);
    host.agent.destroy(id).unwrap();
}
