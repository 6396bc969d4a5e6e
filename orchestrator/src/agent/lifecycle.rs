//! Starting, stopping, rebooting, pausing, snapshotting and removing instances (creating them
//! is `spawn.rs`). Each method runs under the instance's lock (taken by the `Driver` impl in
//! `mod.rs`).

use super::instance::{InstanceDir, InstanceRecord};
use super::process::{self, PidRecord, Pidfd};
use super::{Agent, ctl, io_err};
use crate::compute::driver::{DriverError, Observed, PowerState};
use std::time::{Duration, Instant};
use uuid::Uuid;
use vmm_contract::control::Request;

/// How long a VMM gets to exit after the `kill` request before SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(2);
/// How long to wait for the reaper thread to record an exit.
const REAPER_WAIT: Duration = Duration::from_millis(500);
/// How long the VMM may take to flush its drives for a snapshot (fdatasync of what the guest
/// wrote since its last flush).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

impl Agent {
    fn record(&self, id: Uuid) -> Result<(InstanceDir, InstanceRecord), DriverError> {
        let dir = self.instance_dir(id);
        if !dir.path().is_dir() {
            return Err(DriverError::NotFound(id));
        }
        let rec = InstanceRecord::load(&dir).map_err(io_err(id))?;
        Ok((dir, rec))
    }

    pub(super) fn start_locked(&self, id: Uuid) -> Result<Observed, DriverError> {
        let (dir, mut rec) = self.record(id)?;
        if process::running_vmm(&dir).is_some() {
            let state = self.observe_dir(id, &dir)?.power;
            return Err(DriverError::InvalidState {
                id,
                state,
                op: "start",
            });
        }
        rec.stop_requested = false;
        rec.suspended = false;
        rec.save(&dir).map_err(io_err(id))?;
        self.boot(id, &dir)
    }

    pub(super) fn stop_locked(&self, id: Uuid, grace: Duration) -> Result<(), DriverError> {
        let (dir, mut rec) = self.record(id)?;
        let Some(pid) = process::running_vmm(&dir) else {
            return Ok(());
        };
        let paused = matches!(
            self.observe_dir(id, &dir)?.power,
            PowerState::Paused | PowerState::Suspended
        );
        rec.stop_requested = true;
        rec.suspended = false;
        rec.save(&dir).map_err(io_err(id))?;
        // A paused guest cannot act on the power button: no point waiting for it.
        let grace = if paused { Duration::ZERO } else { grace };
        self.end_vmm(id, &dir, pid, grace)
    }

    /// Asks the guest to power off (when `grace` is not zero), then the VMM to exit, then
    /// kills it; returns once the process is gone.
    fn end_vmm(
        &self,
        id: Uuid,
        dir: &InstanceDir,
        pid: PidRecord,
        grace: Duration,
    ) -> Result<(), DriverError> {
        let Some(fd) = Pidfd::open(pid, &dir.vmm_config()).map_err(io_err(id))? else {
            return Ok(());
        };
        let sock = dir.control_socket();
        let exited = || {
            // The reaper (when this agent started the VMM) writes exit.json after the process
            // ends: let it finish, so a removal of the directory cannot race with it.
            self.children.exit_of(id, pid.pid, REAPER_WAIT);
            Ok(())
        };
        if !grace.is_zero() {
            match ctl::command(&sock, Request::Shutdown) {
                Ok(()) if fd.wait(grace) => return exited(),
                Ok(()) => tracing::info!(%id, "guest did not power off in {grace:?}: killing"),
                Err(e) => tracing::info!(%id, "power-off request failed ({e}): killing"),
            }
        }
        if ctl::command(&sock, Request::Kill).is_ok() && fd.wait(KILL_WAIT) {
            return exited();
        }
        tracing::warn!(%id, pid = pid.pid, "VMM did not exit on request: SIGKILL");
        fd.signal(libc::SIGKILL).map_err(io_err(id))?;
        if fd.wait(Duration::from_secs(10)) {
            exited()
        } else {
            Err(DriverError::Io {
                id,
                source: std::io::Error::other(format!(
                    "VMM pid {} survived SIGKILL for 10 s",
                    pid.pid
                )),
            })
        }
    }

    pub(super) fn reboot_locked(
        &self,
        id: Uuid,
        hard: bool,
        grace: Duration,
    ) -> Result<Observed, DriverError> {
        let (dir, mut rec) = self.record(id)?;
        let running = process::running_vmm(&dir);
        if !hard {
            let Some(pid) = running else {
                let state = self.observe_dir(id, &dir)?.power;
                return Err(DriverError::InvalidState {
                    id,
                    state,
                    op: "reboot (soft)",
                });
            };
            if let Some(seen) = self.soft_reboot(id, &dir, pid, grace)? {
                return Ok(seen);
            }
            tracing::info!(%id, "soft reboot did not happen in {grace:?}: rebooting hard");
        }
        if let Some(pid) = process::running_vmm(&dir) {
            rec.stop_requested = true;
            rec.save(&dir).map_err(io_err(id))?;
            self.end_vmm(id, &dir, pid, Duration::ZERO)?;
        }
        rec.stop_requested = false;
        rec.suspended = false;
        rec.save(&dir).map_err(io_err(id))?;
        self.boot(id, &dir)
    }

    /// Ctrl-Alt-Del, then waits for the guest to boot again (the VMM restarts it in the same
    /// process) or to power off instead (then the VMM is started again). `None`: neither
    /// happened within `grace`.
    fn soft_reboot(
        &self,
        id: Uuid,
        dir: &InstanceDir,
        pid: PidRecord,
        grace: Duration,
    ) -> Result<Option<Observed>, DriverError> {
        let sock = dir.control_socket();
        let boots = ctl::info(&sock, ctl::TIMEOUT).map(|i| i.boots).ok();
        if let Err(e) = ctl::command(&sock, Request::Shutdown) {
            tracing::info!(%id, "soft reboot request failed: {e}");
            return Ok(None);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !process::is_instance_vmm(pid, &dir.vmm_config()) {
                return self.boot(id, dir).map(Some);
            }
            if let (Some(before), Ok(info)) = (boots, ctl::info(&sock, ctl::TIMEOUT))
                && info.boots > before
            {
                return Ok(Some(Observed::running(pid.pid, ctl::ready_us(&info))));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(None)
    }

    /// Pause (or, with `suspend`, suspend: a pause the state remembers as such).
    pub(super) fn pause_locked(&self, id: Uuid, suspend: bool) -> Result<(), DriverError> {
        let (dir, mut rec) = self.record(id)?;
        let op = if suspend { "suspend" } else { "pause" };
        let state = self.observe_dir(id, &dir)?.power;
        if state != PowerState::Running {
            return Err(DriverError::InvalidState { id, state, op });
        }
        ctl::command(&dir.control_socket(), Request::Pause).map_err(|e| ctl_err(id, e))?;
        rec.suspended = suspend;
        rec.save(&dir).map_err(io_err(id))
    }

    /// Unpause (or, with `suspend`, resume a suspended instance).
    pub(super) fn unpause_locked(&self, id: Uuid, suspend: bool) -> Result<(), DriverError> {
        let (dir, mut rec) = self.record(id)?;
        let (op, want) = if suspend {
            ("resume", PowerState::Suspended)
        } else {
            ("unpause", PowerState::Paused)
        };
        let state = self.observe_dir(id, &dir)?.power;
        if state != want {
            return Err(DriverError::InvalidState { id, state, op });
        }
        ctl::command(&dir.control_socket(), Request::Resume).map_err(|e| ctl_err(id, e))?;
        rec.suspended = false;
        rec.save(&dir).map_err(io_err(id))
    }

    pub(super) fn snapshot_locked(
        &self,
        id: Uuid,
        dest: &std::path::Path,
    ) -> Result<(), DriverError> {
        let (dir, rec) = self.record(id)?;
        let Some(disk) = rec.root_disk else {
            return Err(DriverError::Prepare {
                id,
                reason: "the instance has no root disk to snapshot".to_owned(),
            });
        };
        // The guest must not write while the disk is copied, and what it wrote must be on the
        // file: the VMM's qcow2 layer keeps metadata (L2, refcounts) in memory until a flush,
        // so a live VMM (running, paused or suspended) is asked to flush its drives first.
        let power = self.observe_dir(id, &dir)?.power;
        let live = matches!(
            power,
            PowerState::Running | PowerState::Paused | PowerState::Suspended
        );
        let pause = power == PowerState::Running;
        let sock = dir.control_socket();
        if pause {
            ctl::command(&sock, Request::Pause).map_err(|e| ctl_err(id, e))?;
        }
        let copied = (|| {
            if live {
                ctl::call(&sock, &Request::Flush, FLUSH_TIMEOUT).map_err(|e| {
                    DriverError::Prepare {
                        id,
                        reason: format!(
                            "snapshot of {}: the VMM could not flush its drives, nothing \
                             was copied: {e}",
                            disk.display()
                        ),
                    }
                })?;
            }
            images::convert::convert(
                &disk,
                &self.cache.overlay_open_options(),
                dest,
                disk::Format::Qcow2,
                &Default::default(),
            )
            .map(drop)
            .map_err(|e| DriverError::Prepare {
                id,
                reason: format!("snapshot of {} to {}: {e}", disk.display(), dest.display()),
            })
        })();
        if pause && let Err(e) = ctl::command(&sock, Request::Resume) {
            // The snapshot's own failure says more; a resume failure alone is the error.
            tracing::warn!(%id, "resume after snapshot: {e}");
            return copied.and(Err(ctl_err(id, e)));
        }
        copied
    }

    pub(super) fn destroy_locked(&self, id: Uuid) -> Result<(), DriverError> {
        let dir = self.instance_dir(id);
        let name = id.to_string();
        let has_overlay = self.cache.overlay_path(&name).is_some();
        if !dir.path().is_dir() && !has_overlay {
            return Err(DriverError::NotFound(id));
        }
        if let Some(pid) = process::running_vmm(&dir) {
            if let Ok(mut rec) = InstanceRecord::load(&dir) {
                rec.stop_requested = true;
                rec.save(&dir).map_err(io_err(id))?;
            }
            self.end_vmm(id, &dir, pid, Duration::ZERO)?;
        }
        if has_overlay {
            self.cache
                .remove_overlay(&name)
                .map_err(|e| DriverError::Io {
                    id,
                    source: std::io::Error::other(e.to_string()),
                })?;
        }
        self.children.forget(id);
        remove_dir(dir.path()).map_err(io_err(id))
    }
}

fn ctl_err(id: Uuid, e: ctl::CtlError) -> DriverError {
    DriverError::Io {
        id,
        source: std::io::Error::other(e.to_string()),
    }
}

/// Removes an instance directory. Another agent's reaper (one that started the VMM) may still
/// be writing its exit record there: try again briefly when a file appears meanwhile.
fn remove_dir(path: &std::path::Path) -> std::io::Result<()> {
    let mut attempts = 0;
    loop {
        match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty && attempts < 10 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}
