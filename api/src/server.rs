//! The HTTP side of the daemon: open the state, build the router, serve until told to stop,
//! and `bootstrap`. (The compute role is put together by `orchestrator::daemon`.)

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::serve::ListenerExt;
use images::store::ImageStore;
use orchestrator::Store;
use orchestrator::identity::{BootstrapReport, BootstrapSpec};
use tokio::net::TcpListener;

use crate::auth::token::{TokenError, TokenKeys};
use crate::config::Config;
use crate::extract::{method_not_allowed, not_found, request_id};
use crate::state::AppState;
use crate::{compute, identity, image};

/// Errors of starting or running the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] orchestrator::StoreError),
    /// The token keys could not be loaded.
    #[error(transparent)]
    Keys(#[from] TokenError),
    /// The image store could not be opened.
    #[error("cannot open the image store: {0}")]
    Images(#[from] images::store::StoreError),
    /// Listening or serving failed.
    #[error("cannot serve on {addr}: {source}")]
    Serve {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Opens everything the daemon keeps under its data directory.
pub async fn open_state(config: Config) -> Result<AppState, ServerError> {
    let dir = &config.server.data_dir;
    std::fs::create_dir_all(dir).map_err(|source| ServerError::DataDir {
        path: dir.display().to_string(),
        source,
    })?;
    let store = if config.database.url.is_empty() {
        Store::open(&config.database_file()).await?
    } else {
        Store::open_url(&config.database.url).await?
    };
    let keys = TokenKeys::load_or_create(&config.token_key_dir())?;
    let image_dir = config.image_dir();
    let max = config.image.max_image_bytes;
    let images = tokio::task::spawn_blocking(move || ImageStore::open(image_dir, max))
        .await
        .map_err(|e| ServerError::DataDir {
            path: config.image_dir().display().to_string(),
            source: std::io::Error::other(e),
        })??;
    Ok(AppState::new(config, store, keys, Arc::new(images)))
}

/// The whole HTTP API: one router, services under their path prefixes.
pub fn router(state: AppState) -> Router {
    let body_limit = usize::try_from(state.config().server.max_request_body).unwrap_or(usize::MAX);
    Router::new()
        .nest("/identity", identity::router())
        .nest("/image", image::router())
        .nest("/compute", compute::router())
        .merge(compute::root_router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    if let Err(e) = state.revocations().refresh(state.store()).await {
        tracing::warn!(error = %e, "cannot load token revocation events");
    }
    let poller = {
        let st = state.clone();
        let every = Duration::from_millis(st.config().token.revocation_poll_ms.max(10));
        tokio::spawn(async move { st.revocations().poll(st.store().clone(), every).await })
    };
    tracing::info!(%addr, public_url = %state.config().public_url(), "virgad serving");
    let app = router(state.clone());
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| ServerError::Serve { addr, source });
    poller.abort();
    state.store().close().await;
    tracing::info!("virgad stopped");
    result
}

/// `virgad bootstrap`: the admin user and project, roles, region and catalog.
pub async fn bootstrap(
    config: Config,
    spec: &BootstrapSpec,
) -> Result<BootstrapReport, ServerError> {
    let state = open_state(config).await?;
    let report = state.store().bootstrap(spec).await?;
    state.store().close().await;
    Ok(report)
}
