//! The compute agent: implements [`Driver`] over real `virga-vmm` processes, one per instance,
//! each with its own directory under [`AgentConfig::instances_dir`]. VMMs are started detached
//! and outlive the daemon; a new [`Agent`] over the same directory adopts them. Design and
//! choices: docs/compute-agent.md.

mod config;
mod configdrive;
mod console;
mod ctl;
mod host;
mod instance;
mod lifecycle;
mod observe;
mod process;
mod spawn;

pub use config::AgentConfig;
pub use configdrive::ConfigDriveError;
pub use instance::InstanceDir;

use crate::compute::driver::{Driver, DriverError, HostInfo, InstanceSpec, Observed};
use images::cache::{BaseCache, CacheError};
use locks::Unpoisoned;
use process::Children;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// Why an [`Agent`] could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The instances directory could not be created or resolved.
    #[error("instances directory {path}: {source}")]
    InstancesDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The VMM binary was not found.
    #[error("virga-vmm binary {0} not found (set vmm_binary in the [compute] section)")]
    NoVmm(PathBuf),
    /// The base-image cache could not be opened.
    #[error("base image cache: {0}")]
    Cache(#[from] CacheError),
}

/// Ids of instances whose VMM just ended, for whoever subscribed.
type Subscribers = Arc<Mutex<Vec<Sender<Uuid>>>>;

/// The compute agent of this host.
pub struct Agent {
    cfg: AgentConfig,
    instances: PathBuf,
    vmm: PathBuf,
    cache: BaseCache,
    children: Arc<Children>,
    locks: Mutex<HashMap<Uuid, Arc<Mutex<()>>>>,
    subscribers: Subscribers,
}

impl Agent {
    /// Opens the instances directory and base cache (creating them) and adopts every VMM
    /// still running there.
    pub fn new(cfg: AgentConfig) -> Result<Self, AgentError> {
        let dir_err = |source| AgentError::InstancesDir {
            path: cfg.instances_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&cfg.instances_dir).map_err(dir_err)?;
        // VMM configs and pid checks name files by absolute path.
        let instances = cfg.instances_dir.canonicalize().map_err(dir_err)?;
        let vmm = cfg
            .resolve_vmm_binary()
            .ok_or_else(|| AgentError::NoVmm(cfg.vmm_binary.clone()))?;
        let cache = BaseCache::open(
            &cfg.base_cache_dir,
            Duration::from_secs(cfg.base_cache_grace_secs),
        )?;
        let agent = Self {
            cfg,
            instances,
            vmm,
            cache,
            children: Arc::default(),
            locks: Mutex::default(),
            subscribers: Arc::default(),
        };
        agent.adopt();
        Ok(agent)
    }

    /// The settings this agent runs with.
    pub fn config(&self) -> &AgentConfig {
        &self.cfg
    }

    /// The host's base-image cache.
    pub fn base_cache(&self) -> &BaseCache {
        &self.cache
    }

    /// The directory layout of instance `id`.
    pub fn instance_dir(&self, id: Uuid) -> InstanceDir {
        InstanceDir::new(&self.instances, id)
    }

    /// A channel that receives an instance's id as soon as its VMM ends (exit, crash, kill),
    /// for VMMs started by this agent and adopted ones alike: a power-state sync can react at
    /// once instead of polling [`Driver::observe`].
    pub fn subscribe(&self) -> Receiver<Uuid> {
        let (tx, rx) = channel();
        self.subscribers.lock().unpoisoned().push(tx);
        rx
    }

    fn notifier(&self) -> impl FnOnce(Uuid) + Send + 'static {
        let subscribers = self.subscribers.clone();
        move |id| {
            let mut subs = subscribers.lock().unpoisoned();
            subs.retain(|tx| tx.send(id).is_ok());
        }
    }

    /// Serialises operations on one instance (observe needs no lock).
    fn lock(&self, id: Uuid) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unpoisoned();
        locks.entry(id).or_default().clone()
    }

    /// Ids of every instance directory on this host.
    fn instance_ids(&self) -> Vec<Uuid> {
        let Ok(entries) = std::fs::read_dir(&self.instances) else {
            return Vec::new();
        };
        let mut ids: Vec<Uuid> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect();
        ids.sort();
        ids
    }

    /// Watches every running VMM that this agent did not start, so [`Agent::subscribe`]rs
    /// hear of its end.
    fn adopt(&self) {
        for id in self.instance_ids() {
            let dir = self.instance_dir(id);
            let Some(rec) = process::running_vmm(&dir) else {
                continue;
            };
            let pidfd = match process::Pidfd::open(rec, &dir.vmm_config()) {
                Ok(Some(fd)) => fd,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(%id, pid = rec.pid, "cannot watch the adopted VMM: {e}");
                    continue;
                }
            };
            tracing::info!(%id, pid = rec.pid, "adopted a running VMM");
            let notify = self.notifier();
            let spawned = std::thread::Builder::new()
                .name(format!("watch-{}", rec.pid))
                .stack_size(64 * 1024)
                .spawn(move || {
                    while !pidfd.wait(Duration::from_secs(3600)) {}
                    tracing::info!(%id, pid = rec.pid, "adopted VMM ended");
                    notify(id);
                });
            if let Err(e) = spawned {
                tracing::warn!(%id, "cannot start a watcher thread: {e}");
            }
        }
    }
}

fn io_err(id: Uuid) -> impl FnOnce(std::io::Error) -> DriverError {
    move |source| DriverError::Io { id, source }
}

impl Driver for Agent {
    fn host_info(&self) -> HostInfo {
        host::host_info(self.cfg.host_name.as_deref(), &self.instances)
    }

    fn spawn(&self, spec: &InstanceSpec) -> Result<Observed, DriverError> {
        let lock = self.lock(spec.id);
        let _held = lock.lock().unpoisoned();
        self.spawn_locked(spec)
    }

    fn start(&self, id: Uuid) -> Result<Observed, DriverError> {
        let lock = self.lock(id);
        let _held = lock.lock().unpoisoned();
        self.start_locked(id)
    }

    fn stop(&self, id: Uuid, grace: Duration) -> Result<(), DriverError> {
        let lock = self.lock(id);
        let _held = lock.lock().unpoisoned();
        self.stop_locked(id, grace)
    }

    fn reboot(&self, id: Uuid, hard: bool, grace: Duration) -> Result<Observed, DriverError> {
        let lock = self.lock(id);
        let _held = lock.lock().unpoisoned();
        self.reboot_locked(id, hard, grace)
    }

    fn pause(&self, id: Uuid) -> Result<(), DriverError> {
        let lock = self.lock(id);
        let _held = lock.lock().unpoisoned();
        self.pause_locked(id, false)
    }

    fn unpause(&self, id: Uuid) -> Result<(), DriverError> {
        let lock = self.lock(id);
        let _held = lock.lock().unpoisoned();
        self.unpause_locked(id, false)
    }

    fn suspend(&self, id: Uuid) -> Result<(), DriverError> {
        let lock = self.lock(id);
        let _held = lock.lock().unpoisoned();
        self.pause_locked(id, true)
    }

    fn resume(&self, id: Uuid) -> Result<(), DriverError> {
        let lock = self.lock(id);
        let _held = lock.lock().unpoisoned();
        self.unpause_locked(id, true)
    }

    fn console_output(&self, id: Uuid, lines: Option<usize>) -> Result<String, DriverError> {
        let dir = self.instance_dir(id);
        if !dir.path().is_dir() {
            return Err(DriverError::NotFound(id));
        }
        console::tail(&dir.console(), lines).map_err(io_err(id))
    }

    fn snapshot(&self, id: Uuid, dest: &Path) -> Result<(), DriverError> {
        let lock = self.lock(id);
        let _held = lock.lock().unpoisoned();
        self.snapshot_locked(id, dest)
    }

    fn destroy(&self, id: Uuid) -> Result<(), DriverError> {
        let lock = self.lock(id);
        let result = {
            let _held = lock.lock().unpoisoned();
            self.destroy_locked(id)
        };
        self.locks.lock().unpoisoned().remove(&id);
        result
    }

    fn observe(&self, id: Uuid) -> Result<Observed, DriverError> {
        self.observe_dir(id, &self.instance_dir(id))
    }

    fn list(&self) -> Vec<(Uuid, Observed)> {
        self.instance_ids()
            .into_iter()
            .filter_map(|id| self.observe(id).ok().map(|o| (id, o)))
            .collect()
    }
}
