//! Test support: a real `virgad` on a free loopback port with a temporary data directory,
//! bootstrapped, killed when dropped; and a small JSON client that checks what every answer
//! must carry (the request id header, and OpenStack's error shape on errors).
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod cli;
pub mod compute;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Password of the bootstrap admin.
pub const ADMIN_PASSWORD: &str = "admin-secret";

/// A running `virgad`.
pub struct Cloud {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The data directory and config (removed on drop).
    pub dir: tempfile::TempDir,
    config: PathBuf,
}

/// Options of [`Cloud::start_with`].
pub struct Options {
    /// Services bootstrap puts in the catalog.
    pub services: &'static str,
    /// Extra TOML appended to the config (sections other than `[server]`).
    pub extra_toml: String,
    /// Share another cloud's data directory (a second host on the same database and keys).
    pub share: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            services: "identity,image",
            extra_toml: String::new(),
            share: None,
        }
    }
}

/// Starts `virgad --config <config>`, its log appended to `<dir>/virgad.log`.
fn spawn_virgad(dir: &Path, config: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("virgad.log"))
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_virgad"))
        .args(["--config", &config.to_string_lossy()])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn virgad")
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

impl Cloud {
    /// A bootstrapped cloud with the default options.
    pub fn start() -> Cloud {
        Self::start_with(Options::default())
    }

    /// A bootstrapped cloud.
    pub fn start_with(opts: Options) -> Cloud {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let data = opts
            .share
            .clone()
            .unwrap_or_else(|| dir.path().join("data"));
        let config = dir.path().join("virga.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n{}\n",
                data.display(),
                opts.extra_toml
            ),
        )
        .expect("write config");
        if opts.share.is_none() {
            let out = Command::new(env!("CARGO_BIN_EXE_virgad"))
                .args(["--config", &config.to_string_lossy(), "bootstrap"])
                .args([
                    "--bootstrap-password",
                    ADMIN_PASSWORD,
                    "--services",
                    opts.services,
                ])
                .env("RUST_LOG", "warn")
                .output()
                .expect("run virgad bootstrap");
            assert!(
                out.status.success(),
                "bootstrap failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let child = spawn_virgad(dir.path(), &config);
        let mut cloud = Cloud {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            config,
        };
        cloud.wait_ready(port);
        cloud
    }

    fn wait_ready(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("virgad exited early ({status}):\n{}", self.log());
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("virgad did not listen within 30 s:\n{}", self.log());
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("virgad.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The config file.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// Stops the daemon (SIGTERM) and starts it again on the same config and data; guests
    /// (their VMMs run in their own sessions) keep running meanwhile.
    pub fn restart(&mut self) {
        let status = self.stop();
        assert!(status.success(), "virgad exited {status} on SIGTERM");
        self.child = spawn_virgad(self.dir.path(), &self.config);
        let port = self
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in url");
        self.wait_ready(port);
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.stop()
    }

    fn stop(&mut self) -> std::process::ExitStatus {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "virgad ignored SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A client for this cloud.
    pub fn api(&self) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: self.url.clone(),
        }
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer: status, headers, JSON body (`Null` when empty or not JSON).
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as JSON.
    pub body: Value,
    /// Raw body.
    pub bytes: Vec<u8>,
}

impl Answer {
    /// Asserts the status, and for errors OpenStack's error shape with that code.
    pub fn expect(self, status: u16) -> Answer {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            String::from_utf8_lossy(&self.bytes)
        );
        if status >= 400 {
            let e = &self.body["error"];
            assert_eq!(e["code"], json!(status), "error shape: {}", self.body);
            assert!(
                e["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{}",
                self.body
            );
            assert!(e["title"].as_str().is_some(), "{}", self.body);
        }
        self
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// A JSON client.
#[derive(Clone)]
pub struct Api {
    /// The HTTP client.
    pub http: reqwest::Client,
    /// Base URL.
    pub base: String,
}

impl Api {
    /// Sends a request; checks the request id header on every answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            rb = rb.header("X-Auth-Token", t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        Self::answer(rb).await
    }

    /// Sends a prepared request (for raw bodies and odd headers).
    pub async fn answer(rb: reqwest::RequestBuilder) -> Answer {
        let resp = rb.send().await.expect("request reaches virgad");
        let status = resp.status();
        let headers = resp.headers().clone();
        let rid = headers
            .get("x-openstack-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let uuid = rid.strip_prefix("req-").unwrap_or("");
        assert!(
            uuid.len() == 36 && uuid.chars().filter(|c| *c == '-').count() == 4,
            "x-openstack-request-id {rid:?} is not req-<uuid>"
        );
        let bytes = resp.bytes().await.expect("body").to_vec();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            bytes,
        }
    }

    /// GET.
    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.send(Method::GET, path, Some(token), None).await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str, token: &str) -> Answer {
        self.send(Method::DELETE, path, Some(token), None).await
    }

    /// PUT without a body.
    pub async fn put(&self, path: &str, token: &str) -> Answer {
        self.send(Method::PUT, path, Some(token), None).await
    }

    /// PATCH with a JSON body (identity's merge-style updates).
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Answer {
        self.send(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    /// The number of images a list answers with (asserting 200).
    pub async fn image_count(&self, path: &str, token: &str) -> usize {
        let a = self.get(path, token).await.expect(200);
        a.body["images"].as_array().map_or(0, Vec::len)
    }

    /// POST with a JSON body.
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(token), Some(body)).await
    }

    /// A token for user/password (names in the Default domain) scoped to a project by name.
    pub async fn token(&self, user: &str, password: &str, project: Option<&str>) -> Answer {
        let mut auth = json!({"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}}});
        if let Some(p) = project {
            auth["scope"] = json!({"project": {"name": p, "domain": {"name": "Default"}}});
        }
        self.send(
            Method::POST,
            "/identity/v3/auth/tokens",
            None,
            Some(json!({ "auth": auth })),
        )
        .await
    }

    /// The admin's project-scoped token.
    pub async fn admin_token(&self) -> String {
        let a = self
            .token("admin", ADMIN_PASSWORD, Some("admin"))
            .await
            .expect(201);
        a.header("x-subject-token").expect("X-Subject-Token")
    }

    /// Creates a project, a user with a password, and gives the user `roles` on the project;
    /// returns (project id, user id, the user's project-scoped token).
    pub async fn make_user(
        &self,
        admin: &str,
        name: &str,
        roles: &[&str],
    ) -> (String, String, String) {
        let p = self
            .post(
                "/identity/v3/projects",
                admin,
                json!({"project": {"name": name, "domain_id": "default"}}),
            )
            .await
            .expect(201);
        let pid = p.body["project"]["id"]
            .as_str()
            .expect("project id")
            .to_string();
        let u = self
            .post(
                "/identity/v3/users",
                admin,
                json!({"user": {"name": name, "domain_id": "default", "password": format!("{name}-pw")}}),
            )
            .await
            .expect(201);
        let uid = u.body["user"]["id"].as_str().expect("user id").to_string();
        for role in roles {
            let r = self
                .get(&format!("/identity/v3/roles?name={role}"), admin)
                .await
                .expect(200);
            let rid = r.body["roles"][0]["id"]
                .as_str()
                .expect("role id")
                .to_string();
            self.send(
                Method::PUT,
                &format!("/identity/v3/projects/{pid}/users/{uid}/roles/{rid}"),
                Some(admin),
                None,
            )
            .await
            .expect(204);
        }
        let t = self
            .token(name, &format!("{name}-pw"), Some(name))
            .await
            .expect(201);
        (pid, uid, t.header("x-subject-token").expect("token"))
    }
}

/// A small qcow2 made by the real `qemu-img` (for tests that do not need the guest rootfs).
pub fn make_qcow2(dir: &Path, name: &str, size: &str) -> PathBuf {
    let path = dir.join(name);
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&path)
        .arg(size)
        .output()
        .expect("qemu-img (Debian package qemu-utils) is installed");
    assert!(
        out.status.success(),
        "qemu-img: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// The hex digest a coreutils tool (`md5sum`, `sha512sum`) prints for a file.
pub fn digest(tool: &str, path: &Path) -> String {
    let out = Command::new(tool)
        .arg(path)
        .output()
        .expect("coreutils digest tool");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}
