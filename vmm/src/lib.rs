//! `virga-vmm`: one process per guest on KVM. The binary (`src/bin/virga-vmm.rs` in the root
//! package) calls [`cli::main`]. What callers write and read (the config schema, the control
//! protocol, the exit status, the run state) is the `vmm-contract` crate, re-exported here as
//! [`config`] and [`exit_status`]; the orchestrator depends on that crate, not on this one.

pub mod acpi;
pub mod boot;
pub mod cli;
pub use vmm_contract::config;
pub mod control;
pub mod cpuid;
mod event_loop;
mod legacy_devices;
pub use vmm_contract::exit_status;
pub mod layout;
mod logging;
pub mod machine;
pub mod state;
pub mod stats;
pub mod vcpu;
pub mod virtio;
pub mod vm;
