//! `/servers`: create, list, detail, show, update, delete.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use orchestrator::compute::Server;
use orchestrator::compute::service::{self, ComputeApiError, CreateServers};
use serde_json::{Map, Value, json};

use super::bodies::lenient::{Bool, Id, Int};
use super::bodies::{
    CreateServerBody, DiskConfig, NewServer, UpdateServerBody, at_least, required, text,
};
use super::params::{Paging, paged_body};
use super::render;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, OrMissing};
use crate::extract::{BaseUrl, JsonBody};
use crate::state::AppState;

/// The 404 of a server the caller cannot see.
pub(super) fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Instance {id} could not be found."))
}

/// The server if the caller may see it (admin: any; others: their project's).
pub(super) async fn visible(st: &AppState, auth: &Auth, id: &str) -> ApiResult<Server> {
    let s = st
        .store()
        .get_server(id)
        .await
        .or_missing(|| not_found(id))?;
    if auth.is_admin() || auth.project_id() == Some(s.project_id.as_str()) {
        Ok(s)
    } else {
        Err(not_found(id))
    }
}

/// The last path segment of a ref (`flavorRef` and `imageRef` may be URLs).
fn ref_id(v: &str) -> &str {
    v.trim_end_matches('/').rsplit('/').next().unwrap_or(v)
}

/// Checks `metadata`'s shape (string to string, keys 1-255, values up to 255) and its quota of
/// `max` items (the service's rule).
pub(super) fn check_metadata(v: &Value, max: i64) -> ApiResult<Map<String, Value>> {
    let m = v.as_object().ok_or_else(|| {
        ApiError::bad_request(format!(
            "Invalid input for field/attribute metadata. Value: {v}. It is not an object."
        ))
    })?;
    for (k, x) in m {
        let ok = !k.is_empty() && k.chars().count() <= 255;
        let okv = x.as_str().is_some_and(|s| s.chars().count() <= 255);
        if !ok || !okv {
            return Err(ApiError::bad_request(format!(
                "Invalid input for field/attribute metadata. Value: {{{k:?}: {x}}}. Keys and values are strings of at most 255 characters."
            )));
        }
    }
    service::check_metadata_quota(m.len(), max)?;
    Ok(m.clone())
}

impl From<ComputeApiError> for ApiError {
    fn from(e: ComputeApiError) -> Self {
        match e {
            ComputeApiError::Invalid(m) => ApiError::bad_request(m),
            ComputeApiError::OverQuota(m) => ApiError::forbidden(m),
            ComputeApiError::Store(s) => s.into(),
        }
    }
}

/// The image id a create boots: `imageRef`, else the `block_device_mapping_v2` image entry.
fn boot_image_ref(s: &NewServer) -> ApiResult<String> {
    let image_ref = text("imageRef", s.image_ref.as_deref(), 2048, false)?
        .filter(|r| !r.is_empty())
        .map(|r| ref_id(r).to_string());
    let Some(bdms) = &s.block_device_mapping_v2 else {
        return image_ref.ok_or_else(|| ApiError::bad_request("Missing imageRef attribute"));
    };
    let mut boot = image_ref;
    for d in bdms {
        let src = d.source_type.as_deref().unwrap_or("");
        let dst = d.destination_type.as_deref().unwrap_or("local");
        if src != "image" || dst != "local" {
            return Err(ApiError::bad_request(format!(
                "Block Device Mapping is Invalid: only source_type image with destination_type local is supported here, not {src}/{dst}."
            )));
        }
        if d.boot_index == Some(Int(0)) {
            let uuid = d.uuid.as_deref().ok_or_else(|| {
                ApiError::bad_request(
                    "Block Device Mapping is Invalid: the image entry needs a uuid.",
                )
            })?;
            boot = Some(uuid.to_string());
        }
    }
    boot.ok_or_else(|| {
        ApiError::bad_request("Block Device Mapping is Invalid: no boot_index 0 image entry.")
    })
}

/// `POST /servers`.
pub(super) async fn create(
    State(st): State<AppState>,
    auth: Auth,
    BaseUrl(base): BaseUrl,
    JsonBody(body): JsonBody<CreateServerBody>,
) -> ApiResult<Response> {
    let project = auth.require_project("Creating a server")?.to_string();
    let b = body.server;
    let name = required("name", text("name", b.name.as_deref(), 255, true)?)?.to_string();
    let flavor_ref = match &b.flavor_ref {
        Some(Id(r)) if !r.is_empty() => ref_id(r).to_string(),
        _ => return Err(ApiError::bad_request("'flavorRef' is a required property")),
    };
    let image_id = boot_image_ref(&b)?;
    let ignored = b.not_acted_on();
    if !ignored.is_empty() {
        tracing::info!(keys = ?ignored, "server create: keys accepted but not acted on");
    }
    let min_count = at_least("min_count", b.min_count, 1)?.unwrap_or(1);
    let max_count = at_least("max_count", b.max_count, 1)?.unwrap_or(min_count);
    let metadata = match &b.metadata {
        // The shape here; the quota is the service's.
        Some(v) => check_metadata(v, -1)?,
        None => Map::new(),
    };
    let disk_config = b.disk_config.unwrap_or(DiskConfig::Manual).as_str();
    let owned = |field: &str, v: &Option<String>, max: usize, nonempty: bool| {
        text(field, v.as_deref(), max, nonempty).map(|t| t.map(str::to_string))
    };
    let request = CreateServers {
        project_id: project,
        user_id: auth.claims.user_id.clone(),
        admin: auth.is_admin(),
        name,
        flavor_id: flavor_ref,
        image_id,
        min_count,
        max_count,
        metadata,
        key_name: owned("key_name", &b.key_name, 255, true)?,
        user_data: owned("user_data", &b.user_data, 65535 * 4 / 3 + 4, false)?,
        availability_zone: owned("availability_zone", &b.availability_zone, 255, true)?,
        disk_config: disk_config.to_string(),
        access_ipv4: owned("accessIPv4", &b.access_ipv4, 64, false)?.unwrap_or_default(),
        access_ipv6: owned("accessIPv6", &b.access_ipv6, 64, false)?.unwrap_or_default(),
    };
    let compute = st.compute();
    let created = service::create_servers(st.store(), compute.as_ref(), request).await?;
    let reservation = created.reservation_id;
    let first = created
        .servers
        .first()
        .cloned()
        .ok_or_else(|| ApiError::internal("create_servers returned no server"))?;
    let wants_reservation = b.return_reservation_id == Some(Bool(true));
    let body = if wants_reservation {
        json!({ "reservation_id": reservation })
    } else {
        // The guest's agent would set it; the one asked for, else a made-up one, as nova answers.
        let pass = b
            .admin_pass
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_string());
        json!({"server": {
            "id": first.id,
            "links": render::links(&base, "servers", &first.id),
            "OS-DCF:diskConfig": disk_config,
            "security_groups": [{"name": "default"}],
            "adminPass": pass,
        }})
    };
    let mut resp = (StatusCode::ACCEPTED, Json(body)).into_response();
    if !wants_reservation
        && let Ok(v) = HeaderValue::from_str(&format!("{base}/compute/v2.1/servers/{}", first.id))
    {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// Whether a server passes one list filter.
fn matches(s: &Server, k: &str, v: &str) -> ApiResult<bool> {
    Ok(match k {
        "name" => s.name.contains(v) || glob_like(&s.name, v),
        "status" => render::status(s.vm_state, s.task_state).eq_ignore_ascii_case(v),
        "image" => s.image_id == ref_id(v),
        "flavor" => s.flavor_id == ref_id(v),
        "host" => s.host.as_deref() == Some(v),
        "reservation_id" => s.reservation_id == v,
        "availability_zone" => s.availability_zone.as_deref() == Some(v),
        "project_id" | "tenant_id" => s.project_id == v,
        "user_id" => s.user_id == v,
        "key_name" => s.key_name.as_deref() == Some(v),
        "vm_state" => s.vm_state.as_str() == v,
        "task_state" => s.task_state.map(|t| t.as_str()) == Some(v),
        "changes-since" => {
            let t = chrono::DateTime::parse_from_rfc3339(v).map_err(|_| {
                ApiError::bad_request(format!("Invalid changes-since value {v:?}."))
            })?;
            s.updated_at >= t.timestamp_micros()
        }
        _ => true,
    })
}

/// nova matches `name` as a regular expression; `^`/`$` anchors and `.*` cover what clients
/// send (`--name '^vm1$'`).
fn glob_like(name: &str, pat: &str) -> bool {
    let (anchored_start, p) = match pat.strip_prefix('^') {
        Some(p) => (true, p),
        None => (false, pat),
    };
    let (anchored_end, p) = match p.strip_suffix('$') {
        Some(p) => (true, p),
        None => (false, p),
    };
    let parts: Vec<&str> = p.split(".*").collect();
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        let found = if i == 0 && anchored_start {
            rest.starts_with(part).then_some(0)
        } else {
            rest.find(part)
        };
        let Some(at) = found else { return false };
        rest = &rest[at + part.len()..];
    }
    !anchored_end || rest.is_empty() || p.ends_with(".*")
}

/// `GET /servers` and `/servers/detail`.
pub(super) async fn list<const DETAIL: bool>(
    State(st): State<AppState>,
    auth: Auth,
    BaseUrl(base): BaseUrl,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Value>> {
    let paging = Paging::from_query(&q)?;
    let all_tenants = auth.is_admin()
        && q.iter()
            .any(|(k, v)| k == "all_tenants" && !v.eq_ignore_ascii_case("false") && v != "0");
    let scope = if all_tenants {
        None
    } else {
        Some(auth.require_project("Listing servers")?.to_string())
    };
    let mut servers = st.store().list_servers(scope.as_deref()).await?;
    let admin_only = [
        "host",
        "project_id",
        "tenant_id",
        "user_id",
        "vm_state",
        "task_state",
    ];
    for (k, v) in &q {
        if admin_only.contains(&k.as_str()) && !auth.is_admin() {
            continue;
        }
        let mut kept = Vec::with_capacity(servers.len());
        for s in servers {
            if matches(&s, k, v)? {
                kept.push(s);
            }
        }
        servers = kept;
    }
    let (page, more) = paging.page(servers, |s| &s.id)?;
    let list: Vec<Value> = page
        .iter()
        .map(|s| {
            if DETAIL {
                render::server(&base, s, auth.is_admin())
            } else {
                render::server_brief(&base, s)
            }
        })
        .collect();
    let next = more.then(|| page.last().map(|s| s.id.as_str())).flatten();
    Ok(Json(paged_body(
        &base,
        "servers",
        DETAIL,
        list,
        next,
        &q,
        paging.limit,
    )))
}

/// `GET /servers/{id}`.
pub(super) async fn show(
    State(st): State<AppState>,
    auth: Auth,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let s = visible(&st, &auth, &id).await?;
    Ok(Json(
        json!({ "server": render::server(&base, &s, auth.is_admin()) }),
    ))
}

/// `PUT /servers/{id}`: name, access IPs, disk config.
pub(super) async fn update(
    State(st): State<AppState>,
    auth: Auth,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateServerBody>,
) -> ApiResult<Json<Value>> {
    let mut s = visible(&st, &auth, &id).await?;
    let b = body.server;
    if let Some(n) = text("name", b.name.as_deref(), 255, true)? {
        s.name = n.to_string();
    }
    if let Some(ip) = text("accessIPv4", b.access_ipv4.as_deref(), 64, false)? {
        s.access_ipv4 = ip.to_string();
    }
    if let Some(ip) = text("accessIPv6", b.access_ipv6.as_deref(), 64, false)? {
        s.access_ipv6 = ip.to_string();
    }
    if let Some(d) = b.disk_config {
        s.disk_config = d.as_str().to_string();
    }
    st.store().update_server_fields(&s).await?;
    let s = visible(&st, &auth, &id).await?;
    Ok(Json(
        json!({ "server": render::server(&base, &s, auth.is_admin()) }),
    ))
}

/// `DELETE /servers/{id}`: 204 at once; the VMM and files go in the background.
pub(super) async fn delete(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let s = visible(&st, &auth, &id).await?;
    if !auth.can_write_project(&s.project_id) {
        return Err(ApiError::forbidden(format!(
            "You are not authorized to delete server {id}."
        )));
    }
    let s = st.store().begin_delete(&s.id).await?;
    match st.compute() {
        Some(c) => c.delete(s),
        None if s.host.is_none() => st.store().delete_server_row(&s.id).await?,
        None => {} // its host's daemon deletes it in its sync
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_patterns() {
        assert!(glob_like("vm1", "^vm1$"));
        assert!(!glob_like("vm10", "^vm1$"));
        assert!(glob_like("web-3", "^web-.*"));
        assert!(glob_like("a-web-3", "web"));
        assert!(!glob_like("db", "^web"));
        assert_eq!(ref_id("http://x/compute/flavors/42"), "42");
    }
}
