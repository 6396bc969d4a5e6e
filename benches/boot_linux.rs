//! `cargo bench --bench boot_linux`: Linux boot latency under `virga-vmm` in the box
//! (scripts/kvmbox: a real KVM under QEMU's TCG; this machine's kvm_pvm cannot run Linux user
//! space). Measured: from spawning the VMM to the guest init's boot-progress mark 123 (user space
//! runs), median of `VIRGA_BENCH_RUNS` boots (default 11) per configuration, and KVM's exits by
//! kind (the VMM's `--timings`, from KVM's per-vCPU stats). The peers' figures in the same box
//! (MACHINE.md): Firecracker 1.16.1 3609 ms, Cloud Hypervisor 53.0 4282 ms, for the same PVH
//! vmlinux and busybox initramfs with 2 vCPUs.
//!
//! This one binary plays both parts: on the host it starts the box with itself inside; in the
//! box (`VIRGA_BENCH_IN_BOX=1`) it spawns the VMM and times it, because busybox has no clock
//! finer than 10 ms. Figures and where the time goes: docs/kvmbox.md.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[path = "../tests/box_support/mod.rs"]
mod box_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

const IN_BOX_EXE: &str = "/kvmbox/bin/boot_linux";

#[path = "support/clock.rs"]
mod clock;
use clock::monotonic_ns;

/// In the box: boot `runs` times with the VMM arguments in `VIRGA_BENCH_ARGS` (one per line);
/// one `BENCH {json}` line per boot: spawn -> mark in µs and the KVM counters.
fn in_box() {
    let runs: usize = std::env::var("VIRGA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11);
    let args: Vec<String> = std::env::var("VIRGA_BENCH_ARGS")
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    for _ in 0..runs {
        let t0 = monotonic_ns();
        let mut child = Command::new(box_support::kvmbox::VMM)
            .args(&args)
            .arg("--timings")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning virga-vmm");
        // The console line init prints once user space runs: the measure for kernels without
        // /dev/port (Debian's), which cannot write the boot-progress mark.
        // A boot that has not ended after a minute is killed and reported with its console.
        let pid = child.id() as i32;
        let (done, ended) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if ended.recv_timeout(Duration::from_secs(60)).is_err() {
                // SAFETY: kill(2) on our child, which cannot have been reaped: we reap it only
                // after this thread has been told it ended (or has fired).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        });
        let mut console_ready_ns = None;
        let mut tail: Vec<String> = Vec::new();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let Ok(line) = line else { break };
            if console_ready_ns.is_none() && line.contains("VIRGA-READY") {
                console_ready_ns = Some(monotonic_ns() - t0);
            }
            tail.push(line);
            if tail.len() > 15 {
                tail.remove(0);
            }
        }
        let mut stderr = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
        let _ = done.send(());
        let _ = watchdog.join();
        let status = child.wait().expect("waiting for virga-vmm");
        if status.code().is_none() {
            println!(
                "HUNG after 60 s, killed; the console's last lines:\n{}",
                tail.join("\n")
            );
            continue;
        }
        let timings: serde_json::Value = stderr
            .lines()
            .find_map(|l| l.strip_prefix("virga-vmm: timings "))
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_else(|| panic!("no timings from virga-vmm:\n{stderr}"));
        let start = timings["start_monotonic_ns"].as_u64().unwrap_or(t0);
        let mark_us = timings["progress"]
            .as_array()
            .and_then(|p| p.iter().find(|m| m["code"] == 123))
            .and_then(|m| m["us"].as_u64());
        let line = serde_json::json!({
            "status": status.code(),
            "exec_us": start.saturating_sub(t0) / 1000,
            "spawn_to_mark_us": mark_us.map(|us| start.saturating_sub(t0) / 1000 + us),
            "spawn_to_console_ready_us": console_ready_ns.map(|ns| ns / 1000),
            "first_kvm_run_us": timings["first_kvm_run_us"],
            "kvm": timings["kvm"],
        });
        println!("BENCH {line}");
    }
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn main() {
    if std::env::var("VIRGA_BENCH_IN_BOX").as_deref() == Ok("1") {
        in_box();
        return;
    }
    let Some(spec) = box_support::spec_with_guests() else {
        println!("boot_linux: SKIPPED, guest artifacts or the box missing (run scripts/setup.sh)");
        return;
    };
    let exe = std::env::current_exe().unwrap();
    let spec = spec.file(&exe, IN_BOX_EXE);
    let runs = std::env::var("VIRGA_BENCH_RUNS").unwrap_or_else(|_| "11".into());
    use box_support::{BZIMAGE, CMDLINE, DEBIAN_INITRAMFS, DEBIAN_KERNEL, INITRAMFS, VMLINUX};
    let configs = [
        (
            "minimal kernel, PVH vmlinux + initramfs, 2 vCPUs, 256 MiB",
            format!(
                "--kernel\n{VMLINUX}\n--initrd\n{INITRAMFS}\n--vcpus\n2\n--memory\n256\n--cmdline\n{CMDLINE}"
            ),
        ),
        (
            "  the same, `quiet` (no kernel log on the 16550: one exit a byte)",
            format!(
                "--kernel\n{VMLINUX}\n--initrd\n{INITRAMFS}\n--vcpus\n2\n--memory\n256\n--cmdline\n{CMDLINE} quiet"
            ),
        ),
        (
            "minimal kernel, bzImage + initramfs, 1 vCPU, 256 MiB",
            format!(
                "--kernel\n{BZIMAGE}\n--initrd\n{INITRAMFS}\n--vcpus\n1\n--memory\n256\n--cmdline\n{CMDLINE}"
            ),
        ),
        (
            "Debian's cloud kernel (bzImage) + initramfs with its virtio modules, 2 vCPUs, 512 MiB",
            format!(
                "--kernel\n{DEBIAN_KERNEL}\n--initrd\n{DEBIAN_INITRAMFS}\n--vcpus\n2\n--memory\n512\n--cmdline\nconsole=ttyS0 panic=-1"
            ),
        ),
    ];
    let script: String = configs
        .iter()
        .enumerate()
        .map(|(n, (_, args))| {
            format!(
                "echo CONFIG {n}; VIRGA_BENCH_IN_BOX=1 VIRGA_BENCH_RUNS={runs} \
                 VIRGA_BENCH_ARGS={} {IN_BOX_EXE}\n",
                box_support::kvmbox::shell_quote(args)
            )
        })
        .collect();
    let Some(run) =
        box_support::kvmbox::run("boot_linux", &spec, &script, Duration::from_secs(1800))
    else {
        return;
    };
    assert_eq!(
        run.status, 0,
        "the bench's box script failed:\n{}",
        run.output
    );
    println!("boot_linux in the box (release virga-vmm, nested KVM under TCG), {runs} boots each:");
    for (n, (name, _)) in configs.iter().enumerate() {
        let section = run.section(&format!("CONFIG {n}\n"), &format!("CONFIG {}", n + 1));
        let boots: Vec<serde_json::Value> = section
            .lines()
            .filter_map(|l| l.strip_prefix("BENCH "))
            .filter_map(|j| serde_json::from_str(j).ok())
            .collect();
        let of = |key: &str| -> Vec<u64> { boots.iter().filter_map(|b| b[key].as_u64()).collect() };
        let (marks, consoles) = (of("spawn_to_mark_us"), of("spawn_to_console_ready_us"));
        let (what, marks) = if marks.is_empty() {
            (
                "spawn -> VIRGA-READY on the console (no /dev/port for the mark)",
                consoles,
            )
        } else {
            ("spawn -> user space (boot-progress mark)", marks)
        };
        if marks.is_empty() {
            println!("{name}: no boot reached user space:\n{section}");
            continue;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        let firsts: Vec<u64> = boots
            .iter()
            .filter_map(|b| b["first_kvm_run_us"].as_u64())
            .collect();
        println!(
            "{name}\n  {what}: median {:.0} ms (min {:.0}, max {:.0}, {} of {} boots); \
             spawn -> first KVM_RUN median {:.0} ms",
            ms(median(marks.clone())),
            ms(*marks.iter().min().unwrap()),
            ms(*marks.iter().max().unwrap()),
            marks.len(),
            boots.len(),
            ms(median(firsts)),
        );
        let mut counters: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for b in &boots {
            for (k, v) in b["kvm"].as_object().into_iter().flatten() {
                counters
                    .entry(k.clone())
                    .or_default()
                    .push(v.as_u64().unwrap_or(0));
            }
        }
        let wanted = [
            "exits",
            "io_exits",
            "mmio_exits",
            "halt_exits",
            "irq_window_exits",
            "insn_emulation",
        ];
        let line: Vec<String> = wanted
            .iter()
            .filter_map(|k| {
                counters
                    .get(*k)
                    .map(|v| format!("{k} {}", median(v.clone())))
            })
            .collect();
        println!("  KVM exits (median): {}", line.join(", "));
    }
    println!(
        "peers in the same box (MACHINE.md, PVH vmlinux, 2 vCPUs): Firecracker 3609 ms, Cloud Hypervisor 4282 ms; target <= 2887 ms (0.8x Firecracker)"
    );
}
