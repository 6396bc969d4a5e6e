//! Compute: the records behind the Compute API v2.1 (flavors, key pairs, quotas, hosts,
//! servers), the rules a request must satisfy ([`service`], as Nova's `compute/api.py`), the
//! scheduler, the task flow that drives a host's [`driver::Driver`]
//! ([`manager::Compute`]), and the seam itself.

pub mod driver;
pub mod flavors;
pub mod hosts;
pub mod keypairs;
pub mod manager;
pub mod quotas;
pub mod scheduler;
pub mod servers;
pub mod service;
pub mod state;

pub use flavors::{ExtraSpecs, Flavor};
pub use hosts::{ComputeHost, Ratios};
pub use keypairs::Keypair;
pub use manager::{Action, Compute, ComputeConfig};
pub use servers::{CreateError, Metadata, Server};
pub use state::{TaskState, VmState, task, vm};

use crate::store::{Store, StoreError};

/// A transaction that holds the write lock from its first statement, so a read-then-write
/// inside it (quota count then insert, claim check then update) cannot interleave with
/// another writer. (`BEGIN IMMEDIATE` is SQLite's; PostgreSQL would use SERIALIZABLE.)
pub(crate) async fn write_tx(
    store: &Store,
) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
    Ok(store.pool().begin_with("BEGIN IMMEDIATE").await?)
}
