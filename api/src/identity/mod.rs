//! Identity v3 (keystone's API, as much as the clients use), served under `/identity`.

mod catalog;
mod projects;
mod render;
mod roles;
pub mod tokens;
mod users;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use crate::extract::BaseUrl;
use crate::state::AppState;

pub use tokens::iso_micros;

/// Overwrites `dst` with the value a PATCH body gave, if it gave one.
fn set<T>(dst: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *dst = v;
    }
}

/// The v3 version document (id and date of the keystone API level we follow).
fn v3_version(base: &str) -> Value {
    json!({
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{base}/identity/v3/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    })
}

/// `GET /identity`: the versions list (300 Multiple Choices, as keystone answers).
async fn versions(BaseUrl(base): BaseUrl) -> (StatusCode, Json<Value>) {
    (
        StatusCode::MULTIPLE_CHOICES,
        Json(json!({"versions": {"values": [v3_version(&base)]}})),
    )
}

/// `GET /identity/v3`.
async fn version(BaseUrl(base): BaseUrl) -> Json<Value> {
    Json(json!({ "version": v3_version(&base) }))
}

/// The identity routes, to be nested under `/identity`.
pub fn router() -> Router<AppState> {
    use catalog as c;
    use projects as p;
    use roles as r;
    use tokens as t;
    use users as u;
    Router::new()
        .route("/", get(versions))
        .route("/v3", get(version))
        .route("/v3/", get(version))
        .route(
            "/v3/auth/tokens",
            post(t::issue)
                .get(t::validate)
                .head(t::check)
                .delete(t::revoke),
        )
        .route("/v3/auth/projects", get(t::auth_projects))
        .route("/v3/auth/domains", get(t::auth_domains))
        .route("/v3/auth/catalog", get(t::auth_catalog))
        .route("/v3/domains", get(p::list_domains).post(p::create_domain))
        .route(
            "/v3/domains/{id}",
            get(p::get_domain)
                .patch(p::update_domain)
                .delete(p::delete_domain),
        )
        .route(
            "/v3/projects",
            get(p::list_projects).post(p::create_project),
        )
        .route(
            "/v3/projects/{id}",
            get(p::get_project)
                .patch(p::update_project)
                .delete(p::delete_project),
        )
        .route("/v3/users", get(u::list_users).post(u::create_user))
        .route(
            "/v3/users/{id}",
            get(u::get_user)
                .patch(u::update_user)
                .delete(u::delete_user),
        )
        .route("/v3/users/{id}/password", post(u::change_password))
        .route("/v3/users/{id}/projects", get(u::user_projects))
        .route("/v3/roles", get(r::list_roles).post(r::create_role))
        .route(
            "/v3/roles/{id}",
            get(r::get_role)
                .patch(r::update_role)
                .delete(r::delete_role),
        )
        .route(
            "/v3/projects/{t}/users/{u}/roles",
            get(r::list_grants::<false>),
        )
        .route(
            "/v3/domains/{t}/users/{u}/roles",
            get(r::list_grants::<true>),
        )
        .route(
            "/v3/projects/{t}/users/{u}/roles/{r}",
            put(r::grant::<false>)
                .get(r::check_grant::<false>)
                .head(r::check_grant::<false>)
                .delete(r::revoke_grant::<false>),
        )
        .route(
            "/v3/domains/{t}/users/{u}/roles/{r}",
            put(r::grant::<true>)
                .get(r::check_grant::<true>)
                .head(r::check_grant::<true>)
                .delete(r::revoke_grant::<true>),
        )
        .route("/v3/role_assignments", get(r::list_assignments))
        .route("/v3/regions", get(c::list_regions).post(c::create_region))
        .route(
            "/v3/regions/{id}",
            get(c::get_region)
                .put(c::put_region)
                .patch(c::update_region)
                .delete(c::delete_region),
        )
        .route(
            "/v3/services",
            get(c::list_services).post(c::create_service),
        )
        .route(
            "/v3/services/{id}",
            get(c::get_service)
                .patch(c::update_service)
                .delete(c::delete_service),
        )
        .route(
            "/v3/endpoints",
            get(c::list_endpoints).post(c::create_endpoint),
        )
        .route(
            "/v3/endpoints/{id}",
            get(c::get_endpoint)
                .patch(c::update_endpoint)
                .delete(c::delete_endpoint),
        )
}
