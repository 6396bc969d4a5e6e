//! The public contract of `virga-vmm`, as crosvm's `vm_control` is crosvm's: what a caller
//! writes (the config file, [`config::VmConfig`]), what it says on the control socket
//! ([`control`]), what the process leaves behind when it ends ([`exit_status`]) and the run
//! state it reports ([`RunState`]). The VMM implements it; the orchestrator depends on this
//! crate alone and never links KVM, the devices or the disk back ends.

pub mod config;
pub mod control;
pub mod exit_status;
mod run_state;

pub use run_state::{RunState, StopReason};
