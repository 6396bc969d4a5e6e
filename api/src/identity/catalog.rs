//! `/v3/regions`, `/v3/services` and `/v3/endpoints`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use orchestrator::identity::{Endpoint, INTERFACES, Region, Service};
use orchestrator::store::new_id;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::render::{self, extra_from};
use super::set;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, OrMissing};
use crate::extract::{BaseUrl, JsonBody};
use crate::state::AppState;

#[derive(Deserialize)]
pub(super) struct RegionBody {
    region: RegionIn,
}

#[derive(Deserialize)]
struct RegionIn {
    id: Option<String>,
    description: Option<String>,
    parent_region_id: Option<String>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize)]
pub(super) struct ServiceBody {
    service: ServiceIn,
}

#[derive(Deserialize)]
struct ServiceIn {
    #[serde(rename = "type")]
    service_type: Option<String>,
    name: Option<String>,
    description: Option<String>,
    enabled: Option<bool>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize)]
pub(super) struct EndpointBody {
    endpoint: EndpointIn,
}

#[derive(Deserialize)]
struct EndpointIn {
    service_id: Option<String>,
    interface: Option<String>,
    url: Option<String>,
    region_id: Option<String>,
    /// Keystone's deprecated spelling of `region_id`.
    region: Option<String>,
    enabled: Option<bool>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize)]
pub(super) struct ServiceFilter {
    name: Option<String>,
    #[serde(rename = "type")]
    service_type: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct EndpointFilter {
    service_id: Option<String>,
    interface: Option<String>,
    region_id: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RegionFilter {
    parent_region_id: Option<String>,
}

fn check_interface(i: &str) -> ApiResult<()> {
    if INTERFACES.contains(&i) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Invalid interface {i:?}: one of public, internal, admin."
        )))
    }
}

fn check_url(u: &str) -> ApiResult<()> {
    if (u.starts_with("http://") || u.starts_with("https://")) && u.len() <= 1024 {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Invalid endpoint URL {u:?}: an http(s) URL."
        )))
    }
}

pub(super) async fn list_regions(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Query(q): Query<RegionFilter>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("identity:list_regions")?;
    let items = st
        .store()
        .list_regions(q.parent_region_id.as_deref())
        .await?;
    let items = items.iter().map(|r| render::region(&base, r)).collect();
    Ok(Json(render::collection(
        "regions",
        items,
        format!("{base}/identity/v3/regions"),
    )))
}

async fn create_region_with(
    st: &AppState,
    base: &str,
    id: Option<String>,
    r: RegionIn,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let id = id.or(r.id).unwrap_or_else(new_id);
    if id.is_empty() || id.len() > 255 {
        return Err(ApiError::bad_request(
            "A region id must be 1 to 255 characters.",
        ));
    }
    if let Some(p) = &r.parent_region_id {
        st.store()
            .get_region(p)
            .await
            .or_missing(|| ApiError::bad_request(format!("Parent region {p} does not exist.")))?;
    }
    let region = Region {
        id,
        description: r.description.unwrap_or_default(),
        parent_region_id: r.parent_region_id,
        extra: extra_from(r.extra),
    };
    st.store().create_region(&region).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"region": render::region(base, &region)})),
    ))
}

pub(super) async fn create_region(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    JsonBody(b): JsonBody<RegionBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    auth.require_admin("identity:create_region")?;
    create_region_with(&st, &base, None, b.region).await
}

/// `PUT /v3/regions/{id}`: create with a chosen id.
pub(super) async fn put_region(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<RegionBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    auth.require_admin("identity:create_region")?;
    if b.region.id.as_ref().is_some_and(|x| x != &id) {
        return Err(ApiError::bad_request(
            "The region id in the body differs from the URL.",
        ));
    }
    create_region_with(&st, &base, Some(id), b.region).await
}

pub(super) async fn get_region(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    _auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let r = st.store().get_region(&id).await?;
    Ok(Json(json!({"region": render::region(&base, &r)})))
}

pub(super) async fn update_region(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<RegionBody>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("identity:update_region")?;
    let mut r = st.store().get_region(&id).await?;
    set(&mut r.description, b.region.description);
    if let Some(p) = b.region.parent_region_id {
        if p == id {
            return Err(ApiError::bad_request("A region cannot be its own parent."));
        }
        r.parent_region_id = Some(p);
    }
    r.extra.0.extend(extra_from(b.region.extra).0);
    st.store().update_region(&r).await?;
    Ok(Json(json!({"region": render::region(&base, &r)})))
}

pub(super) async fn delete_region(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require_admin("identity:delete_region")?;
    st.store().delete_region(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn list_services(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Query(q): Query<ServiceFilter>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("identity:list_services")?;
    let items = st
        .store()
        .list_services(q.name.as_deref(), q.service_type.as_deref())
        .await?;
    let items = items.iter().map(|s| render::service(&base, s)).collect();
    Ok(Json(render::collection(
        "services",
        items,
        format!("{base}/identity/v3/services"),
    )))
}

pub(super) async fn create_service(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    JsonBody(b): JsonBody<ServiceBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    auth.require_admin("identity:create_service")?;
    let s = b.service;
    let stype = s
        .service_type
        .filter(|t| !t.is_empty() && t.len() <= 255)
        .ok_or_else(|| ApiError::bad_request("service.type is required (1 to 255 characters)."))?;
    let service = Service {
        id: new_id(),
        service_type: stype,
        name: s.name.unwrap_or_default(),
        description: s.description.unwrap_or_default(),
        enabled: s.enabled.unwrap_or(true),
        extra: extra_from(s.extra),
    };
    st.store().create_service(&service).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"service": render::service(&base, &service)})),
    ))
}

pub(super) async fn get_service(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("identity:get_service")?;
    let s = st.store().get_service(&id).await?;
    Ok(Json(json!({"service": render::service(&base, &s)})))
}

pub(super) async fn update_service(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<ServiceBody>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("identity:update_service")?;
    let mut s = st.store().get_service(&id).await?;
    let p = b.service;
    set(&mut s.service_type, p.service_type);
    set(&mut s.name, p.name);
    set(&mut s.description, p.description);
    set(&mut s.enabled, p.enabled);
    s.extra.0.extend(extra_from(p.extra).0);
    st.store().update_service(&s).await?;
    Ok(Json(json!({"service": render::service(&base, &s)})))
}

pub(super) async fn delete_service(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require_admin("identity:delete_service")?;
    st.store().delete_service(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn list_endpoints(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Query(q): Query<EndpointFilter>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("identity:list_endpoints")?;
    let items = st
        .store()
        .list_endpoints(
            q.service_id.as_deref(),
            q.interface.as_deref(),
            q.region_id.as_deref(),
        )
        .await?;
    let items = items.iter().map(|e| render::endpoint(&base, e)).collect();
    Ok(Json(render::collection(
        "endpoints",
        items,
        format!("{base}/identity/v3/endpoints"),
    )))
}

pub(super) async fn create_endpoint(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    JsonBody(b): JsonBody<EndpointBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    auth.require_admin("identity:create_endpoint")?;
    let e = b.endpoint;
    let service_id = e
        .service_id
        .ok_or_else(|| ApiError::bad_request("endpoint.service_id is required."))?;
    let interface = e
        .interface
        .ok_or_else(|| ApiError::bad_request("endpoint.interface is required."))?;
    check_interface(&interface)?;
    let url = e
        .url
        .ok_or_else(|| ApiError::bad_request("endpoint.url is required."))?;
    check_url(&url)?;
    st.store()
        .get_service(&service_id)
        .await
        .or_missing(|| ApiError::bad_request(format!("Service {service_id} does not exist.")))?;
    let region_id = e.region_id.or(e.region);
    if let Some(r) = &region_id {
        st.store()
            .get_region(r)
            .await
            .or_missing(|| ApiError::bad_request(format!("Region {r} does not exist.")))?;
    }
    let endpoint = Endpoint {
        id: new_id(),
        service_id,
        region_id,
        interface,
        url,
        enabled: e.enabled.unwrap_or(true),
        extra: extra_from(e.extra),
    };
    st.store().create_endpoint(&endpoint).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"endpoint": render::endpoint(&base, &endpoint)})),
    ))
}

pub(super) async fn get_endpoint(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("identity:get_endpoint")?;
    let e = st.store().get_endpoint(&id).await?;
    Ok(Json(json!({"endpoint": render::endpoint(&base, &e)})))
}

pub(super) async fn update_endpoint(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<EndpointBody>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("identity:update_endpoint")?;
    let mut e = st.store().get_endpoint(&id).await?;
    let p = b.endpoint;
    if let Some(i) = p.interface {
        check_interface(&i)?;
        e.interface = i;
    }
    if let Some(u) = p.url {
        check_url(&u)?;
        e.url = u;
    }
    set(&mut e.service_id, p.service_id);
    set(&mut e.region_id, p.region_id.or(p.region).map(Some));
    set(&mut e.enabled, p.enabled);
    e.extra.0.extend(extra_from(p.extra).0);
    st.store().update_endpoint(&e).await?;
    Ok(Json(json!({"endpoint": render::endpoint(&base, &e)})))
}

pub(super) async fn delete_endpoint(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require_admin("identity:delete_endpoint")?;
    st.store().delete_endpoint(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
