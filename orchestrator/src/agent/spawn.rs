//! Creating an instance (root overlay, config drive, VMM config, record) and booting its VMM.
//! Runs under the instance's lock (taken by the `Driver` impl in `mod.rs`).

use super::instance::{InstanceDir, InstanceRecord, MAX_SOCKET_PATH, write_atomic};
use super::{Agent, configdrive, ctl, process};
use crate::compute::driver::{DriverError, InstanceSpec, Observed};
use images::bootdisk::Limits;
use images::cache::{CacheError, HostBootFiles, ImageBoot};
use images::store::DiskFormat;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use uuid::Uuid;
use vmm_contract::config::{DriveConfig, DriveFormat, OnReset, SerialConfig, VmConfig};

/// Makes the new instance's files durable while its VMM starts: they matter only after a
/// host crash (which also ends the VMM), so the few milliseconds of fsync stay off the
/// create path.
fn sync_in_background(dir: &InstanceDir) {
    let mut files = vec![dir.vmm_config(), dir.record(), dir.path().to_owned()];
    files.extend(dir.path().parent().map(|p| p.to_owned()));
    let spawned = std::thread::Builder::new()
        .name("sync-instance".into())
        .spawn(move || {
            for path in files {
                // A directory opens read-only and syncs like a file.
                if let Err(e) = std::fs::File::open(&path).and_then(|f| f.sync_all()) {
                    tracing::debug!(path = %path.display(), "sync: {e}");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the sync thread: {e}");
    }
}

impl Agent {
    pub(super) fn spawn_locked(&self, spec: &InstanceSpec) -> Result<Observed, DriverError> {
        let id = spec.id;
        let dir = self.instance_dir(id);
        let prepare = |reason: String| DriverError::Prepare { id, reason };
        let socket_len = dir.control_socket().as_os_str().len();
        if socket_len > MAX_SOCKET_PATH {
            return Err(prepare(format!(
                "control socket path {} is {socket_len} bytes, more than a unix socket takes \
                 ({MAX_SOCKET_PATH}); use a shorter instances_dir",
                dir.control_socket().display()
            )));
        }
        if dir.path().exists() {
            return Err(prepare(format!(
                "instance directory {} already exists",
                dir.path().display()
            )));
        }
        std::fs::create_dir(dir.path())
            .map_err(|e| prepare(format!("creating {}: {e}", dir.path().display())))?;
        if let Err(reason) = self.prepare(spec, &dir) {
            // Nothing half-made stays behind.
            let _ = self.cache.remove_overlay(&id.to_string());
            let _ = std::fs::remove_dir_all(dir.path());
            return Err(prepare(reason));
        }
        self.boot(id, &dir)
    }

    /// Root disk overlay, config drive, VMM config and the agent's record.
    fn prepare(&self, spec: &InstanceSpec, dir: &InstanceDir) -> Result<(), String> {
        // The ISO (its write ends in fsyncs) is made while the base and overlay are.
        let (root_disk, iso) = std::thread::scope(|s| {
            let iso = self.cfg.config_drive.then(|| {
                s.spawn(|| {
                    configdrive::write(&dir.config_drive(), &spec.config_drive)
                        .map_err(|e| e.to_string())
                })
            });
            let root = match &spec.boot.disk {
                Some(disk) => self.root_overlay(spec, disk).map(Some),
                None => Ok(None),
            };
            let iso = iso.map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err("the config drive writer panicked".to_owned()))
            });
            (root, iso)
        });
        let root_disk = root_disk?;
        iso.transpose()?;
        let mut drives = Vec::new();
        if let Some(path) = &root_disk {
            drives.push(DriveConfig {
                id: "root".into(),
                path: path.clone(),
                format: Some(DriveFormat::Qcow2),
                read_only: false,
                serial: None,
                // The overlay's backing file is a base in the cache, never anywhere else.
                backing_dirs: Some(vec![self.cache.bases_dir().to_owned()]),
            });
        }
        if self.cfg.config_drive {
            drives.push(DriveConfig {
                id: "config".into(),
                path: dir.config_drive(),
                format: Some(DriveFormat::Raw),
                read_only: true,
                serial: Some(configdrive::LABEL.into()),
                // Raw: never interpreted, so no backing file in any case.
                backing_dirs: Some(Vec::new()),
            });
        }
        let (kernel, initrd, cmdline) = self.kernel(spec)?;
        let cfg = VmConfig {
            cmdline,
            initrd,
            vcpus: spec.vcpus,
            memory_mib: spec.memory_mib,
            serial: SerialConfig::File(dir.console()),
            control_socket: Some(dir.control_socket()),
            exit_status_file: Some(dir.vmm_exit_file()),
            on_reset: OnReset::Restart,
            drives,
            // ACPI (on, the default) describes the devices in the DSDT, as Cloud Hypervisor
            // does; announcing them on the command line too makes Linux register each twice
            // (the second probe fails with EBUSY). Our tiny guest probes the slots itself.
            virtio_cmdline: false,
            ..VmConfig::new(kernel)
        };
        let json = serde_json::to_vec_pretty(&cfg).map_err(|e| format!("VMM config: {e}"))?;
        write_atomic(&dir.vmm_config(), &json, false)
            .map_err(|e| format!("writing {}: {e}", dir.vmm_config().display()))?;
        let record = InstanceRecord {
            id: spec.id,
            name: spec.name.clone(),
            image_id: spec.boot.image_id,
            root_disk,
            stop_requested: false,
            suspended: false,
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|e| format!("record: {e}"))?;
        write_atomic(&dir.record(), &json, false)
            .map_err(|e| format!("writing {}: {e}", dir.record().display()))?;
        sync_in_background(dir);
        Ok(())
    }

    /// Kernel, initrd and command line: those inside the image (its base is cached by now) for
    /// an image without `kernel_id` that holds a kernel, else the given or default kernel.
    fn kernel(&self, spec: &InstanceSpec) -> Result<(PathBuf, Option<PathBuf>, String), String> {
        let boot = &spec.boot;
        let mut inside = None;
        if boot.kernel_from_disk && boot.disk.is_some() {
            let image = boot.image_id.to_string();
            let format: DiskFormat = boot
                .disk_format
                .parse()
                .map_err(|e| format!("image {image}: {e}"))?;
            let found = self
                .cache
                .image_boot(&image, format, &Limits::default())
                .map_err(|e| format!("looking for the kernel in image {image}: {e}"))?;
            match found {
                ImageBoot::Kernel(files) => {
                    return Ok(image_kernel(files, boot.cmdline.as_deref()));
                }
                ImageBoot::NotBootable(why) => inside = Some(why),
            }
        }
        let cmdline = || {
            boot.cmdline
                .clone()
                .unwrap_or_else(|| self.cfg.default_cmdline.clone())
        };
        match (&boot.kernel, inside) {
            (Some(kernel), _) => Ok((kernel.clone(), boot.initrd.clone(), cmdline())),
            (None, why) => Err(format!(
                "image {} has no kernel_id, no kernel of its own ({}), and this host has no \
                 default kernel ([compute] default_kernel)",
                boot.image_id,
                why.as_deref().unwrap_or("it has no disk")
            )),
        }
    }

    /// The image's base in the host cache (copied from the image store once per host) and this
    /// instance's qcow2 overlay on it, `root_gb` large.
    fn root_overlay(&self, spec: &InstanceSpec, disk: &std::path::Path) -> Result<PathBuf, String> {
        let image = spec.boot.image_id.to_string();
        let format: DiskFormat = spec
            .boot
            .disk_format
            .parse()
            .map_err(|e| format!("image {image}: {e}"))?;
        self.cache
            .ensure_base(&image, format, |out| {
                let mut src = std::fs::File::open(disk)?;
                std::io::copy(&mut src, out).map(drop)
            })
            .map_err(|e| format!("caching image {image} from {}: {e}", disk.display()))?;
        let size = match spec.root_gb {
            0 => None,
            gb => Some(
                gb.checked_mul(1 << 30)
                    .ok_or_else(|| format!("root disk of {gb} GiB is too large"))?,
            ),
        };
        self.cache
            .create_overlay(&image, &spec.id.to_string(), size)
            .map_err(|e| match e {
                CacheError::DiskTooSmall { .. } => format!("flavor root disk too small: {e}"),
                e => format!("creating the root disk: {e}"),
            })
    }

    /// Starts the VMM and waits until it entered the guest (or ended: a boot failure).
    pub(super) fn boot(&self, id: Uuid, dir: &InstanceDir) -> Result<Observed, DriverError> {
        // The VMM refuses a control socket path that exists; one left by a killed VMM is stale.
        let _ = std::fs::remove_file(dir.control_socket());
        let rec =
            process::launch(&self.vmm, id, dir, &self.children, self.notifier()).map_err(|e| {
                DriverError::BootFailed {
                    id,
                    reason: format!("starting {}: {e}", self.vmm.display()),
                }
            })?;
        let deadline = Instant::now() + Duration::from_millis(self.cfg.start_wait_ms);
        loop {
            if !process::is_instance_vmm(rec, &dir.vmm_config()) {
                let seen = self.observe_dir(id, dir)?;
                let reason = match seen.fault {
                    Some(fault) => fault,
                    None => "the VMM exited at once (the guest powered off)".to_owned(),
                };
                return Err(DriverError::BootFailed { id, reason });
            }
            if let Ok(info) = ctl::info(&dir.control_socket(), ctl::TIMEOUT)
                && info.boot.first_kvm_run_us.is_some()
            {
                return Ok(Observed::running(rec.pid, ctl::ready_us(&info)));
            }
            if Instant::now() >= deadline {
                tracing::warn!(%id, pid = rec.pid, "VMM has not entered the guest yet");
                return Ok(Observed::running(rec.pid, None));
            }
            // The tiny guest is in within a few ms: poll finely (a /proc read and a connect).
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

/// The command line for a kernel taken from the image: the console, the image's root partition
/// read-write, then the image's `os_command_line` if it has one (a later `root=` wins).
fn image_kernel(files: HostBootFiles, extra: Option<&str>) -> (PathBuf, Option<PathBuf>, String) {
    let mut cmdline = format!("console=ttyS0 {} rw", files.root_arg);
    if let Some(extra) = extra.filter(|e| !e.trim().is_empty()) {
        cmdline.push(' ');
        cmdline.push_str(extra.trim());
    }
    (files.kernel, files.initrd, cmdline)
}
