//! The guest's run state as the control socket reports it, and why a guest stopped.

use serde::{Deserialize, Serialize};

/// The guest's run state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Being built (or rebuilt after a reset).
    Starting,
    /// vCPUs run.
    Running,
    /// vCPUs are parked outside KVM_RUN.
    Paused,
    /// The guest stopped; the process is ending.
    Stopping,
}

/// Why a guest stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// ACPI S5 or a KVM shutdown event.
    PowerOff,
    /// i8042 reset or a KVM reset event.
    Reset,
    /// KVM_EXIT_SHUTDOWN: a triple fault.
    TripleFault,
    /// pvpanic or a KVM crash event.
    Panic,
    /// `kill` on the control socket.
    Killed,
    /// The VMM failed.
    Error(String),
}

impl StopReason {
    /// The process exit status ([`crate::exit_status::ExitReason::status`]).
    pub fn exit_code(&self) -> i32 {
        crate::exit_status::ExitReason::from(self).status()
    }
}
