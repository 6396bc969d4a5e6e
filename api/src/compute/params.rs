//! Request checking shared by the compute handlers: integer fields as nova's schemas take them
//! (JSON numbers or digit strings), paging with `marker` and `limit`, and the compute role.

use std::sync::Arc;

use orchestrator::compute::Compute;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::extract::percent_encode;
use crate::state::AppState;

/// The largest page nova returns (`max_limit`).
pub const MAX_LIMIT: usize = 1000;

/// An integer field of a request body (number or digit string), at least `min`.
pub fn int_field(obj: &Map<String, Value>, name: &str, min: i64) -> ApiResult<Option<i64>> {
    let Some(v) = obj.get(name) else {
        return Ok(None);
    };
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n >= min => Ok(Some(n)),
        _ => Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute {name}. Value: {v}. It must be an integer of at least {min}."
        ))),
    }
}

/// A string field, at most `max` characters (and not empty when `nonempty`).
pub fn str_field<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    max: usize,
    nonempty: bool,
) -> ApiResult<Option<&'a str>> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s))
            if s.chars().count() <= max && !(nonempty && s.trim().is_empty()) =>
        {
            Ok(Some(s))
        }
        Some(v) => Err(ApiError::bad_request(format!(
            "Invalid input for field/attribute {name}. Value: {v}. It must be a{} string of at most {max} characters.",
            if nonempty { " non-empty" } else { "" }
        ))),
    }
}

/// The object under `key` of a body (`{"server": {...}}`).
pub fn body_object<'a>(body: &'a Value, key: &str) -> ApiResult<&'a Map<String, Value>> {
    body.get(key).and_then(Value::as_object).ok_or_else(|| {
        ApiError::bad_request(format!(
            "Invalid input for field/attribute {key}: the body needs a '{key}' object."
        ))
    })
}

/// Refuses keys outside `allowed` (nova's `additionalProperties: false`).
pub fn only_known(obj: &Map<String, Value>, allowed: &[&str]) -> ApiResult<()> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad_request(format!(
            "Additional properties are not allowed ('{k}' was unexpected)"
        ))),
        None => Ok(()),
    }
}

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
