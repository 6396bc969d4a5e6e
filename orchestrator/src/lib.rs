//! The orchestrator: everything a host does for the cloud. Today that is the state store
//! ([`store`]), identity records and bootstrap ([`identity`]) and image records with their
//! uploads into the `images` store ([`image`]), and the compute agent ([`agent`]) that runs
//! guests as `virga-vmm` processes.

pub mod agent;
pub mod compute;
pub mod identity;
pub mod image;
pub mod store;

pub use store::{Store, StoreError};
