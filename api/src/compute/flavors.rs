//! `/flavors`: list, detail, show, create, delete, extra specs.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use orchestrator::compute::{ExtraSpecs, Flavor};
use serde_json::{Map, Value, json};

use super::bodies::lenient::{Bool, Int};
use super::bodies::{CreateFlavorBody, ExtraSpecsBody, at_least, required, text};
use super::params::{Paging, paged_body, query_bool};
use super::render;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, OrMissing};
use crate::extract::{BaseUrl, JsonBody};
use crate::state::AppState;

async fn find(st: &AppState, id: &str) -> ApiResult<Flavor> {
    st.store()
        .get_flavor(id)
        .await
        .or_missing(|| ApiError::not_found(format!("Flavor {id} could not be found.")))
}

/// `GET /flavors` and `/flavors/detail`.
pub(super) async fn list<const DETAIL: bool>(
    State(st): State<AppState>,
    auth: Auth,
    BaseUrl(base): BaseUrl,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Value>> {
    let paging = Paging::from_query(&q)?;
    let (mut min_ram, mut min_disk) = (0, 0);
    let mut public: Option<bool> = Some(true);
    let (mut key, mut desc) = ("flavorid".to_string(), false);
    for (k, v) in &q {
        let int = || {
            v.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("Invalid {k} value {v:?}.")))
        };
        match k.as_str() {
            "minRam" => min_ram = int()?,
            "minDisk" => min_disk = int()?,
            // nova: admins may ask for all (`None`) or the private ones.
            "is_public" if auth.is_admin() => {
                public = if v.eq_ignore_ascii_case("none") {
                    None
                } else {
                    Some(query_bool(k, v)?)
                }
            }
            "sort_key" => key = v.clone(),
            "sort_dir" => desc = v == "desc",
            _ => {}
        }
    }
    let mut all: Vec<Flavor> = st
        .store()
        .list_flavors()
        .await?
        .into_iter()
        .filter(|f| f.ram_mb >= min_ram && f.disk_gb >= min_disk)
        .filter(|f| public.is_none_or(|p| f.is_public == p))
        .collect();
    match key.as_str() {
        "name" => all.sort_by(|a, b| a.name.cmp(&b.name)),
        "memory_mb" | "ram" => all.sort_by_key(|f| f.ram_mb),
        "vcpus" => all.sort_by_key(|f| f.vcpus),
        "root_gb" | "disk" => all.sort_by_key(|f| f.disk_gb),
        "created_at" => all.sort_by_key(|f| f.created_at),
        "flavorid" | "id" => all.sort_by(|a, b| a.id.cmp(&b.id)),
        other => {
            return Err(ApiError::bad_request(format!(
                "Invalid sort_key {other:?}."
            )));
        }
    }
    if desc {
        all.reverse();
    }
    let (page, more) = paging.page(all, |f| &f.id)?;
    let flavors: Vec<Value> = page
        .iter()
        .map(|f| {
            if DETAIL {
                render::flavor(&base, f)
            } else {
                render::flavor_brief(&base, f)
            }
        })
        .collect();
    let next = more.then(|| page.last().map(|f| f.id.as_str())).flatten();
    Ok(Json(paged_body(
        &base,
        "flavors",
        DETAIL,
        flavors,
        next,
        &q,
        paging.limit,
    )))
}

/// `GET /flavors/{id}`.
pub(super) async fn show(
    State(st): State<AppState>,
    _auth: Auth,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let f = find(&st, &id).await?;
    Ok(Json(json!({ "flavor": render::flavor(&base, &f) })))
}

/// `POST /flavors` (admin).
pub(super) async fn create(
    State(st): State<AppState>,
    auth: Auth,
    BaseUrl(base): BaseUrl,
    JsonBody(body): JsonBody<CreateFlavorBody>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("os_compute_api:os-flavor-manage:create")?;
    let b = body.flavor;
    let name = required("name", text("name", b.name.as_deref(), 255, true)?)?
        .trim()
        .to_string();
    let id = match b.id.as_deref() {
        None | Some("auto") => uuid::Uuid::new_v4().to_string(),
        Some(s)
            if !s.is_empty()
                && s.len() <= 255
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_. ".contains(c)) =>
        {
            s.to_string()
        }
        Some(s) => {
            return Err(ApiError::bad_request(format!(
                "Invalid input for field/attribute id. Value: {s:?}."
            )));
        }
    };
    let rxtx = match b.rxtx_factor {
        None => 1.0,
        Some(x) if x > 0.0 => x,
        Some(x) => {
            return Err(ApiError::bad_request(format!(
                "Invalid rxtx_factor {x}: a positive number."
            )));
        }
    };
    let int = |field: &str, v: Option<Int>, min: i64| at_least(field, v, min);
    let f = Flavor {
        id,
        name,
        vcpus: required("vcpus", int("vcpus", b.vcpus, 1)?)?,
        ram_mb: required("ram", int("ram", b.ram, 1)?)?,
        disk_gb: required("disk", int("disk", b.disk, 0)?)?,
        ephemeral_gb: int("OS-FLV-EXT-DATA:ephemeral", b.ephemeral, 0)?.unwrap_or(0),
        swap_mb: int("swap", b.swap, 0)?.unwrap_or(0),
        rxtx_factor: rxtx,
        is_public: b.is_public.is_none_or(|Bool(p)| p),
        disabled: false,
        extra_specs: ExtraSpecs::default(),
        created_at: 0,
    };
    st.store().create_flavor(&f).await?;
    let f = find(&st, &f.id).await?;
    Ok(Json(json!({ "flavor": render::flavor(&base, &f) })))
}

/// `DELETE /flavors/{id}` (admin).
pub(super) async fn delete(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require_admin("os_compute_api:os-flavor-manage:delete")?;
    find(&st, &id).await?;
    st.store().delete_flavor(&id).await?;
    Ok(StatusCode::ACCEPTED)
}

/// `GET /flavors/{id}/os-extra_specs`.
pub(super) async fn list_specs(
    State(st): State<AppState>,
    _auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let f = find(&st, &id).await?;
    Ok(Json(json!({ "extra_specs": f.extra_specs.0 })))
}

fn check_specs(specs: &Map<String, Value>) -> ApiResult<()> {
    for (k, v) in specs {
        let ok_key = !k.is_empty()
            && k.len() <= 255
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_:. ".contains(c));
        let ok_val = v.as_str().is_some_and(|s| s.len() <= 255) || v.is_number() || v.is_boolean();
        if !ok_key || !ok_val {
            return Err(ApiError::bad_request(format!(
                "Invalid extra spec {k:?}: {v} (keys of letters, digits and '-_:. ', string values up to 255)."
            )));
        }
    }
    Ok(())
}

fn as_text(v: &Value) -> Value {
    match v {
        Value::String(_) => v.clone(),
        other => Value::String(other.to_string()),
    }
}

/// `POST /flavors/{id}/os-extra_specs` (admin): adds or replaces the given specs.
pub(super) async fn add_specs(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ExtraSpecsBody>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("os_compute_api:os-flavor-extra-specs:create")?;
    let given = &body.extra_specs;
    check_specs(given)?;
    let mut f = find(&st, &id).await?;
    let given: Map<String, Value> = given.iter().map(|(k, v)| (k.clone(), as_text(v))).collect();
    f.extra_specs.0.extend(given.clone());
    st.store()
        .set_flavor_extra_specs(&id, &f.extra_specs)
        .await?;
    Ok(Json(json!({ "extra_specs": given })))
}

/// `GET /flavors/{id}/os-extra_specs/{key}`.
pub(super) async fn show_spec(
    State(st): State<AppState>,
    _auth: Auth,
    Path((id, key)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let f = find(&st, &id).await?;
    let v = f.extra_specs.0.get(&key).ok_or_else(|| {
        ApiError::not_found(format!("Flavor {id} has no extra specs with key {key}."))
    })?;
    Ok(Json(json!({ key: v })))
}

/// `PUT /flavors/{id}/os-extra_specs/{key}` (admin): the body holds exactly that key.
pub(super) async fn put_spec(
    State(st): State<AppState>,
    auth: Auth,
    Path((id, key)): Path<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("os_compute_api:os-flavor-extra-specs:update")?;
    let obj = body
        .as_object()
        .filter(|o| o.len() == 1 && o.contains_key(&key))
        .ok_or_else(|| ApiError::bad_request("Request body and URI mismatch"))?;
    check_specs(obj)?;
    let mut f = find(&st, &id).await?;
    let v = as_text(&obj[&key]);
    f.extra_specs.0.insert(key.clone(), v.clone());
    st.store()
        .set_flavor_extra_specs(&id, &f.extra_specs)
        .await?;
    Ok(Json(json!({ key: v })))
}

/// `DELETE /flavors/{id}/os-extra_specs/{key}` (admin).
pub(super) async fn delete_spec(
    State(st): State<AppState>,
    auth: Auth,
    Path((id, key)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    auth.require_admin("os_compute_api:os-flavor-extra-specs:delete")?;
    let mut f = find(&st, &id).await?;
    if f.extra_specs.0.remove(&key).is_none() {
        return Err(ApiError::not_found(format!(
            "Flavor {id} has no extra specs with key {key}."
        )));
    }
    st.store()
        .set_flavor_extra_specs(&id, &f.extra_specs)
        .await?;
    Ok(StatusCode::OK)
}
