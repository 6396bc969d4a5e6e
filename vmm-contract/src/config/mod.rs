//! What one `virga-vmm` runs: from command-line flags, a JSON file, or both (flags win), and
//! the checks that need no KVM (the VMM checks KVM's own limits as it builds the VM).

pub mod devices;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::str::FromStr;

pub use devices::{BalloonConfig, DeviceConfigError, DriveConfig, DriveFormat, NetConfig};

/// The smallest guest the VMM builds, in bytes: its low memory tables (boot parameters, page
/// tables, ACPI, MP table) and room for a kernel.
pub const MIN_MEMORY: u64 = 2 << 20;

/// Where the guest's serial console goes (and where its input comes from).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SerialConfig {
    /// Output to stdout, input from stdin.
    #[default]
    Stdout,
    /// Output appended to a file; no input.
    File(PathBuf),
    /// A unix socket the VMM listens on: output to, and input from, the connected client.
    Socket(PathBuf),
    /// Output discarded.
    None,
}

impl FromStr for SerialConfig {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "stdout" => Ok(Self::Stdout),
            "none" => Ok(Self::None),
            _ => match s.split_once(':') {
                Some(("file", p)) if !p.is_empty() => Ok(Self::File(p.into())),
                Some(("socket", p)) if !p.is_empty() => Ok(Self::Socket(p.into())),
                _ => Err(ConfigError::Serial(s.to_owned())),
            },
        }
    }
}

/// What a guest reset (i8042 0xfe, KVM reset event) does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum OnReset {
    /// Boot the guest again in the same process.
    #[default]
    Restart,
    /// End the process with status 2.
    Exit,
}

/// A whole VM configuration (also the JSON config file's schema).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// Kernel: an ELF vmlinux with a PVH note, or a bzImage.
    pub kernel: PathBuf,
    /// Initial ramdisk.
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[serde(default)]
    pub cmdline: String,
    /// Number of vCPUs.
    #[serde(default = "default_vcpus")]
    pub vcpus: u32,
    /// Guest memory in MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    /// Serial console.
    #[serde(default)]
    pub serial: SerialConfig,
    /// Control socket path (must not exist yet).
    #[serde(default)]
    pub control_socket: Option<PathBuf>,
    /// Guest reset behaviour.
    #[serde(default)]
    pub on_reset: OnReset,
    /// Where to write, atomically and just before exiting, the exit status and its reason
    /// (`crate::exit_status::ExitStatus`), for a watcher that cannot wait for this process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status_file: Option<PathBuf>,
    /// Whether to build ACPI tables (else the MP table alone describes the CPUs).
    #[serde(default = "default_acpi")]
    pub acpi: bool,
    /// virtio-blk drives in slot order: the first is `/dev/vda`.
    #[serde(default)]
    pub drives: Vec<DriveConfig>,
    /// virtio-net NICs over taps, after the drives.
    #[serde(default)]
    pub nets: Vec<NetConfig>,
    /// A virtio-balloon (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balloon: Option<BalloonConfig>,
    /// A virtio-rng fed from the host's getrandom.
    #[serde(default)]
    pub rng: bool,
    /// Announce the virtio-mmio devices on the kernel command line
    /// (`virtio_mmio.device=4K@0x...:IRQ`); off: ACPI (DSDT) alone describes them.
    #[serde(default = "default_true")]
    pub virtio_cmdline: bool,
}

impl VmConfig {
    /// The defaults, as the flags and the JSON file have them.
    pub fn new(kernel: PathBuf) -> Self {
        Self {
            kernel,
            initrd: None,
            cmdline: String::new(),
            vcpus: default_vcpus(),
            memory_mib: default_memory_mib(),
            serial: SerialConfig::default(),
            control_socket: None,
            on_reset: OnReset::default(),
            exit_status_file: None,
            acpi: true,
            drives: Vec::new(),
            nets: Vec::new(),
            balloon: None,
            rng: false,
            virtio_cmdline: true,
        }
    }

    /// Number of virtio-mmio devices (drives, NICs, balloon, rng).
    pub fn virtio_device_count(&self) -> usize {
        self.drives.len()
            + self.nets.len()
            + usize::from(self.balloon.is_some())
            + usize::from(self.rng)
    }
}

fn default_vcpus() -> u32 {
    1
}
fn default_memory_mib() -> u64 {
    128
}
fn default_acpi() -> bool {
    true
}
fn default_true() -> bool {
    true
}

/// Errors in a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--serial` value not understood.
    #[error("serial `{0}` is not one of stdout, none, file:PATH, socket:PATH")]
    Serial(String),
    /// No kernel given.
    #[error("no kernel given (use --kernel or \"kernel\" in the config file)")]
    NoKernel,
    /// The config file could not be read.
    #[error("config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The config file is not valid JSON for a [`VmConfig`].
    #[error("config file {path}: {source}")]
    ParseFile {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// Zero vCPUs.
    #[error("vcpus must be at least 1")]
    NoVcpus,
    /// More vCPUs than KVM (or the xAPIC ID space) allows.
    #[error("vcpus {asked} exceeds the maximum of {max} on this host")]
    TooManyVcpus { asked: u32, max: u32 },
    /// Too little memory.
    #[error("memory {0} MiB is too small (at least 2 MiB)")]
    TooLittleMemory(u64),
    /// More memory than the host has.
    #[error("memory {asked} MiB exceeds the host's {host} MiB of RAM")]
    TooMuchMemory { asked: u64, host: u64 },
    /// A socket path that already exists.
    #[error("{what} path {path} already exists")]
    SocketExists { what: &'static str, path: PathBuf },
    /// A virtio device option is wrong.
    #[error(transparent)]
    Device(#[from] DeviceConfigError),
}

impl VmConfig {
    /// Reads a JSON config file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.into(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ConfigError::ParseFile {
            path: path.into(),
            source,
        })
    }

    /// Guest memory in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_mib.saturating_mul(1 << 20)
    }

    /// Checks the limits that need no KVM: `max_vcpus` from KVM, `host_mib` of host RAM.
    pub fn validate(&self, max_vcpus: u32, host_mib: u64) -> Result<(), ConfigError> {
        if self.vcpus == 0 {
            return Err(ConfigError::NoVcpus);
        }
        if self.vcpus > max_vcpus {
            return Err(ConfigError::TooManyVcpus {
                asked: self.vcpus,
                max: max_vcpus,
            });
        }
        if self.memory_bytes() < MIN_MEMORY {
            return Err(ConfigError::TooLittleMemory(self.memory_mib));
        }
        if self.memory_mib > host_mib {
            return Err(ConfigError::TooMuchMemory {
                asked: self.memory_mib,
                host: host_mib,
            });
        }
        devices::validate(
            &self.drives,
            &self.nets,
            usize::from(self.balloon.is_some()) + usize::from(self.rng),
        )?;
        let sockets = [
            ("control socket", self.control_socket.as_ref()),
            (
                "serial socket",
                match &self.serial {
                    SerialConfig::Socket(p) => Some(p),
                    _ => None,
                },
            ),
        ];
        for (what, path) in sockets {
            if let Some(path) = path
                && std::fs::symlink_metadata(path).is_ok()
            {
                return Err(ConfigError::SocketExists {
                    what,
                    path: path.clone(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> VmConfig {
        serde_json::from_str(r#"{"kernel": "/k"}"#).unwrap()
    }

    #[test]
    fn defaults_and_json_forms() {
        let c = base();
        assert_eq!(
            (c.vcpus, c.memory_mib, c.acpi, c.on_reset),
            (1, 128, true, OnReset::Restart)
        );
        let c: VmConfig = serde_json::from_str(
            r#"{"kernel": "/k", "serial": {"socket": "/s"}, "on_reset": "exit", "acpi": false}"#,
        )
        .unwrap();
        assert_eq!(c.serial, SerialConfig::Socket("/s".into()));
        assert!(serde_json::from_str::<VmConfig>(r#"{"kernel": "/k", "vcpu": 2}"#).is_err());
        assert_eq!(base(), VmConfig::new("/k".into()));
    }

    #[test]
    fn device_json_forms() {
        let c: VmConfig = serde_json::from_str(
            r#"{"kernel": "/k",
                "drives": [{"id": "root", "path": "/x/disk.qcow2", "format": "qcow2"},
                           {"id": "data", "path": "/x/d.raw", "read_only": true, "serial": "s1"}],
                "nets": [{"id": "net0", "tap": "tap0", "mac": "02:00:00:00:00:01"},
                         {"id": "net1", "tap_fd": 5}],
                "balloon": {"deflate_on_oom": true, "free_page_reporting": false},
                "rng": true}"#,
        )
        .unwrap();
        assert_eq!(c.drives[0].format, Some(DriveFormat::Qcow2));
        assert!(c.drives[1].read_only);
        assert_eq!(c.nets[1].tap_fd, Some(5));
        assert!(c.balloon.unwrap().deflate_on_oom);
        assert!(c.rng && c.virtio_cmdline);
        assert_eq!(c.virtio_device_count(), 6);
        c.validate(8, 1024).unwrap();
        // Round trip: what the compute agent serialises reads back the same.
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<VmConfig>(&text).unwrap(), c);
        for bad in [
            r#"{"kernel": "/k", "drives": [{"id": "a", "path": "/p", "fmt": "raw"}]}"#,
            r#"{"kernel": "/k", "drives": [{"id": "a", "path": "/p", "format": "vmdk"}]}"#,
            r#"{"kernel": "/k", "nets": [{"id": "a", "tap": "t", "vlan": 3}]}"#,
            r#"{"kernel": "/k", "balloon": {"size": 3}}"#,
        ] {
            assert!(serde_json::from_str::<VmConfig>(bad).is_err(), "{bad}");
        }
        let c: VmConfig = serde_json::from_str(
            r#"{"kernel": "/k", "nets": [{"id": "a", "tap": "t", "tap_fd": 3}]}"#,
        )
        .unwrap();
        assert!(matches!(c.validate(8, 1024), Err(ConfigError::Device(_))));
    }

    #[test]
    fn serial_flag_forms() {
        assert_eq!(
            "stdout".parse::<SerialConfig>().unwrap(),
            SerialConfig::Stdout
        );
        assert_eq!(
            "file:/x".parse::<SerialConfig>().unwrap(),
            SerialConfig::File("/x".into())
        );
        assert!("file:".parse::<SerialConfig>().is_err());
        assert!("tty".parse::<SerialConfig>().is_err());
    }

    #[test]
    fn limits() {
        let mut c = base();
        c.vcpus = 0;
        assert!(matches!(c.validate(8, 1024), Err(ConfigError::NoVcpus)));
        c.vcpus = 9;
        assert!(matches!(
            c.validate(8, 1024),
            Err(ConfigError::TooManyVcpus { .. })
        ));
        c.vcpus = 1;
        c.memory_mib = 0;
        assert!(matches!(
            c.validate(8, 1024),
            Err(ConfigError::TooLittleMemory(0))
        ));
        c.memory_mib = u64::MAX;
        assert!(matches!(
            c.validate(8, 1024),
            Err(ConfigError::TooMuchMemory { .. })
        ));
        c.memory_mib = 64;
        c.control_socket = Some("/".into());
        assert!(matches!(
            c.validate(8, 1024),
            Err(ConfigError::SocketExists { .. })
        ));
    }
}
