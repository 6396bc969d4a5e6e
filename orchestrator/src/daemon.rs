//! Putting a host's compute role together, as `virgad` starts it beside its HTTP API: the
//! agent over `virga-vmm` processes (adopting the guests still running), the host's
//! registration, the task flow and the power-state sync. The HTTP layer only receives the
//! started [`Compute`].

use std::sync::Arc;

use images::store::ImageStore;

use crate::agent::{Agent, AgentConfig, AgentError};
use crate::compute::driver::Driver;
use crate::compute::manager::StartError;
use crate::compute::{Compute, ComputeConfig};
use crate::store::Store;

/// Why the compute role did not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The agent could not start (instance directory, VMM binary, base cache).
    #[error("cannot start the compute role: {0}")]
    Agent(#[from] AgentError),
    /// The agent's start-up thread panicked (a bug: the panic's message is in the log).
    #[error("cannot start the compute role: the agent's start-up panicked: {0}")]
    Panicked(String),
    /// Registering the host or adopting its servers failed, or the driver panicked.
    #[error("cannot start the compute role: {0}")]
    Start(#[from] StartError),
}

/// Starts the agent (on a blocking thread: it reads every instance directory) and the
/// compute manager over it.
pub async fn start_compute(
    store: Store,
    images: Arc<ImageStore>,
    agent: AgentConfig,
    compute: ComputeConfig,
) -> Result<Arc<Compute>, DaemonError> {
    let agent = tokio::task::spawn_blocking(move || Agent::new(agent))
        .await
        .map_err(|e| DaemonError::Panicked(e.to_string()))??;
    let deaths = agent.subscribe();
    let driver: Arc<dyn Driver> = Arc::new(agent);
    Ok(Compute::start(store, driver, images, compute, Some(deaths)).await?)
}
