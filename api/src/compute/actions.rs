//! `POST /servers/{id}/action`: os-start, os-stop, reboot, pause, unpause, suspend, resume,
//! createImage and os-getConsoleOutput. State changes answer 202 at once and run in the
//! background; the server shows the task state meanwhile.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use orchestrator::compute::driver::DriverError;
use orchestrator::compute::{Action, Server, task, vm};
use orchestrator::image::Image;
use serde_json::{Map, json};

use super::bodies::{
    ConsoleOutput, CreateImage, RebootKind, ServerAction, at_least, required, text,
};
use super::params::compute;
use super::servers::{check_metadata, visible};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{BaseUrl, JsonBody};
use crate::state::AppState;

/// The 409 nova gives for an action the state does not allow.
fn invalid_state(action: &str, s: &Server) -> ApiError {
    let (attr, state) = match &s.task_state {
        Some(t) => ("task_state", t.as_str()),
        None => ("vm_state", s.vm_state.as_str()),
    };
    ApiError::conflict(format!(
        "Cannot '{action}' instance {} while it is in {attr} {state}",
        s.id
    ))
}

/// The server runs on this daemon's host (actions go to its driver).
fn check_local(st: &AppState, s: &Server) -> ApiResult<()> {
    let c = compute(st)?;
    match s.host.as_deref() {
        Some(h) if h == c.host() => Ok(()),
        Some(h) => Err(ApiError::conflict(format!(
            "Instance {} runs on host {h}; this daemon manages host {}.",
            s.id,
            c.host()
        ))),
        None => Err(ApiError::conflict(format!(
            "Instance {} has no host yet (vm_state {}).",
            s.id, s.vm_state
        ))),
    }
}

/// `POST /servers/{id}/action`.
pub(super) async fn action(
    State(st): State<AppState>,
    auth: Auth,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ServerAction>,
) -> ApiResult<Response> {
    let s = visible(&st, &auth, &id).await?;
    if !auth.can_write_project(&s.project_id) {
        return Err(ApiError::forbidden(format!(
            "You are not authorized to act on server {id}."
        )));
    }
    let name = body.name();
    let simple = match body {
        ServerAction::Start(_) => Action::Start,
        ServerAction::Stop(_) => Action::Stop,
        ServerAction::Pause(_) => Action::Pause,
        ServerAction::Unpause(_) => Action::Unpause,
        ServerAction::Suspend(_) => Action::Suspend,
        ServerAction::Resume(_) => Action::Resume,
        ServerAction::Reboot(r) => Action::Reboot(r.kind == RebootKind::Hard),
        ServerAction::ConsoleOutput(arg) => return console(&st, &s, arg).await,
        ServerAction::CreateImage(arg) => return create_image(&st, &auth, &base, &s, arg).await,
    };
    let (from, task) = simple.rule();
    if let Some(cur) = st.store().begin_task(&s.id, from, task).await? {
        return Err(invalid_state(name, &cur));
    }
    if let Err(e) = check_local(&st, &s) {
        st.store().set_task(&s.id, None).await?;
        return Err(e);
    }
    compute(&st)?.act(s.id.clone(), simple);
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn console(st: &AppState, s: &Server, arg: ConsoleOutput) -> ApiResult<Response> {
    let length = at_least("length", arg.length, -1)?.and_then(|n| usize::try_from(n).ok());
    if s.vm_state == vm::BUILDING && s.host.is_none() {
        return Err(ApiError::conflict(format!(
            "Instance {} is not ready yet.",
            s.id
        )));
    }
    check_local(st, s)?;
    let out = compute(st)?
        .console(&s.id, length)
        .await
        .map_err(|e| match e {
            DriverError::NotFound(_) => {
                ApiError::not_found(format!("Guest does not have a console available: {e}"))
            }
            other => ApiError::internal(other),
        })?;
    Ok(Json(json!({ "output": out })).into_response())
}

/// createImage: a queued image row now (its URL in `Location`), the snapshot and upload in
/// the background.
async fn create_image(
    st: &AppState,
    auth: &Auth,
    base: &str,
    s: &Server,
    arg: CreateImage,
) -> ApiResult<Response> {
    let name = required("name", text("name", arg.name.as_deref(), 255, true)?)?;
    let meta = match &arg.metadata {
        Some(m) => check_metadata(m, 128)?,
        None => Map::new(),
    };
    let from = [vm::ACTIVE, vm::STOPPED, vm::PAUSED, vm::SUSPENDED];
    if let Some(cur) = st
        .store()
        .begin_task(&s.id, &from, task::IMAGE_SNAPSHOT)
        .await?
    {
        return Err(invalid_state("createImage", &cur));
    }
    if let Err(e) = check_local(st, s) {
        st.store().set_task(&s.id, None).await?;
        return Err(e);
    }
    let base_image = st.store().get_image(&s.image_id).await.ok();
    let mut img = Image::new(uuid::Uuid::new_v4().to_string(), s.project_id.clone());
    img.name = Some(name.to_string());
    img.visibility = "private".into();
    img.disk_format = Some("qcow2".into());
    img.container_format = Some("bare".into());
    let props = &mut img.properties.0;
    // What boots the snapshot again: the base image's kernel and command line.
    if let Some(b) = &base_image {
        img.min_ram = b.min_ram;
        img.min_disk = b.min_disk.max(s.disk_gb);
        for k in ["kernel_id", "ramdisk_id", "os_command_line"] {
            if let Some(v) = b.properties.0.get(k) {
                props.insert(k.into(), v.clone());
            }
        }
    }
    props.insert("image_type".into(), json!("snapshot"));
    props.insert("instance_uuid".into(), json!(s.id));
    props.insert("base_image_ref".into(), json!(s.image_id));
    props.insert("user_id".into(), json!(auth.claims.user_id));
    for (k, v) in meta {
        props.insert(k, v);
    }
    if let Err(e) = st.store().create_image(&img).await {
        st.store().set_task(&s.id, None).await?;
        return Err(e.into());
    }
    compute(st)?.snapshot(s.id.clone(), img.clone());
    let mut resp = StatusCode::ACCEPTED.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{base}/image/v2/images/{}", img.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}
