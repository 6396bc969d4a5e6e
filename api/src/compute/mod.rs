//! Compute v2.1 (nova's API) at microversion 2.1, served under `/compute`. Every answer
//! carries the negotiated version (`OpenStack-API-Version: compute 2.1` and
//! `X-OpenStack-Nova-API-Version: 2.1`); a request for a later microversion gets 406, as
//! nova answers one beyond its maximum. Errors use nova's shape (`{"itemNotFound": {"code":
//! 404, "message": ...}}`), rewritten here from the shared `ApiError` body.

mod actions;
mod bodies;
mod flavors;
mod hosts;
mod keypairs;
mod params;
mod quotas;
mod render;
mod servers;

use axum::Json;
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::extract::BaseUrl;
use crate::state::AppState;

/// The highest (and only) microversion served: its schemas are the ones we match exactly.
pub const MAX_MICROVERSION: (u32, u32) = (2, 1);
/// The lowest microversion.
pub const MIN_MICROVERSION: (u32, u32) = (2, 1);

fn version_doc(base: &str) -> Value {
    json!({
        "id": "v2.1",
        "status": "CURRENT",
        "version": format!("{}.{}", MAX_MICROVERSION.0, MAX_MICROVERSION.1),
        "min_version": format!("{}.{}", MIN_MICROVERSION.0, MIN_MICROVERSION.1),
        "updated": "2013-07-23T11:33:21Z",
        "links": [
            {"rel": "self", "href": format!("{base}/compute/v2.1/")},
            {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"},
        ],
        "media-types": [{
            "base": "application/json",
            "type": "application/vnd.openstack.compute+json;version=2.1",
        }],
    })
}

/// `GET /compute/`: the major versions.
async fn versions(BaseUrl(base): BaseUrl) -> Json<Value> {
    let mut v = version_doc(&base);
    if let Value::Object(o) = &mut v {
        o.remove("media-types");
        o.insert(
            "links".into(),
            json!([{"rel": "self", "href": format!("{base}/compute/v2.1/")}]),
        );
    }
    Json(json!({ "versions": [v] }))
}

/// `GET /compute/v2.1`: this version.
async fn version(BaseUrl(base): BaseUrl) -> Json<Value> {
    Json(json!({ "version": version_doc(&base) }))
}

/// The microversion a request asks for: `None` when it asks none (2.1 then).
fn requested(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    if let Some(v) = headers.get("openstack-api-version") {
        let text = v
            .to_str()
            .map_err(|_| ApiError::bad_request("OpenStack-API-Version is not valid text."))?;
        for part in text.split(',') {
            let mut words = part.split_whitespace();
            if words
                .next()
                .is_some_and(|s| s.eq_ignore_ascii_case("compute"))
            {
                return Ok(words.next().map(str::to_string));
            }
        }
    }
    if let Some(v) = headers.get("x-openstack-nova-api-version") {
        let text = v.to_str().map_err(|_| {
            ApiError::bad_request("X-OpenStack-Nova-API-Version is not valid text.")
        })?;
        return Ok(Some(text.trim().to_string()));
    }
    Ok(None)
}

/// Checks the asked microversion against what we serve.
fn negotiate(asked: Option<&str>) -> Result<(), ApiError> {
    let Some(asked) = asked else { return Ok(()) };
    if asked.eq_ignore_ascii_case("latest") {
        return Ok(());
    }
    let parsed = asked
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
    let Some(v) = parsed else {
        return Err(ApiError::bad_request(format!(
            "API Version String {asked} is of invalid format. Must be of format MajorNum.MinorNum."
        )));
    };
    if v < MIN_MICROVERSION || v > MAX_MICROVERSION {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "Version {asked} is not supported by the API. Minimum is {}.{} and maximum is {}.{}.",
                MIN_MICROVERSION.0, MIN_MICROVERSION.1, MAX_MICROVERSION.0, MAX_MICROVERSION.1
            ),
        ));
    }
    Ok(())
}

/// nova's name for an error of this status.
fn fault_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "badMethod",
        406 => "notAcceptable",
        409 => "conflictingRequest",
        413 | 429 => "overLimit",
        415 => "badMediaType",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
    }
}

/// Middleware: microversion negotiation and headers, nova-shaped errors.
async fn microversion(req: Request, next: Next) -> Response {
    let checked = requested(req.headers()).and_then(|a| negotiate(a.as_deref()));
    let mut resp = match checked {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    if resp.status().as_u16() >= 400 {
        resp = nova_error(resp).await;
    }
    let h = resp.headers_mut();
    let v = format!("{}.{}", MAX_MICROVERSION.0, MAX_MICROVERSION.1);
    if let Ok(x) = HeaderValue::from_str(&format!("compute {v}")) {
        h.insert("openstack-api-version", x);
    }
    if let Ok(x) = HeaderValue::from_str(&v) {
        h.insert("x-openstack-nova-api-version", x);
    }
    h.insert(
        header::VARY,
        HeaderValue::from_static("OpenStack-API-Version, X-OpenStack-Nova-API-Version"),
    );
    resp
}

/// Rewrites `{"error": {"code", "title", "message"}}` into nova's `{"<fault>": {"code",
/// "message"}}`.
async fn nova_error(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = to_bytes(body, 1 << 20).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let Some(msg) = v["error"]["message"].as_str() else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let code = parts.status.as_u16();
    let out = json!({ fault_name(parts.status): {"code": code, "message": msg} }).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(out))
}

/// `GET /compute/` (the trailing slash a nested router does not see).
pub fn root_router() -> Router<AppState> {
    Router::new()
        .route("/compute/", get(versions))
        .layer(middleware::from_fn(microversion))
}

/// The compute routes, to be nested under `/compute`.
pub fn router() -> Router<AppState> {
    use actions as a;
    use flavors as f;
    use hosts as h;
    use keypairs as k;
    use quotas as q;
    use servers as s;
    Router::new()
        .route("/", get(versions))
        .route("/v2.1", get(version))
        .route("/v2.1/", get(version))
        .route("/v2.1/flavors", get(f::list::<false>).post(f::create))
        .route("/v2.1/flavors/detail", get(f::list::<true>))
        .route("/v2.1/flavors/{id}", get(f::show).delete(f::delete))
        .route(
            "/v2.1/flavors/{id}/os-extra_specs",
            get(f::list_specs).post(f::add_specs),
        )
        .route(
            "/v2.1/flavors/{id}/os-extra_specs/{key}",
            get(f::show_spec).put(f::put_spec).delete(f::delete_spec),
        )
        .route("/v2.1/servers", get(s::list::<false>).post(s::create))
        .route("/v2.1/servers/detail", get(s::list::<true>))
        .route(
            "/v2.1/servers/{id}",
            get(s::show).put(s::update).delete(s::delete),
        )
        .route("/v2.1/servers/{id}/action", post(a::action))
        .route("/v2.1/os-keypairs", get(k::list).post(k::create))
        .route("/v2.1/os-keypairs/{name}", get(k::show).delete(k::delete))
        .route("/v2.1/limits", get(q::limits))
        .route(
            "/v2.1/os-quota-sets/{project}",
            get(q::show).put(q::update).delete(q::reset),
        )
        .route("/v2.1/os-quota-sets/{project}/defaults", get(q::defaults))
        .route("/v2.1/os-quota-sets/{project}/detail", get(q::detail))
        .route("/v2.1/os-hypervisors", get(h::hypervisors::<false>))
        .route("/v2.1/os-hypervisors/detail", get(h::hypervisors::<true>))
        .route("/v2.1/os-hypervisors/statistics", get(h::statistics))
        .route("/v2.1/os-hypervisors/{id}", get(h::hypervisor))
        .route("/v2.1/os-services", get(h::services))
        .route("/v2.1/os-services/{op}", put(h::set_service))
        .route("/v2.1/os-availability-zone", get(h::zones::<false>))
        .route("/v2.1/os-availability-zone/detail", get(h::zones::<true>))
        .fallback(crate::extract::not_found)
        .method_not_allowed_fallback(crate::extract::method_not_allowed)
        .layer(middleware::from_fn(microversion))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert!(negotiate(None).is_ok());
        assert!(negotiate(Some("2.1")).is_ok());
        assert!(negotiate(Some("latest")).is_ok());
        assert_eq!(
            negotiate(Some("2.2")).unwrap_err().status,
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(
            negotiate(Some("2.0")).unwrap_err().status,
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(
            negotiate(Some("two")).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        let mut h = HeaderMap::new();
        h.insert(
            "openstack-api-version",
            HeaderValue::from_static("volume 3.0, compute 2.1"),
        );
        assert_eq!(requested(&h).unwrap().as_deref(), Some("2.1"));
    }
}
