//! One `virga-vmm` process: builds the devices and control socket once, then boots the
//! guest (again after a reset, with `--on-reset restart`) until it stops for good.

use crate::boot::{self, BootError, mptable};
use crate::config::{ConfigError, OnReset, SerialConfig, VmConfig};
use crate::control::{self, BootTimes, ControlError, Request, Response, VmInfo};
use crate::legacy_devices::{DeviceError, Legacy, remove_socket};
use crate::state::{self, Shared, StopReason};
use crate::vcpu::{Vcpu, VcpuError};
use crate::virtio::{VirtioDevices, VirtioError};
use crate::vm::{Vm, VmError};
use crate::{acpi, event_loop};
use devices::bus::Bus;
use devices::legacy::{GuestRequest, RequestSink};
use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use kvm_ioctls::Kvm;
use locks::Unpoisoned;
use std::os::unix::thread::JoinHandleExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Errors that end the VMM with status 1.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// /dev/kvm could not be opened.
    #[error("opening /dev/kvm: {0}")]
    Kvm(kvm_ioctls::Error),
    /// A KVM query failed.
    #[error("{what}: {source}")]
    KvmQuery {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Creating the VM failed.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// Setting up a vCPU failed.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// Loading the guest failed.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// Building devices failed.
    #[error(transparent)]
    Devices(#[from] DeviceError),
    /// The control socket could not be set up.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// Writing firmware tables failed.
    #[error("writing {what}: {source}")]
    Tables {
        what: &'static str,
        source: vm_memory::GuestMemoryError,
    },
    /// Building or wiring a virtio device failed.
    #[error(transparent)]
    Virtio(#[from] VirtioError),
    /// A thread or signal handler could not be set up.
    #[error("{what}: {source}")]
    Os {
        what: &'static str,
        source: std::io::Error,
    },
}

/// How long `pause` waits for vCPUs to leave KVM_RUN.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(5);

struct Context {
    cfg: VmConfig,
    shared: Arc<Shared>,
    legacy: Legacy,
    virtio: VirtioDevices,
    boots: AtomicU32,
    /// First KVM_RUN of the current boot, µs since process start (0: not yet).
    first_run_us: AtomicU64,
    /// KVM counters of the last finished boot.
    kvm_stats: std::sync::Mutex<Vec<(String, u64)>>,
    start: Instant,
    /// The current boot's VM, for the control thread (its clock at pause and resume).
    vm: std::sync::Mutex<Option<Arc<Vm>>>,
    /// The guest's kvmclock when it was paused: resume sets it back, so the guest's clock does
    /// not advance while paused (as Cloud Hypervisor does; a guest would otherwise see time
    /// jump and its watchdogs fire).
    paused_clock: std::sync::Mutex<Option<kvm_bindings::kvm_clock_data>>,
}

/// Removes the sockets this process created when it ends.
struct SocketFiles(Vec<PathBuf>);

impl Drop for SocketFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            remove_socket(p);
        }
    }
}

fn host_memory_mib() -> u64 {
    // SAFETY: sysconf only reads system configuration.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages.max(0) as u64).saturating_mul(size.max(0) as u64) >> 20
}

/// How a VMM run ended.
#[derive(Debug)]
pub struct Outcome {
    /// Why the guest stopped.
    pub reason: StopReason,
    /// Boot timestamps of the last boot.
    pub timings: BootTimes,
    /// KVM's cumulative per-vCPU counters of the last boot, summed over vCPUs (exits by kind).
    pub kvm_stats: Vec<(String, u64)>,
}

/// Runs the VM described by `cfg`; `start` is the process start. Returns why it stopped.
pub fn run(cfg: VmConfig, start: Instant) -> Result<Outcome, VmmError> {
    let kvm = Kvm::new().map_err(VmmError::Kvm)?;
    let max_vcpus = (kvm.get_max_vcpus() as u32).min(mptable::MAX_CPUS);
    cfg.validate(max_vcpus, host_memory_mib())?;
    state::install_kick_handler().map_err(|source| VmmError::Os {
        what: "installing the vCPU kick handler",
        source,
    })?;
    let mut cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|source| VmmError::KvmQuery {
            what: "KVM_GET_SUPPORTED_CPUID",
            source,
        })?;
    if kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer) {
        crate::cpuid::offer_tsc_deadline(&mut cpuid);
    }

    let shared = Arc::new(Shared::new());
    let sink: RequestSink = {
        let shared = shared.clone();
        Arc::new(move |req| {
            shared.request_stop(match req {
                GuestRequest::PowerOff => StopReason::PowerOff,
                GuestRequest::Reset => StopReason::Reset,
                GuestRequest::Panic => StopReason::Panic,
            })
        })
    };
    let mut sockets = SocketFiles(Vec::new());
    let (legacy, input) = Legacy::new(&cfg.serial, sink, start)?;
    if let SerialConfig::Socket(p) = &cfg.serial {
        sockets.0.push(p.clone());
    }
    let virtio = VirtioDevices::new(&cfg)?;
    event_loop::spawn(input, legacy.serial.clone(), virtio.subscribers()).map_err(|source| {
        VmmError::Os {
            what: "starting the event thread",
            source,
        }
    })?;
    let ctx = Arc::new(Context {
        cfg,
        shared,
        legacy,
        virtio,
        boots: AtomicU32::new(0),
        first_run_us: AtomicU64::new(0),
        kvm_stats: Default::default(),
        start,
        vm: Default::default(),
        paused_clock: Default::default(),
    });
    if let Some(path) = &ctx.cfg.control_socket {
        let c = ctx.clone();
        control::spawn(path, Arc::new(move |req| handle(&c, req)))?;
        sockets.0.push(path.clone());
    }

    let reason = loop {
        let reason = boot_once(&ctx, &kvm, &cpuid);
        if matches!(reason, Ok(StopReason::Reset)) && ctx.cfg.on_reset == OnReset::Restart {
            tracing::info!("guest reset: booting again");
            ctx.legacy.reset();
            ctx.shared.begin_boot();
            continue;
        }
        break reason;
    };
    // The devices live on in the control thread's context and are never dropped, so nothing
    // else writes out what the drives' formats cache (a qcow2 drive's L2 and refcount
    // updates): without this, writes the guest did not flush would be lost at exit.
    if let Err(e) = ctx.virtio.flush_drives() {
        tracing::error!("at exit: {e}");
    }
    let reason = reason?;
    let kvm_stats = std::mem::take(&mut *ctx.kvm_stats.lock().unpoisoned());
    Ok(Outcome {
        reason,
        timings: timings(&ctx),
        kvm_stats,
    })
}

fn timings(ctx: &Context) -> BootTimes {
    let first = ctx.first_run_us.load(Ordering::Relaxed);
    let progress = ctx
        .legacy
        .progress
        .marks()
        .into_iter()
        .map(|m| control::ProgressMark {
            code: m.code,
            us: m.micros,
        })
        .collect();
    BootTimes {
        first_kvm_run_us: (first != 0).then_some(first),
        progress,
    }
}

fn boot_once(
    ctx: &Arc<Context>,
    kvm: &Kvm,
    cpuid: &kvm_bindings::CpuId,
) -> Result<StopReason, VmmError> {
    let cfg = &ctx.cfg;
    ctx.boots.fetch_add(1, Ordering::Relaxed);
    ctx.first_run_us.store(0, Ordering::Relaxed);
    let vm = Arc::new(Vm::new(kvm, cfg.memory_bytes())?);
    // The PIT's creation mostly waits in KVM: overlap it with loading the guest.
    let vcpus = std::thread::scope(|s| {
        let pit = s.spawn(|| vm.create_pit());
        let vcpus = prepare(ctx, &vm, cpuid);
        let pit = pit.join().unwrap_or_else(|_| {
            Err(VmError::Kvm {
                what: "PIT thread panicked",
                source: kvm_ioctls::Error::new(libc::EIO),
            })
        });
        pit?;
        vcpus
    })?;

    let mut threads = Vec::with_capacity(vcpus.len());
    for vcpu in vcpus {
        let c = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("vcpu{}", vcpu.id))
            .spawn(move || {
                let boot_cpu = vcpu.id == 0;
                vcpu.run(&c.shared, || {
                    if boot_cpu {
                        let us = c.start.elapsed().as_micros().max(1) as u64;
                        c.first_run_us.store(us, Ordering::Relaxed);
                        tracing::debug!(us, "first KVM_RUN");
                    }
                })
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(source) => {
                ctx.shared.request_stop(StopReason::Error(format!(
                    "starting a vCPU thread: {source}"
                )));
                break;
            }
        }
    }
    *lock(&ctx.vm) = Some(vm.clone());
    ctx.shared
        .started(threads.iter().map(|t| t.as_pthread_t()).collect());
    let reason = ctx.shared.wait_for_stop();
    lock(&ctx.vm).take();
    lock(&ctx.paused_clock).take();
    ctx.shared.forget_vcpus();
    let mut stats = Vec::new();
    for t in threads {
        match t.join() {
            Ok(s) => crate::stats::merge(&mut stats, s),
            Err(_) => tracing::error!("a vCPU thread panicked"),
        }
    }
    *ctx.kvm_stats.lock().unpoisoned() = stats;
    // Tearing the VM down costs ~20 ms in the kernel here (in-kernel PIC, IOAPIC and PIT
    // each wait for an SRCU grace period); it is paid at process exit either way.
    drop(vm);
    Ok(reason)
}

/// Devices' interrupts, firmware tables, kernel, vCPUs.
fn prepare(ctx: &Context, vm: &Vm, cpuid: &kvm_bindings::CpuId) -> Result<Vec<Vcpu>, VmmError> {
    let cfg = &ctx.cfg;
    ctx.legacy.register_irqs(&vm.fd)?;
    mptable::write(&vm.memory, cfg.vcpus as u8).map_err(|source| VmmError::Tables {
        what: "the MP table",
        source,
    })?;
    let mut mmio = Bus::new();
    ctx.virtio.attach(&vm.fd, &vm.memory, &mut mmio)?;
    let slots = ctx.virtio.placements();
    let rsdp = if cfg.acpi {
        Some(
            acpi::write(&vm.memory, cfg.vcpus, &slots).map_err(|source| VmmError::Tables {
                what: "ACPI tables",
                source,
            })?,
        )
    } else {
        None
    };
    let entry = boot::load(&vm.memory, cfg, rsdp, &slots)?;
    let mmio = Arc::new(mmio);
    let mut vcpus = Vec::with_capacity(cfg.vcpus as usize);
    for id in 0..cfg.vcpus {
        vcpus.push(Vcpu::new(
            &vm.fd,
            id,
            cfg.vcpus,
            cpuid,
            ctx.legacy.pio.clone(),
            mmio.clone(),
        )?);
    }
    vcpus[0].set_boot_registers(entry, &vm.memory)?;
    Ok(vcpus)
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unpoisoned()
}

/// With every vCPU parked: the guest's clock, kept until resume (a second pause keeps the
/// first's).
fn save_clock(ctx: &Context) -> Result<(), String> {
    let Some(vm) = lock(&ctx.vm).clone() else {
        return Ok(());
    };
    let mut saved = lock(&ctx.paused_clock);
    if saved.is_none() {
        *saved = Some(
            vm.fd
                .get_clock()
                .map_err(|e| format!("KVM_GET_CLOCK: {e}"))?,
        );
    }
    Ok(())
}

/// Before the vCPUs run again: the clock as it was at pause.
fn restore_clock(ctx: &Context) -> Result<(), String> {
    let (Some(vm), Some(mut clock)) = (lock(&ctx.vm).clone(), lock(&ctx.paused_clock).take())
    else {
        return Ok(());
    };
    // Only the clock value is given back; KVM refuses flags it did not report as settable.
    clock.flags = 0;
    vm.fd
        .set_clock(&clock)
        .map_err(|e| format!("KVM_SET_CLOCK: {e}"))
}

fn handle(ctx: &Context, req: Request) -> Response {
    match req {
        Request::Info => {
            let info = VmInfo {
                state: ctx.shared.state(),
                vcpus: ctx.cfg.vcpus,
                memory_mib: ctx.cfg.memory_mib,
                pid: std::process::id(),
                boots: ctx.boots.load(Ordering::Relaxed),
                boot: timings(ctx),
            };
            Response {
                info: Some(info),
                ..Response::ok()
            }
        }
        Request::Pause => ctx
            .shared
            .pause(PAUSE_TIMEOUT)
            .and_then(|()| save_clock(ctx))
            .map_or_else(Response::error, |_| Response::ok()),
        Request::Resume => restore_clock(ctx)
            .and_then(|()| ctx.shared.resume())
            .map_or_else(Response::error, |_| Response::ok()),
        Request::Shutdown => {
            let mut kbd = ctx.legacy.i8042.lock().unpoisoned();
            kbd.send_ctrl_alt_del()
                .map_or_else(|e| Response::error(e.to_string()), |_| Response::ok())
        }
        Request::Kill => {
            ctx.shared.request_stop(StopReason::Killed);
            Response::ok()
        }
        Request::BalloonSet { target_mib } => ctx
            .virtio
            .balloon_set(target_mib)
            .map_or_else(|e| Response::error(e.to_string()), |_| Response::ok()),
        Request::BalloonStats => match ctx.virtio.balloon_stats() {
            Ok(b) => Response {
                balloon: Some(b),
                ..Response::ok()
            },
            Err(e) => Response::error(e.to_string()),
        },
        Request::DriveUpdate { id, path } => ctx
            .virtio
            .drive_update(&id, &path)
            .map_or_else(|e| Response::error(e.to_string()), |_| Response::ok()),
        Request::Flush => ctx
            .virtio
            .flush_drives()
            .map_or_else(|e| Response::error(e.to_string()), |_| Response::ok()),
        Request::Counters => Response {
            counters: Some(ctx.virtio.counters()),
            ..Response::ok()
        },
    }
}
