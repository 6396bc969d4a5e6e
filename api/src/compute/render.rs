//! nova's 2.1 JSON shapes: servers, flavors, key pairs, and its time formats.

use chrono::{DateTime, Utc};
use orchestrator::compute::{Flavor, Keypair, Server, TaskState, VmState, task, vm};
use serde_json::{Value, json};
use sha2::{Digest, Sha224};

/// `2026-01-02T03:04:05Z` (server `created`, `updated`, fault `created`).
pub fn iso_z(us: i64) -> String {
    fmt(us, "%Y-%m-%dT%H:%M:%SZ")
}

/// `2026-01-02T03:04:05.123456` (launched_at, keypair and service times: no zone).
pub fn iso_naive(us: i64) -> String {
    fmt(us, "%Y-%m-%dT%H:%M:%S%.6f")
}

fn fmt(us: i64, f: &str) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .unwrap_or_default()
        .format(f)
        .to_string()
}

/// `self` and `bookmark` links of a compute resource.
pub fn links(base: &str, kind: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{base}/compute/v2.1/{kind}/{id}")},
        {"rel": "bookmark", "href": format!("{base}/compute/{kind}/{id}")},
    ])
}

/// The API status of a vm state and task state.
pub fn status(vm_state: VmState, task: Option<TaskState>) -> &'static str {
    match (vm_state, task) {
        (vm::BUILDING, _) => "BUILD",
        (vm::ACTIVE, Some(task::REBOOTING)) => "REBOOT",
        (vm::ACTIVE, Some(task::REBOOTING_HARD)) => "HARD_REBOOT",
        (vm::ACTIVE, _) => "ACTIVE",
        (vm::STOPPED, _) => "SHUTOFF",
        (vm::PAUSED, _) => "PAUSED",
        (vm::SUSPENDED, _) => "SUSPENDED",
        (vm::ERROR, _) => "ERROR",
    }
}

/// `hostId`: sha224 of project and host, so a project can tell co-located servers apart
/// without learning host names.
pub fn host_id(project: &str, host: Option<&str>) -> String {
    let Some(host) = host else {
        return String::new();
    };
    let d = Sha224::digest(format!("{project}{host}").as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `{id, links, name}` of a server list.
pub fn server_brief(base: &str, s: &Server) -> Value {
    json!({"id": s.id, "links": links(base, "servers", &s.id), "name": s.name})
}

/// The full 2.1 server (show, detail, update); `admin` adds the OS-EXT-SRV-ATTR fields.
pub fn server(base: &str, s: &Server, admin: bool) -> Value {
    let status = status(s.vm_state, s.task_state);
    let mut v = json!({
        "id": s.id,
        "name": s.name,
        "status": status,
        "tenant_id": s.project_id,
        "user_id": s.user_id,
        "metadata": s.metadata.0,
        "hostId": host_id(&s.project_id, s.host.as_deref()),
        "image": {
            "id": s.image_id,
            "links": [{"rel": "bookmark", "href": format!("{base}/compute/images/{}", s.image_id)}],
        },
        "flavor": {
            "id": s.flavor_id,
            "links": [{"rel": "bookmark", "href": format!("{base}/compute/flavors/{}", s.flavor_id)}],
        },
        "created": iso_z(s.created_at),
        "updated": iso_z(s.updated_at),
        "addresses": {},
        "accessIPv4": s.access_ipv4,
        "accessIPv6": s.access_ipv6,
        "links": links(base, "servers", &s.id),
        "key_name": s.key_name,
        "config_drive": "True",
        "progress": 0,
        "OS-DCF:diskConfig": s.disk_config,
        "OS-EXT-AZ:availability_zone": s.availability_zone.clone().unwrap_or_default(),
        "OS-EXT-STS:vm_state": s.vm_state,
        "OS-EXT-STS:task_state": s.task_state,
        "OS-EXT-STS:power_state": s.power_state as i64,
        "OS-SRV-USG:launched_at": s.launched_at.map(iso_naive),
        "OS-SRV-USG:terminated_at": Value::Null,
        "os-extended-volumes:volumes_attached": [],
    });
    let Value::Object(o) = &mut v else { return v };
    if admin {
        o.insert("OS-EXT-SRV-ATTR:host".into(), json!(s.host));
        o.insert("OS-EXT-SRV-ATTR:hypervisor_hostname".into(), json!(s.host));
        o.insert(
            "OS-EXT-SRV-ATTR:instance_name".into(),
            json!(s.instance_name()),
        );
    }
    if s.vm_state == vm::ERROR
        && let Some(f) = s.fault_json()
    {
        let mut fault = json!({
            "code": f["code"],
            "message": f["message"],
            "created": iso_z(f["created"].as_i64().unwrap_or(s.updated_at)),
        });
        // nova shows the details of a 500 fault to admins only.
        if admin || f["code"] != json!(500) {
            fault["details"] = f["details"].clone();
        }
        o.insert("fault".into(), fault);
    }
    v
}

/// The full 2.1 flavor.
pub fn flavor(base: &str, f: &Flavor) -> Value {
    json!({
        "id": f.id,
        "name": f.name,
        "ram": f.ram_mb,
        "disk": f.disk_gb,
        "vcpus": f.vcpus,
        "swap": if f.swap_mb == 0 { json!("") } else { json!(f.swap_mb) },
        "rxtx_factor": f.rxtx_factor,
        "OS-FLV-EXT-DATA:ephemeral": f.ephemeral_gb,
        "OS-FLV-DISABLED:disabled": f.disabled,
        "os-flavor-access:is_public": f.is_public,
        "links": links(base, "flavors", &f.id),
    })
}

/// The `{id, links, name}` of a flavor list.
pub fn flavor_brief(base: &str, f: &Flavor) -> Value {
    json!({"id": f.id, "links": links(base, "flavors", &f.id), "name": f.name})
}

/// A key pair as `GET /os-keypairs/{name}` shows it.
pub fn keypair_full(k: &Keypair) -> Value {
    json!({
        "id": k.seq,
        "name": k.name,
        "user_id": k.user_id,
        "public_key": k.public_key,
        "fingerprint": k.fingerprint,
        "created_at": iso_naive(k.created_at),
        "updated_at": Value::Null,
        "deleted": false,
        "deleted_at": Value::Null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_host_ids() {
        let status = |vm: &str, task: Option<&str>| {
            let vm = VmState::parse(vm).unwrap();
            status(vm, task.map(|t| TaskState::parse(t).unwrap()))
        };
        assert_eq!(status("active", Some("rebooting_hard")), "HARD_REBOOT");
        assert_eq!(status("active", Some("powering-off")), "ACTIVE");
        assert_eq!(status("stopped", None), "SHUTOFF");
        assert_eq!(host_id("p", None), "");
        assert_eq!(host_id("p", Some("h")).len(), 56);
        assert_eq!(iso_naive(1_500_000), "1970-01-01T00:00:01.500000");
        assert_eq!(iso_z(1_500_000), "1970-01-01T00:00:01Z");
    }
}
