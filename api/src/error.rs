//! API errors in OpenStack's JSON shape: `{"error": {"code": 404, "title": "Not Found",
//! "message": "..."}}` (keystone's shape; glance's clients read `message` the same way).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use orchestrator::StoreError;
use serde_json::json;

/// An error answer: a status and a message naming what was wrong.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What was wrong, for the client.
    pub message: String,
}

impl ApiError {
    /// Any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 401: no, bad, expired or revoked credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    /// 403: policy forbids it.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    /// 404: no such thing (or not visible to the caller).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// 409: conflicts with the current state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    /// 413: too large.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }
    /// 500: our fault; the detail goes to the log, not the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "An unexpected error prevented the server from fulfilling your request.",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { kind, id } => {
                ApiError::not_found(format!("Could not find {kind}: {id}."))
            }
            StoreError::Conflict(msg) => ApiError::conflict(format!("Conflict occurred: {msg}.")),
            other => ApiError::internal(other),
        }
    }
}

/// A store result whose missing row the caller names in its own words (a 404, or a 400 for a
/// reference inside a body); any other store error keeps its own status (a 500 with the
/// request id), never a 404.
pub trait OrMissing<T> {
    /// `missing()` for a row that is not there; the error itself for anything else.
    fn or_missing(self, missing: impl FnOnce() -> ApiError) -> ApiResult<T>;
}

impl<T> OrMissing<T> for Result<T, StoreError> {
    fn or_missing(self, missing: impl FnOnce() -> ApiError) -> ApiResult<T> {
        match self {
            Ok(v) => Ok(v),
            Err(StoreError::NotFound { .. }) => Err(missing()),
            Err(e) => Err(e.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = json!({"error": {
            "code": self.status.as_u16(),
            "title": title,
            "message": self.message,
        }});
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Keystone uri=\"/identity\""),
            );
        }
        resp
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_row_takes_the_callers_words() {
        let missing = || ApiError::not_found("Instance x could not be found.");
        let gone: Result<(), StoreError> = Err(StoreError::not_found("server", "x"));
        assert_eq!(
            gone.or_missing(missing).unwrap_err().status,
            StatusCode::NOT_FOUND
        );
        let broken: Result<(), StoreError> = Err(StoreError::Db(sqlx::Error::PoolClosed));
        let e = broken.or_missing(missing).unwrap_err();
        assert_eq!(
            e.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "a database error is no 404"
        );
    }
}
