//! `virga-vmm`: one process per guest on KVM. The binary (`src/bin/virga-vmm.rs` in the root
//! package) calls [`cli::main`]; the orchestrator talks to a running VMM through [`control`].

pub mod acpi;
pub mod boot;
pub mod cli;
pub mod config;
pub mod control;
pub mod cpuid;
mod device_manager;
mod event_loop;
pub mod exit_status;
pub mod layout;
mod logging;
pub mod machine;
pub mod state;
pub mod stats;
pub mod vcpu;
pub mod virtio;
pub mod vm;
