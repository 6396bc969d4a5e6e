//! The control socket: a unix socket speaking newline-delimited JSON, one request and one
//! response per line (protocol in docs/vmm.md). The types are public so the orchestrator
//! can drive a VMM with [`send`].

use crate::state::RunState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A request, e.g. `{"cmd": "pause"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// State, sizes and boot timestamps.
    Info,
    /// Stop the vCPUs (the guest makes no progress) until `resume`.
    Pause,
    /// Run paused vCPUs again.
    Resume,
    /// Press Ctrl-Alt-Del on the i8042; the guest decides what to do (an init that handles
    /// it powers off).
    Shutdown,
    /// End the VMM now (exit status 0).
    Kill,
    /// Ask the guest's balloon driver to hold `target_mib` MiB (inflate above its current
    /// size, deflate below).
    BalloonSet {
        /// Balloon size wanted, in MiB.
        target_mib: u64,
    },
    /// The balloon's size and the guest's latest memory statistics (asked for anew).
    BalloonStats,
    /// Put another disk image behind drive `id` (same format rules as at start).
    DriveUpdate {
        /// The drive's id.
        id: String,
        /// The new image file.
        path: PathBuf,
    },
    /// Per-device request, byte and error counters.
    Counters,
    /// Make every writable drive's completed writes, and the image metadata behind them,
    /// durable on its files (a qcow2 back end caches metadata until then), so that another
    /// process reading the files sees what the guest sees. Answers when done.
    Flush,
}

/// The answer to `balloon_stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalloonInfo {
    /// Size the host asked for, in MiB.
    pub target_mib: u64,
    /// Size the guest driver says it has reached, in 4 KiB pages.
    pub actual_pages: u64,
    /// Pages inflated minus pages deflated (released to the host).
    pub inflated_pages: u64,
    /// Bytes returned to the host by free page reporting, in total.
    pub reported_bytes: u64,
    /// Page numbers refused (outside guest memory) or releases that failed.
    pub errors: u64,
    /// The guest's statistics; absent until it sent some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<devices::virtio::balloon::GuestMemoryStats>,
}

/// One device's counters in the answer to `counters`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCounters {
    /// `blk`, `net`, `balloon` or `rng`.
    pub kind: String,
    /// Requests (chains; frames for net).
    pub requests: u64,
    /// Bytes written into guest memory (blk reads, net rx, rng).
    pub bytes_to_guest: u64,
    /// Bytes taken from the guest (blk writes, net tx, balloon bytes released).
    pub bytes_from_guest: u64,
    /// Malformed requests, I/O errors, dropped frames.
    pub errors: u64,
}

/// A boot-progress mark: a byte the guest wrote to port 0x3f0 and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressMark {
    /// The byte.
    pub code: u8,
    /// Microseconds since the VMM process started.
    pub us: u64,
}

/// Boot timestamps, in microseconds since the VMM process started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootTimes {
    /// When the boot vCPU first entered KVM_RUN (the VMM's own start-up cost).
    pub first_kvm_run_us: Option<u64>,
    /// Boot-progress marks in order.
    pub progress: Vec<ProgressMark>,
}

/// The answer to `info`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmInfo {
    /// Run state.
    pub state: RunState,
    /// vCPU count.
    pub vcpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// VMM process id.
    pub pid: u32,
    /// Guest boots so far (more than 1 after resets with `--on-reset restart`).
    pub boots: u32,
    /// Timestamps of the current boot.
    pub boot: BootTimes,
}

/// A response: `{"ok": true, ...}` or `{"ok": false, "error": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request was carried out.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<VmInfo>,
    /// For `balloon_stats`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balloon: Option<BalloonInfo>,
    /// For `counters`: by device id (drives and NICs by their ids, `balloon0`, `rng0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<BTreeMap<String, DeviceCounters>>,
}

impl Response {
    /// Success with nothing to add.
    pub fn ok() -> Self {
        Self {
            ok: true,
            error: None,
            info: None,
            balloon: None,
            counters: None,
        }
    }
    /// Failure with a reason.
    pub fn error(msg: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(msg.into()),
            ..Self::ok()
        }
    }
}

/// Errors of the control socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Binding, connecting or I/O failed.
    #[error("control socket {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The peer sent something that is not a response.
    #[error("control socket {path}: bad response: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
}

/// Handles one request.
pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// How long one client may sit idle before the control thread moves on.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Binds `path` and serves it on its own thread.
pub fn spawn(path: &Path, handler: Handler) -> Result<(), ControlError> {
    let io = |source| ControlError::Io {
        path: path.display().to_string(),
        source,
    };
    let listener = UnixListener::bind(path).map_err(io)?;
    std::thread::Builder::new()
        .name("virga-control".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => serve(s, &handler),
                    Err(e) => tracing::warn!("control socket accept: {e}"),
                }
            }
        })
        .map_err(io)?;
    Ok(())
}

fn serve(stream: UnixStream, handler: &Handler) {
    let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        if line.trim().is_empty() {
            continue;
        }
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(req) => {
                tracing::debug!(?req, "control request");
                handler(req)
            }
            Err(e) => Response::error(format!("bad request: {e}")),
        };
        let Ok(mut text) = serde_json::to_string(&response) else {
            return;
        };
        text.push('\n');
        if out.write_all(text.as_bytes()).is_err() {
            return;
        }
    }
}

/// Sends one request to the VMM listening at `path` and waits for its response.
pub fn send(path: &Path, request: &Request) -> Result<Response, ControlError> {
    let p = || path.display().to_string();
    let io = |source| ControlError::Io { path: p(), source };
    let mut stream = UnixStream::connect(path).map_err(io)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).map_err(io)?;
    let mut text = serde_json::to_string(request)
        .map_err(|source| ControlError::Parse { path: p(), source })?;
    text.push('\n');
    stream.write_all(text.as_bytes()).map_err(io)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(io)?;
    serde_json::from_str(&line).map_err(|source| ControlError::Parse { path: p(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        assert_eq!(
            serde_json::to_string(&Request::Pause).unwrap(),
            r#"{"cmd":"pause"}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"kill"}"#).unwrap(),
            Request::Kill
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&Response::ok()).unwrap(),
            r#"{"ok":true}"#
        );
        for (text, req) in [
            (
                r#"{"cmd":"balloon_set","target_mib":64}"#,
                Request::BalloonSet { target_mib: 64 },
            ),
            (r#"{"cmd":"balloon_stats"}"#, Request::BalloonStats),
            (
                r#"{"cmd":"drive_update","id":"root","path":"/x"}"#,
                Request::DriveUpdate {
                    id: "root".into(),
                    path: "/x".into(),
                },
            ),
            (r#"{"cmd":"counters"}"#, Request::Counters),
            (r#"{"cmd":"flush"}"#, Request::Flush),
        ] {
            assert_eq!(serde_json::from_str::<Request>(text).unwrap(), req);
            assert_eq!(serde_json::to_string(&req).unwrap(), text);
        }
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"balloon_set"}"#).is_err());
    }

    #[test]
    fn round_trip_over_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl");
        spawn(
            &path,
            Arc::new(|r| {
                if r == Request::Info {
                    Response::ok()
                } else {
                    Response::error("no")
                }
            }),
        )
        .unwrap();
        assert_eq!(send(&path, &Request::Info).unwrap(), Response::ok());
        assert_eq!(
            send(&path, &Request::Pause).unwrap().error.as_deref(),
            Some("no")
        );
        // Garbage gets an error response, not a dropped connection.
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"{nonsense\n").unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        let r: Response = serde_json::from_str(&line).unwrap();
        assert!(!r.ok && r.error.unwrap().starts_with("bad request"));
    }
}
