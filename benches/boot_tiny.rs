//! `cargo bench --bench boot_tiny`: wall time from spawning `virga-vmm` (release) to the tiny
//! guest's marker and to process exit (1 vCPU, 128 MiB), median and p90 of 50 runs, the VMM's
//! own share (spawn to first KVM_RUN), and the VMM's memory overhead after boot (RSS minus
//! the guest memory the guest touched). Targets: ≤ 5 ms to marker, ≤ 10 ms to exit, ≤ 3 MiB.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const VMM: &str = env!("CARGO_BIN_EXE_virga-vmm");
const RUNS: usize = 50;
const MEMORY_MIB: u64 = 128;

#[path = "support/clock.rs"]
mod clock;
use clock::monotonic_ns;

struct Run {
    marker: Duration,
    exit: Duration,
    first_run: Duration,
}

fn one_run() -> Run {
    let spawn_ns = monotonic_ns();
    let t0 = Instant::now();
    let mut child = Command::new(VMM)
        .args([
            "--kernel",
            tiny_guest::PATH,
            "--cmdline",
            "poweroff",
            "--timings",
        ])
        .args(["--vcpus", "1", "--memory", &MEMORY_MIB.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning virga-vmm");
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let marker = loop {
        let n = out.read(&mut buf).expect("reading the console");
        assert!(
            n > 0,
            "console closed before the marker: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
        if seen
            .windows(tiny_guest::MARKER.len())
            .any(|w| w == tiny_guest::MARKER.as_bytes())
        {
            break t0.elapsed();
        }
    };
    let status = child.wait().expect("waiting for virga-vmm");
    let exit = t0.elapsed();
    assert_eq!(
        status.code(),
        Some(0),
        "tiny guest did not power off cleanly"
    );
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let json = stderr
        .lines()
        .find_map(|l| l.strip_prefix("virga-vmm: timings "))
        .unwrap_or_else(|| panic!("no timings line in stderr: {stderr}"));
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let start_ns = v["start_monotonic_ns"].as_u64().unwrap();
    let first_us = v["first_kvm_run_us"].as_u64().unwrap();
    let first_run = Duration::from_nanos(start_ns - spawn_ns) + Duration::from_micros(first_us);
    Run {
        marker,
        exit,
        first_run,
    }
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// RSS of the VMM, of its guest-memory mapping, and of its anonymous memory (RssAnon: what
/// each VMM costs on its own; the rest is code pages every VMM on a host shares), in KiB.
fn rss_split(pid: u32) -> (u64, u64, u64) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("reading smaps");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading status");
    let anon = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    let (mut total, mut guest) = (0u64, 0u64);
    let mut in_guest = false;
    for line in smaps.lines() {
        let mut w = line.split_whitespace();
        match (w.next(), w.next()) {
            // The guest mapping may be merged with a neighbouring anonymous one.
            (Some("Size:"), Some(kb)) => {
                let kb = kb.parse::<u64>().unwrap_or(0);
                in_guest = (MEMORY_MIB * 1024..MEMORY_MIB * 1024 + 1024).contains(&kb);
            }
            (Some("Rss:"), Some(kb)) => {
                let kb: u64 = kb.parse().unwrap_or(0);
                total += kb;
                if in_guest {
                    guest += kb;
                }
            }
            _ => {}
        }
    }
    (total, guest, anon)
}

fn memory_overhead() {
    let mut child = Command::new(VMM)
        .args([
            "--kernel",
            tiny_guest::PATH,
            "--vcpus",
            "1",
            "--memory",
            &MEMORY_MIB.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning virga-vmm");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // After the marker the guest reports memory and vCPUs, then idles in `hlt`.
    while let Some(Ok(l)) = lines.next() {
        if l.starts_with("cpus: ") {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    let (total, guest, anon) = rss_split(child.id());
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "memory: RSS {total} KiB, guest memory touched {guest} KiB, VMM overhead {} KiB ({:.2} MiB; target <= 3 MiB)",
        total - guest,
        (total - guest) as f64 / 1024.0
    );
    println!(
        "memory: of which anonymous (this VMM's own) {} KiB ({:.2} MiB); the rest is the binary's \
         and libc's code pages, one copy for all VMMs on a host",
        anon - guest,
        (anon - guest) as f64 / 1024.0
    );
}

fn main() {
    if std::fs::metadata("/dev/kvm").is_err() {
        println!("boot_tiny: SKIPPED, /dev/kvm is missing");
        return;
    }
    // Warm the page cache and the binary.
    for _ in 0..3 {
        one_run();
    }
    let runs: Vec<Run> = (0..RUNS).map(|_| one_run()).collect();
    let mut marker: Vec<_> = runs.iter().map(|r| r.marker).collect();
    let mut exit: Vec<_> = runs.iter().map(|r| r.exit).collect();
    let mut first: Vec<_> = runs.iter().map(|r| r.first_run).collect();
    println!("boot_tiny: {RUNS} runs, 1 vCPU, {MEMORY_MIB} MiB, release virga-vmm");
    for (name, v, target) in [
        ("spawn -> marker", &mut marker, "target <= 5 ms"),
        ("spawn -> exit", &mut exit, "target <= 10 ms"),
        ("spawn -> first KVM_RUN (VMM's share)", &mut first, ""),
    ] {
        let (p50, p90) = (percentile(v, 0.5), percentile(v, 0.9));
        println!(
            "  {name:<38} median {:>9}  p90 {:>9}  {target}",
            ms(p50),
            ms(p90)
        );
    }
    memory_overhead();
}
