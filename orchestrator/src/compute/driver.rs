//! The seam between the compute API's records (servers, flavors, quotas in the state store)
//! and the host that runs the guests: the compute agent (`crate::agent`) implements [`Driver`]
//! over real `virga-vmm` processes.
//!
//! The API decides *what* should run (scheduling, quotas, task states); the driver makes it so
//! on this host and reports what it observes. Methods block (they start processes, copy disks,
//! talk to control sockets): async callers wrap them in `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use uuid::Uuid;

/// Everything the agent needs to create and boot one instance on this host.
#[derive(Clone, Debug)]
pub struct InstanceSpec {
    /// The server's id (also the name of its directory on the host).
    pub id: Uuid,
    /// The server's name; the guest's hostname comes from it.
    pub name: String,
    /// vCPUs (from the flavor).
    pub vcpus: u32,
    /// Guest RAM in MiB (from the flavor).
    pub memory_mib: u64,
    /// Root disk size in GiB (from the flavor); 0 keeps the image's virtual size.
    pub root_gb: u64,
    /// What boots.
    pub boot: BootSource,
    /// Contents of the config drive (label `config-2`).
    pub config_drive: ConfigDriveData,
}

/// The image a server boots from, resolved to files on this host by the API layer.
#[derive(Clone, Debug)]
pub struct BootSource {
    /// Glance image id of the root disk.
    pub image_id: Uuid,
    /// The image's data file in the image store, when the image has a disk.
    pub disk: Option<PathBuf>,
    /// The image's `disk_format` (`raw`, `qcow2`, ...).
    pub disk_format: String,
    /// The kernel: the `kernel_id` image's file, else the host's default guest kernel (when
    /// [`BootSource::kernel_from_disk`], only if the disk has none); `None`: neither.
    pub kernel: Option<PathBuf>,
    /// The `ramdisk_id` image's file, if any.
    pub initrd: Option<PathBuf>,
    /// No `kernel_id`: boot the kernel and initrd inside the root disk if it has them, with
    /// its root partition (`images::cache::BaseCache::image_boot`), before `kernel`.
    pub kernel_from_disk: bool,
    /// The image's `os_command_line` property, if any.
    pub cmdline: Option<String>,
}

/// The files cloud-init reads from an OpenStack config drive, under `openstack/latest/`.
#[derive(Clone, Debug, Default)]
pub struct ConfigDriveData {
    /// `meta_data.json` (uuid, name, hostname, public_keys, meta, availability_zone, ...).
    pub meta_data: serde_json::Value,
    /// `user_data`, raw bytes as the user gave them (after base64 decoding).
    pub user_data: Option<Vec<u8>>,
    /// `network_data.json`.
    pub network_data: serde_json::Value,
    /// `vendor_data.json`.
    pub vendor_data: serde_json::Value,
}

/// Power states, numbered as Nova numbers them in `OS-EXT-STS:power_state` (and so stored: an
/// INTEGER column; a number that is none of these is a decode error).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, sqlx::Type)]
#[repr(i64)]
pub enum PowerState {
    /// No VMM and no record of one (0).
    #[default]
    NoState = 0,
    /// The VMM runs the guest (1).
    Running = 1,
    /// vCPUs stopped by `pause` (3).
    Paused = 3,
    /// The guest powered off or the VMM was stopped (4).
    Shutdown = 4,
    /// The VMM died abnormally: a signal, a guest panic, a triple fault, an error (6).
    Crashed = 6,
    /// Suspended (7).
    Suspended = 7,
}

/// What the agent sees of one instance right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// Power state.
    pub power: PowerState,
    /// The VMM's pid while one runs.
    pub pid: Option<u32>,
    /// Whether the guest has written its ready mark (boot-progress code 123) since it booted
    /// (`ready_us.is_some()`). Information only: a server is ACTIVE once its VMM runs the
    /// guest, as in Nova; a stock image never writes the mark.
    pub ready: bool,
    /// When the guest wrote its ready mark in the current boot: microseconds since its VMM
    /// process started (the clock of the control socket's boot timings), else `None`.
    pub ready_us: Option<u64>,
    /// Why the instance is `Crashed` (exit status, signal, VMM error line), for the server fault.
    pub fault: Option<String>,
}

impl Observed {
    /// A VMM that runs the guest, with the time of the ready mark if the guest wrote it.
    pub fn running(pid: u32, ready_us: Option<u64>) -> Observed {
        Observed {
            power: PowerState::Running,
            pid: Some(pid),
            ready: ready_us.is_some(),
            ready_us,
            fault: None,
        }
    }
}

/// Capacity of this host, for the scheduler and `os-hypervisors`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInfo {
    /// Host name (`OS-EXT-SRV-ATTR:host`, `hypervisor_hostname`).
    pub hostname: String,
    /// Physical CPUs.
    pub vcpus: u32,
    /// Physical RAM in MiB.
    pub memory_mib: u64,
    /// Disk for instance directories, in GiB.
    pub disk_gb: u64,
}

/// Errors of a driver operation; the message is what a server fault shows.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// No instance with this id on this host.
    #[error("instance {0} is not on this host")]
    NotFound(Uuid),
    /// The operation does not fit the instance's power state (e.g. pause a stopped guest).
    #[error("instance {id} is {state:?}; cannot {op}")]
    InvalidState {
        /// The instance.
        id: Uuid,
        /// Its power state.
        state: PowerState,
        /// What was asked.
        op: &'static str,
    },
    /// The guest did not boot; the console log is kept.
    #[error("instance {id} failed to boot: {reason}")]
    BootFailed {
        /// The instance.
        id: Uuid,
        /// Why (the VMM's error, exit status, or a timeout).
        reason: String,
    },
    /// Disks, config drive or instance directory could not be prepared.
    #[error("instance {id}: {reason}")]
    Prepare {
        /// The instance.
        id: Uuid,
        /// Why.
        reason: String,
    },
    /// Talking to the VMM or the host failed.
    #[error("instance {id}: {source}")]
    Io {
        /// The instance.
        id: Uuid,
        /// The error.
        source: std::io::Error,
    },
    /// The driver's call panicked (a bug: the panic is in the log); the instance is left as
    /// the next sync finds it.
    #[error("the driver panicked: {0}")]
    Panicked(String),
}

/// A host that runs instances. Implemented by the compute agent over `virga-vmm` processes.
pub trait Driver: Send + Sync {
    /// This host's name and capacity.
    fn host_info(&self) -> HostInfo;

    /// Creates the instance directory (qcow2 overlay over the cached base image, grown to
    /// `root_gb`; config drive; VMM config) and starts its VMM. Returns once the VMM runs
    /// the guest (power state Running: the task flow makes the server ACTIVE on it);
    /// [`Driver::observe`] tells whether and when the guest wrote its ready mark.
    fn spawn(&self, spec: &InstanceSpec) -> Result<Observed, DriverError>;

    /// Starts the VMM of a stopped instance again, on the same disks.
    fn start(&self, id: Uuid) -> Result<Observed, DriverError>;

    /// Stops the guest: an ACPI power-off request first, then the VMM is killed after
    /// `grace` if the guest has not powered off by then.
    fn stop(&self, id: Uuid, grace: Duration) -> Result<(), DriverError>;

    /// Reboots: `hard` restarts the VMM; soft asks the guest (Ctrl-Alt-Del) and falls back to
    /// hard after `grace`.
    fn reboot(&self, id: Uuid, hard: bool, grace: Duration) -> Result<Observed, DriverError>;

    /// Stops the vCPUs; memory stays resident.
    fn pause(&self, id: Uuid) -> Result<(), DriverError>;

    /// Runs paused vCPUs again.
    fn unpause(&self, id: Uuid) -> Result<(), DriverError>;

    /// Suspends the guest (see the agent's docs for what this holds on this host).
    fn suspend(&self, id: Uuid) -> Result<(), DriverError>;

    /// Resumes a suspended guest.
    fn resume(&self, id: Uuid) -> Result<(), DriverError>;

    /// The console log; with `lines`, only its last `lines` lines.
    fn console_output(&self, id: Uuid, lines: Option<usize>) -> Result<String, DriverError>;

    /// Writes a standalone qcow2 copy of the root disk (overlay and base flattened) to `dest`.
    fn snapshot(&self, id: Uuid, dest: &Path) -> Result<(), DriverError>;

    /// Stops the VMM if it runs and removes every file of the instance.
    fn destroy(&self, id: Uuid) -> Result<(), DriverError>;

    /// What the instance looks like now.
    fn observe(&self, id: Uuid) -> Result<Observed, DriverError>;

    /// Every instance with a directory on this host (running or not): how a restarted daemon
    /// adopts its guests and how the power-state sync finds the dead ones.
    fn list(&self) -> Vec<(Uuid, Observed)>;
}
