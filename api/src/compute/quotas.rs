//! `/limits` and `/os-quota-sets`: per-project limits (2.1 shapes, nova's defaults).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use orchestrator::compute::quotas::{Limits, defaults as default_limits, is_resource};
use serde_json::{Map, Value, json};

use super::bodies::lenient::Bool;
use super::bodies::{QuotaSetBody, at_least};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;
use crate::state::AppState;

/// Admins see any project; others their own.
fn may_read(auth: &Auth, project: &str) -> ApiResult<()> {
    if auth.is_admin() || auth.project_id() == Some(project) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "Policy doesn't allow os_compute_api:os-quota-sets:show to be performed on project {project}."
        )))
    }
}

fn quota_set(project: Option<&str>, limits: &Limits) -> Value {
    let mut m: Map<String, Value> = limits.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    if let Some(p) = project {
        m.insert("id".into(), json!(p));
    }
    json!({ "quota_set": m })
}

/// `GET /limits`.
pub(super) async fn limits(
    State(st): State<AppState>,
    auth: Auth,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Json<Value>> {
    let asked = q
        .iter()
        .find(|(k, _)| k == "tenant_id")
        .map(|(_, v)| v.clone());
    let project = match asked {
        Some(p) if auth.is_admin() => p,
        _ => auth.require_project("The limits API")?.to_string(),
    };
    let l = st.store().quota_limits(&project).await?;
    let u = st.store().quota_usage(&project).await?;
    let g = |k: &str| l.get(k).copied().unwrap_or(-1);
    Ok(Json(json!({"limits": {"rate": [], "absolute": {
        "maxImageMeta": g("metadata_items"),
        "maxPersonality": g("injected_files"),
        "maxPersonalitySize": g("injected_file_content_bytes"),
        "maxSecurityGroupRules": g("security_group_rules"),
        "maxSecurityGroups": g("security_groups"),
        "maxServerGroupMembers": g("server_group_members"),
        "maxServerGroups": g("server_groups"),
        "maxServerMeta": g("metadata_items"),
        "maxTotalCores": g("cores"),
        "maxTotalFloatingIps": g("floating_ips"),
        "maxTotalInstances": g("instances"),
        "maxTotalKeypairs": g("key_pairs"),
        "maxTotalRAMSize": g("ram"),
        "totalCoresUsed": u.cores,
        "totalFloatingIpsUsed": 0,
        "totalInstancesUsed": u.instances,
        "totalRAMUsed": u.ram,
        "totalSecurityGroupsUsed": 0,
        "totalServerGroupsUsed": 0,
    }}})))
}

/// `GET /os-quota-sets/{project}`.
pub(super) async fn show(
    State(st): State<AppState>,
    auth: Auth,
    Path(project): Path<String>,
) -> ApiResult<Json<Value>> {
    may_read(&auth, &project)?;
    let l = st.store().quota_limits(&project).await?;
    Ok(Json(quota_set(Some(&project), &l)))
}

/// `GET /os-quota-sets/{project}/defaults`.
pub(super) async fn defaults(auth: Auth, Path(project): Path<String>) -> ApiResult<Json<Value>> {
    may_read(&auth, &project)?;
    Ok(Json(quota_set(Some(&project), &default_limits())))
}

/// `GET /os-quota-sets/{project}/detail`.
pub(super) async fn detail(
    State(st): State<AppState>,
    auth: Auth,
    Path(project): Path<String>,
) -> ApiResult<Json<Value>> {
    may_read(&auth, &project)?;
    let l = st.store().quota_limits(&project).await?;
    let u = st.store().quota_usage(&project).await?;
    let mut m = Map::new();
    m.insert("id".into(), json!(project));
    for (k, v) in &l {
        let in_use = if k == "key_pairs" {
            0
        } else {
            u.of(k).unwrap_or(0)
        };
        m.insert(
            k.clone(),
            json!({"in_use": in_use, "limit": v, "reserved": 0}),
        );
    }
    Ok(Json(json!({ "quota_set": m })))
}

/// `PUT /os-quota-sets/{project}` (admin): new limits, at least what is in use unless `force`.
pub(super) async fn update(
    State(st): State<AppState>,
    auth: Auth,
    Path(project): Path<String>,
    JsonBody(body): JsonBody<QuotaSetBody>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("os_compute_api:os-quota-sets:update")?;
    let b = body.quota_set;
    let force = b.force.is_some_and(|Bool(f)| f);
    let usage = st.store().quota_usage(&project).await?;
    let mut set = Vec::new();
    for (k, v) in b.limits {
        if !is_resource(&k) {
            return Err(ApiError::bad_request(format!(
                "Additional properties are not allowed ('{k}' was unexpected)"
            )));
        }
        let Some(n) = at_least(&k, Some(v), -1)? else {
            continue;
        };
        if let Some(used) = usage.of(&k)
            && !force
            && n >= 0
            && n < used
        {
            return Err(ApiError::bad_request(format!(
                "Quota limit {n} for {k} must be greater than or equal to already used and reserved {used}."
            )));
        }
        set.push((k, n));
    }
    st.store().set_quota_limits(&project, &set).await?;
    let l = st.store().quota_limits(&project).await?;
    Ok(Json(quota_set(None, &l)))
}

/// `DELETE /os-quota-sets/{project}` (admin): back to the defaults.
pub(super) async fn reset(
    State(st): State<AppState>,
    auth: Auth,
    Path(project): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require_admin("os_compute_api:os-quota-sets:delete")?;
    st.store().reset_quota_limits(&project).await?;
    Ok(StatusCode::ACCEPTED)
}
