//! Disk images for the VMM and the orchestrator: raw and qcow2, overlays, the image store.

pub mod backend;
pub mod bootdisk;
pub mod cache;
pub mod checksum;
pub mod configdrive;
pub mod convert;
pub mod create;
pub mod info;
pub mod probe;
pub mod qcow2;
pub mod readat;
pub mod store;

pub use backend::{
    BlockBackend, BlockResult, BlockStatus, OpenError, OpenOptions, Qcow2Backend, RawBackend,
    open_disk,
};
pub use probe::{Format, probe};
