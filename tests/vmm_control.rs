//! The control socket against a running tiny guest: info, pause/resume (a paused guest makes
//! no progress), shutdown (Ctrl-Alt-Del through the i8042), kill.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod vmm_support;

use std::time::Duration;
use tiny_guest::MARKER;
use vmm::control::Request;
use vmm::state::RunState;
use vmm_support::{Vmm, control, kvm_available, wait_for_path};

#[test]
fn info_reports_state_sizes_and_boot_times() {
    if !kvm_available("info_reports_state_sizes_and_boot_times") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ctl.sock");
    let mut vm = Vmm::tiny(&[
        "--control-socket",
        sock.to_str().unwrap(),
        "--vcpus",
        "2",
        "--memory",
        "256",
    ]);
    vm.wait_prefix(MARKER);
    wait_for_path(&sock);
    let r = control(&sock, Request::Info);
    assert!(r.ok, "{r:?}");
    let info = r.info.expect("info payload");
    assert_eq!(
        (info.state, info.vcpus, info.memory_mib, info.boots),
        (RunState::Running, 2, 256, 1)
    );
    let first = info.boot.first_kvm_run_us.expect("first KVM_RUN recorded");
    let codes: Vec<u8> = info.boot.progress.iter().map(|m| m.code).collect();
    assert_eq!(codes, vec![1, 2, 123], "the tiny guest's progress codes");
    assert!(
        info.boot.progress.iter().all(|m| m.us >= first),
        "progress after the first KVM_RUN"
    );
    assert!(control(&sock, Request::Kill).ok);
    assert_eq!(vm.exit_code(), Some(0));
    assert!(!sock.exists(), "the VMM removes its control socket");
}

#[test]
fn pause_stops_progress_and_resume_restarts_it() {
    if !kvm_available("pause_stops_progress_and_resume_restarts_it") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ctl.sock");
    let mut vm = Vmm::tiny(&["--control-socket", sock.to_str().unwrap()]);
    vm.wait_prefix(MARKER);
    vm.send("ticks");
    vm.wait_prefix("tick 2");
    let r = control(&sock, Request::Pause);
    assert!(r.ok, "{r:?}");
    assert_eq!(
        control(&sock, Request::Info).info.unwrap().state,
        RunState::Paused
    );
    // Lines already on their way may still arrive; after that, nothing for a whole second
    // (the guest prints ten ticks a second when it runs).
    vm.lines_during(Duration::from_millis(300));
    let during = vm.lines_during(Duration::from_secs(1));
    assert!(during.is_empty(), "paused guest made progress: {during:?}");
    // Input typed while paused waits for the guest too.
    assert!(control(&sock, Request::Resume).ok);
    assert_eq!(
        control(&sock, Request::Info).info.unwrap().state,
        RunState::Running
    );
    let after = vm.wait_prefix("tick ");
    let n: u64 = after["tick ".len()..].parse().unwrap();
    assert!(n >= 3, "{after}");
    vm.send("stop");
    vm.wait_prefix("ticks done");
    assert!(control(&sock, Request::Kill).ok);
    assert_eq!(vm.exit_code(), Some(0));
}

#[test]
fn shutdown_presses_ctrl_alt_del() {
    if !kvm_available("shutdown_presses_ctrl_alt_del") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ctl.sock");
    let mut vm = Vmm::tiny(&["--control-socket", sock.to_str().unwrap()]);
    vm.wait_prefix(MARKER);
    wait_for_path(&sock);
    assert!(control(&sock, Request::Shutdown).ok);
    vm.wait_prefix("ctrl-alt-del: powering off");
    assert_eq!(vm.exit_code(), Some(0));
}

#[test]
fn resume_of_a_running_guest_and_garbage_requests() {
    if !kvm_available("resume_of_a_running_guest_and_garbage_requests") {
        return;
    }
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ctl.sock");
    let mut vm = Vmm::tiny(&["--control-socket", sock.to_str().unwrap()]);
    vm.wait_prefix(MARKER);
    wait_for_path(&sock);
    assert!(control(&sock, Request::Resume).ok, "resume is idempotent");
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    s.write_all(b"{\"cmd\":\"explode\"}\n").unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    let r: vmm::control::Response = serde_json::from_str(&line).unwrap();
    assert!(!r.ok && r.error.unwrap().contains("explode"));
    // The VMM is unaffected.
    vm.send("echo still here");
    vm.wait_for(Duration::from_secs(20), |l| l == "still here");
    assert!(control(&sock, Request::Kill).ok);
    assert_eq!(vm.exit_code(), Some(0));
}
