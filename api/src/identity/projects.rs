//! `/v3/domains` and `/v3/projects`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use orchestrator::identity::{DEFAULT_DOMAIN_ID, Domain, Project, ProjectFilter, RevocationEvent};
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
pub(super) struct DomainBody {
    domain: DomainIn,
}

#[derive(Deserialize)]
struct DomainIn {
    name: Option<String>,
    description: Option<String>,
    enabled: Option<bool>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize)]
pub(super) struct ProjectBody {
    project: ProjectIn,
}

#[derive(Deserialize)]
struct ProjectIn {
    name: Option<String>,
    domain_id: Option<String>,
    parent_id: Option<String>,
    description: Option<String>,
    enabled: Option<bool>,
    is_domain: Option<bool>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize)]
pub(super) struct NameFilter {
    pub(super) name: Option<String>,
    pub(super) domain_id: Option<String>,
    pub(super) enabled: Option<String>,
}

/// Keystone's query booleans: anything but `0`/`false` (any case) is true.
pub(super) fn query_bool(v: &Option<String>) -> Option<bool> {
    v.as_ref()
        .map(|s| !(s == "0" || s.eq_ignore_ascii_case("false")))
}

/// A name must be 1-255 characters and not blank.
pub(super) fn check_name(kind: &str, name: &str) -> ApiResult<()> {
    if name.trim().is_empty() || name.chars().count() > 255 {
        return Err(ApiError::bad_request(format!(
            "Invalid {kind} name {name:?}: 1 to 255 characters, not blank."
        )));
    }
    Ok(())
}

pub(super) async fn list_domains(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Query(q): Query<NameFilter>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("identity:list_domains")?;
    let items = st.store().list_domains(q.name.as_deref()).await?;
    let want = query_bool(&q.enabled);
    let items = items
        .iter()
        .filter(|d| want.is_none_or(|e| d.enabled == e))
        .map(|d| render::domain(&base, d))
        .collect();
    Ok(Json(render::collection(
        "domains",
        items,
        format!("{base}/identity/v3/domains"),
    )))
}

pub(super) async fn create_domain(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    JsonBody(b): JsonBody<DomainBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    auth.require_admin("identity:create_domain")?;
    let d = b.domain;
    let name = d
        .name
        .ok_or_else(|| ApiError::bad_request("domain.name is required."))?;
    check_name("domain", &name)?;
    let domain = Domain {
        id: new_id(),
        name,
        description: d.description.unwrap_or_default(),
        enabled: d.enabled.unwrap_or(true),
        extra: extra_from(d.extra),
    };
    st.store().create_domain(&domain).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"domain": render::domain(&base, &domain)})),
    ))
}

pub(super) async fn get_domain(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    if auth.claims.domain_id.as_deref() != Some(id.as_str()) {
        auth.require_admin("identity:get_domain")?;
    }
    let d = st.store().get_domain(&id).await?;
    Ok(Json(json!({"domain": render::domain(&base, &d)})))
}

pub(super) async fn update_domain(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<DomainBody>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("identity:update_domain")?;
    let mut d = st.store().get_domain(&id).await?;
    let patch = b.domain;
    if let Some(n) = patch.name {
        check_name("domain", &n)?;
        d.name = n;
    }
    set(&mut d.description, patch.description);
    set(&mut d.enabled, patch.enabled);
    d.extra.0.extend(extra_from(patch.extra).0);
    st.store().update_domain(&d).await?;
    Ok(Json(json!({"domain": render::domain(&base, &d)})))
}

pub(super) async fn delete_domain(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require_admin("identity:delete_domain")?;
    let d = st.store().get_domain(&id).await?;
    if d.enabled {
        return Err(ApiError::forbidden(
            "Cannot delete a domain that is enabled, please disable it first.",
        ));
    }
    st.store().delete_domain(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn list_projects(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Query(q): Query<NameFilter>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("identity:list_projects")?;
    let f = ProjectFilter {
        name: q.name,
        domain_id: q.domain_id,
        enabled: query_bool(&q.enabled),
        user_id: None,
    };
    let items = st.store().list_projects(&f).await?;
    let items = items.iter().map(|p| render::project(&base, p)).collect();
    Ok(Json(render::collection(
        "projects",
        items,
        format!("{base}/identity/v3/projects"),
    )))
}

pub(super) async fn create_project(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    JsonBody(b): JsonBody<ProjectBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    auth.require_admin("identity:create_project")?;
    let p = b.project;
    let name = p
        .name
        .ok_or_else(|| ApiError::bad_request("project.name is required."))?;
    check_name("project", &name)?;
    if p.is_domain == Some(true) {
        return Err(ApiError::bad_request(
            "Projects acting as domains are not supported.",
        ));
    }
    let domain_id = match (&p.domain_id, &p.parent_id) {
        (Some(d), _) => d.clone(),
        (None, Some(parent)) => st.store().get_project(parent).await?.domain_id,
        (None, None) => DEFAULT_DOMAIN_ID.to_string(),
    };
    st.store()
        .get_domain(&domain_id)
        .await
        .or_missing(|| ApiError::bad_request(format!("Domain {domain_id} does not exist.")))?;
    if let Some(parent) = &p.parent_id
        && parent != &domain_id
    {
        st.store().get_project(parent).await.or_missing(|| {
            ApiError::bad_request(format!("Parent project {parent} does not exist."))
        })?;
    }
    let project = Project {
        id: new_id(),
        name,
        domain_id: domain_id.clone(),
        parent_id: p.parent_id.filter(|x| x != &domain_id),
        description: p.description.unwrap_or_default(),
        enabled: p.enabled.unwrap_or(true),
        extra: extra_from(p.extra),
    };
    st.store().create_project(&project).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"project": render::project(&base, &project)})),
    ))
}

pub(super) async fn get_project(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    if auth.project_id() != Some(id.as_str()) {
        auth.require_admin("identity:get_project")?;
    }
    let p = st.store().get_project(&id).await?;
    Ok(Json(json!({"project": render::project(&base, &p)})))
}

pub(super) async fn update_project(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<ProjectBody>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("identity:update_project")?;
    let mut p = st.store().get_project(&id).await?;
    let patch = b.project;
    if patch.domain_id.as_ref().is_some_and(|d| d != &p.domain_id) {
        return Err(ApiError::bad_request(
            "A project cannot move to another domain.",
        ));
    }
    if let Some(n) = patch.name {
        check_name("project", &n)?;
        p.name = n;
    }
    set(&mut p.description, patch.description);
    let disabling = patch.enabled == Some(false) && p.enabled;
    set(&mut p.enabled, patch.enabled);
    p.extra.0.extend(extra_from(patch.extra).0);
    st.store().update_project(&p).await?;
    if disabling {
        let ev = RevocationEvent::now(None, None, Some(p.id.clone()));
        st.revocations().revoke(st.store(), ev).await?;
    }
    Ok(Json(json!({"project": render::project(&base, &p)})))
}

pub(super) async fn delete_project(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require_admin("identity:delete_project")?;
    st.store().delete_project(&id).await?;
    let ev = RevocationEvent::now(None, None, Some(id));
    st.revocations().revoke(st.store(), ev).await?;
    Ok(StatusCode::NO_CONTENT)
}
