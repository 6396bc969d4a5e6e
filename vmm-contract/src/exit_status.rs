//! The exit-status file (`exit_status_file` in the config): the VMM writes its exit status and
//! why, atomically, just before it exits, so a process that cannot wait for it (a restarted
//! compute agent that adopted it) can still tell a guest panic or triple fault from a
//! power-off. No file after the process is gone means it never got there: killed by a signal
//! or crashed.

use crate::StopReason;
use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::path::Path;

/// Why the VMM exited; each maps to one exit status (ARCHITECTURE.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// The guest powered off (ACPI S5, KVM shutdown event): status 0.
    PowerOff,
    /// `kill` on the control socket: status 0.
    KillRequest,
    /// The VMM failed (bad input, KVM failure): status 1.
    VmmError,
    /// The guest reset with `on_reset: exit`: status 2.
    Reset,
    /// Triple fault (KVM_EXIT_SHUTDOWN): status 3.
    TripleFault,
    /// Guest panic (pvpanic, KVM crash event): status 4.
    GuestPanic,
}

impl ExitReason {
    /// The process exit status.
    pub fn status(self) -> i32 {
        match self {
            Self::PowerOff | Self::KillRequest => 0,
            Self::VmmError => 1,
            Self::Reset => 2,
            Self::TripleFault => 3,
            Self::GuestPanic => 4,
        }
    }
}

impl From<&StopReason> for ExitReason {
    fn from(r: &StopReason) -> Self {
        match r {
            StopReason::PowerOff => Self::PowerOff,
            StopReason::Killed => Self::KillRequest,
            StopReason::Error(_) => Self::VmmError,
            StopReason::Reset => Self::Reset,
            StopReason::TripleFault => Self::TripleFault,
            StopReason::Panic => Self::GuestPanic,
        }
    }
}

/// What an exit status means, in words (statuses 0-4; `None` for any other).
pub fn meaning(status: i32) -> Option<&'static str> {
    Some(match status {
        0 => "guest powered off",
        1 => "VMM error",
        2 => "guest reset",
        3 => "triple fault",
        4 => "guest panic",
        _ => return None,
    })
}

/// The file's content, e.g. `{"pid":42,"status":4,"reason":"guest_panic"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The VMM's process id (a file of an earlier run is not taken for this one).
    pub pid: u32,
    /// The exit status the process ends with.
    pub status: i32,
    /// Why.
    pub reason: ExitReason,
    /// The error, for `vmm_error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ExitStatus {
    /// This process ending for `reason` (with `error` for a VMM error).
    pub fn new(reason: ExitReason, error: Option<String>) -> Self {
        Self {
            pid: std::process::id(),
            status: reason.status(),
            reason,
            error,
        }
    }

    /// Writes `path` atomically: a temporary file beside it, synced, then renamed over it.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let json = serde_json::to_vec(self).map_err(io::Error::other)?;
        let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
        tmp_name.push(format!(".tmp.{}", self.pid));
        let tmp = path.with_file_name(tmp_name);
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_data()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Reads `path`; `Ok(None)` when there is no such file.
    pub fn read(path: &Path) -> io::Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_platform_contract() {
        for (stop, status) in [
            (StopReason::PowerOff, 0),
            (StopReason::Killed, 0),
            (StopReason::Error("x".into()), 1),
            (StopReason::Reset, 2),
            (StopReason::TripleFault, 3),
            (StopReason::Panic, 4),
        ] {
            assert_eq!(ExitReason::from(&stop).status(), status);
            assert_eq!(stop.exit_code(), status);
            assert!(meaning(status).is_some());
        }
        assert_eq!(meaning(137), None);
    }

    #[test]
    fn written_atomically_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit.json");
        assert_eq!(ExitStatus::read(&path).unwrap(), None);
        let e = ExitStatus::new(ExitReason::GuestPanic, None);
        e.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(r#""status":4,"reason":"guest_panic""#),
            "{text}"
        );
        assert_eq!(ExitStatus::read(&path).unwrap(), Some(e));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file"
        );
        std::fs::write(&path, b"{").unwrap();
        let err = ExitStatus::read(&path).unwrap_err().to_string();
        assert!(err.contains("exit.json"), "{err}");
        let missing_dir = dir.path().join("nope/exit.json");
        assert!(
            ExitStatus::new(ExitReason::PowerOff, None)
                .write(&missing_dir)
                .is_err()
        );
    }
}
