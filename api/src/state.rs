//! The state every handler shares: configuration, state store, token keys, revocation list and
//! the image store; and the compute role once it runs.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use orchestrator::Store;
use orchestrator::compute::Compute;
use orchestrator::store::now_micros;

use crate::auth::revocation::Revocations;
use crate::auth::token::{Claims, TokenError, TokenKeys};
use crate::auth::token_rejection;
use crate::config::Config;
use crate::error::ApiError;
use images::store::ImageStore;

/// The image data store, shared by the handlers.
pub type Images = Arc<ImageStore>;

/// Shared state; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    config: Config,
    store: Store,
    keys: TokenKeys,
    revocations: Revocations,
    images: Images,
    compute: OnceLock<Arc<Compute>>,
}

impl AppState {
    /// State over an open store, token keys and image store.
    pub fn new(config: Config, store: Store, keys: TokenKeys, images: Images) -> AppState {
        let lifetime = Duration::from_secs(config.token.expiration);
        AppState(Arc::new(Inner {
            config,
            store,
            keys,
            revocations: Revocations::new(lifetime),
            images,
            compute: OnceLock::new(),
        }))
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// The state store.
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// The token keys.
    pub fn keys(&self) -> &TokenKeys {
        &self.0.keys
    }

    /// The revocation list.
    pub fn revocations(&self) -> &Revocations {
        &self.0.revocations
    }

    /// The image data store.
    pub fn images(&self) -> &Images {
        &self.0.images
    }

    /// The compute role, once started.
    pub fn compute(&self) -> Option<Arc<Compute>> {
        self.0.compute.get().cloned()
    }

    /// Attaches the started compute role (once; later calls are ignored).
    pub fn set_compute(&self, compute: Arc<Compute>) {
        let _ = self.0.compute.set(compute);
    }

    /// `server.public_url` when configured.
    pub fn configured_public_url(&self) -> Option<&str> {
        let u = self.0.config.server.public_url.trim_end_matches('/');
        (!u.is_empty()).then_some(u)
    }

    /// Opens a token and checks it against the revocation list: no database access.
    pub fn check_token(&self, token: &str) -> Result<Claims, ApiError> {
        self.open_token(token).map_err(|e| match e {
            Some(e) => token_rejection(&e),
            None => ApiError::unauthorized("The token has been revoked."),
        })
    }

    /// As [`AppState::check_token`], telling revoked (`None`) from other failures.
    pub fn open_token(&self, token: &str) -> Result<Claims, Option<TokenError>> {
        let claims = self.0.keys.open(token, now_micros()).map_err(Some)?;
        if self.0.revocations.is_revoked(&claims) {
            return Err(None);
        }
        Ok(claims)
    }
}
