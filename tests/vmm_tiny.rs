//! `virga-vmm` with the tiny ring-0 guest on /dev/kvm: console, exit statuses, memory and
//! vCPUs, serial back ends, JSON config.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod vmm_support;

use std::time::Duration;
use tiny_guest::MARKER;
use vmm_support::{Vmm, kvm_available};

const T: Duration = Duration::from_secs(20);

#[test]
fn console_input_round_trip() {
    if !kvm_available("console_input_round_trip") {
        return;
    }
    let mut vm = Vmm::tiny(&[]);
    vm.wait_prefix(MARKER);
    vm.send("echo hello from the host, through COM1");
    vm.wait_for(T, |l| l == "hello from the host, through COM1");
    // A line longer than the 16550's 64-byte FIFO arrives whole.
    let long = "x".repeat(200);
    vm.send(&format!("echo {long}"));
    vm.wait_for(T, |l| l == long);
    vm.send("poweroff");
    assert_eq!(vm.exit_code(), Some(0));
}

fn status_of(cmdline: &str, extra: &[&str]) -> Option<i32> {
    let mut args = vec!["--cmdline", cmdline];
    args.extend_from_slice(extra);
    let mut vm = Vmm::tiny(&args);
    vm.wait_prefix(MARKER);
    vm.exit_code()
}

#[test]
fn exit_statuses() {
    if !kvm_available("exit_statuses") {
        return;
    }
    assert_eq!(status_of("poweroff", &[]), Some(0), "ACPI poweroff");
    assert_eq!(
        status_of("reset", &["--on-reset", "exit"]),
        Some(2),
        "reset with --on-reset exit"
    );
    assert_eq!(status_of("triplefault", &[]), Some(3), "triple fault");
    assert_eq!(status_of("panic", &[]), Some(4), "pvpanic");
}

#[test]
fn exit_status_file_matches_the_exit_status() {
    if !kvm_available("exit_status_file_matches_the_exit_status") {
        return;
    }
    use vmm::exit_status::{ExitReason, ExitStatus};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("exit.json");
    let f = file.to_str().unwrap();
    for (cmdline, extra, reason) in [
        ("poweroff", &[][..], ExitReason::PowerOff),
        ("reset", &["--on-reset", "exit"][..], ExitReason::Reset),
        ("triplefault", &[][..], ExitReason::TripleFault),
        ("panic", &[][..], ExitReason::GuestPanic),
    ] {
        let mut args = vec!["--exit-status-file", f];
        args.extend_from_slice(extra);
        let status = status_of(cmdline, &args);
        let written = ExitStatus::read(&file)
            .unwrap()
            .expect("the file is written");
        assert_eq!(
            (Some(written.status), written.reason),
            (status, reason),
            "{cmdline}"
        );
        assert_eq!(written.error, None);
    }
    // A VMM error after the config was read (an unreadable kernel): status 1 with the error.
    let (status, _) = vmm_support::run_to_end(
        &["--kernel", "/nonexistent/vmlinux", "--exit-status-file", f],
        T,
    );
    let written = ExitStatus::read(&file).unwrap().unwrap();
    assert_eq!((status.code(), written.status), (Some(1), 1));
    assert_eq!(written.reason, ExitReason::VmmError);
    assert!(written.error.unwrap().contains("/nonexistent/vmlinux"));
    // `kill -9`: no file.
    std::fs::remove_file(&file).unwrap();
    let mut vm = Vmm::tiny(&["--exit-status-file", f]);
    vm.wait_prefix(MARKER);
    vmm_support::kill9(vm.pid());
    assert_eq!(vm.wait_exit(T).code(), None);
    assert!(!file.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no temp file"
    );
}

#[test]
fn reset_restarts_the_guest_by_default() {
    if !kvm_available("reset_restarts_the_guest_by_default") {
        return;
    }
    let mut vm = Vmm::tiny(&[]);
    vm.wait_prefix(MARKER);
    vm.send("reset");
    // The guest boots again in the same process and still answers.
    vm.wait_prefix(MARKER);
    vm.send("echo second boot");
    vm.wait_for(T, |l| l == "second boot");
    vm.send("poweroff");
    assert_eq!(vm.exit_code(), Some(0));
}

fn guest_view(extra: &[&str]) -> (String, String) {
    let mut args = vec!["--cmdline", "poweroff"];
    args.extend_from_slice(extra);
    let mut vm = Vmm::tiny(&args);
    vm.wait_prefix(MARKER);
    let mem = vm.wait_prefix("mem: ");
    let cpus = vm.wait_prefix("cpus: ");
    assert_eq!(vm.exit_code(), Some(0));
    (mem, cpus)
}

fn mem_fields(line: &str) -> (u64, u64) {
    // "mem: <bytes> bytes in <n> ranges, end <hex>"
    let w: Vec<&str> = line.split_whitespace().collect();
    let bytes = w[1].parse().expect("bytes");
    let end = u64::from_str_radix(w[7].trim_start_matches("0x"), 16).expect("end");
    (bytes, end)
}

#[test]
fn memory_above_4g_and_two_vcpus_with_acpi() {
    if !kvm_available("memory_above_4g_and_two_vcpus_with_acpi") {
        return;
    }
    let (mem, cpus) = guest_view(&["--memory", "4608", "--vcpus", "2"]);
    let (bytes, end) = mem_fields(&mem);
    // 4.5 GiB: 3 GiB below the MMIO hole, 1.5 GiB from 4 GiB; only the BIOS hole is missing.
    assert_eq!(end, (4 << 30) + (1536 << 20), "{mem}");
    assert_eq!(bytes, (4608 << 20) - (0x10_0000 - 0x9_fc00), "{mem}");
    assert_eq!(cpus, "cpus: 2 (madt)");
}

#[test]
fn vcpus_from_the_mp_table_without_acpi() {
    if !kvm_available("vcpus_from_the_mp_table_without_acpi") {
        return;
    }
    let (mem, cpus) = guest_view(&["--memory", "64", "--vcpus", "3", "--no-acpi"]);
    assert_eq!(mem_fields(&mem).1, 64 << 20, "{mem}");
    assert_eq!(cpus, "cpus: 3 (mptable)");
}

#[test]
fn serial_to_a_file() {
    if !kvm_available("serial_to_a_file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let serial = format!("file:{}", log.display());
    let mut vm = Vmm::tiny(&[
        "--serial",
        &serial,
        "--cmdline",
        "echo into the file;poweroff",
    ]);
    assert_eq!(vm.exit_code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(MARKER) && text.contains("into the file\n"),
        "{text}"
    );
}

#[test]
fn serial_on_a_unix_socket_both_ways() {
    if !kvm_available("serial_on_a_unix_socket_both_ways") {
        return;
    }
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("serial.sock");
    let serial = format!("socket:{}", sock.display());
    let mut vm = Vmm::tiny(&["--serial", &serial]);
    vmm_support::wait_for_path(&sock);
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(b"echo over the socket\n").unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "socket closed");
        if line == "over the socket\n" {
            break;
        }
    }
    s.write_all(b"poweroff\n").unwrap();
    assert_eq!(vm.exit_code(), Some(0));
    assert!(!sock.exists(), "the VMM removes its serial socket");
}

#[test]
fn json_config_file_with_flag_override() {
    if !kvm_available("json_config_file_with_flag_override") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vm.json");
    let json = serde_json::json!({
        "kernel": tiny_guest::PATH,
        "cmdline": "cpus;poweroff",
        "vcpus": 2,
        "memory_mib": 96,
        "on_reset": "exit",
        "acpi": true,
    });
    std::fs::write(&cfg, json.to_string()).unwrap();
    let mut vm = Vmm::spawn(["--config", cfg.to_str().unwrap(), "--vcpus", "4"]);
    vm.wait_prefix(MARKER);
    assert_eq!(mem_fields(&vm.wait_prefix("mem: ")).1, 96 << 20);
    assert_eq!(vm.wait_prefix("cpus: "), "cpus: 4 (madt)");
    assert_eq!(vm.exit_code(), Some(0));
}
