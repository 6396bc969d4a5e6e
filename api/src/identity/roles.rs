//! `/v3/roles`, grants on projects and domains, and `/v3/role_assignments`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use orchestrator::identity::{Assignment, AssignmentFilter, RevocationEvent, Role, Target};
use orchestrator::store::new_id;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::projects::check_name;
use super::render::{self, extra_from};
use super::set;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{BaseUrl, JsonBody};
use crate::state::AppState;

#[derive(Deserialize)]
pub(super) struct RoleBody {
    role: RoleIn,
}

#[derive(Deserialize)]
struct RoleIn {
    name: Option<String>,
    description: Option<String>,
    domain_id: Option<String>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize)]
pub(super) struct RoleFilter {
    name: Option<String>,
}

pub(super) async fn list_roles(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Query(q): Query<RoleFilter>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("identity:list_roles")?;
    let items = st.store().list_roles(q.name.as_deref()).await?;
    let items = items.iter().map(|r| render::role(&base, r)).collect();
    Ok(Json(render::collection(
        "roles",
        items,
        format!("{base}/identity/v3/roles"),
    )))
}

pub(super) async fn create_role(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    JsonBody(b): JsonBody<RoleBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    auth.require_admin("identity:create_role")?;
    let r = b.role;
    if r.domain_id.is_some() {
        return Err(ApiError::bad_request(
            "Domain-specific roles are not supported.",
        ));
    }
    let name = r
        .name
        .ok_or_else(|| ApiError::bad_request("role.name is required."))?;
    check_name("role", &name)?;
    let role = Role {
        id: new_id(),
        name,
        description: r.description.unwrap_or_default(),
        extra: extra_from(r.extra),
    };
    st.store().create_role(&role).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"role": render::role(&base, &role)})),
    ))
}

pub(super) async fn get_role(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("identity:get_role")?;
    let r = st.store().get_role(&id).await?;
    Ok(Json(json!({"role": render::role(&base, &r)})))
}

pub(super) async fn update_role(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<RoleBody>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("identity:update_role")?;
    let mut r = st.store().get_role(&id).await?;
    if let Some(n) = b.role.name {
        check_name("role", &n)?;
        r.name = n;
    }
    set(&mut r.description, b.role.description);
    r.extra.0.extend(extra_from(b.role.extra).0);
    st.store().update_role(&r).await?;
    Ok(Json(json!({"role": render::role(&base, &r)})))
}

pub(super) async fn delete_role(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require_admin("identity:delete_role")?;
    let holders = st
        .store()
        .list_assignments(&AssignmentFilter {
            role_id: Some(id.clone()),
            ..Default::default()
        })
        .await?;
    st.store().delete_role(&id).await?;
    for a in holders {
        let ev = RevocationEvent::now(None, Some(a.user_id), None);
        st.revocations().revoke(st.store(), ev).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The assignment named by a grant path, after checking its parts exist (404 otherwise).
async fn grant_of(
    st: &AppState,
    target: Target,
    user_id: String,
    role_id: String,
) -> ApiResult<Assignment> {
    match &target {
        Target::Project(p) => drop(st.store().get_project(p).await?),
        Target::Domain(d) => drop(st.store().get_domain(d).await?),
    }
    st.store().get_user(&user_id).await?;
    st.store().get_role(&role_id).await?;
    Ok(Assignment {
        user_id,
        target,
        role_id,
    })
}

fn target_of<const DOMAIN: bool>(id: String) -> Target {
    if DOMAIN {
        Target::Domain(id)
    } else {
        Target::Project(id)
    }
}

/// `PUT /v3/{projects,domains}/{t}/users/{u}/roles/{r}`.
pub(super) async fn grant<const DOMAIN: bool>(
    State(st): State<AppState>,
    auth: Auth,
    Path((t, u, r)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    auth.require_admin("identity:create_grant")?;
    let a = grant_of(&st, target_of::<DOMAIN>(t), u, r).await?;
    st.store().grant(&a).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `HEAD`/`GET` of a grant: 204 when it exists.
pub(super) async fn check_grant<const DOMAIN: bool>(
    State(st): State<AppState>,
    auth: Auth,
    Path((t, u, r)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    auth.require_admin("identity:check_grant")?;
    let a = grant_of(&st, target_of::<DOMAIN>(t), u, r).await?;
    let f = AssignmentFilter {
        user_id: Some(a.user_id.clone()),
        target: Some(a.target.clone()),
        role_id: Some(a.role_id.clone()),
    };
    if st.store().list_assignments(&f).await?.is_empty() {
        return Err(ApiError::not_found(format!(
            "Could not find role assignment with role: {}, user: {}.",
            a.role_id, a.user_id
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE` of a grant; the user's tokens on that target stop carrying the role.
pub(super) async fn revoke_grant<const DOMAIN: bool>(
    State(st): State<AppState>,
    auth: Auth,
    Path((t, u, r)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    auth.require_admin("identity:revoke_grant")?;
    let a = grant_of(&st, target_of::<DOMAIN>(t), u, r).await?;
    st.store().revoke_grant(&a).await?;
    let project = match &a.target {
        Target::Project(p) => Some(p.clone()),
        Target::Domain(_) => None,
    };
    let ev = RevocationEvent::now(None, Some(a.user_id.clone()), project);
    st.revocations().revoke(st.store(), ev).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v3/{projects,domains}/{t}/users/{u}/roles`.
pub(super) async fn list_grants<const DOMAIN: bool>(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Path((t, u)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("identity:list_grants")?;
    let kind = if DOMAIN { "domains" } else { "projects" };
    let target = target_of::<DOMAIN>(t.clone());
    match &target {
        Target::Project(p) => drop(st.store().get_project(p).await?),
        Target::Domain(d) => drop(st.store().get_domain(d).await?),
    }
    st.store().get_user(&u).await?;
    let roles = st.store().direct_roles(&u, &target).await?;
    let items = roles.iter().map(|r| render::role(&base, r)).collect();
    Ok(Json(render::collection(
        "roles",
        items,
        format!("{base}/identity/v3/{kind}/{t}/users/{u}/roles"),
    )))
}

/// `GET /v3/role_assignments` with keystone's dotted filters (`user.id`, `scope.project.id`,
/// `scope.domain.id`, `role.id`) and `effective` / `include_names`.
pub(super) async fn list_assignments(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let own = q.get("user.id") == Some(&auth.claims.user_id);
    if !own {
        auth.require_admin("identity:list_role_assignments")?;
    }
    let target = match (q.get("scope.project.id"), q.get("scope.domain.id")) {
        (Some(p), _) => Some(Target::Project(p.clone())),
        (None, Some(d)) => Some(Target::Domain(d.clone())),
        _ => None,
    };
    let f = AssignmentFilter {
        user_id: q.get("user.id").cloned(),
        target,
        role_id: if q.contains_key("effective") {
            None
        } else {
            q.get("role.id").cloned()
        },
    };
    let mut list = st.store().list_assignments(&f).await?;
    if q.contains_key("effective") {
        let mut seen: Vec<(String, Target)> = Vec::new();
        for a in &list {
            if !seen.iter().any(|(u, t)| u == &a.user_id && t == &a.target) {
                seen.push((a.user_id.clone(), a.target.clone()));
            }
        }
        list.clear();
        for (u, t) in seen {
            for r in st.store().effective_roles(&u, &t).await? {
                list.push(Assignment {
                    user_id: u.clone(),
                    target: t.clone(),
                    role_id: r.id,
                });
            }
        }
        if let Some(r) = q.get("role.id") {
            list.retain(|a| &a.role_id == r);
        }
    }
    let names = q.contains_key("include_names");
    let mut items = Vec::with_capacity(list.len());
    for a in &list {
        items.push(assignment_json(&st, &base, a, names).await?);
    }
    Ok(Json(render::collection(
        "role_assignments",
        items,
        format!("{base}/identity/v3/role_assignments"),
    )))
}

async fn assignment_json(
    st: &AppState,
    base: &str,
    a: &Assignment,
    names: bool,
) -> ApiResult<Value> {
    let (kind, tid) = match &a.target {
        Target::Project(p) => ("project", p),
        Target::Domain(d) => ("domain", d),
    };
    let mut role = json!({"id": a.role_id});
    let mut user = json!({"id": a.user_id});
    let mut scope_obj = json!({"id": tid});
    if names {
        role["name"] = json!(st.store().get_role(&a.role_id).await?.name);
        let u = st.store().get_user(&a.user_id).await?;
        let ud = st.store().get_domain(&u.domain_id).await?;
        user["name"] = json!(u.name);
        user["domain"] = json!({"id": ud.id, "name": ud.name});
        match &a.target {
            Target::Project(p) => {
                let p = st.store().get_project(p).await?;
                let pd = st.store().get_domain(&p.domain_id).await?;
                scope_obj["name"] = json!(p.name);
                scope_obj["domain"] = json!({"id": pd.id, "name": pd.name});
            }
            Target::Domain(d) => {
                scope_obj["name"] = json!(st.store().get_domain(d).await?.name);
            }
        }
    }
    Ok(json!({
        "role": role, "user": user, "scope": {kind: scope_obj},
        "links": {"assignment": format!(
            "{base}/identity/v3/{kind}s/{tid}/users/{}/roles/{}", a.user_id, a.role_id)},
    }))
}
