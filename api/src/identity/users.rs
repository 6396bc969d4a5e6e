//! `/v3/users`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use orchestrator::identity::{DEFAULT_DOMAIN_ID, ProjectFilter, RevocationEvent, User, UserFilter};
use orchestrator::store::new_id;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::projects::{NameFilter, check_name, query_bool};
use super::render::{self, extra_from};
use super::set;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, OrMissing};
use crate::extract::{BaseUrl, JsonBody};
use crate::state::AppState;

#[derive(Deserialize)]
pub(super) struct UserBody {
    user: UserIn,
}

#[derive(Deserialize)]
struct UserIn {
    name: Option<String>,
    domain_id: Option<String>,
    password: Option<String>,
    enabled: Option<bool>,
    // Keystone accepts null to clear it; absent and null both mean "no change" on update.
    default_project_id: Option<String>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize)]
pub(super) struct PasswordBody {
    user: PasswordChange,
}

#[derive(Deserialize)]
struct PasswordChange {
    original_password: String,
    password: String,
}

/// The caller is this user, or admin.
fn self_or_admin(auth: &Auth, user_id: &str, action: &str) -> ApiResult<()> {
    if auth.claims.user_id == user_id {
        Ok(())
    } else {
        auth.require_admin(action)
    }
}

fn check_password(p: &str) -> ApiResult<()> {
    if p.is_empty() || p.len() > 4096 {
        return Err(ApiError::bad_request("A password must be 1 to 4096 bytes."));
    }
    Ok(())
}

pub(super) async fn list_users(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Query(q): Query<NameFilter>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("identity:list_users")?;
    let f = UserFilter {
        name: q.name,
        domain_id: q.domain_id,
        enabled: query_bool(&q.enabled),
    };
    let items = st.store().list_users(&f).await?;
    let items = items.iter().map(|u| render::user(&base, u)).collect();
    Ok(Json(render::collection(
        "users",
        items,
        format!("{base}/identity/v3/users"),
    )))
}

pub(super) async fn create_user(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    JsonBody(b): JsonBody<UserBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    auth.require_admin("identity:create_user")?;
    let u = b.user;
    let name = u
        .name
        .ok_or_else(|| ApiError::bad_request("user.name is required."))?;
    check_name("user", &name)?;
    if let Some(p) = &u.password {
        check_password(p)?;
    }
    let domain_id = u.domain_id.unwrap_or_else(|| DEFAULT_DOMAIN_ID.to_string());
    st.store()
        .get_domain(&domain_id)
        .await
        .or_missing(|| ApiError::bad_request(format!("Domain {domain_id} does not exist.")))?;
    if let Some(p) = &u.default_project_id {
        st.store()
            .get_project(p)
            .await
            .or_missing(|| ApiError::bad_request(format!("Default project {p} does not exist.")))?;
    }
    let user = User {
        id: new_id(),
        name,
        domain_id,
        enabled: u.enabled.unwrap_or(true),
        default_project_id: u.default_project_id,
        extra: extra_from(u.extra),
    };
    st.store().create_user(&user, u.password.as_deref()).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"user": render::user(&base, &user)})),
    ))
}

pub(super) async fn get_user(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    self_or_admin(&auth, &id, "identity:get_user")?;
    let u = st.store().get_user(&id).await?;
    Ok(Json(json!({"user": render::user(&base, &u)})))
}

pub(super) async fn update_user(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<UserBody>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("identity:update_user")?;
    let mut u = st.store().get_user(&id).await?;
    let patch = b.user;
    if patch.domain_id.as_ref().is_some_and(|d| d != &u.domain_id) {
        return Err(ApiError::bad_request(
            "A user cannot move to another domain.",
        ));
    }
    if let Some(n) = patch.name {
        check_name("user", &n)?;
        u.name = n;
    }
    let disabling = patch.enabled == Some(false) && u.enabled;
    set(&mut u.enabled, patch.enabled);
    set(
        &mut u.default_project_id,
        patch.default_project_id.map(Some),
    );
    u.extra.0.extend(extra_from(patch.extra).0);
    st.store().update_user(&u).await?;
    if let Some(p) = &patch.password {
        check_password(p)?;
        st.store().set_password(&u.id, p).await?;
    }
    if disabling || patch.password.is_some() {
        let ev = RevocationEvent::now(None, Some(u.id.clone()), None);
        st.revocations().revoke(st.store(), ev).await?;
    }
    Ok(Json(json!({"user": render::user(&base, &u)})))
}

pub(super) async fn delete_user(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require_admin("identity:delete_user")?;
    st.store().delete_user(&id).await?;
    let ev = RevocationEvent::now(None, Some(id), None);
    st.revocations().revoke(st.store(), ev).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v3/users/{id}/password`: a user changes their own password.
pub(super) async fn change_password(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<PasswordBody>,
) -> ApiResult<StatusCode> {
    if auth.claims.user_id != id {
        return Err(ApiError::forbidden(
            "Users may change only their own password.",
        ));
    }
    check_password(&b.user.password)?;
    if !st
        .store()
        .check_password(&id, &b.user.original_password)
        .await?
    {
        return Err(ApiError::unauthorized(
            "The original password is not correct.",
        ));
    }
    st.store().set_password(&id, &b.user.password).await?;
    let ev = RevocationEvent::now(None, Some(id), None);
    st.revocations().revoke(st.store(), ev).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v3/users/{id}/projects`: projects the user has a role on.
pub(super) async fn user_projects(
    State(st): State<AppState>,
    BaseUrl(base): BaseUrl,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    self_or_admin(&auth, &id, "identity:list_user_projects")?;
    st.store().get_user(&id).await?;
    let f = ProjectFilter {
        user_id: Some(id.clone()),
        ..Default::default()
    };
    let items = st.store().list_projects(&f).await?;
    let items = items.iter().map(|p| render::project(&base, p)).collect();
    Ok(Json(render::collection(
        "projects",
        items,
        format!("{base}/identity/v3/users/{id}/projects"),
    )))
}
