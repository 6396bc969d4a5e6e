//! The OpenStack-compatible HTTP layer of `virgad`: routing, authentication, policy, request
//! ids and OpenStack-shaped errors. Handlers are thin: they check, call the orchestrator's store,
//! and shape the answer. Services live under path prefixes of one listening address:
//! `/identity` (Identity v3), `/image` (Image v2) and `/compute` (Compute v2.1).

pub mod auth;
pub mod compute;
pub mod config;
pub mod error;
pub mod extract;
pub mod identity;
pub mod image;
pub mod server;
pub mod state;

pub use config::Config;
pub use server::{ServerError, bootstrap, open_state, router, serve};
pub use state::AppState;
