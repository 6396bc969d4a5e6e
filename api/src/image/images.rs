//! `/v2/images`: list, create, show, update, delete, tags.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use orchestrator::StoreError;
use orchestrator::image::{Image, ImageFilter, ListViewer, SortDir, SortKey, VISIBILITIES};
use serde_json::{Map, Value, json};

use super::validate::{check_tag, set_attr};
use super::{patch, render};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, percent_encode};
use crate::state::AppState;

/// The caller's view: admin sees all, others their project's view.
pub(super) fn viewer(auth: &Auth) -> ApiResult<ListViewer> {
    if auth.is_admin() {
        return Ok(ListViewer::Admin);
    }
    Ok(ListViewer::Project(
        auth.require_project("The image API")?.to_string(),
    ))
}

/// The image if the caller may see it, else 404 (glance does not reveal others' images).
pub(super) async fn visible(st: &AppState, auth: &Auth, id: &str) -> ApiResult<Image> {
    let v = viewer(auth)?;
    let not_found = || ApiError::not_found(format!("No image found with ID {id}."));
    let img = match st.store().get_image(id).await {
        Ok(i) => i,
        Err(StoreError::NotFound { .. }) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    if !st.store().image_visible(&v, &img).await? {
        return Err(not_found());
    }
    Ok(img)
}

/// The image if the caller may change it: visible, and admin or a member of its owner.
pub(super) async fn writable(
    st: &AppState,
    auth: &Auth,
    id: &str,
    action: &str,
) -> ApiResult<Image> {
    let img = visible(st, auth, id).await?;
    if !auth.can_write_project(&img.owner) {
        return Err(ApiError::forbidden(format!(
            "You are not authorized to {action} image {id}."
        )));
    }
    Ok(img)
}

/// Public images are for admins to make (glance's `publicize_image`).
fn check_visibility_policy(auth: &Auth, before: &str, img: &Image) -> ApiResult<()> {
    if img.visibility == "public" && before != "public" && !auth.is_admin() {
        return Err(ApiError::forbidden(
            "Only an admin may make an image public.",
        ));
    }
    Ok(())
}

fn parse_list_query(
    pairs: Vec<(String, String)>,
    max: u64,
    default: u64,
) -> ApiResult<(ImageFilter, Vec<(String, String)>)> {
    let mut f = ImageFilter {
        limit: u32::try_from(default).unwrap_or(25),
        ..Default::default()
    };
    let mut keep = Vec::new();
    let int = |k: &str, v: &str| -> ApiResult<i64> {
        v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::bad_request(format!("Invalid {k} {v:?}: a non-negative integer."))
        })
    };
    let boolean = |k: &str, v: &str| -> ApiResult<bool> {
        match v.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(ApiError::bad_request(format!(
                "Invalid {k} {v:?}: true or false."
            ))),
        }
    };
    for (k, v) in pairs {
        match k.as_str() {
            "limit" => {
                let n = int(&k, &v)?;
                let n = u64::try_from(n).unwrap_or(0).min(max);
                f.limit = u32::try_from(n).unwrap_or(u32::MAX);
            }
            "marker" => f.marker = Some(v.clone()),
            "sort_key" => {
                f.sort_key = SortKey::parse(&v)
                    .ok_or_else(|| ApiError::bad_request(format!("Invalid sort_key {v:?}.")))?
            }
            "sort_dir" => f.sort_dir = parse_dir(&v)?,
            "sort" => {
                // `sort=name:asc` (only the first key is used; ties fall back to the id).
                let first = v.split(',').next().unwrap_or("");
                let (key, dir) = first.split_once(':').unwrap_or((first, "desc"));
                f.sort_key = SortKey::parse(key.trim())
                    .ok_or_else(|| ApiError::bad_request(format!("Invalid sort key {key:?}.")))?;
                f.sort_dir = parse_dir(dir.trim())?;
            }
            "name" => f.name = Some(v.clone()),
            "status" => f.status = Some(v.clone()),
            "visibility" if v != "all" => {
                if !VISIBILITIES.contains(&v.as_str()) {
                    return Err(ApiError::bad_request(format!("Invalid visibility {v:?}.")));
                }
                f.visibility = Some(v.clone());
            }
            "owner" => f.owner = Some(v.clone()),
            "tag" => f.tags.push(v.clone()),
            "disk_format" => f.disk_format = Some(v.clone()),
            "container_format" => f.container_format = Some(v.clone()),
            "protected" => f.protected = Some(boolean(&k, &v)?),
            "os_hidden" => f.os_hidden = Some(boolean(&k, &v)?),
            "size_min" => f.size_min = Some(int(&k, &v)?),
            "size_max" => f.size_max = Some(int(&k, &v)?),
            "member_status" => {}
            _ => {}
        }
        if k != "marker" {
            keep.push((k, v));
        }
    }
    Ok((f, keep))
}

fn parse_dir(v: &str) -> ApiResult<SortDir> {
    match v {
        "asc" => Ok(SortDir::Asc),
        "desc" => Ok(SortDir::Desc),
        _ => Err(ApiError::bad_request(format!(
            "Invalid sort direction {v:?}: asc or desc."
        ))),
    }
}

/// `GET /v2/images`.
pub(super) async fn list(
    State(st): State<AppState>,
    auth: Auth,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Value>> {
    let v = viewer(&auth)?;
    let cfg = &st.config().image;
    let (f, keep) = parse_list_query(pairs, cfg.max_limit, cfg.default_limit)?;
    let images = match st.store().list_images(&v, &f).await {
        Err(StoreError::NotFound { id, .. }) => {
            return Err(ApiError::bad_request(format!(
                "Invalid marker: image {id} could not be found."
            )));
        }
        other => other?,
    };
    let mut body = json!({
        "images": images.iter().map(render::image).collect::<Vec<_>>(),
        "first": "/v2/images",
        "schema": "/v2/schemas/images",
    });
    if let Some(last) = images.last()
        && images.len() == f.limit as usize
    {
        let mut q: Vec<String> = keep
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect();
        q.insert(0, format!("marker={}", percent_encode(&last.id)));
        body["next"] = json!(format!("/v2/images?{}", q.join("&")));
    }
    Ok(Json(body))
}

/// `POST /v2/images`.
pub(super) async fn create(
    State(st): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<(StatusCode, HeaderMap, Json<Value>)> {
    let project = auth.require_project("Creating an image")?.to_string();
    let id = match body.get("id") {
        None => uuid::Uuid::new_v4().to_string(),
        Some(Value::String(s)) => uuid::Uuid::parse_str(s)
            .map_err(|_| ApiError::bad_request(format!("Invalid image id {s:?}: a UUID.")))?
            .to_string(),
        Some(_) => return Err(ApiError::bad_request("Invalid image id: a UUID string.")),
    };
    let mut img = Image::new(id, project);
    for (k, v) in &body {
        if k != "id" {
            set_attr(&mut img, k, v, auth.is_admin())?;
        }
    }
    if !auth.can_write_project(&img.owner) {
        return Err(ApiError::forbidden(
            "You are not authorized to create images in this project (the member role is needed).",
        ));
    }
    check_visibility_policy(&auth, "private", &img)?;
    st.store().create_image(&img).await?;
    let img = st.store().get_image(&img.id).await?;
    let mut h = HeaderMap::new();
    if let Ok(loc) = format!("/v2/images/{}", img.id).parse() {
        h.insert(header::LOCATION, loc);
    }
    Ok((StatusCode::CREATED, h, Json(render::image(&img))))
}

/// `GET /v2/images/{id}`.
pub(super) async fn show(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(render::image(&visible(&st, &auth, &id).await?)))
}

/// `PATCH /v2/images/{id}` in either JSON-patch dialect.
pub(super) async fn update(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let changes = patch::parse(ct, &body)?;
    let mut img = writable(&st, &auth, &id, "update").await?;
    let before = img.visibility.clone();
    patch::apply(&mut img, changes, auth.is_admin())?;
    check_visibility_policy(&auth, &before, &img)?;
    st.store().update_image(&img).await?;
    Ok(Json(render::image(&st.store().get_image(&id).await?)))
}

/// `DELETE /v2/images/{id}`: the row, then the data.
pub(super) async fn delete(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let img = writable(&st, &auth, &id, "delete").await?;
    if img.protected {
        return Err(ApiError::forbidden(format!(
            "Image {id} is protected and cannot be deleted."
        )));
    }
    st.store().delete_image(&id).await?;
    let data = st.images().clone();
    let gone = id.clone();
    match tokio::task::spawn_blocking(move || data.delete(&gone)).await {
        Ok(Ok(())) | Ok(Err(images::store::StoreError::NotFound(_))) => {}
        Ok(Err(e)) => {
            tracing::warn!(image = %id, error = %e, "image row deleted but its data was not")
        }
        Err(e) => tracing::warn!(image = %id, error = %e, "image data delete task failed"),
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v2/images/{id}/tags/{tag}`.
pub(super) async fn add_tag(
    State(st): State<AppState>,
    auth: Auth,
    Path((id, tag)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    check_tag(&tag)?;
    writable(&st, &auth, &id, "tag").await?;
    st.store().add_image_tag(&id, &tag).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v2/images/{id}/tags/{tag}`.
pub(super) async fn remove_tag(
    State(st): State<AppState>,
    auth: Auth,
    Path((id, tag)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    writable(&st, &auth, &id, "untag").await?;
    st.store().remove_image_tag(&id, &tag).await?;
    Ok(StatusCode::NO_CONTENT)
}
