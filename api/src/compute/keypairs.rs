//! `/os-keypairs`: a user's SSH keys (2.1 shapes: no `type`, delete answers 202).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use orchestrator::StoreError;
use orchestrator::compute::keypairs::{check_public_key, generate};
use serde_json::{Value, json};

use super::bodies::{CreateKeypairBody, required, text};
use super::render;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, OrMissing};
use crate::extract::JsonBody;
use crate::state::AppState;

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Keypair {name} not found for the user."))
}

/// `GET /os-keypairs`.
pub(super) async fn list(State(st): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    let all = st.store().list_keypairs(&auth.claims.user_id).await?;
    let keypairs: Vec<Value> = all
        .iter()
        .map(|k| {
            json!({"keypair": {"name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint}})
        })
        .collect();
    Ok(Json(json!({ "keypairs": keypairs })))
}

/// `POST /os-keypairs`: import `public_key`, or generate a pair and return its private key.
pub(super) async fn create(
    State(st): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CreateKeypairBody>,
) -> ApiResult<Json<Value>> {
    let b = body.keypair;
    let name = required("name", text("name", b.name.as_deref(), 255, true)?)?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_ ".contains(c))
    {
        return Err(ApiError::bad_request(format!(
            "Keypair data is invalid: Keypair name {name:?} contains unsafe characters"
        )));
    }
    let user = &auth.claims.user_id;
    let limit = match auth.project_id() {
        Some(p) => st.store().quota_limits(p).await?["key_pairs"],
        None => -1,
    };
    if limit >= 0 && st.store().count_keypairs(user).await? >= limit {
        return Err(ApiError::forbidden("Quota exceeded, too many key pairs."));
    }
    let (private, public, fingerprint) =
        match text("public_key", b.public_key.as_deref(), 16384, true)? {
            Some(line) => {
                let (public, fp) =
                    check_public_key(line).map_err(|e| ApiError::bad_request(e.to_string()))?;
                (None, public, fp)
            }
            None => {
                let (private, public, fp) = generate(name).map_err(ApiError::internal)?;
                (Some(private), public, fp)
            }
        };
    let k = st
        .store()
        .create_keypair(user, name, &public, &fingerprint)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) => ApiError::conflict(m),
            other => other.into(),
        })?;
    let mut out = json!({
        "name": k.name,
        "public_key": k.public_key,
        "fingerprint": k.fingerprint,
        "user_id": k.user_id,
    });
    if let Some(p) = private {
        out["private_key"] = Value::String(p);
    }
    Ok(Json(json!({ "keypair": out })))
}

/// `GET /os-keypairs/{name}`.
pub(super) async fn show(
    State(st): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let k = st
        .store()
        .get_keypair(&auth.claims.user_id, &name)
        .await
        .or_missing(|| not_found(&name))?;
    Ok(Json(json!({ "keypair": render::keypair_full(&k) })))
}

/// `DELETE /os-keypairs/{name}`.
pub(super) async fn delete(
    State(st): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    st.store()
        .delete_keypair(&auth.claims.user_id, &name)
        .await
        .or_missing(|| not_found(&name))?;
    Ok(StatusCode::ACCEPTED)
}
