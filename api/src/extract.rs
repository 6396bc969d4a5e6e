//! Request helpers shared by the services: a JSON body extractor whose failures are OpenStack
//! errors (400 malformed, 413 too large), the base URL for links, query-string encoding for next links, and the request id layer.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::error::ApiError;
use crate::state::AppState;

/// The header carrying the request id on every answer.
pub const REQUEST_ID_HEADER: &str = "x-openstack-request-id";

/// A JSON request body of type `T`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large("Request body is larger than the server accepts.")
            } else {
                ApiError::bad_request(format!("Cannot read the request body: {rej}"))
            }
        })?;
        parse_body(&bytes).map(JsonBody)
    }
}

/// A body as `T`: a 400 that says whether it is not JSON at all or, naming the field's path,
/// which field does not fit.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde_json words some shape errors as syntax (a second key where an action's enum
        // expects the end): JSON that parses as anything is a shape error.
        let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
        if !is_json {
            ApiError::bad_request(format!("Malformed request body (expected JSON): {inner}"))
        } else {
            ApiError::bad_request(invalid_input(&path, &inner.to_string()))
        }
    })?;
    de.end().map_err(|e| {
        ApiError::bad_request(format!("Malformed request body (expected JSON): {e}"))
    })?;
    Ok(value)
}

/// nova's words for a body that is JSON but not what the schema takes. serde words an unknown
/// key as "unknown field `k`, expected ..." (`serde::de::Error::unknown_field`); nova as
/// "Additional properties are not allowed ('k' was unexpected)", which clients and tests know.
fn invalid_input(path: &str, serde_says: &str) -> String {
    let unknown = serde_says
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(key, _)| key);
    match unknown {
        Some(key) => {
            let words = format!("Additional properties are not allowed ('{key}' was unexpected)");
            match path.rsplit_once('.') {
                Some((parent, _)) => format!("Invalid input for field/attribute {parent}. {words}"),
                None => words,
            }
        }
        None => format!("Invalid input for field/attribute {path}: {serde_says}"),
    }
}

/// The URL clients reach this daemon at (config `server.public_url`, else the Host header).
pub struct BaseUrl(pub String);

impl FromRequestParts<AppState> for BaseUrl {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(url) = state.configured_public_url() {
            return Ok(BaseUrl(url.to_string()));
        }
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| state.config().server.listen.to_string());
        Ok(BaseUrl(format!("http://{host}")))
    }
}

/// Middleware: gives each request an id (`req-<uuid>`), a tracing span, and the id header.
pub async fn request_id(req: Request, next: Next) -> Response {
    let id = format!("req-{}", uuid::Uuid::new_v4());
    let span =
        tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path());
    let mut resp = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| tracing::info!(status = resp.status().as_u16(), "answered"));
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    resp
}

/// Fallback for unknown paths: a 404 in OpenStack's shape.
pub async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "The resource {} could not be found.",
        req.uri().path()
    ))
}

/// Fallback for a known path with an unsupported method.
pub async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "Method {} is not allowed on {}.",
            req.method(),
            req.uri().path()
        ),
    )
}

/// Percent-encodes a query-string key or value (RFC 3986 unreserved characters stay), for the
/// `next` links of paged lists.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[allow(dead_code)] // parsed only
        server: Inner,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[allow(dead_code)] // parsed only
        count: Option<u32>,
    }

    fn message(body: &str) -> String {
        parse_body::<Outer>(body.as_bytes()).unwrap_err().message
    }

    #[test]
    fn a_body_error_says_what_and_where() {
        let m = message("{not json");
        assert!(
            m.starts_with("Malformed request body (expected JSON)"),
            "{m}"
        );
        let m = message(r#"{"server": {}} trailing"#);
        assert!(m.starts_with("Malformed request body"), "{m}");
        let m = message(r#"{"server": {"count": "x"}}"#);
        assert!(
            m.starts_with("Invalid input for field/attribute server.count: invalid type"),
            "{m}"
        );
        let m = message(r#"{"server": {"bogus": 1}}"#);
        assert_eq!(
            m,
            "Invalid input for field/attribute server. Additional properties are not allowed ('bogus' was unexpected)"
        );
        let m = message(r#"{"other": 1}"#);
        assert_eq!(
            m,
            "Additional properties are not allowed ('other' was unexpected)"
        );
        assert!(parse_body::<Outer>(br#"{"server": {"count": 3}}"#).is_ok());
    }
}
