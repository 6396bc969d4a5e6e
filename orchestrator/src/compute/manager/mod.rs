//! The task flow of one daemon's compute role: it registers the host, builds the servers the
//! scheduler placed here, runs their actions through the [`Driver`], and keeps the records in
//! step with what the driver observes (a power-state sync every `sync_interval`; adoption of
//! running guests at start).
//!
//! Every task on a server holds that server's lock, so a delete waits for a running action
//! and never races a spawn. Driver calls block; they run on tokio's blocking pool.

use locks::Unpoisoned;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod spec;
mod sync;

use images::store::ImageStore;
use uuid::Uuid;

pub use spec::hostname;
use spec::{SnapshotError, upload_file};

use crate::compute::driver::{Driver, DriverError, Observed, PowerState};
use crate::compute::hosts::Ratios;
use crate::compute::scheduler::{Request, ScheduleError};
use crate::compute::servers::Server;
use crate::compute::task;
use crate::compute::{TaskState, VmState, vm};
use crate::image::Image;
use crate::store::{Store, StoreError};

/// Settings of the compute role.
#[derive(Clone, Debug)]
pub struct ComputeConfig {
    /// Zone this host is in.
    pub availability_zone: String,
    /// Allocation ratios.
    pub ratios: Ratios,
    /// Period of the power-state sync.
    pub sync_interval: Duration,
    /// Grace a guest gets to power off on stop or soft reboot.
    pub stop_grace: Duration,
    /// Kernel for images without `kernel_id` (empty: none; such images fail to build).
    pub default_kernel: PathBuf,
    /// Scratch space for snapshots before they are uploaded.
    pub snapshot_dir: PathBuf,
}

/// A server action the API asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// os-start.
    Start,
    /// os-stop.
    Stop,
    /// reboot; `true` for HARD.
    Reboot(bool),
    /// pause.
    Pause,
    /// unpause.
    Unpause,
    /// suspend.
    Suspend,
    /// resume.
    Resume,
}

impl Action {
    /// (vm states it may start from, the task state while it runs).
    pub fn rule(self) -> (&'static [VmState], TaskState) {
        use vm::*;
        match self {
            Action::Start => (&[STOPPED], task::POWERING_ON),
            Action::Stop => (&[ACTIVE, ERROR], task::POWERING_OFF),
            Action::Reboot(false) => (&[ACTIVE], task::REBOOTING),
            Action::Reboot(true) => (
                &[ACTIVE, STOPPED, PAUSED, SUSPENDED, ERROR],
                task::REBOOTING_HARD,
            ),
            Action::Pause => (&[ACTIVE], task::PAUSING),
            Action::Unpause => (&[PAUSED], task::UNPAUSING),
            Action::Suspend => (&[ACTIVE], task::SUSPENDING),
            Action::Resume => (&[SUSPENDED], task::RESUMING),
        }
    }
}

/// The compute role of this daemon.
pub struct Compute {
    store: Store,
    driver: Arc<dyn Driver>,
    images: Arc<ImageStore>,
    host: String,
    cfg: ComputeConfig,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    cancelled: Mutex<HashSet<String>>,
    /// The last ready mark logged per server: (VMM pid, µs since that VMM started).
    ready_seen: Mutex<HashMap<String, (u32, u64)>>,
}

fn uuid_of(id: &str) -> Result<Uuid, DriverError> {
    Uuid::parse_str(id).map_err(|e| DriverError::Prepare {
        id: Uuid::nil(),
        reason: format!("server id {id:?} is not a UUID: {e}"),
    })
}

/// Runs a blocking driver call on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DriverError> + Send + 'static,
) -> Result<T, DriverError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(DriverError::Panicked(e.to_string())))
}

/// Why the compute manager did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Registering the host or adopting its servers failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The driver's `host_info` panicked (a bug: the panic is in the log).
    #[error("the driver's host_info panicked: {0}")]
    Panicked(String),
}

impl Compute {
    /// Registers this host, adopts the guests the driver already runs, and starts the sync.
    /// `deaths`, when the driver offers one, carries the id of each VMM that ends: the sync
    /// then runs at once instead of at its next period.
    pub async fn start(
        store: Store,
        driver: Arc<dyn Driver>,
        images: Arc<ImageStore>,
        cfg: ComputeConfig,
        deaths: Option<std::sync::mpsc::Receiver<Uuid>>,
    ) -> Result<Arc<Compute>, StartError> {
        let d = driver.clone();
        let info = tokio::task::spawn_blocking(move || d.host_info())
            .await
            .map_err(|e| StartError::Panicked(e.to_string()))?;
        store
            .register_host(&info, cfg.ratios, &cfg.availability_zone)
            .await?;
        let me = Arc::new(Compute {
            store,
            driver,
            images,
            host: info.hostname,
            cfg,
            locks: Mutex::default(),
            cancelled: Mutex::default(),
            ready_seen: Mutex::default(),
        });
        me.adopt().await?;
        let weak = Arc::downgrade(&me);
        let every = me.cfg.sync_interval;
        let woken = Arc::new(tokio::sync::Notify::new());
        if let Some(rx) = deaths {
            let w = woken.clone();
            // A plain thread: the agent's channel blocks, and ends when the agent goes.
            let spawned = std::thread::Builder::new()
                .name("vmm-deaths".into())
                .spawn(move || {
                    while rx.recv().is_ok() {
                        w.notify_one();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "no VMM death notices; the periodic sync remains");
            }
        }
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n: u64 = 0;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = woken.notified() => {}
                }
                let Some(me) = weak.upgrade() else { return };
                if n.is_multiple_of(10)
                    && let Err(e) = me.store.heartbeat_host(&me.host).await
                {
                    tracing::warn!(error = %e, "compute heartbeat failed");
                }
                n += 1;
                if let Err(e) = me.sync().await {
                    tracing::warn!(error = %e, "power-state sync failed");
                }
            }
        });
        tracing::info!(host = %me.host, "compute role started");
        Ok(me)
    }

    /// This host's name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The driver (for console output and host facts).
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    fn lock_of(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.locks.lock().unpoisoned();
        m.entry(id.to_string()).or_default().clone()
    }

    fn busy(&self, id: &str) -> bool {
        let m = self.locks.lock().unpoisoned();
        m.get(id).is_some_and(|l| l.try_lock().is_err())
    }

    fn is_cancelled(&self, id: &str) -> bool {
        let c = self.cancelled.lock().unpoisoned();
        c.contains(id)
    }

    /// Schedules new servers and builds those placed here (in the background).
    pub fn launch(self: &Arc<Self>, servers: Vec<(Server, Request)>) {
        for (s, req) in servers {
            let me = self.clone();
            tokio::spawn(async move {
                let lock = me.lock_of(&s.id);
                let _g = lock.lock().await;
                match me.store.schedule(&s.id, &req).await {
                    Ok(host) => {
                        let _ = me.store.set_task(&s.id, Some(task::SPAWNING)).await;
                        if host == me.host {
                            me.build(&s.id).await;
                        }
                        // Else that host's daemon picks it up in its sync.
                    }
                    Err(ScheduleError::NoValidHost(why)) => {
                        tracing::warn!(server = %s.id, %why, "no valid host");
                        let _ = me
                            .store
                            .set_error(
                                &s.id,
                                "No valid host was found. There are not enough hosts available.",
                                &why,
                            )
                            .await;
                    }
                    Err(e) => {
                        let _ = me
                            .store
                            .set_error(&s.id, "Scheduling failed.", &e.to_string())
                            .await;
                    }
                }
            });
        }
    }

    /// Builds a server placed on this host (caller holds its lock).
    async fn build(&self, id: &str) {
        let s = match self.store.get_server(id).await {
            Ok(s) => s,
            Err(e) => return tracing::debug!(server = id, error = %e, "gone before build"),
        };
        if self.is_cancelled(id) {
            return;
        }
        let spec = match self.spec(&s).await {
            Ok(spec) => spec,
            Err(why) => {
                return self
                    .fail(id, "Build of instance aborted", &why.to_string())
                    .await;
            }
        };
        let d = self.driver.clone();
        let spawned = blocking(move || d.spawn(&spec)).await;
        match spawned {
            Ok(obs) => self.booted(id, obs, true).await,
            Err(e) => {
                self.fail(id, "Build of instance failed", &e.to_string())
                    .await
            }
        }
    }

    /// The end of a boot (build, start, reboot): ACTIVE as soon as the VMM runs the guest,
    /// as Nova makes a server ACTIVE once the hypervisor reports its domain running. The
    /// guest's ready mark is not waited for (a stock image never writes it); it is logged
    /// when seen ([`Compute::note_ready`]). A VMM that is not running: a build goes ERROR
    /// with its fault; a start or reboot follows what the guest does (SHUTOFF).
    async fn booted(&self, id: &str, obs: Observed, build: bool) {
        if obs.power == PowerState::Running {
            self.note_ready(id, &obs);
            let _ = self
                .store
                .set_state(id, vm::ACTIVE, PowerState::Running, obs.pid, None)
                .await;
            return;
        }
        if build {
            let why = obs
                .fault
                .clone()
                .unwrap_or_else(|| format!("the guest stopped ({:?}) while it booted", obs.power));
            return self.fail(id, "Build of instance failed", &why).await;
        }
        let _ = self.store.set_task(id, None).await;
        self.reflect(id, &obs).await;
    }

    /// Logs the time of the guest's ready mark (boot-progress 123), once per boot: it is
    /// information (how long the guest took to come up), not a condition of ACTIVE.
    pub(super) fn note_ready(&self, id: &str, obs: &Observed) {
        let (Some(us), Some(pid)) = (obs.ready_us, obs.pid) else {
            return;
        };
        let mut seen = self.ready_seen.lock().unpoisoned();
        if seen.insert(id.to_string(), (pid, us)) != Some((pid, us)) {
            tracing::info!(
                server = id,
                pid,
                ready_us = us,
                "the guest wrote its ready mark {:.1} ms after its VMM started",
                us as f64 / 1000.0
            );
        }
    }

    async fn fail(&self, id: &str, message: &str, details: &str) {
        tracing::warn!(server = id, message, details, "server in ERROR");
        if let Err(e) = self
            .store
            .set_error(id, &format!("{message}: {details}"), details)
            .await
        {
            tracing::error!(server = id, error = %e, "cannot record the fault");
        }
    }

    /// Runs an action whose task state the API has set.
    pub fn act(self: &Arc<Self>, id: String, action: Action) {
        let me = self.clone();
        tokio::spawn(async move {
            let lock = me.lock_of(&id);
            let _g = lock.lock().await;
            me.run_action(&id, action).await;
        });
    }

    async fn run_action(&self, id: &str, action: Action) {
        let Ok(uuid) = uuid_of(id) else { return };
        let d = self.driver.clone();
        let grace = self.cfg.stop_grace;
        let then = match action {
            Action::Stop => (vm::STOPPED, PowerState::Shutdown),
            Action::Pause => (vm::PAUSED, PowerState::Paused),
            Action::Suspend => (vm::SUSPENDED, PowerState::Suspended),
            Action::Start | Action::Reboot(_) | Action::Unpause | Action::Resume => {
                (vm::ACTIVE, PowerState::Running)
            }
        };
        // Start and reboot boot the guest again: ACTIVE once its VMM runs it.
        let result = blocking(move || match action {
            Action::Stop => d.stop(uuid, grace).map(|()| None),
            Action::Start => d.start(uuid).map(Some),
            Action::Reboot(hard) => d.reboot(uuid, hard, grace).map(Some),
            Action::Pause => d.pause(uuid).map(|()| None),
            Action::Unpause => d.unpause(uuid).map(|()| None),
            Action::Suspend => d.suspend(uuid).map(|()| None),
            Action::Resume => d.resume(uuid).map(|()| None),
        })
        .await;
        match result {
            Ok(Some(obs)) => self.booted(id, obs, false).await,
            Ok(None) => {
                let pid = if then.1 == PowerState::Shutdown {
                    None
                } else {
                    let d = self.driver.clone();
                    blocking(move || d.observe(uuid))
                        .await
                        .ok()
                        .and_then(|o| o.pid)
                };
                let _ = self.store.set_state(id, then.0, then.1, pid, None).await;
            }
            Err(DriverError::NotFound(_)) => {
                self.fail(id, "Instance not found on its host", &format!("{action:?}"))
                    .await;
            }
            Err(e) => {
                // The action failed; the record follows what the guest really does now.
                tracing::warn!(server = id, ?action, error = %e, "action failed");
                let _ = self.store.set_task(id, None).await;
                let d = self.driver.clone();
                if let Ok(obs) = blocking(move || d.observe(uuid)).await {
                    self.reflect(id, &obs).await;
                }
            }
        }
    }

    /// Deletes a server: stops its VMM, removes its files, releases its claim, drops the row.
    pub fn delete(self: &Arc<Self>, s: Server) {
        let me = self.clone();
        tokio::spawn(async move { me.run_delete(s).await });
    }

    async fn run_delete(&self, s: Server) {
        {
            let mut c = self.cancelled.lock().unpoisoned();
            c.insert(s.id.clone());
        }
        let lock = self.lock_of(&s.id);
        let guard = lock.lock().await;
        // The task that held the lock may have placed it meanwhile: act on the row as it is.
        let s = match self.store.get_server(&s.id).await {
            Ok(now) => now,
            Err(_) => s,
        };
        let here = s.host.as_deref() == Some(self.host.as_str());
        if s.host.is_some() && !here {
            return; // that host's daemon deletes it in its sync
        }
        if here && let Ok(uuid) = uuid_of(&s.id) {
            let d = self.driver.clone();
            match blocking(move || d.destroy(uuid)).await {
                Ok(()) | Err(DriverError::NotFound(_)) => {}
                Err(e) => {
                    tracing::error!(server = %s.id, error = %e, "destroy failed");
                    drop(guard);
                    return self.fail(&s.id, "Delete failed", &e.to_string()).await;
                }
            }
        }
        if let Err(e) = self.store.release(&s.id).await {
            tracing::error!(server = %s.id, error = %e, "cannot release the claim");
        }
        if let Err(e) = self.store.delete_server_row(&s.id).await {
            tracing::error!(server = %s.id, error = %e, "cannot delete the row");
        }
        drop(guard);
        self.locks.lock().unpoisoned().remove(&s.id);
        self.cancelled.lock().unpoisoned().remove(&s.id);
        self.ready_seen.lock().unpoisoned().remove(&s.id);
        tracing::info!(server = %s.id, "deleted");
    }

    /// The console log (its last `lines` lines).
    pub async fn console(&self, id: &str, lines: Option<usize>) -> Result<String, DriverError> {
        let uuid = uuid_of(id)?;
        let d = self.driver.clone();
        blocking(move || d.console_output(uuid, lines)).await
    }

    /// Snapshots the root disk into the queued image `image` (in the background).
    pub fn snapshot(self: &Arc<Self>, id: String, image: Image) {
        let me = self.clone();
        tokio::spawn(async move {
            let lock = me.lock_of(&id);
            let _g = lock.lock().await;
            if let Err(why) = me.run_snapshot(&id, &image).await {
                tracing::warn!(server = %id, image = %image.id, %why, "snapshot failed");
                let _ = me
                    .store
                    .transition_image(
                        &image.id,
                        crate::image::status::QUEUED,
                        crate::image::status::KILLED,
                    )
                    .await;
            }
            let _ = me.store.set_task(&id, None).await;
        });
    }

    async fn run_snapshot(&self, id: &str, image: &Image) -> Result<(), SnapshotError> {
        let uuid = uuid_of(id)?;
        std::fs::create_dir_all(&self.cfg.snapshot_dir).map_err(|source| SnapshotError::File {
            path: self.cfg.snapshot_dir.clone(),
            source,
        })?;
        let dest = self.cfg.snapshot_dir.join(format!("{}.qcow2", image.id));
        let d = self.driver.clone();
        let to = dest.clone();
        blocking(move || d.snapshot(uuid, &to)).await?;
        let _ = self.store.set_task(id, Some(task::IMAGE_UPLOADING)).await;
        let result = upload_file(&self.store, self.images.clone(), image, &dest).await;
        let _ = std::fs::remove_file(&dest);
        result
    }
}
