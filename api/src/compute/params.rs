//! Query handling shared by the compute handlers: paging with `marker` and `limit`, booleans
//! as nova reads them, and the compute role. Bodies are typed in `bodies`.

use std::sync::Arc;

use orchestrator::compute::Compute;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::extract::percent_encode;
use crate::state::AppState;

/// The largest page nova returns (`max_limit`).
pub const MAX_LIMIT: usize = 1000;

/// `limit` and `marker` of a list query.
pub struct Paging {
    /// Page size.
    pub limit: usize,
    /// Id of the last item of the previous page.
    pub marker: Option<String>,
}

impl Paging {
    /// From the query pairs.
    pub fn from_query(q: &[(String, String)]) -> ApiResult<Paging> {
        let mut p = Paging {
            limit: MAX_LIMIT,
            marker: None,
        };
        for (k, v) in q {
            match k.as_str() {
                "limit" => {
                    let n: usize = v.parse().map_err(|_| {
                        ApiError::bad_request(format!(
                            "Invalid limit {v:?}: a non-negative integer."
                        ))
                    })?;
                    p.limit = n.min(MAX_LIMIT);
                }
                "marker" => p.marker = Some(v.clone()),
                _ => {}
            }
        }
        Ok(p)
    }

    /// The page of `items` after the marker; 400 when the marker is not among them.
    pub fn page<T>(&self, items: Vec<T>, id: impl Fn(&T) -> &str) -> ApiResult<(Vec<T>, bool)> {
        let start = match &self.marker {
            None => 0,
            Some(m) => {
                items
                    .iter()
                    .position(|i| id(i) == m)
                    .ok_or_else(|| ApiError::bad_request(format!("marker [{m}] not found")))?
                    + 1
            }
        };
        let total = items.len();
        let page: Vec<T> = items.into_iter().skip(start).take(self.limit).collect();
        let more = start + page.len() < total && page.len() == self.limit;
        Ok((page, more))
    }
}

/// The `<kind>_links` of a full page: a `next` link with the last id as marker.
/// The body of a paged list: `{collection: items}`, plus `{collection}_links` pointing at the
/// next page (after `next_marker`) when there is one.
pub fn paged_body(
    base: &str,
    collection: &str,
    detail: bool,
    items: Vec<Value>,
    next_marker: Option<&str>,
    query: &[(String, String)],
    limit: usize,
) -> Value {
    let mut body = json!({ collection: items });
    if let Some(last) = next_marker {
        let path = if detail {
            format!("{collection}/detail")
        } else {
            collection.to_owned()
        };
        body[format!("{collection}_links")] = next_link(base, &path, query, last, limit);
    }
    body
}

fn next_link(
    base: &str,
    path: &str,
    query: &[(String, String)],
    last: &str,
    limit: usize,
) -> Value {
    let mut q: Vec<String> = query
        .iter()
        .filter(|(k, _)| k != "marker" && k != "limit")
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    q.push(format!("limit={limit}"));
    q.push(format!("marker={}", percent_encode(last)));
    json!([{"rel": "next", "href": format!("{base}/compute/v2.1/{path}?{}", q.join("&"))}])
}

/// A boolean query value as nova reads them.
pub fn query_bool(name: &str, v: &str) -> ApiResult<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "Invalid value {v:?} for {name}: a boolean."
        ))),
    }
}

/// The compute role of this daemon, or 503 when it has none.
pub fn compute(st: &AppState) -> ApiResult<Arc<Compute>> {
    st.compute().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "This daemon has no compute role (compute.enabled = false).",
        )
    })
}
