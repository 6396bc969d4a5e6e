//! Command line of `virga-vmm`: flags, or a JSON config file (`--config`) that flags
//! override. Errors are one line on stderr and exit status 1.

use crate::config::{OnReset, SerialConfig, VmConfig};
use crate::machine;
use crate::state::StopReason;
use clap::Parser;
use std::path::PathBuf;
use std::time::Instant;

/// Runs one KVM guest. Exit status: 0 powered off, 1 VMM error, 2 reset (with --on-reset
/// exit), 3 triple fault, 4 guest panic.
#[derive(Parser, Debug)]
#[command(name = "virga-vmm", version)]
struct Args {
    /// JSON config file (the `vmm::config::VmConfig` schema); flags override its values.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Kernel: ELF vmlinux with a PVH note, or bzImage.
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Initial ramdisk.
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long)]
    cmdline: Option<String>,
    /// Number of vCPUs [default: 1].
    #[arg(long)]
    vcpus: Option<u32>,
    /// Guest memory in MiB [default: 128].
    #[arg(long, value_name = "MIB")]
    memory: Option<u64>,
    /// Serial console: stdout, none, file:PATH or socket:PATH [default: stdout].
    #[arg(long)]
    serial: Option<SerialConfig>,
    /// Control socket path (must not exist).
    #[arg(long)]
    control_socket: Option<PathBuf>,
    /// What a guest reset does [default: restart].
    #[arg(long, value_enum)]
    on_reset: Option<OnReset>,
    /// No ACPI tables: the MP table alone describes the vCPUs.
    #[arg(long)]
    no_acpi: bool,
    /// At exit, print boot timestamps as one JSON line on stderr.
    #[arg(long)]
    timings: bool,
}

fn config(args: Args) -> Result<VmConfig, crate::config::ConfigError> {
    let mut cfg = match &args.config {
        Some(path) => VmConfig::from_file(path)?,
        None => VmConfig {
            kernel: args
                .kernel
                .clone()
                .ok_or(crate::config::ConfigError::NoKernel)?,
            initrd: None,
            cmdline: String::new(),
            vcpus: 1,
            memory_mib: 128,
            serial: SerialConfig::Stdout,
            control_socket: None,
            on_reset: OnReset::Restart,
            acpi: true,
        },
    };
    if let Some(k) = args.kernel {
        cfg.kernel = k;
    }
    if args.initrd.is_some() {
        cfg.initrd = args.initrd;
    }
    if let Some(c) = args.cmdline {
        cfg.cmdline = c;
    }
    if let Some(v) = args.vcpus {
        cfg.vcpus = v;
    }
    if let Some(m) = args.memory {
        cfg.memory_mib = m;
    }
    if let Some(s) = args.serial {
        cfg.serial = s;
    }
    if args.control_socket.is_some() {
        cfg.control_socket = args.control_socket;
    }
    if let Some(r) = args.on_reset {
        cfg.on_reset = r;
    }
    if args.no_acpi {
        cfg.acpi = false;
    }
    Ok(cfg)
}

/// What `--timings` prints: the VMM's start on CLOCK_MONOTONIC (so a parent can add the
/// exec cost it saw) and the boot timestamps relative to it.
#[derive(serde::Serialize)]
struct Timings {
    start_monotonic_ns: u64,
    #[serde(flatten)]
    boot: crate::control::BootTimes,
    /// Non-zero cumulative KVM vCPU counters (exits by kind), summed over vCPUs.
    kvm: std::collections::BTreeMap<String, u64>,
}

/// CLOCK_MONOTONIC now, in nanoseconds (comparable with a parent process's clock).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Entry point of the `virga-vmm` binary; returns the process exit status.
pub fn main() -> i32 {
    let start = Instant::now();
    let start_ns = monotonic_ns();
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            // --help, --version.
            let _ = e.print();
            return 0;
        }
        Err(e) => {
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("bad arguments")
                .trim_start_matches("error: ");
            eprintln!("virga-vmm: error: {first}");
            return 1;
        }
    };
    crate::logging::init();
    let timings = args.timings;
    let cfg = match config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("virga-vmm: error: {e}");
            return 1;
        }
    };
    let result = machine::run(cfg, start);
    match result {
        Ok(outcome) => {
            if timings {
                let kvm = outcome
                    .kvm_stats
                    .iter()
                    .filter(|(_, v)| *v != 0)
                    .cloned()
                    .collect();
                let report = Timings {
                    start_monotonic_ns: start_ns,
                    boot: outcome.timings,
                    kvm,
                };
                if let Ok(json) = serde_json::to_string(&report) {
                    eprintln!("virga-vmm: timings {json}");
                }
            }
            if let StopReason::Error(e) = &outcome.reason {
                eprintln!("virga-vmm: error: {e}");
            }
            tracing::info!(reason = ?outcome.reason, "guest stopped");
            outcome.reason.exit_code()
        }
        Err(e) => {
            eprintln!("virga-vmm: error: {e}");
            1
        }
    }
}
