//! `cargo bench --bench boot_linux`: the minimal kernel (bzImage) with the initramfs, 1 vCPU,
//! 128 MiB: wall time from spawning `virga-vmm` to the kernel's `Run /init`, to the init's
//! boot-progress mark 123 where the host lets userspace run, and to process exit, plus KVM's
//! per-vCPU counters (exits by kind) read from its binary stats fd. One run by default (each
//! takes minutes on kvm_pvm); `VIRGA_BENCH_RUNS=n` for more. A boot that has not ended after
//! `VIRGA_BENCH_LIMIT_S` seconds (default 600: on kvm_pvm the kernel can stall in KVM's
//! emulator) is stopped through the control socket, which still reports the counters.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../tests/linux_guest/mod.rs"]
mod linux_guest;

const VMM: &str = env!("CARGO_BIN_EXE_virga-vmm");

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn main() {
    if std::fs::metadata("/dev/kvm").is_err() {
        println!("boot_linux: SKIPPED, /dev/kvm is missing");
        return;
    }
    let Some(dir) = linux_guest::artifacts_dir()
        .filter(|d| d.join("bzImage").exists() && d.join("initramfs.cpio.gz").exists())
    else {
        println!("boot_linux: SKIPPED, guest artifacts missing (run scripts/setup.sh)");
        return;
    };
    let cmdline = format!("{} panic=-1", linux_guest::CMDLINE);
    let runs: usize = std::env::var("VIRGA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for run in 1..=runs {
        let limit = Duration::from_secs(
            std::env::var("VIRGA_BENCH_LIMIT_S")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(600),
        );
        let dir_ctl =
            std::env::temp_dir().join(format!("virga-bench-{}-{run}.sock", std::process::id()));
        let _ = std::fs::remove_file(&dir_ctl);
        let t0 = Instant::now();
        let mut child = Command::new(VMM)
            .arg("--control-socket")
            .arg(&dir_ctl)
            .arg("--kernel")
            .arg(dir.join("bzImage"))
            .arg("--initrd")
            .arg(dir.join("initramfs.cpio.gz"))
            .args(["--cmdline", &cmdline, "--vcpus", "1", "--memory", "128"])
            .args(["--on-reset", "exit", "--timings"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning virga-vmm");
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let (mut run_init, mut last, mut after_init) = (None, String::new(), Vec::new());
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if run_init.is_none() && line.contains("Run /init as init process") {
                    run_init = Some(t0.elapsed());
                } else if run_init.is_some() && after_init.len() < 6 {
                    after_init.push(line.clone());
                }
                last = line;
            }
            (run_init, last, after_init)
        });
        // On kvm_pvm the init dies at its first system call and the kernel panics and reboots
        // (panic=-1, --on-reset exit), so the process ends by itself, unless the kernel stalls.
        let mut stopped = false;
        let status = loop {
            if let Some(s) = child.try_wait().expect("waiting for virga-vmm") {
                break s;
            }
            if !stopped && t0.elapsed() > limit {
                stopped = true;
                let _ = vmm::control::send(&dir_ctl, &vmm::control::Request::Kill);
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let (run_init, last, after_init) = reader.join().unwrap_or_default();
        let exit = t0.elapsed();
        let mut stderr = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
        let timings: Option<serde_json::Value> = stderr
            .lines()
            .find_map(|l| l.strip_prefix("virga-vmm: timings "))
            .and_then(|j| serde_json::from_str(j).ok());
        println!(
            "boot_linux run {run}/{runs}: bzImage + initramfs, 1 vCPU, 128 MiB, exit status {:?}",
            status.code()
        );
        if stopped {
            println!(
                "  stopped after {} (limit); last console line: {last:?}",
                secs(limit)
            );
        }
        match run_init {
            Some(d) => {
                println!("  spawn -> Run /init      {}", secs(d));
                for l in &after_init {
                    println!("    | {l}");
                }
            }
            None => println!("  spawn -> Run /init      not reached"),
        }
        let ready = timings.as_ref().and_then(|t| {
            t["progress"]
                .as_array()?
                .iter()
                .find(|m| m["code"] == 123)
                .and_then(|m| m["us"].as_u64())
        });
        match ready {
            Some(us) => println!(
                "  VMM start -> userspace  {}",
                secs(Duration::from_micros(us))
            ),
            None => println!(
                "  VMM start -> userspace  not reached (no boot-progress 123: init did not run)"
            ),
        }
        println!("  spawn -> exit           {}", secs(exit));
        if let Some(kvm) = timings.as_ref().and_then(|t| t["kvm"].as_object()) {
            println!("  KVM counters (vCPU stats fd):");
            for (name, v) in kvm {
                println!("    {name:<28} {v}");
            }
        }
    }
}
