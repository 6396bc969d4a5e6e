//! The task flow of one daemon's compute role: it registers the host, builds the servers the
//! scheduler placed here, runs their actions through the [`Driver`], and keeps the records in
//! step with what the driver observes (a power-state sync every `sync_interval`; adoption of
//! running guests at start).
//!
//! Every task on a server holds that server's lock, so a delete waits for a running action
//! and never races a spawn. Driver calls block; they run on tokio's blocking pool.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use images::store::ImageStore;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::driver::{
    BootSource, ConfigDriveData, Driver, DriverError, InstanceSpec, Observed, PowerState,
};
use super::hosts::Ratios;
use super::scheduler::{Request, ScheduleError};
use super::servers::{Server, vm};
use super::task;
use crate::image::Image;
use crate::store::{Store, StoreError};

/// Settings of the compute role.
#[derive(Clone, Debug)]
pub struct ComputeConfig {
    /// Zone this host is in.
    pub availability_zone: String,
    /// Allocation ratios.
    pub ratios: Ratios,
    /// Longest wait for a guest's ready mark after its VMM starts.
    pub boot_timeout: Duration,
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
    pub fn rule(self) -> (&'static [&'static str], &'static str) {
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
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(DriverError::Io {
            id: Uuid::nil(),
            source: std::io::Error::other(e),
        })
    })
}

/// A guest hostname from a server name (RFC 952-ish, as nova sanitizes it).
pub fn hostname(name: &str) -> String {
    let mut h: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    h = h.trim_matches('-').to_string();
    h.truncate(63);
    if h.is_empty() { "server".into() } else { h }
}

impl Compute {
    /// Registers this host, adopts the guests the driver already runs, and starts the sync.
    pub async fn start(
        store: Store,
        driver: Arc<dyn Driver>,
        images: Arc<ImageStore>,
        cfg: ComputeConfig,
    ) -> Result<Arc<Compute>, StoreError> {
        let d = driver.clone();
        let info = tokio::task::spawn_blocking(move || d.host_info())
            .await
            .map_err(|e| StoreError::Conflict(format!("driver host_info panicked: {e}")))?;
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
        });
        me.adopt().await?;
        let weak = Arc::downgrade(&me);
        let every = me.cfg.sync_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
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
        let mut m = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(id.to_string()).or_default().clone()
    }

    fn busy(&self, id: &str) -> bool {
        let m = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        m.get(id).is_some_and(|l| l.try_lock().is_err())
    }

    fn is_cancelled(&self, id: &str) -> bool {
        let c = self.cancelled.lock().unwrap_or_else(|p| p.into_inner());
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

    /// Resolves an image to files on this host.
    fn boot_source(
        &self,
        image: &Image,
        kernel: Option<&Image>,
        ramdisk: Option<&Image>,
    ) -> Result<BootSource, String> {
        let prop = |k: &str| {
            image
                .properties
                .0
                .get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let file = |i: &Image, what: &str| {
            self.images
                .path(&i.id)
                .ok_or_else(|| format!("{what} image {} has no data on this host", i.id))
        };
        let disk_format = image.disk_format.clone().unwrap_or_else(|| "raw".into());
        let is_kernel = matches!(disk_format.as_str(), "aki" | "ari");
        let disk = if is_kernel || image.size.unwrap_or(0) == 0 {
            None
        } else {
            Some(file(image, "root disk")?)
        };
        let kernel = match kernel {
            Some(k) => file(k, "kernel")?,
            None if disk_format == "aki" => file(image, "kernel")?,
            None if self.cfg.default_kernel.as_os_str().is_empty() => {
                return Err(format!(
                    "image {} has no kernel_id and this host has no default kernel ([compute] default_kernel)",
                    image.id
                ));
            }
            None => self.cfg.default_kernel.clone(),
        };
        let initrd = ramdisk.map(|r| file(r, "ramdisk")).transpose()?;
        Ok(BootSource {
            image_id: Uuid::parse_str(&image.id).unwrap_or_else(|_| Uuid::nil()),
            disk,
            disk_format,
            kernel,
            initrd,
            cmdline: prop("os_command_line"),
        })
    }

    /// The image a property (`kernel_id`, `ramdisk_id`) names, if it names one.
    async fn linked_image(&self, image: &Image, key: &str) -> Result<Option<Image>, String> {
        let Some(id) = image.properties.0.get(key).and_then(Value::as_str) else {
            return Ok(None);
        };
        let linked = self.store.get_image(id).await;
        linked.map(Some).map_err(|e| format!("{key} {id}: {e}"))
    }

    async fn spec(&self, s: &Server) -> Result<InstanceSpec, String> {
        let image = self
            .store
            .get_image(&s.image_id)
            .await
            .map_err(|e| format!("image {}: {e}", s.image_id))?;
        let kernel = self.linked_image(&image, "kernel_id").await?;
        let ramdisk = self.linked_image(&image, "ramdisk_id").await?;
        let boot = self.boot_source(&image, kernel.as_ref(), ramdisk.as_ref())?;
        let mut public_keys = Map::new();
        let mut keys = Vec::new();
        if let Some(k) = &s.key_name {
            let kp = self
                .store
                .get_keypair(&s.user_id, k)
                .await
                .map_err(|e| format!("key pair {k}: {e}"))?;
            public_keys.insert(k.clone(), Value::String(kp.public_key.clone()));
            keys.push(json!({"name": k, "type": "ssh", "data": kp.public_key}));
        }
        let user_data = match &s.user_data {
            Some(b) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| format!("user_data is not base64: {e}"))?,
            ),
            None => None,
        };
        let meta_data = json!({
            "uuid": s.id,
            "name": s.name,
            "hostname": hostname(&s.name),
            "launch_index": s.launch_index,
            "availability_zone": s.availability_zone.clone().unwrap_or_else(|| self.cfg.availability_zone.clone()),
            "project_id": s.project_id,
            "public_keys": public_keys,
            "keys": keys,
            "meta": s.metadata.0,
            "devices": [],
        });
        Ok(InstanceSpec {
            id: uuid_of(&s.id).map_err(|e| e.to_string())?,
            name: s.name.clone(),
            vcpus: u32::try_from(s.vcpus).unwrap_or(1),
            memory_mib: u64::try_from(s.ram_mb).unwrap_or(0),
            root_gb: u64::try_from(s.disk_gb).unwrap_or(0),
            boot,
            config_drive: ConfigDriveData {
                meta_data,
                user_data,
                network_data: json!({"links": [], "networks": [], "services": []}),
                vendor_data: json!({}),
            },
        })
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
            Err(why) => return self.fail(id, "Build of instance aborted", &why).await,
        };
        let d = self.driver.clone();
        let spawned = blocking(move || d.spawn(&spec)).await;
        match spawned {
            Ok(obs) => self.await_ready(id, obs, "Build of instance failed").await,
            Err(e) => {
                self.fail(id, "Build of instance failed", &e.to_string())
                    .await
            }
        }
    }

    /// Waits for the ready mark; ACTIVE, or ERROR with why the guest did not get there.
    async fn await_ready(&self, id: &str, mut obs: Observed, what: &str) {
        let Ok(uuid) = uuid_of(id) else { return };
        let start = Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            if obs.ready && obs.power == PowerState::Running {
                let _ = self
                    .store
                    .set_state(id, vm::ACTIVE, PowerState::Running as i64, obs.pid, None)
                    .await;
                return;
            }
            if matches!(
                obs.power,
                PowerState::Crashed | PowerState::Shutdown | PowerState::NoState
            ) {
                let why = obs.fault.clone().unwrap_or_else(|| {
                    format!("the guest stopped ({:?}) before it was ready", obs.power)
                });
                return self.fail(id, what, &why).await;
            }
            if self.is_cancelled(id) {
                return;
            }
            if start.elapsed() > self.cfg.boot_timeout {
                let why = format!(
                    "the guest wrote no ready mark within {} s (console log kept)",
                    self.cfg.boot_timeout.as_secs()
                );
                return self.fail(id, what, &why).await;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
            let d = self.driver.clone();
            obs = match blocking(move || d.observe(uuid)).await {
                Ok(o) => o,
                Err(e) => return self.fail(id, what, &e.to_string()).await,
            };
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
        // Start and reboot boot the guest again: their outcome waits for the ready mark.
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
            Ok(Some(obs)) => self.await_ready(id, obs, "Boot failed").await,
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
                let _ = self
                    .store
                    .set_state(id, then.0, then.1 as i64, pid, None)
                    .await;
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
            let mut c = self.cancelled.lock().unwrap_or_else(|p| p.into_inner());
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
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&s.id);
        self.cancelled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&s.id);
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

    async fn run_snapshot(&self, id: &str, image: &Image) -> Result<(), String> {
        let uuid = uuid_of(id).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&self.cfg.snapshot_dir)
            .map_err(|e| format!("{}: {e}", self.cfg.snapshot_dir.display()))?;
        let dest = self.cfg.snapshot_dir.join(format!("{}.qcow2", image.id));
        let d = self.driver.clone();
        let to = dest.clone();
        blocking(move || d.snapshot(uuid, &to))
            .await
            .map_err(|e| e.to_string())?;
        let _ = self.store.set_task(id, Some(task::IMAGE_UPLOADING)).await;
        let result = upload_file(&self.store, self.images.clone(), image, &dest).await;
        let _ = std::fs::remove_file(&dest);
        result
    }

    /// Puts what the driver observes into the record of a server with no task running.
    async fn reflect(&self, id: &str, obs: &Observed) {
        let Ok(s) = self.store.get_server(id).await else {
            return;
        };
        if s.task_state.is_some() {
            return;
        }
        let (state, power) = match obs.power {
            PowerState::Running => (vm::ACTIVE, PowerState::Running),
            PowerState::Paused => (vm::PAUSED, PowerState::Paused),
            PowerState::Suspended => (vm::SUSPENDED, PowerState::Suspended),
            p @ (PowerState::Shutdown | PowerState::Crashed | PowerState::NoState) => {
                if s.vm_state == vm::ERROR {
                    return;
                }
                if s.vm_state != vm::STOPPED {
                    tracing::warn!(server = id, power = ?p, fault = ?obs.fault, "guest is no longer running");
                }
                (
                    vm::STOPPED,
                    if p == PowerState::Crashed {
                        p
                    } else {
                        PowerState::Shutdown
                    },
                )
            }
        };
        if s.vm_state == vm::ERROR && power != PowerState::Running {
            return;
        }
        let pid = obs.pid.map(i64::from);
        if s.vm_state != state || s.power_state != power as i64 || s.pid != pid {
            let _ = self
                .store
                .set_state(id, state, power as i64, obs.pid, None)
                .await;
        }
    }

    /// What the driver sees of every instance on this host, by server id.
    async fn observe_all(&self) -> HashMap<String, Observed> {
        let d = self.driver.clone();
        let all = tokio::task::spawn_blocking(move || d.list()).await;
        let all = all.unwrap_or_default().into_iter();
        all.map(|(id, o)| (id.to_string(), o)).collect()
    }

    /// One pass of the power-state sync; also picks up work other daemons left for this host.
    pub async fn sync(self: &Arc<Self>) -> Result<(), StoreError> {
        let observed = self.observe_all().await;
        for s in self.store.servers_on_host(&self.host).await? {
            if self.busy(&s.id) {
                continue;
            }
            match s.task_state.as_deref() {
                Some(task::SPAWNING) if s.vm_state == vm::BUILDING => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        let lock = me.lock_of(&s.id);
                        let _g = lock.lock().await;
                        me.build(&s.id).await;
                    });
                }
                Some(task::DELETING) => self.delete(s),
                Some(_) => {}
                None => match observed.get(&s.id) {
                    Some(obs) => self.reflect(&s.id, obs).await,
                    None if matches!(
                        s.vm_state.as_str(),
                        vm::ACTIVE | vm::PAUSED | vm::SUSPENDED
                    ) =>
                    {
                        self.fail(
                            &s.id,
                            "Instance lost",
                            "the instance's files are gone from its host",
                        )
                        .await;
                    }
                    None => {}
                },
            }
        }
        Ok(())
    }

    /// At start: tasks cut short by the previous daemon are settled, running guests adopted.
    async fn adopt(&self) -> Result<(), StoreError> {
        let observed = self.observe_all().await;
        let mut adopted = 0;
        for s in self.store.servers_on_host(&self.host).await? {
            let obs = observed.get(&s.id);
            match (s.task_state.as_deref(), obs) {
                (Some(task::DELETING), _) => {}
                (Some(task::SPAWNING), Some(_)) if s.vm_state == vm::BUILDING => {
                    // Half-built: start over (the sync rebuilds it).
                    if let Ok(uuid) = uuid_of(&s.id) {
                        let d = self.driver.clone();
                        let _ = blocking(move || d.destroy(uuid)).await;
                    }
                }
                (Some(task::SPAWNING), None) => {}
                (Some(_), _) => {
                    self.store.set_task(&s.id, None).await?;
                    if s.vm_state == vm::BUILDING {
                        self.fail(
                            &s.id,
                            "Build interrupted",
                            "the daemon restarted during the build",
                        )
                        .await;
                    } else if let Some(o) = obs {
                        self.reflect(&s.id, o).await;
                    }
                }
                (None, Some(o)) => {
                    if o.power == PowerState::Running {
                        adopted += 1;
                    }
                    self.reflect(&s.id, o).await;
                }
                (None, None) => {}
            }
        }
        tracing::info!(adopted, "running guests adopted");
        Ok(())
    }
}

/// Streams a file into a queued image through the image service's upload path.
async fn upload_file(
    store: &Store,
    data: Arc<ImageStore>,
    image: &Image,
    path: &std::path::Path,
) -> Result<(), String> {
    use futures_util::StreamExt;
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let mut stream = stream.boxed();
    crate::image::upload::receive(store, data, image, &mut stream)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
