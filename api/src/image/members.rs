//! `/v2/images/{id}/members`: sharing an image with other projects.

use axum::Json;
use axum::extract::{Path, State};
use orchestrator::image::MEMBER_STATUSES;
use serde::Deserialize;
use serde_json::{Value, json};

use super::images::{visible, writable};
use super::render;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;
use crate::state::AppState;
use axum::http::StatusCode;

#[derive(Deserialize)]
pub(super) struct NewMember {
    member: String,
}

#[derive(Deserialize)]
pub(super) struct MemberStatus {
    status: String,
}

/// `GET /v2/images/{id}/members`: the owner sees all, a member only itself.
pub(super) async fn list(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let img = visible(&st, &auth, &id).await?;
    let mut members = st.store().list_image_members(&id).await?;
    if !auth.is_admin() && auth.project_id() != Some(img.owner.as_str()) {
        members.retain(|m| Some(m.member_id.as_str()) == auth.project_id());
    }
    Ok(Json(json!({
        "members": members.iter().map(render::member).collect::<Vec<_>>(),
        "schema": "/v2/schemas/members",
    })))
}

/// `POST /v2/images/{id}/members`.
pub(super) async fn add(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<NewMember>,
) -> ApiResult<Json<Value>> {
    let img = writable(&st, &auth, &id, "share").await?;
    if img.visibility != "shared" {
        return Err(ApiError::forbidden(format!(
            "Only shared images have members; image {id} is {}.",
            img.visibility
        )));
    }
    if b.member.is_empty() || b.member.len() > 255 {
        return Err(ApiError::bad_request("member must be a project id."));
    }
    let m = st.store().add_image_member(&id, &b.member).await?;
    Ok(Json(render::member(&m)))
}

/// `GET /v2/images/{id}/members/{member}`.
pub(super) async fn show(
    State(st): State<AppState>,
    auth: Auth,
    Path((id, member)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let img = visible(&st, &auth, &id).await?;
    let own =
        auth.project_id() == Some(img.owner.as_str()) || auth.project_id() == Some(member.as_str());
    if !own && !auth.is_admin() {
        return Err(ApiError::not_found(format!(
            "Member {member} of image {id} not found."
        )));
    }
    Ok(Json(render::member(
        &st.store().get_image_member(&id, &member).await?,
    )))
}

/// `PUT /v2/images/{id}/members/{member}`: the member project accepts or rejects.
pub(super) async fn set_status(
    State(st): State<AppState>,
    auth: Auth,
    Path((id, member)): Path<(String, String)>,
    JsonBody(b): JsonBody<MemberStatus>,
) -> ApiResult<Json<Value>> {
    visible(&st, &auth, &id).await?;
    if !MEMBER_STATUSES.contains(&b.status.as_str()) {
        return Err(ApiError::bad_request(format!(
            "Invalid member status {:?}: pending, accepted or rejected.",
            b.status
        )));
    }
    if auth.project_id() != Some(member.as_str()) && !auth.is_admin() {
        return Err(ApiError::forbidden(
            "Only the member project may change its status.",
        ));
    }
    let m = st
        .store()
        .set_image_member_status(&id, &member, &b.status)
        .await?;
    Ok(Json(render::member(&m)))
}

/// `DELETE /v2/images/{id}/members/{member}`.
pub(super) async fn remove(
    State(st): State<AppState>,
    auth: Auth,
    Path((id, member)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    writable(&st, &auth, &id, "unshare").await?;
    st.store().remove_image_member(&id, &member).await?;
    Ok(StatusCode::NO_CONTENT)
}
