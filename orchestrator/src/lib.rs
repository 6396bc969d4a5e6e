//! The orchestrator: everything a host does for the cloud. Today that is the state store
//! ([`store`]), identity records and bootstrap ([`identity`]) and image records with their
//! uploads into the `images` store ([`image`]), compute records, rules, scheduler and task flow
//! ([`compute`]), the compute agent ([`agent`]) that runs guests as `virga-vmm` processes, and
//! the assembly of the compute role ([`daemon`]).

pub mod agent;
pub mod compute;
pub mod daemon;
pub mod identity;
pub mod image;
pub mod store;

pub use store::{Store, StoreError};
