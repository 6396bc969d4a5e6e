//! Image v2 (glance's API), served under `/image`.

mod data;
mod images;
mod members;
mod patch;
mod render;
mod schemas;
mod validate;

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, put};
use serde_json::{Value, json};

use crate::extract::BaseUrl;
use crate::state::AppState;

pub use render::iso_secs;

/// The minor versions of Image v2 we answer to (2.16 is the level we follow).
const VERSIONS: [(&str, &str); 4] = [
    ("v2.16", "CURRENT"),
    ("v2.15", "SUPPORTED"),
    ("v2.9", "SUPPORTED"),
    ("v2.0", "SUPPORTED"),
];

/// `GET /image`: the versions list (300 Multiple Choices, as glance answers).
async fn versions(BaseUrl(base): BaseUrl) -> (StatusCode, Json<Value>) {
    let href = format!("{base}/image/v2/");
    let values: Vec<Value> = VERSIONS
        .iter()
        .map(|(id, status)| json!({"id": id, "status": status, "links": [{"rel": "self", "href": href}]}))
        .collect();
    (
        StatusCode::MULTIPLE_CHOICES,
        Json(json!({ "versions": values })),
    )
}

/// The image routes, to be nested under `/image`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(versions))
        .route("/versions", get(versions))
        .route("/v2", get(versions))
        .route("/v2/", get(versions))
        .route("/v2/images", get(images::list).post(images::create))
        .route(
            "/v2/images/{id}",
            get(images::show)
                .patch(images::update)
                .delete(images::delete),
        )
        .route(
            "/v2/images/{id}/file",
            // Image data is limited by `image.max_image_bytes` in the store, not the JSON limit.
            put(data::upload)
                .get(data::download)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/v2/images/{id}/tags/{tag}",
            put(images::add_tag).delete(images::remove_tag),
        )
        .route(
            "/v2/images/{id}/members",
            get(members::list).post(members::add),
        )
        .route(
            "/v2/images/{id}/members/{member}",
            get(members::show)
                .put(members::set_status)
                .delete(members::remove),
        )
        .route("/v2/schemas/image", get(schemas::image))
        .route("/v2/schemas/images", get(schemas::images))
        .route("/v2/schemas/member", get(schemas::member))
        .route("/v2/schemas/members", get(schemas::members))
}
