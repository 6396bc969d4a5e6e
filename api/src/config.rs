//! `virgad`'s configuration: a TOML file whose every key can be overridden by an environment
//! variable `VIRGA_<SECTION>_<KEY>` (e.g. `VIRGA_SERVER_LISTEN=0.0.0.0:5000`), on top of built-in
//! defaults. The environment wins over the file, the file over the defaults.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors of loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("config file {path} is not valid TOML: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: toml::de::Error,
    },
    /// An environment variable does not parse as the type of the key it overrides.
    #[error("environment variable {var}={value:?}: expected {expected}")]
    EnvValue {
        /// The variable.
        var: String,
        /// Its value.
        value: String,
        /// The type of the key.
        expected: &'static str,
    },
    /// The merged configuration does not fit the schema (unknown key, wrong type).
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listening address and paths.
    pub server: ServerConfig,
    /// The state database.
    pub database: DatabaseConfig,
    /// Tokens.
    pub token: TokenConfig,
    /// The image service.
    pub image: ImageConfig,
    /// The compute role (scheduler, task flow, agent).
    pub compute: ComputeSection,
    /// Logs.
    pub log: LogConfig,
}

/// `[server]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// One address for every service.
    pub listen: SocketAddr,
    /// Base URL clients use (in the catalog and links); empty: `http://<listen>`.
    pub public_url: String,
    /// Where the database, token keys and images live.
    pub data_dir: PathBuf,
    /// Largest JSON request body in bytes (larger: 413).
    pub max_request_body: u64,
}

/// `[database]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// sqlx URL; empty: the SQLite file `<data_dir>/state.db`.
    pub url: String,
}

/// `[token]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// Lifetime of a token in seconds.
    pub expiration: u64,
    /// How often revocation events are reloaded from the database, in milliseconds.
    pub revocation_poll_ms: u64,
    /// Directory of token keys; empty: `<data_dir>/keys/token`.
    pub key_dir: String,
}

/// `[image]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ImageConfig {
    /// Largest image in bytes (glance's `image_size_cap`; larger: 413).
    pub max_image_bytes: u64,
    /// Page size of image lists when the client gives no limit.
    pub default_limit: u64,
    /// Largest page size a client may ask for.
    pub max_limit: u64,
}

/// `[compute]`: the compute role. The agent's keys map onto
/// [`orchestrator::agent::AgentConfig`] ([`Config::agent_config`]); empty paths mean "under
/// `data_dir`" or "none".
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ComputeSection {
    /// Run the compute role on this daemon (register the host, run guests).
    pub enabled: bool,
    /// Zone of this host.
    pub availability_zone: String,
    /// vCPU allocation ratio (nova's default 16).
    pub cpu_allocation_ratio: f64,
    /// RAM allocation ratio (nova's default 1.5).
    pub ram_allocation_ratio: f64,
    /// Disk allocation ratio (nova's default 1.0).
    pub disk_allocation_ratio: f64,
    /// Period of the power-state sync, in milliseconds.
    pub sync_interval_ms: u64,
    /// Instance directories; empty: `<data_dir>/instances`.
    pub instances_dir: String,
    /// Base-image cache; empty: `<data_dir>/_base`.
    pub base_cache_dir: String,
    /// The `virga-vmm` binary (a bare name is looked up beside virgad, then on PATH).
    pub vmm_binary: String,
    /// Kernel for images without `kernel_id`; empty: such images fail to build.
    pub default_kernel: String,
    /// Kernel command line for images without `os_command_line`.
    pub default_cmdline: String,
    /// How long an unused base image stays cached, in seconds.
    pub base_cache_grace_secs: u64,
    /// Grace between an ACPI power-off request and killing the VMM, in seconds.
    pub stop_grace_secs: u64,
    /// How long spawn/start wait for the VMM to enter the guest, in milliseconds.
    pub start_wait_ms: u64,
    /// Host name for the scheduler; empty: the kernel's host name.
    pub host_name: String,
    /// Attach a config drive to every instance.
    pub config_drive: bool,
}

impl Default for ComputeSection {
    fn default() -> Self {
        let agent = orchestrator::agent::AgentConfig::default();
        ComputeSection {
            enabled: true,
            availability_zone: "nova".into(),
            cpu_allocation_ratio: 16.0,
            ram_allocation_ratio: 1.5,
            disk_allocation_ratio: 1.0,
            sync_interval_ms: 1000,
            instances_dir: String::new(),
            base_cache_dir: String::new(),
            vmm_binary: agent.vmm_binary.display().to_string(),
            default_kernel: String::new(),
            default_cmdline: agent.default_cmdline,
            base_cache_grace_secs: agent.base_cache_grace_secs,
            stop_grace_secs: agent.stop_grace_secs,
            start_wait_ms: agent.start_wait_ms,
            host_name: String::new(),
            config_drive: agent.config_drive,
        }
    }
}

/// `[log]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info` or `api=debug,info`.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            public_url: String::new(),
            data_dir: PathBuf::from("/var/lib/virga"),
            max_request_body: 1 << 20,
        }
    }
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            expiration: 3600,
            revocation_poll_ms: 2000,
            key_dir: String::new(),
        }
    }
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            max_image_bytes: 1 << 40,
            default_limit: 25,
            max_limit: 1000,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

impl Config {
    /// Defaults, then the file (if any), then `VIRGA_*` variables of the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::load_with_env(path, &env)
    }

    /// As [`Config::load`] with an explicit environment (for tests).
    pub fn load_with_env(
        path: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let mut table = toml::Table::try_from(Config::default())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let Some(path) = path {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let file: toml::Table = text.parse().map_err(|source| ConfigError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
            merge(&mut table, file);
        }
        apply_env(&mut table, "VIRGA", env)?;
        Config::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// The URL clients reach this daemon at, without a trailing slash.
    pub fn public_url(&self) -> String {
        if self.server.public_url.is_empty() {
            format!("http://{}", self.server.listen)
        } else {
            self.server.public_url.trim_end_matches('/').to_string()
        }
    }

    /// The default SQLite file of the state database (when `database.url` is empty).
    pub fn database_file(&self) -> PathBuf {
        self.server.data_dir.join("state.db")
    }

    /// The token key directory.
    pub fn token_key_dir(&self) -> PathBuf {
        if self.token.key_dir.is_empty() {
            self.server.data_dir.join("keys").join("token")
        } else {
            PathBuf::from(&self.token.key_dir)
        }
    }

    /// The agent's settings from `[compute]`.
    pub fn agent_config(&self) -> orchestrator::agent::AgentConfig {
        let c = &self.compute;
        let dir = |v: &str, default: &str| {
            if v.is_empty() {
                self.server.data_dir.join(default)
            } else {
                PathBuf::from(v)
            }
        };
        let some = |v: &str| (!v.is_empty()).then(|| v.to_string());
        orchestrator::agent::AgentConfig {
            instances_dir: dir(&c.instances_dir, "instances"),
            vmm_binary: PathBuf::from(&c.vmm_binary),
            default_kernel: some(&c.default_kernel).map(PathBuf::from),
            default_cmdline: c.default_cmdline.clone(),
            base_cache_dir: dir(&c.base_cache_dir, "_base"),
            base_cache_grace_secs: c.base_cache_grace_secs,
            stop_grace_secs: c.stop_grace_secs,
            start_wait_ms: c.start_wait_ms,
            host_name: some(&c.host_name),
            config_drive: c.config_drive,
        }
    }

    /// The task flow's settings from `[compute]`.
    pub fn compute_config(&self) -> orchestrator::compute::ComputeConfig {
        let c = &self.compute;
        orchestrator::compute::ComputeConfig {
            availability_zone: c.availability_zone.clone(),
            ratios: orchestrator::compute::Ratios {
                cpu: c.cpu_allocation_ratio,
                ram: c.ram_allocation_ratio,
                disk: c.disk_allocation_ratio,
            },
            sync_interval: std::time::Duration::from_millis(c.sync_interval_ms.max(10)),
            stop_grace: std::time::Duration::from_secs(c.stop_grace_secs),
            default_kernel: PathBuf::from(&c.default_kernel),
            snapshot_dir: self.server.data_dir.join("snapshots"),
        }
    }

    /// The image store root.
    pub fn image_dir(&self) -> PathBuf {
        self.server.data_dir.join("images")
    }
}

/// Copies `from` over `into`, recursing into tables so a file can set one key of a section.
fn merge(into: &mut toml::Table, from: toml::Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(dst)), toml::Value::Table(src)) => merge(dst, src),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// Overrides every scalar key from `<PREFIX>_<KEY>` when set, parsed as the key's current type.
fn apply_env(
    table: &mut toml::Table,
    prefix: &str,
    env: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    for (key, value) in table.iter_mut() {
        let var = format!("{prefix}_{}", key.to_ascii_uppercase());
        if let toml::Value::Table(inner) = value {
            apply_env(inner, &var, env)?;
            continue;
        }
        let Some(text) = env.get(&var) else { continue };
        let bad = |expected| ConfigError::EnvValue {
            var: var.clone(),
            value: text.clone(),
            expected,
        };
        *value = match value {
            toml::Value::Integer(_) => {
                toml::Value::Integer(text.trim().parse().map_err(|_| bad("an integer"))?)
            }
            toml::Value::Boolean(_) => {
                toml::Value::Boolean(text.trim().parse().map_err(|_| bad("true or false"))?)
            }
            toml::Value::Float(_) => {
                toml::Value::Float(text.trim().parse().map_err(|_| bad("a number"))?)
            }
            _ => toml::Value::String(text.clone()),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("virga.toml");
        std::fs::write(
            &path,
            "[server]\nlisten = \"127.0.0.1:6000\"\ndata_dir = \"/tmp/x\"\n[token]\nexpiration = 60\n",
        )
        .unwrap();
        let env = HashMap::from([
            ("VIRGA_TOKEN_EXPIRATION".to_string(), "120".to_string()),
            ("VIRGA_LOG_FORMAT".to_string(), "json".to_string()),
        ]);
        let c = Config::load_with_env(Some(&path), &env).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:6000".parse().unwrap());
        assert_eq!(c.server.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.token.expiration, 120);
        assert_eq!(c.log.format, "json");
        assert_eq!(c.image.default_limit, 25);
        assert_eq!(c.public_url(), "http://127.0.0.1:6000");
    }

    #[test]
    fn bad_env_value_and_unknown_key_are_errors() {
        let env = HashMap::from([("VIRGA_TOKEN_EXPIRATION".to_string(), "soon".to_string())]);
        let err = Config::load_with_env(None, &env).unwrap_err().to_string();
        assert!(err.contains("VIRGA_TOKEN_EXPIRATION"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("virga.toml");
        std::fs::write(&path, "[server]\nlisen = \"x\"\n").unwrap();
        let err = Config::load_with_env(Some(&path), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn compute_section_maps_onto_the_agent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("virga.toml");
        std::fs::write(
            &path,
            "[server]\ndata_dir = \"/srv/v\"\n[compute]\ndefault_kernel = \"/k\"\nstop_grace_secs = 2\n",
        )
        .unwrap();
        let env = HashMap::from([
            (
                "VIRGA_COMPUTE_RAM_ALLOCATION_RATIO".to_string(),
                "1.0".to_string(),
            ),
            ("VIRGA_COMPUTE_HOST_NAME".to_string(), "h1".to_string()),
        ]);
        let c = Config::load_with_env(Some(&path), &env).unwrap();
        let a = c.agent_config();
        assert_eq!(a.instances_dir, PathBuf::from("/srv/v/instances"));
        assert_eq!(a.base_cache_dir, PathBuf::from("/srv/v/_base"));
        assert_eq!(a.default_kernel, Some(PathBuf::from("/k")));
        assert_eq!((a.stop_grace_secs, a.host_name.as_deref()), (2, Some("h1")));
        let cc = c.compute_config();
        assert_eq!(
            (cc.ratios.cpu, cc.ratios.ram, cc.ratios.disk),
            (16.0, 1.0, 1.0)
        );
        assert_eq!(cc.availability_zone, "nova");
        assert!(c.compute.enabled);
    }
}
