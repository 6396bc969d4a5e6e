//! The control socket's protocol: a unix socket speaking newline-delimited JSON, one request
//! and one response per line (docs/vmm.md), and [`send`], the client side. The VMM serves it
//! (`vmm::control`).

use crate::RunState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
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
    pub stats: Option<GuestMemoryStats>,
}

/// The guest's memory statistics as the balloon last had them (virtio 1.2 section 5.5.6.3); a
/// statistic the guest did not send stays `None` and is left out of the JSON.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestMemoryStats {
    /// Bytes swapped in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_in: Option<u64>,
    /// Bytes swapped out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_out: Option<u64>,
    /// Major page faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major_faults: Option<u64>,
    /// Minor page faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor_faults: Option<u64>,
    /// Bytes of unused memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_memory: Option<u64>,
    /// Bytes of memory the guest sees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_memory: Option<u64>,
    /// Bytes available without swapping (the kernel's estimate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_memory: Option<u64>,
    /// Bytes of disk caches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_caches: Option<u64>,
    /// Successful hugetlb page allocations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hugetlb_allocations: Option<u64>,
    /// Failed hugetlb page allocations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hugetlb_failures: Option<u64>,
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

/// How long either side waits for the other: a client for its answer, the VMM's control
/// thread for a client's next line.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

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
}
