//! Images for the control plane: the image store, the per-host base cache with its overlays,
//! the config drive writer, conversion between formats, hashing, and reading a cloud image's
//! own kernel (`bootdisk`). The formats themselves (raw, qcow2, probing, the block back ends)
//! are the `disk` crate, which the devices use alone.

pub mod bootdisk;
pub mod cache;
pub mod checksum;
pub mod configdrive;
pub mod convert;
pub mod store;
