//! What an instance looks like right now: the process table says whether its VMM lives, the
//! control socket says paused/running and when the guest wrote its ready mark, and the exit
//! record (or, for a VMM this agent did not start, its leftovers) says whether an end was a
//! power-off or a crash.

use super::instance::{ExitRecord, InstanceDir, InstanceRecord};
use super::process::{self, PidRecord, RUN_SEPARATOR};
use super::{Agent, ctl, io_err};
use crate::compute::driver::{DriverError, Observed, PowerState};
use std::time::Duration;
use uuid::Uuid;
use vmm_contract::RunState;

/// `info` must answer quickly: a power-state sync asks every instance.
const INFO_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to wait for the reaper thread to record an exit it is about to record.
const REAPER_WAIT: Duration = Duration::from_millis(300);
/// Lines of VMM stderr a fault message carries.
const FAULT_LINES: usize = 5;

impl Agent {
    pub(super) fn observe_dir(&self, id: Uuid, dir: &InstanceDir) -> Result<Observed, DriverError> {
        if !dir.path().is_dir() {
            return Err(DriverError::NotFound(id));
        }
        let rec = InstanceRecord::load(dir).map_err(io_err(id))?;
        if let Some(pid) = process::running_vmm(dir) {
            return Ok(observe_running(dir, &rec, pid));
        }
        Ok(self.observe_ended(id, dir, &rec))
    }

    fn observe_ended(&self, id: Uuid, dir: &InstanceDir, rec: &InstanceRecord) -> Observed {
        let off = |fault: Option<String>| Observed {
            power: if fault.is_some() {
                PowerState::Crashed
            } else {
                PowerState::Shutdown
            },
            pid: None,
            ready: false,
            ready_us: None,
            fault,
        };
        let Some(pid) = PidRecord::load(dir) else {
            // Never started (spawn failed before the VMM ran).
            return off(None);
        };
        if rec.stop_requested {
            return off(None);
        }
        let exit = self
            .children
            .exit_of(id, pid.pid, REAPER_WAIT)
            .or_else(|| ExitRecord::load(dir).filter(|e| e.pid == pid.pid));
        let stderr = last_run_stderr(dir);
        match exit {
            Some(e) if e.clean() => off(None),
            Some(e) => off(Some(fault(&e.describe(), &stderr))),
            None => {
                // Not this agent's child (adopted after a daemon restart): the VMM's own
                // exit-status file says how it ended.
                let adopted = |how: &str| off(Some(fault(how, &stderr)));
                match adopted_exit(dir, pid.pid) {
                    AdoptedExit::Status(e) if e.clean() => off(None),
                    AdoptedExit::Status(e) => adopted(&format!(
                        "{} (adopted; from its exit-status file)",
                        e.describe()
                    )),
                    AdoptedExit::Missing => adopted(
                        "virga-vmm (adopted) ended without writing its exit status: killed by \
                         a signal or crashed (exit status unknown)",
                    ),
                    AdoptedExit::Unreadable(e) => adopted(&format!(
                        "virga-vmm (adopted) ended; its exit-status file is unreadable: {e}"
                    )),
                    AdoptedExit::NotConfigured => legacy_guess(dir, &stderr, off),
                }
            }
        }
    }
}

/// How an adopted VMM ended, from its exit-status file.
enum AdoptedExit {
    /// It wrote its status.
    Status(ExitRecord),
    /// It did not: killed by a signal, or it crashed.
    Missing,
    /// The file is there but cannot be read or parsed.
    Unreadable(std::io::Error),
    /// Its config asks for no file (an instance made before the agent set one).
    NotConfigured,
}

fn adopted_exit(dir: &InstanceDir, pid: u32) -> AdoptedExit {
    match vmm_contract::exit_status::ExitStatus::read(&dir.vmm_exit_file()) {
        // A file of an earlier run would carry another pid (the agent removes it before each
        // start anyway).
        Ok(Some(e)) if e.pid == pid => AdoptedExit::Status(ExitRecord {
            pid,
            code: Some(e.status),
            signal: None,
        }),
        Ok(_) => match vmm_contract::config::VmConfig::from_file(&dir.vmm_config()) {
            Ok(cfg) if cfg.exit_status_file.is_none() => AdoptedExit::NotConfigured,
            _ => AdoptedExit::Missing,
        },
        Err(e) => AdoptedExit::Unreadable(e),
    }
}

/// For a VMM configured without an exit-status file: its leftovers decide. It removes its
/// control socket on every orderly exit and prints a line on error; a VMM killed by a signal
/// does neither. A guest panic or triple fault looks like a power-off here.
fn legacy_guess(
    dir: &InstanceDir,
    stderr: &str,
    off: impl Fn(Option<String>) -> Observed,
) -> Observed {
    let orderly = !dir.control_socket().exists();
    if orderly && !stderr.contains("error:") {
        off(None)
    } else {
        let how = if orderly {
            "virga-vmm (adopted) ended with an error, exit status unknown"
        } else {
            "virga-vmm (adopted) ended abruptly (killed or aborted), exit status unknown"
        };
        off(Some(fault(how, stderr)))
    }
}

fn observe_running(dir: &InstanceDir, rec: &InstanceRecord, pid: PidRecord) -> Observed {
    let (power, ready_us) = match ctl::info(&dir.control_socket(), INFO_TIMEOUT) {
        Ok(info) => {
            let power = match info.state {
                RunState::Paused if rec.suspended => PowerState::Suspended,
                RunState::Paused => PowerState::Paused,
                _ => PowerState::Running,
            };
            (power, ctl::ready_us(&info))
        }
        // Still starting (socket not bound yet) or busy stopping.
        Err(e) => {
            tracing::debug!(id = %rec.id, "info: {e}");
            (PowerState::Running, None)
        }
    };
    Observed {
        power,
        ..Observed::running(pid.pid, ready_us)
    }
}

fn fault(how: &str, stderr: &str) -> String {
    if stderr.trim().is_empty() {
        how.to_owned()
    } else {
        format!("{how}; VMM stderr: {}", stderr.trim_end())
    }
}

/// The last lines the VMM wrote to stderr in its latest run.
pub(super) fn last_run_stderr(dir: &InstanceDir) -> String {
    let Ok(text) = super::console::tail(&dir.vmm_log(), Some(200)) else {
        return String::new();
    };
    let run = match text.rfind(RUN_SEPARATOR) {
        Some(i) => text[i..].split_once('\n').map_or("", |(_, rest)| rest),
        None => &text,
    };
    super::instance::last_lines(run, FAULT_LINES).to_owned()
}
