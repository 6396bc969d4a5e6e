//! The real `openstack` client (python-openstackclient, pinned, in the venv that
//! scripts/setup.d/30-openstack-client.sh builds), run with a clean environment.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::ADMIN_PASSWORD;

/// The client in the cache, if setup built it.
pub fn openstack_bin() -> Option<PathBuf> {
    let cache = std::env::var_os("VIRGA_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/virga")))?;
    let bin = cache.join("venv-openstack/current/bin/openstack");
    bin.exists().then_some(bin)
}

/// The client, or `None` after a plain SKIPPED line (a failure under CI=true).
pub fn openstack_or_skip() -> Option<PathBuf> {
    let bin = openstack_bin();
    if bin.is_none() {
        let msg =
            "the openstack client venv is missing: run scripts/setup.d/30-openstack-client.sh";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("SKIPPED: {msg}");
    }
    bin
}

/// Runs the client as one user with a clean environment (no clouds.yaml, no OS_* leaking in).
#[derive(Clone)]
pub struct Client {
    /// The `openstack` executable.
    pub bin: PathBuf,
    /// HOME for the client (no clouds.yaml).
    pub home: PathBuf,
    /// `OS_AUTH_URL`.
    pub auth_url: String,
}

impl Client {
    /// Runs `openstack <args>` as `user` in `project`; stdout, or the failure with stderr.
    pub fn run(
        &self,
        user: &str,
        password: &str,
        project: &str,
        args: &[&str],
    ) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &self.home)
            .env("OS_AUTH_URL", &self.auth_url)
            .env("OS_IDENTITY_API_VERSION", "3")
            .env("OS_USERNAME", user)
            .env("OS_PASSWORD", password)
            .env("OS_PROJECT_NAME", project)
            .env("OS_USER_DOMAIN_NAME", "Default")
            .env("OS_PROJECT_DOMAIN_NAME", "Default")
            .env("OS_REGION_NAME", "RegionOne")
            .env("OS_INTERFACE", "public")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "openstack {args:?} failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Runs as the bootstrap admin; panics on failure.
    pub fn admin(&self, args: &[&str]) -> String {
        self.run("admin", ADMIN_PASSWORD, "admin", args)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`Client::admin`] with `-f json`, parsed.
    pub fn admin_json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-f", "json"]);
        let out = self.admin(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }
}
