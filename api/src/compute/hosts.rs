//! `/os-hypervisors`, `/os-services` and `/os-availability-zone`: the compute hosts as nova
//! shows them (2.1 shapes). Each daemon with the compute role is one `nova-compute` service
//! and one hypervisor.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use orchestrator::compute::ComputeHost;
use orchestrator::store::now_micros;
use serde_json::{Value, json};

use super::bodies::{ServiceUpdateBody, required, text};
use super::render::iso_naive;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, OrMissing};
use crate::extract::JsonBody;
use crate::state::AppState;

fn state_of(h: &ComputeHost) -> &'static str {
    if h.is_up(now_micros()) { "up" } else { "down" }
}

fn status_of(h: &ComputeHost) -> &'static str {
    if h.enabled { "enabled" } else { "disabled" }
}

fn hypervisor_view(h: &ComputeHost, detail: bool) -> Value {
    let mut v = json!({
        "id": h.seq,
        "hypervisor_hostname": h.host,
        "state": state_of(h),
        "status": status_of(h),
    });
    if detail {
        let extra = json!({
            "cpu_info": json!({"arch": "x86_64", "vendor": "", "model": "",
                "topology": {"sockets": 1, "cores": h.vcpus, "threads": 1}, "features": []})
                .to_string(),
            "current_workload": 0,
            "disk_available_least": h.disk_gb - h.disk_gb_used,
            "free_disk_gb": h.disk_gb - h.disk_gb_used,
            "free_ram_mb": h.memory_mb - h.memory_mb_used,
            "host_ip": "127.0.0.1",
            "hypervisor_type": "virga",
            "hypervisor_version": 1000,
            "local_gb": h.disk_gb,
            "local_gb_used": h.disk_gb_used,
            "memory_mb": h.memory_mb,
            "memory_mb_used": h.memory_mb_used,
            "running_vms": h.running_vms,
            "service": {"host": h.host, "id": h.seq, "disabled_reason": h.disabled_reason},
            "vcpus": h.vcpus,
            "vcpus_used": h.vcpus_used,
        });
        if let (Value::Object(o), Value::Object(e)) = (&mut v, extra) {
            o.extend(e);
        }
    }
    v
}

/// `GET /os-hypervisors` and `/os-hypervisors/detail` (admin).
pub(super) async fn hypervisors<const DETAIL: bool>(
    State(st): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<Value>> {
    auth.require_admin("os_compute_api:os-hypervisors:list")?;
    let hosts = st.store().list_hosts().await?;
    let list: Vec<Value> = hosts.iter().map(|h| hypervisor_view(h, DETAIL)).collect();
    Ok(Json(json!({ "hypervisors": list })))
}

/// `GET /os-hypervisors/{id}` (admin).
pub(super) async fn hypervisor(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("os_compute_api:os-hypervisors:show")?;
    let seq: i64 = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("Hypervisor {id} could not be found.")))?;
    let h = st
        .store()
        .get_host_by_seq(seq)
        .await
        .or_missing(|| ApiError::not_found(format!("Hypervisor {id} could not be found.")))?;
    Ok(Json(json!({ "hypervisor": hypervisor_view(&h, true) })))
}

/// `GET /os-hypervisors/statistics` (admin): totals over every host.
pub(super) async fn statistics(State(st): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require_admin("os_compute_api:os-hypervisors:statistics")?;
    let hosts = st.store().list_hosts().await?;
    let sum = |f: fn(&ComputeHost) -> i64| hosts.iter().map(f).sum::<i64>();
    Ok(Json(json!({"hypervisor_statistics": {
        "count": hosts.len(),
        "current_workload": 0,
        "disk_available_least": sum(|h| h.disk_gb - h.disk_gb_used),
        "free_disk_gb": sum(|h| h.disk_gb - h.disk_gb_used),
        "free_ram_mb": sum(|h| h.memory_mb - h.memory_mb_used),
        "local_gb": sum(|h| h.disk_gb),
        "local_gb_used": sum(|h| h.disk_gb_used),
        "memory_mb": sum(|h| h.memory_mb),
        "memory_mb_used": sum(|h| h.memory_mb_used),
        "running_vms": sum(|h| h.running_vms),
        "vcpus": sum(|h| h.vcpus),
        "vcpus_used": sum(|h| h.vcpus_used),
    }})))
}

/// `GET /os-services` (admin).
pub(super) async fn services(State(st): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require_admin("os_compute_api:os-services:list")?;
    let hosts = st.store().list_hosts().await?;
    let list: Vec<Value> = hosts
        .iter()
        .map(|h| {
            json!({
                "id": h.seq,
                "binary": "nova-compute",
                "host": h.host,
                "zone": h.availability_zone,
                "status": status_of(h),
                "state": state_of(h),
                "updated_at": iso_naive(h.heartbeat_at),
                "disabled_reason": h.disabled_reason,
            })
        })
        .collect();
    Ok(Json(json!({ "services": list })))
}

/// `PUT /os-services/{enable,disable,disable-log-reason}` (admin).
pub(super) async fn set_service(
    State(st): State<AppState>,
    auth: Auth,
    Path(op): Path<String>,
    JsonBody(b): JsonBody<ServiceUpdateBody>,
) -> ApiResult<Json<Value>> {
    auth.require_admin("os_compute_api:os-services:update")?;
    let host = required("host", text("host", b.host.as_deref(), 255, true)?)?;
    let binary = required("binary", text("binary", b.binary.as_deref(), 255, true)?)?;
    if binary != "nova-compute" {
        return Err(ApiError::not_found(format!(
            "Service {binary} on host {host} could not be found."
        )));
    }
    let (enabled, reason) = match op.as_str() {
        "enable" => (true, None),
        "disable" => (false, None),
        "disable-log-reason" => {
            let r = text("disabled_reason", b.disabled_reason.as_deref(), 255, true)?
                .ok_or_else(|| ApiError::bad_request("Missing disabled reason field"))?;
            (false, Some(r))
        }
        other => {
            return Err(ApiError::not_found(format!("Unknown action {other}")));
        }
    };
    st.store()
        .set_host_enabled(host, enabled, reason)
        .await
        .or_missing(|| ApiError::not_found(format!("Host {host} could not be found.")))?;
    let mut svc = json!({
        "host": host,
        "binary": binary,
        "status": if enabled { "enabled" } else { "disabled" },
    });
    if let Some(r) = reason {
        svc["disabled_reason"] = json!(r);
    }
    Ok(Json(json!({ "service": svc })))
}

/// `GET /os-availability-zone` and `/detail` (detail: admin, with hosts and services).
pub(super) async fn zones<const DETAIL: bool>(
    State(st): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<Value>> {
    if DETAIL {
        auth.require_admin("os_compute_api:os-availability-zone:detail")?;
    }
    let hosts = st.store().list_hosts().await?;
    let mut zones: BTreeMap<&str, Vec<&ComputeHost>> = BTreeMap::new();
    for h in &hosts {
        zones.entry(&h.availability_zone).or_default().push(h);
    }
    let now = now_micros();
    let info: Vec<Value> = zones
        .iter()
        .map(|(zone, hs)| {
            let available = hs.iter().any(|h| h.enabled && h.is_up(now));
            let hosts = if DETAIL {
                let m: serde_json::Map<String, Value> = hs
                    .iter()
                    .map(|h| {
                        (
                            h.host.clone(),
                            json!({"nova-compute": {
                                "available": h.is_up(now),
                                "active": h.enabled,
                                "updated_at": iso_naive(h.heartbeat_at),
                            }}),
                        )
                    })
                    .collect();
                Value::Object(m)
            } else {
                Value::Null
            };
            json!({"zoneName": zone, "zoneState": {"available": available}, "hosts": hosts})
        })
        .collect();
    Ok(Json(json!({ "availabilityZoneInfo": info })))
}
