//! The compute agent's settings (the `[compute]` section of virgad's config maps onto it).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the agent keeps instances, which VMM it runs and how patiently it stops guests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// One directory per instance is created under it (`<instances_dir>/<uuid>/`).
    pub instances_dir: PathBuf,
    /// The `virga-vmm` binary. A bare name is looked up next to the running executable,
    /// then on `PATH`.
    pub vmm_binary: PathBuf,
    /// The guest kernel for images without `kernel_id` (the API layer resolves it into
    /// [`crate::compute::driver::BootSource::kernel`]).
    pub default_kernel: Option<PathBuf>,
    /// The kernel command line for images without `os_command_line`.
    pub default_cmdline: String,
    /// The host's base-image cache (bases, overlays; `images::cache::BaseCache`).
    pub base_cache_dir: PathBuf,
    /// How long an unused base image stays cached, in seconds.
    pub base_cache_grace_secs: u64,
    /// Default grace between an ACPI power-off request and killing the VMM, in seconds.
    pub stop_grace_secs: u64,
    /// How long `spawn`/`start` wait for the VMM to load the kernel and enter the guest before
    /// returning (a VMM that exits within it is a boot failure), in milliseconds.
    pub start_wait_ms: u64,
    /// The host name reported to the scheduler (default: the kernel's host name).
    pub host_name: Option<String>,
    /// Attach a config drive (ISO 9660, label `config-2`, read-only, serial `config-2`) to
    /// every instance, as Nova's `force_config_drive`: the only metadata source here.
    pub config_drive: bool,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            instances_dir: "/var/lib/virga/instances".into(),
            vmm_binary: "virga-vmm".into(),
            default_kernel: None,
            default_cmdline: String::new(),
            base_cache_dir: "/var/lib/virga/_base".into(),
            base_cache_grace_secs: 24 * 3600,
            stop_grace_secs: 30,
            start_wait_ms: 2000,
            host_name: None,
            config_drive: true,
        }
    }
}

impl AgentConfig {
    /// A config with every directory under `root` (tests, single-directory installs).
    pub fn under(root: &Path) -> Self {
        Self {
            instances_dir: root.join("instances"),
            base_cache_dir: root.join("_base"),
            ..Self::default()
        }
    }

    /// [`AgentConfig::stop_grace_secs`] as a duration.
    pub fn stop_grace(&self) -> Duration {
        Duration::from_secs(self.stop_grace_secs)
    }

    /// The VMM binary as an absolute path, if it can be found.
    pub fn resolve_vmm_binary(&self) -> Option<PathBuf> {
        let bin = &self.vmm_binary;
        if bin.components().count() > 1 || bin.is_absolute() {
            return bin.is_file().then(|| bin.clone());
        }
        let beside_exe = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join(bin)));
        let on_path: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join(bin)).collect())
            .unwrap_or_default();
        beside_exe
            .into_iter()
            .chain(on_path)
            .find(|candidate| candidate.is_file())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_a_partial_section_and_unknown_keys_are_refused() {
        let c: AgentConfig = serde_json::from_str(r#"{"stop_grace_secs": 5}"#).unwrap();
        assert_eq!(c.stop_grace(), Duration::from_secs(5));
        assert_eq!(c.instances_dir, AgentConfig::default().instances_dir);
        assert!(serde_json::from_str::<AgentConfig>(r#"{"stop_grace": 5}"#).is_err());
    }

    #[test]
    fn vmm_binary_by_path_or_name() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("virga-vmm");
        let mut c = AgentConfig {
            vmm_binary: bin.clone(),
            ..AgentConfig::default()
        };
        assert_eq!(c.resolve_vmm_binary(), None, "missing file");
        std::fs::write(&bin, b"").unwrap();
        assert_eq!(c.resolve_vmm_binary(), Some(bin));
        c.vmm_binary = "surely-not-a-binary-of-this-host".into();
        assert_eq!(c.resolve_vmm_binary(), None);
    }
}
