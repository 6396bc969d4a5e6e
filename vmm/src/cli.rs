//! Command line of `virga-vmm`: flags, or a JSON config file (`--config`) that flags
//! override. Errors are one line on stderr and exit status 1.

use crate::config::{BalloonConfig, DriveConfig, NetConfig, OnReset, SerialConfig, VmConfig};
use crate::exit_status::{ExitReason, ExitStatus};
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
    /// Write the exit status and its reason to this file (JSON, atomically) before exiting.
    #[arg(long, value_name = "PATH")]
    exit_status_file: Option<PathBuf>,
    /// No ACPI tables: the MP table alone describes the vCPUs.
    #[arg(long)]
    no_acpi: bool,
    /// At exit, print boot timestamps as one JSON line on stderr.
    #[arg(long)]
    timings: bool,
    /// A virtio-blk drive: id=ID,path=P[,format=raw|qcow2][,ro=on][,serial=S]
    /// [,backing_dirs=D1:D2] (where qcow2 backing files may be; default: the image's
    /// directory); repeatable, in slot order (the first is /dev/vda). Replaces the config
    /// file's drives.
    #[arg(long = "drive", value_name = "OPTIONS")]
    drives: Vec<DriveConfig>,
    /// A virtio-net NIC: id=ID,tap=NAME[,mac=M] (or tap_fd=N); repeatable. Replaces the config
    /// file's NICs.
    #[arg(long = "net", value_name = "OPTIONS")]
    nets: Vec<NetConfig>,
    /// A virtio-balloon: [deflate_on_oom=on][,free_page_reporting=on].
    #[arg(long, value_name = "OPTIONS", num_args = 0..=1, default_missing_value = "")]
    balloon: Option<BalloonConfig>,
    /// A virtio-rng fed from the host's getrandom.
    #[arg(long)]
    rng: bool,
    /// Do not announce virtio-mmio devices on the kernel command line (ACPI alone then).
    #[arg(long)]
    no_virtio_cmdline: bool,
}

fn config(args: Args) -> Result<VmConfig, crate::config::ConfigError> {
    let mut cfg = match &args.config {
        Some(path) => VmConfig::from_file(path)?,
        None => VmConfig::new(
            args.kernel
                .clone()
                .ok_or(crate::config::ConfigError::NoKernel)?,
        ),
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
    if args.exit_status_file.is_some() {
        cfg.exit_status_file = args.exit_status_file;
    }
    if args.no_acpi {
        cfg.acpi = false;
    }
    if !args.drives.is_empty() {
        cfg.drives = args.drives;
    }
    if !args.nets.is_empty() {
        cfg.nets = args.nets;
    }
    if args.balloon.is_some() {
        cfg.balloon = args.balloon;
    }
    if args.rng {
        cfg.rng = true;
    }
    if args.no_virtio_cmdline {
        cfg.virtio_cmdline = false;
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
    let exit_file = cfg.exit_status_file.clone();
    let result = machine::run(cfg, start);
    let status = match result {
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
            let error = match &outcome.reason {
                StopReason::Error(e) => {
                    eprintln!("virga-vmm: error: {e}");
                    Some(e.clone())
                }
                _ => None,
            };
            tracing::info!(reason = ?outcome.reason, "guest stopped");
            ExitStatus::new(ExitReason::from(&outcome.reason), error)
        }
        Err(e) => {
            eprintln!("virga-vmm: error: {e}");
            ExitStatus::new(ExitReason::VmmError, Some(e.to_string()))
        }
    };
    if let Some(path) = exit_file
        && let Err(e) = status.write(&path)
    {
        eprintln!(
            "virga-vmm: error: writing the exit status file {}: {e}",
            path.display()
        );
    }
    status.status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DriveFormat;

    fn parse(args: &[&str]) -> Result<VmConfig, String> {
        let a = Args::try_parse_from(std::iter::once("virga-vmm").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        config(a).map_err(|e| e.to_string())
    }

    #[test]
    fn device_flags() {
        let c = parse(&[
            "--kernel",
            "/k",
            "--drive",
            "id=root,path=/r.qcow2,format=qcow2",
            "--drive",
            "id=data,path=/d,ro=on,serial=S1",
            "--net",
            "id=net0,tap=tap0,mac=02:00:00:00:00:07",
            "--balloon",
            "--rng",
            "--no-virtio-cmdline",
        ])
        .unwrap();
        assert_eq!(c.drives.len(), 2);
        assert_eq!(c.drives[0].format, Some(DriveFormat::Qcow2));
        assert_eq!(c.drives[1].serial.as_deref(), Some("S1"));
        assert_eq!(c.nets[0].tap.as_deref(), Some("tap0"));
        assert_eq!(c.balloon, Some(BalloonConfig::default()));
        assert!(c.rng && !c.virtio_cmdline);
        let c = parse(&["--kernel", "/k", "--balloon", "deflate_on_oom=on"]).unwrap();
        assert!(c.balloon.unwrap().deflate_on_oom);
        let c = parse(&["--kernel", "/k"]).unwrap();
        assert!(c.drives.is_empty() && c.balloon.is_none() && !c.rng && c.virtio_cmdline);
        let e = parse(&["--kernel", "/k", "--drive", "path=/x"]).unwrap_err();
        assert!(e.contains("id= is required"), "{e}");
    }
}
