//! Authentication and policy. `Auth` is the extractor every protected handler takes: it reads
//! `X-Auth-Token`, opens it with the token keys, checks the revocation list (no database hit),
//! and hands the handler the token's claims. Policy is a few plain functions over the claims.

pub mod revocation;
pub mod token;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::state::AppState;
use token::{Claims, TokenError};

/// The header carrying the caller's token.
pub const AUTH_HEADER: &str = "x-auth-token";

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Auth {
    /// The token as sent.
    pub token: String,
    /// What it says.
    pub claims: Claims,
}

impl Auth {
    /// Holds the `admin` role (on any scope: keystone's classic cloud-admin rule).
    pub fn is_admin(&self) -> bool {
        self.claims.has_role("admin")
    }

    /// The project the token is scoped to.
    pub fn project_id(&self) -> Option<&str> {
        self.claims.project_id.as_deref()
    }

    /// 403 unless the caller is admin.
    pub fn require_admin(&self, action: &str) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "You are not authorized to perform the requested action: {action}."
            )))
        }
    }

    /// The project scope, or 403 for an unscoped or domain-scoped token.
    pub fn require_project(&self, action: &str) -> Result<&str, ApiError> {
        self.project_id()
            .ok_or_else(|| ApiError::forbidden(format!("{action} needs a project-scoped token.")))
    }

    /// Whether the caller may change things owned by `project_id`: admin, or member there.
    pub fn can_write_project(&self, project_id: &str) -> bool {
        self.is_admin() || (self.project_id() == Some(project_id) && self.claims.has_role("member"))
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(AUTH_HEADER)
            .ok_or_else(|| {
                ApiError::unauthorized("The request you have made requires authentication.")
            })?
            .to_str()
            .map_err(|_| ApiError::unauthorized("The X-Auth-Token header is not valid text."))?
            .to_string();
        let claims = state.check_token(&token)?;
        Ok(Auth { token, claims })
    }
}

/// The 401 for a token that failed a check.
pub fn token_rejection(e: &TokenError) -> ApiError {
    match e {
        TokenError::Expired => ApiError::unauthorized("The token has expired."),
        TokenError::Invalid => ApiError::unauthorized("The token is not valid."),
        other => ApiError::internal(other),
    }
}
