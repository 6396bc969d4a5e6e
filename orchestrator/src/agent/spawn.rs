//! Creating an instance (root overlay, config drive, VMM config, record) and booting its VMM.
//! Runs under the instance's lock (taken by the `Driver` impl in `mod.rs`).

use super::configdrive::ConfigDriveError;
use super::instance::{InstanceDir, InstanceRecord, MAX_SOCKET_PATH, write_atomic};
use super::{Agent, configdrive, ctl, process};
use crate::compute::driver::{DriverError, InstanceSpec, Observed};
use images::bootdisk::Limits;
use images::cache::{CacheError, HostBootFiles, ImageBoot};
use images::store::{DiskFormat, UnknownDiskFormat};
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

/// Why an instance's files could not be prepared (the reason of `DriverError::Prepare`).
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The image's recorded disk format is none the image service knows.
    #[error("image {image}: {source}")]
    Format {
        /// The image.
        image: String,
        /// Why.
        source: UnknownDiskFormat,
    },
    /// The image could not be copied into the host's base cache.
    #[error("caching image {image} from {}: {source}", from.display())]
    Cache {
        /// The image.
        image: String,
        /// Its file in the image store.
        from: PathBuf,
        /// Why (boxed: the error is large).
        source: Box<CacheError>,
    },
    /// The flavor's root disk does not fit in bytes.
    #[error("root disk of {0} GiB is too large")]
    RootTooLarge(u64),
    /// The flavor's root disk is smaller than the image.
    #[error("flavor root disk too small: {0}")]
    RootTooSmall(Box<CacheError>),
    /// The overlay could not be made.
    #[error("creating the root disk: {0}")]
    Overlay(Box<CacheError>),
    /// Reading the image's own kernel failed.
    #[error("looking for the kernel in image {image}: {source}")]
    FindKernel {
        /// The image.
        image: String,
        /// Why (boxed: the error is large).
        source: Box<CacheError>,
    },
    /// Nothing to boot.
    #[error(
        "image {image} has no kernel_id, no kernel of its own ({why}), and this host has no default kernel ([compute] default_kernel)"
    )]
    NoKernel {
        /// The image.
        image: Uuid,
        /// Why its disk holds no kernel.
        why: String,
    },
    /// The config drive could not be written.
    #[error(transparent)]
    ConfigDrive(ConfigDriveError),
    /// The config drive's writer thread panicked (a bug: the panic is in the log).
    #[error("the config drive writer panicked")]
    ConfigDrivePanicked,
    /// A file of the instance could not be serialised.
    #[error("{what}: {source}")]
    Json {
        /// Which file.
        what: &'static str,
        /// Why.
        source: serde_json::Error,
    },
    /// A file of the instance could not be written.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The image service's disk format of `image`.
fn disk_format(image: &str, format: &str) -> Result<DiskFormat, PrepareError> {
    format.parse().map_err(|source| PrepareError::Format {
        image: image.to_string(),
        source,
    })
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
            return Err(prepare(reason.to_string()));
        }
        self.boot(id, &dir)
    }

    /// Root disk overlay, config drive, VMM config and the agent's record.
    fn prepare(&self, spec: &InstanceSpec, dir: &InstanceDir) -> Result<(), PrepareError> {
        // The ISO (its write ends in fsyncs) is made while the base and overlay are.
        let (root_disk, iso) = std::thread::scope(|s| {
            let iso = self.cfg.config_drive.then(|| {
                s.spawn(|| {
                    configdrive::write(&dir.config_drive(), &spec.config_drive)
                        .map_err(PrepareError::ConfigDrive)
                })
            });
            let root = match &spec.boot.disk {
                Some(disk) => self.root_overlay(spec, disk).map(Some),
                None => Ok(None),
            };
            let iso = iso.map(|t| t.join().unwrap_or(Err(PrepareError::ConfigDrivePanicked)));
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
        let json = serde_json::to_vec_pretty(&cfg).map_err(|source| PrepareError::Json {
            what: "VMM config",
            source,
        })?;
        let write = |path: PathBuf, json: &[u8]| {
            write_atomic(&path, json, false).map_err(|source| PrepareError::Write { path, source })
        };
        write(dir.vmm_config(), &json)?;
        let record = InstanceRecord {
            id: spec.id,
            name: spec.name.clone(),
            image_id: spec.boot.image_id,
            root_disk,
            stop_requested: false,
            suspended: false,
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|source| PrepareError::Json {
            what: "record",
            source,
        })?;
        write(dir.record(), &json)?;
        sync_in_background(dir);
        Ok(())
    }

    /// Kernel, initrd and command line: those inside the image (its base is cached by now) for
    /// an image without `kernel_id` that holds a kernel, else the given or default kernel.
    fn kernel(
        &self,
        spec: &InstanceSpec,
    ) -> Result<(PathBuf, Option<PathBuf>, String), PrepareError> {
        let boot = &spec.boot;
        let mut inside = None;
        if boot.kernel_from_disk && boot.disk.is_some() {
            let image = boot.image_id.to_string();
            let format = disk_format(&image, &boot.disk_format)?;
            let found = self
                .cache
                .image_boot(&image, format, &Limits::default())
                .map_err(|source| PrepareError::FindKernel {
                    image: image.clone(),
                    source: Box::new(source),
                })?;
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
            (None, why) => Err(PrepareError::NoKernel {
                image: boot.image_id,
                why: why.unwrap_or_else(|| "it has no disk".into()),
            }),
        }
    }

    /// The image's base in the host cache (copied from the image store once per host) and this
    /// instance's qcow2 overlay on it, `root_gb` large.
    fn root_overlay(
        &self,
        spec: &InstanceSpec,
        disk: &std::path::Path,
    ) -> Result<PathBuf, PrepareError> {
        let image = spec.boot.image_id.to_string();
        let format = disk_format(&image, &spec.boot.disk_format)?;
        self.cache
            .ensure_base(&image, format, |out| {
                let mut src = std::fs::File::open(disk)?;
                std::io::copy(&mut src, out).map(drop)
            })
            .map_err(|source| PrepareError::Cache {
                image: image.clone(),
                from: disk.to_owned(),
                source: Box::new(source),
            })?;
        let size = match spec.root_gb {
            0 => None,
            gb => Some(
                gb.checked_mul(1 << 30)
                    .ok_or(PrepareError::RootTooLarge(gb))?,
            ),
        };
        self.cache
            .create_overlay(&image, &spec.id.to_string(), size)
            .map_err(|e| match e {
                CacheError::DiskTooSmall { .. } => PrepareError::RootTooSmall(Box::new(e)),
                e => PrepareError::Overlay(Box::new(e)),
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
