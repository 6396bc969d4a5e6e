//! Compute helpers: nova's error shape, the tiny guest as images, waits on server states, and
//! the processes and files a server leaves on the host.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Answer, Api, Cloud};

/// Config for a cloud whose guests stop fast (tests do not wait 30 s for an ACPI power-off).
pub const COMPUTE_TOML: &str = "[compute]\nstop_grace_secs = 1\n";

#[path = "../vmm_support/mod.rs"]
mod vmm_support;
#[allow(unused_imports)] // not every test binary runs guests
pub use vmm_support::kvm_available;

impl Answer {
    /// Asserts the status and nova's error shape `{"<fault>": {"code", "message"}}`; returns
    /// the message.
    pub fn nova_error(self, status: u16, fault: &str) -> String {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            String::from_utf8_lossy(&self.bytes)
        );
        let e = &self.body[fault];
        assert_eq!(e["code"], json!(status), "error shape: {}", self.body);
        assert_eq!(
            self.body.as_object().map(|o| o.len()),
            Some(1),
            "{}",
            self.body
        );
        e["message"].as_str().expect("message").to_string()
    }
}

impl Api {
    /// Creates an image and uploads `path` into it; returns its id.
    pub async fn upload_image(
        &self,
        token: &str,
        name: &str,
        disk_format: &str,
        path: &Path,
        props: Value,
    ) -> String {
        let mut body =
            json!({"name": name, "disk_format": disk_format, "container_format": "bare"});
        if let (Value::Object(b), Value::Object(p)) = (&mut body, props) {
            b.extend(p);
        }
        let a = self.post("/image/v2/images", token, body).await.expect(201);
        let id = a.body["id"].as_str().expect("image id").to_string();
        let data = std::fs::read(path).expect("image file");
        Api::answer(
            self.http
                .put(format!("{}/image/v2/images/{id}/file", self.base))
                .header("X-Auth-Token", token)
                .header("Content-Type", "application/octet-stream")
                .body(data),
        )
        .await
        .expect(204);
        id
    }

    /// The tiny guest as a kernel image (`aki`) and a 64 MiB qcow2 root whose `kernel_id`
    /// points at it; returns (kernel id, root image id).
    pub async fn tiny_guest_image(&self, token: &str, dir: &Path) -> (String, String) {
        let kernel = self
            .upload_image(
                token,
                "tiny-kernel",
                "aki",
                Path::new(tiny_guest::PATH),
                json!({}),
            )
            .await;
        let root = super::make_qcow2(dir, "tiny-root.qcow2", "64M");
        let image = self
            .upload_image(
                token,
                "tiny",
                "qcow2",
                &root,
                json!({ "kernel_id": kernel }),
            )
            .await;
        (kernel, image)
    }

    /// `GET /compute/v2.1/servers/{id}`'s server.
    pub async fn server(&self, token: &str, id: &str) -> Value {
        let a = self
            .get(&format!("/compute/v2.1/servers/{id}"), token)
            .await
            .expect(200);
        a.body["server"].clone()
    }

    /// Waits (up to `secs`) until the server's status is `status`; panics with the server.
    pub async fn wait_status(&self, token: &str, id: &str, status: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.server(token, id).await;
            if s["status"] == status && s["OS-EXT-STS:task_state"].is_null() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "server {id} did not reach {status} within {secs} s: {s:#}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until the server's console shows `needle`; returns the console.
    pub async fn wait_console(&self, token: &str, id: &str, needle: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let a = self
                .action(token, id, json!({"os-getConsoleOutput": {}}))
                .await
                .expect(200);
            let out = a.body["output"].as_str().unwrap_or_default().to_string();
            if out.contains(needle) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} not on the console of {id}:\n{out}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the server is gone (404).
    pub async fn wait_gone(&self, token: &str, id: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let a = self
                .get(&format!("/compute/v2.1/servers/{id}"), token)
                .await;
            if a.status.as_u16() == 404 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "server {id} not deleted: {}",
                a.body
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Creates one server and returns its id (asserting 202).
    pub async fn create_server(&self, token: &str, body: Value) -> String {
        let a = self
            .post("/compute/v2.1/servers", token, json!({ "server": body }))
            .await
            .expect(202);
        a.body["server"]["id"]
            .as_str()
            .expect("server id")
            .to_string()
    }

    /// Posts a server action.
    pub async fn action(&self, token: &str, id: &str, body: Value) -> Answer {
        self.post(&format!("/compute/v2.1/servers/{id}/action"), token, body)
            .await
    }
}

impl Cloud {
    /// A cloud with identity, image and compute, and a reaper for the VMMs it starts (declare
    /// the pair in this order so the reaper runs before virgad stops).
    pub fn start_compute() -> (Cloud, VmmReaper) {
        let cloud = Cloud::start_with(super::Options {
            services: "identity,image,compute",
            extra_toml: COMPUTE_TOML.into(),
            share: None,
        });
        let reaper = VmmReaper(cloud.data_dir());
        (cloud, reaper)
    }

    /// The instance directory of a server.
    pub fn instance_dir(&self, id: &str) -> PathBuf {
        self.data_dir().join("instances").join(id)
    }
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')))
        .unwrap_or(false)
}

/// Every live `virga-vmm` whose command line mentions `needle` (a server id or directory).
pub fn vmm_pids_with(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("virga-vmm") && cmd.contains(needle) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// Kills, when dropped, every `virga-vmm` whose command line names `dir` (VMMs outlive
/// virgad by design, so a test must stop the ones it caused).
pub struct VmmReaper(pub PathBuf);

impl Drop for VmmReaper {
    fn drop(&mut self) {
        for pid in vmm_pids_with(&self.0.to_string_lossy()) {
            if let Ok(p) = i32::try_from(pid) {
                // SAFETY: kill(2) with a pid read from /proc; no memory is involved.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
    }
}
