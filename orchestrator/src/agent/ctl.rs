//! A control-socket client with short time limits: the agent must never hang on a VMM that
//! stopped answering (`vmm_contract::control::send` waits up to 30 s).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vmm_contract::control::{Request, Response, VmInfo};

/// How long a request may take; `pause` waits up to 5 s inside the VMM for its vCPUs.
pub const TIMEOUT: Duration = Duration::from_secs(7);

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Connecting, writing or reading failed (no VMM listening, or it did not answer).
    #[error("control socket {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The answer was not a response.
    #[error("control socket {path}: bad response {line:?}")]
    Parse {
        /// The socket.
        path: PathBuf,
        /// What came back.
        line: String,
    },
    /// The VMM refused the request.
    #[error("the VMM refused {request}: {reason}")]
    Refused {
        /// The request.
        request: String,
        /// Its error message.
        reason: String,
    },
}

/// Sends `request` and returns the successful response.
pub fn call(path: &Path, request: &Request, timeout: Duration) -> Result<Response, CtlError> {
    let io = |source| CtlError::Io {
        path: path.to_owned(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut text = serde_json::to_string(request).map_err(|e| io(std::io::Error::other(e)))?;
    text.push('\n');
    stream.write_all(text.as_bytes()).map_err(io)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(io)?;
    let response: Response = serde_json::from_str(&line).map_err(|_| CtlError::Parse {
        path: path.to_owned(),
        line: line.trim_end().to_owned(),
    })?;
    if response.ok {
        Ok(response)
    } else {
        Err(CtlError::Refused {
            request: text.trim_end().to_owned(),
            reason: response.error.unwrap_or_default(),
        })
    }
}

/// Sends a request that carries no answer.
pub fn command(path: &Path, request: Request) -> Result<(), CtlError> {
    call(path, &request, TIMEOUT).map(drop)
}

/// The VMM's `info`.
pub fn info(path: &Path, timeout: Duration) -> Result<VmInfo, CtlError> {
    let response = call(path, &Request::Info, timeout)?;
    response.info.ok_or_else(|| CtlError::Parse {
        path: path.to_owned(),
        line: "an info response without info".to_owned(),
    })
}

/// When the current boot wrote the ready mark (boot-progress 123), in µs since the VMM
/// started: marks accumulate across reboots, so only those after this boot's first KVM_RUN
/// count (the first of them if the guest wrote several).
pub fn ready_us(info: &VmInfo) -> Option<u64> {
    let first = info.boot.first_kvm_run_us?;
    info.boot
        .progress
        .iter()
        .find(|m| m.code == 123 && m.us >= first)
        .map(|m| m.us)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_contract::RunState;
    use vmm_contract::control::{BootTimes, ProgressMark};

    fn info(first: Option<u64>, marks: &[(u8, u64)]) -> VmInfo {
        VmInfo {
            state: RunState::Running,
            vcpus: 1,
            memory_mib: 64,
            pid: 1,
            boots: 2,
            boot: BootTimes {
                first_kvm_run_us: first,
                progress: marks
                    .iter()
                    .map(|&(code, us)| ProgressMark { code, us })
                    .collect(),
            },
        }
    }

    #[test]
    fn ready_counts_only_the_current_boot() {
        assert_eq!(ready_us(&info(None, &[(123, 5)])), None);
        assert_eq!(ready_us(&info(Some(3), &[(1, 4), (123, 5)])), Some(5));
        assert_eq!(ready_us(&info(Some(3), &[(1, 4)])), None, "no mark");
        // Ready in the first boot, rebooted at 100 µs, not ready again yet.
        assert_eq!(ready_us(&info(Some(100), &[(123, 5), (1, 101)])), None);
        // Ready again in the second boot: that boot's time.
        let again = info(Some(100), &[(123, 5), (1, 101), (123, 140)]);
        assert_eq!(ready_us(&again), Some(140));
    }

    #[test]
    fn a_missing_socket_is_an_io_error() {
        let e = call(Path::new("/nonexistent/ctl.sock"), &Request::Info, TIMEOUT).unwrap_err();
        assert!(matches!(e, CtlError::Io { .. }), "{e}");
    }
}
