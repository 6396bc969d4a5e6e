//! Disk images as the VMM's block devices see them: the raw and qcow2 back ends (qcow2 through
//! imago, behind our own header and table checks), format probing, creating raw and qcow2
//! files (overlays included) and describing an image's backing chain. No image store, cache,
//! config drive or hashing: those are the control plane's, in the `images` crate.

pub mod backend;
pub mod create;
pub mod info;
pub mod probe;
pub mod qcow2;
pub mod readat;

pub use backend::{
    BlockBackend, BlockResult, BlockStatus, OpenError, OpenOptions, Qcow2Backend, RawBackend,
    open_disk,
};
pub use probe::{Format, probe};
