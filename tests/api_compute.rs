//! Compute v2.1 over HTTP against a real `virgad` whose compute role runs real `virga-vmm`
//! guests (the tiny test guest): exact 2.1 schemas, microversion headers, errors, quotas, the
//! scheduler's filters, the server lifecycle, restart adoption and the power-state sync.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod cloud_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cloud_support::compute::{alive, kvm_available, vmm_pids_with};
use cloud_support::{Api, Cloud};
use reqwest::Method;
use serde_json::{Value, json};

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("an object").keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The keys of a 2.1 server as a non-admin sees it.
const SERVER_KEYS: [&str; 27] = [
    "id",
    "name",
    "status",
    "tenant_id",
    "user_id",
    "metadata",
    "hostId",
    "image",
    "flavor",
    "created",
    "updated",
    "addresses",
    "accessIPv4",
    "accessIPv6",
    "links",
    "key_name",
    "config_drive",
    "progress",
    "OS-DCF:diskConfig",
    "OS-EXT-AZ:availability_zone",
    "OS-EXT-STS:vm_state",
    "OS-EXT-STS:task_state",
    "OS-EXT-STS:power_state",
    "OS-SRV-USG:launched_at",
    "OS-SRV-USG:terminated_at",
    "os-extended-volumes:volumes_attached",
    "OS-EXT-SRV-ATTR:host",
];

const FLAVOR_KEYS: [&str; 11] = [
    "id",
    "name",
    "ram",
    "disk",
    "vcpus",
    "swap",
    "rxtx_factor",
    "OS-FLV-EXT-DATA:ephemeral",
    "OS-FLV-DISABLED:disabled",
    "os-flavor-access:is_public",
    "links",
];

#[tokio::test]
async fn versions_microversions_and_errors() {
    let (c, _r) = Cloud::start_compute();
    let api = c.api();
    let admin = api.admin_token().await;
    let a = api
        .send(Method::GET, "/compute/v2.1", None, None)
        .await
        .expect(200);
    let v = &a.body["version"];
    assert_eq!(
        (v["version"].as_str(), v["min_version"].as_str()),
        (Some("2.1"), Some("2.1"))
    );
    assert_eq!(
        a.header("openstack-api-version").as_deref(),
        Some("compute 2.1")
    );
    assert_eq!(
        a.header("x-openstack-nova-api-version").as_deref(),
        Some("2.1")
    );
    for path in ["/compute", "/compute/"] {
        let a = api.send(Method::GET, path, None, None).await.expect(200);
        assert_eq!(a.body["versions"][0]["id"], "v2.1");
        assert_eq!(
            a.header("x-openstack-nova-api-version").as_deref(),
            Some("2.1")
        );
    }

    // The catalog names compute at /compute/v2.1.
    let cat = api
        .get("/identity/v3/auth/catalog", &admin)
        .await
        .expect(200);
    let compute = cat.body["catalog"]
        .as_array()
        .expect("catalog")
        .iter()
        .find(|s| s["type"] == "compute")
        .expect("compute in the catalog")
        .clone();
    assert!(
        compute["endpoints"][0]["url"]
            .as_str()
            .expect("url")
            .ends_with("/compute/v2.1")
    );

    // Asked versions: accepted, echoed, or 406 beyond 2.1; garbage is 400.
    for (h, v) in [
        ("OpenStack-API-Version", "compute 2.1"),
        ("X-OpenStack-Nova-API-Version", "2.1"),
        ("OpenStack-API-Version", "compute latest"),
    ] {
        let a = Api::answer(
            api.http
                .get(format!("{}/compute/v2.1/flavors", api.base))
                .header("X-Auth-Token", &admin)
                .header(h, v),
        )
        .await
        .expect(200);
        assert_eq!(
            a.header("openstack-api-version").as_deref(),
            Some("compute 2.1")
        );
    }
    let a = Api::answer(
        api.http
            .get(format!("{}/compute/v2.1/flavors", api.base))
            .header("X-Auth-Token", &admin)
            .header("OpenStack-API-Version", "compute 2.60"),
    )
    .await;
    let m = a.nova_error(406, "notAcceptable");
    assert!(m.contains("maximum is 2.1"), "{m}");
    let a = Api::answer(
        api.http
            .get(format!("{}/compute/v2.1/flavors", api.base))
            .header("X-Auth-Token", &admin)
            .header("X-OpenStack-Nova-API-Version", "two"),
    )
    .await;
    a.nova_error(400, "badRequest");

    // Errors in nova's shape.
    api.send(Method::GET, "/compute/v2.1/servers", None, None)
        .await
        .nova_error(401, "unauthorized");
    let m = api
        .get(
            "/compute/v2.1/servers/5b4c2a3e-0000-4000-8000-000000000000",
            &admin,
        )
        .await
        .nova_error(404, "itemNotFound");
    assert!(m.contains("could not be found"), "{m}");
    let a = Api::answer(
        api.http
            .post(format!("{}/compute/v2.1/servers", api.base))
            .header("X-Auth-Token", &admin)
            .header("Content-Type", "application/json")
            .body("{not json"),
    )
    .await;
    a.nova_error(400, "badRequest");
    let m = api
        .post(
            "/compute/v2.1/servers",
            &admin,
            json!({"server": {"name": "x", "flavorRef": "1", "imageRef": "x", "bogus": 1}}),
        )
        .await
        .nova_error(400, "badRequest");
    assert!(m.contains("'bogus' was unexpected"), "{m}");
    api.send(Method::PATCH, "/compute/v2.1/flavors", Some(&admin), None)
        .await
        .nova_error(405, "badMethod");
}

#[tokio::test]
async fn flavors_keypairs_quotas_hosts() {
    let (c, _r) = Cloud::start_compute();
    let api = c.api();
    let admin = api.admin_token().await;
    let (pid, _uid, user) = api.make_user(&admin, "alice", &["member"]).await;

    // Flavors: defaults, exact shapes, create/show/delete, extra specs, admin-only writes.
    let a = api.get("/compute/v2.1/flavors", &user).await.expect(200);
    let brief = &a.body["flavors"][0];
    assert_eq!(keys(brief), set(&["id", "links", "name"]));
    let a = api
        .get("/compute/v2.1/flavors/detail?minRam=1000", &user)
        .await
        .expect(200);
    let names: Vec<&str> = a.body["flavors"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(names, ["m1.small", "m1.medium", "m1.large"]);
    let a = api.get("/compute/v2.1/flavors/1", &user).await.expect(200);
    assert_eq!(keys(&a.body["flavor"]), set(&FLAVOR_KEYS));
    assert_eq!(a.body["flavor"]["swap"], "");
    let page = api
        .get("/compute/v2.1/flavors?limit=2", &user)
        .await
        .expect(200);
    assert_eq!(page.body["flavors"].as_array().map(Vec::len), Some(2));
    let next = page.body["flavors_links"][0]["href"]
        .as_str()
        .expect("next link");
    assert!(next.contains("marker=2"), "{next}");
    let body = json!({"flavor": {"name": "f.test", "ram": 128, "vcpus": 1, "disk": 0, "id": "ft"}});
    api.post("/compute/v2.1/flavors", &user, body.clone())
        .await
        .nova_error(403, "forbidden");
    let a = api
        .post("/compute/v2.1/flavors", &admin, body.clone())
        .await
        .expect(200);
    assert_eq!(a.body["flavor"]["id"], "ft");
    assert_eq!(keys(&a.body["flavor"]), set(&FLAVOR_KEYS));
    api.post("/compute/v2.1/flavors", &admin, body)
        .await
        .nova_error(409, "conflictingRequest");
    let m = api
        .post(
            "/compute/v2.1/flavors",
            &admin,
            json!({"flavor": {"name": "bad", "ram": 0, "vcpus": 1, "disk": 0}}),
        )
        .await
        .nova_error(400, "badRequest");
    assert!(m.contains("ram"), "{m}");
    let a = api
        .post(
            "/compute/v2.1/flavors/ft/os-extra_specs",
            &admin,
            json!({"extra_specs": {"hw:cpu_policy": "shared"}}),
        )
        .await
        .expect(200);
    assert_eq!(a.body, json!({"extra_specs": {"hw:cpu_policy": "shared"}}));
    let a = api
        .get(
            "/compute/v2.1/flavors/ft/os-extra_specs/hw:cpu_policy",
            &user,
        )
        .await
        .expect(200);
    assert_eq!(a.body, json!({"hw:cpu_policy": "shared"}));
    api.delete(
        "/compute/v2.1/flavors/ft/os-extra_specs/hw:cpu_policy",
        &admin,
    )
    .await
    .expect(200);
    api.get(
        "/compute/v2.1/flavors/ft/os-extra_specs/hw:cpu_policy",
        &user,
    )
    .await
    .nova_error(404, "itemNotFound");
    api.delete("/compute/v2.1/flavors/ft", &admin)
        .await
        .expect(202);
    api.get("/compute/v2.1/flavors/ft", &admin)
        .await
        .nova_error(404, "itemNotFound");

    // Key pairs: generated (private key returned once), imported, shown, listed, deleted.
    let a = api
        .post(
            "/compute/v2.1/os-keypairs",
            &user,
            json!({"keypair": {"name": "gen"}}),
        )
        .await
        .expect(200);
    let kp = &a.body["keypair"];
    assert_eq!(
        keys(kp),
        set(&[
            "name",
            "public_key",
            "fingerprint",
            "user_id",
            "private_key"
        ])
    );
    assert!(
        kp["private_key"]
            .as_str()
            .expect("pem")
            .contains("OPENSSH PRIVATE KEY")
    );
    let public = kp["public_key"].as_str().expect("public").to_string();
    let a = api
        .post(
            "/compute/v2.1/os-keypairs",
            &user,
            json!({"keypair": {"name": "imp", "public_key": public}}),
        )
        .await
        .expect(200);
    assert_eq!(
        keys(&a.body["keypair"]),
        set(&["name", "public_key", "fingerprint", "user_id"])
    );
    api.post(
        "/compute/v2.1/os-keypairs",
        &user,
        json!({"keypair": {"name": "imp", "public_key": public}}),
    )
    .await
    .nova_error(409, "conflictingRequest");
    let m = api
        .post(
            "/compute/v2.1/os-keypairs",
            &user,
            json!({"keypair": {"name": "x", "public_key": "ssh-rsa nonsense"}}),
        )
        .await
        .nova_error(400, "badRequest");
    assert!(m.contains("Keypair data is invalid"), "{m}");
    let a = api
        .get("/compute/v2.1/os-keypairs", &user)
        .await
        .expect(200);
    assert_eq!(a.body["keypairs"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        keys(&a.body["keypairs"][0]["keypair"]),
        set(&["name", "public_key", "fingerprint"])
    );
    let a = api
        .get("/compute/v2.1/os-keypairs/gen", &user)
        .await
        .expect(200);
    assert_eq!(
        keys(&a.body["keypair"]),
        set(&[
            "id",
            "name",
            "user_id",
            "public_key",
            "fingerprint",
            "created_at",
            "updated_at",
            "deleted",
            "deleted_at"
        ])
    );
    api.get("/compute/v2.1/os-keypairs/gen", &admin)
        .await
        .nova_error(404, "itemNotFound");
    api.delete("/compute/v2.1/os-keypairs/imp", &user)
        .await
        .expect(202);

    // Quotas: defaults, show, update (admin), detail, limits.
    let a = api
        .get(&format!("/compute/v2.1/os-quota-sets/{pid}"), &user)
        .await
        .expect(200);
    let qs = &a.body["quota_set"];
    assert_eq!(qs["instances"], 10);
    assert_eq!(qs["id"], pid.as_str());
    assert_eq!(keys(qs).len(), 15);
    api.send(
        Method::PUT,
        &format!("/compute/v2.1/os-quota-sets/{pid}"),
        Some(&user),
        Some(json!({"quota_set": {"instances": 1}})),
    )
    .await
    .nova_error(403, "forbidden");
    let a = api
        .send(
            Method::PUT,
            &format!("/compute/v2.1/os-quota-sets/{pid}"),
            Some(&admin),
            Some(json!({"quota_set": {"instances": 1, "cores": 4}})),
        )
        .await
        .expect(200);
    assert_eq!(
        (
            a.body["quota_set"]["instances"].as_i64(),
            a.body["quota_set"]["cores"].as_i64()
        ),
        (Some(1), Some(4))
    );
    assert!(a.body["quota_set"].get("id").is_none());
    api.send(
        Method::PUT,
        &format!("/compute/v2.1/os-quota-sets/{pid}"),
        Some(&admin),
        Some(json!({"quota_set": {"widgets": 1}})),
    )
    .await
    .nova_error(400, "badRequest");
    let a = api
        .get(
            &format!("/compute/v2.1/os-quota-sets/{pid}/defaults"),
            &user,
        )
        .await
        .expect(200);
    assert_eq!(a.body["quota_set"]["instances"], 10);
    let a = api
        .get(&format!("/compute/v2.1/os-quota-sets/{pid}/detail"), &user)
        .await
        .expect(200);
    assert_eq!(
        a.body["quota_set"]["instances"],
        json!({"in_use": 0, "limit": 1, "reserved": 0})
    );
    let a = api.get("/compute/v2.1/limits", &user).await.expect(200);
    let abs = &a.body["limits"]["absolute"];
    assert_eq!(
        (
            abs["maxTotalInstances"].as_i64(),
            abs["totalInstancesUsed"].as_i64()
        ),
        (Some(1), Some(0))
    );
    assert_eq!(a.body["limits"]["rate"], json!([]));

    // Hosts: this daemon is one hypervisor, one nova-compute service, in zone "nova".
    let a = api
        .get("/compute/v2.1/os-hypervisors", &admin)
        .await
        .expect(200);
    let h = &a.body["hypervisors"][0];
    assert_eq!(
        keys(h),
        set(&["id", "hypervisor_hostname", "state", "status"])
    );
    assert_eq!(
        (h["state"].as_str(), h["status"].as_str()),
        (Some("up"), Some("enabled"))
    );
    let a = api
        .get("/compute/v2.1/os-hypervisors/detail", &admin)
        .await
        .expect(200);
    let d = &a.body["hypervisors"][0];
    assert!(d["memory_mb"].as_i64().expect("memory") > 0);
    assert_eq!(keys(d).len(), 20);
    api.get("/compute/v2.1/os-hypervisors", &user)
        .await
        .nova_error(403, "forbidden");
    let host = h["hypervisor_hostname"].as_str().expect("host").to_string();
    let a = api
        .get("/compute/v2.1/os-services", &admin)
        .await
        .expect(200);
    let svc = &a.body["services"][0];
    assert_eq!(
        keys(svc),
        set(&[
            "id",
            "binary",
            "host",
            "zone",
            "status",
            "state",
            "updated_at",
            "disabled_reason"
        ])
    );
    assert_eq!(svc["binary"], "nova-compute");
    let a = api
        .get("/compute/v2.1/os-availability-zone", &user)
        .await
        .expect(200);
    assert_eq!(
        a.body["availabilityZoneInfo"],
        json!([{"zoneName": "nova", "zoneState": {"available": true}, "hosts": null}])
    );
    let a = api
        .get("/compute/v2.1/os-availability-zone/detail", &admin)
        .await
        .expect(200);
    assert_eq!(
        a.body["availabilityZoneInfo"][0]["hosts"][&host]["nova-compute"]["active"],
        true
    );

    // Bad server requests: unknown flavor and image, image larger than the flavor's disk,
    // unknown key, bad user data, unknown zone; each a 400 naming why.
    let dir = tempfile::tempdir().expect("tempdir");
    let big = cloud_support::make_qcow2(dir.path(), "big.qcow2", "2G");
    let big_id = api
        .upload_image(
            &admin,
            "big",
            "qcow2",
            &big,
            json!({"visibility": "public"}),
        )
        .await;
    let bad = [
        (
            json!({"name": "a", "flavorRef": "nope", "imageRef": big_id}),
            "Flavor nope could not be found",
        ),
        (
            json!({"name": "a", "flavorRef": "1", "imageRef": "0e5f2c4e-0000-4000-8000-000000000000"}),
            "could not be found",
        ),
        (
            json!({"name": "a", "flavorRef": "1", "imageRef": big_id}),
            "Flavor's disk is too small",
        ),
        (
            json!({"name": "a", "flavorRef": "2", "imageRef": big_id, "key_name": "nokey"}),
            "Invalid key_name",
        ),
        (
            json!({"name": "a", "flavorRef": "2", "imageRef": big_id, "user_data": "%%%"}),
            "base 64",
        ),
        (
            json!({"name": "a", "flavorRef": "2", "imageRef": big_id, "availability_zone": "mars"}),
            "availability zone",
        ),
        (json!({"name": "a", "flavorRef": "2"}), "imageRef"),
        (
            json!({"name": "a", "flavorRef": "2", "imageRef": big_id, "OS-DCF:diskConfig": "SIDEWAYS"}),
            "OS-DCF:diskConfig",
        ),
        // Typed bodies: an unknown key, a wrong type and a bad count each name their field.
        (
            json!({"name": "a", "flavorRef": "2", "imageRef": big_id, "colour": "red"}),
            "'colour' was unexpected",
        ),
        (
            json!({"name": "a", "flavorRef": "2", "imageRef": big_id, "min_count": "two"}),
            "server.min_count",
        ),
        (
            json!({"name": "a", "flavorRef": "2", "imageRef": big_id, "min_count": 0}),
            "min_count",
        ),
        (
            json!({"name": "a", "flavorRef": [2], "imageRef": big_id}),
            "server.flavorRef",
        ),
        (
            json!({"name": "a", "flavorRef": "2", "block_device_mapping_v2": [{"boot_index": 0, "uuid": big_id, "source_type": "image", "size": 1}]}),
            "server.block_device_mapping_v2[0]",
        ),
    ];
    for (body, want) in bad {
        let m = api
            .post("/compute/v2.1/servers", &user, json!({ "server": body }))
            .await
            .nova_error(400, "badRequest");
        assert!(m.contains(want), "{body}: {m}");
    }

    // Quota at create: cores 4 with a 1-vCPU flavor but instances 1: the second is refused.
    let first = api
        .create_server(
            &user,
            json!({"name": "q1", "flavorRef": 2, "imageRef": big_id, "OS-DCF:diskConfig": "AUTO"}),
        )
        .await;
    assert_eq!(api.server(&user, &first).await["OS-DCF:diskConfig"], "AUTO");
    let m = api
        .post(
            "/compute/v2.1/servers",
            &user,
            json!({"server": {"name": "q2", "flavorRef": "2", "imageRef": big_id}}),
        )
        .await
        .nova_error(403, "forbidden");
    assert!(m.contains("Quota exceeded for instances"), "{m}");
    // Typed action bodies: one known action with its argument's shape, else a 400 saying so.
    for (body, want) in [
        (json!({"levitate": null}), "unknown variant `levitate`"),
        (json!({"os-stop": null, "os-start": null}), "Invalid input"),
        (json!({"reboot": {"type": "sideways"}}), "reboot.type"),
        (
            json!({"createImage": {"name": "i", "size": 1}}),
            "'size' was unexpected",
        ),
        (json!({"os-getConsoleOutput": {"length": -2}}), "length"),
    ] {
        let m = api
            .action(&user, &first, body.clone())
            .await
            .nova_error(400, "badRequest");
        assert!(m.contains(want), "{body}: {m}");
    }
    // The scheduler's enabled filter: with the only host disabled, the server goes ERROR
    // with nova's NoValidHost fault (it never reaches the agent: no KVM needed).
    api.delete(&format!("/compute/v2.1/servers/{first}"), &user)
        .await
        .expect(204);
    api.wait_gone(&user, &first, 10).await;
    api.send(
        Method::PUT,
        "/compute/v2.1/os-services/disable-log-reason",
        Some(&admin),
        Some(json!({"host": host, "binary": "nova-compute", "disabled_reason": "test"})),
    )
    .await
    .expect(200);
    let id = api
        .create_server(
            &user,
            json!({"name": "nohost", "flavorRef": "2", "imageRef": big_id}),
        )
        .await;
    let s = api.wait_status(&user, &id, "ERROR", 10).await;
    assert!(
        s["fault"]["message"]
            .as_str()
            .expect("fault")
            .contains("No valid host"),
        "{s:#}"
    );
    assert!(
        s["fault"].get("details").is_none(),
        "500 details are for admins: {s:#}"
    );
    let s = api.server(&admin, &id).await;
    assert!(
        s["fault"]["details"]
            .as_str()
            .expect("details")
            .contains("disabled"),
        "{s:#}"
    );
    api.send(
        Method::PUT,
        "/compute/v2.1/os-services/enable",
        Some(&admin),
        Some(json!({"host": host, "binary": "nova-compute"})),
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn server_lifecycle_on_real_guests() {
    if !kvm_available("server_lifecycle_on_real_guests") {
        return;
    }
    let (c, _r) = Cloud::start_compute();
    let api = c.api();
    let admin = api.admin_token().await;
    let (_pid, _uid, user) = api.make_user(&admin, "bob", &["member"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (kernel, image) = api.tiny_guest_image(&user, dir.path()).await;
    api.post(
        "/compute/v2.1/os-keypairs",
        &user,
        json!({"keypair": {"name": "k"}}),
    )
    .await
    .expect(200);

    let a = api
        .post(
            "/compute/v2.1/servers",
            &user,
            json!({"server": {
                "name": "vm1", "flavorRef": "tiny-guest", "imageRef": image, "key_name": "k",
                "user_data": "aGVsbG8=", "metadata": {"role": "test"},
            }}),
        )
        .await
        .expect(202);
    let created = &a.body["server"];
    assert_eq!(
        keys(created),
        set(&[
            "id",
            "links",
            "OS-DCF:diskConfig",
            "security_groups",
            "adminPass"
        ])
    );
    let id = created["id"].as_str().expect("id").to_string();
    assert!(
        a.header("location")
            .expect("Location")
            .ends_with(&format!("/servers/{id}"))
    );
    let s = api.wait_status(&user, &id, "ACTIVE", 30).await;
    let mut want = set(&SERVER_KEYS);
    want.remove("OS-EXT-SRV-ATTR:host");
    assert_eq!(keys(&s), want, "non-admin view");
    assert_eq!(s["OS-EXT-STS:power_state"], 1);
    assert_eq!(s["OS-EXT-STS:vm_state"], "active");
    assert_eq!(s["OS-EXT-AZ:availability_zone"], "nova");
    assert_eq!(s["metadata"], json!({"role": "test"}));
    assert_eq!(s["key_name"], "k");
    let full = api.server(&admin, &id).await;
    let mut want = set(&SERVER_KEYS);
    want.extend(set(&[
        "OS-EXT-SRV-ATTR:hypervisor_hostname",
        "OS-EXT-SRV-ATTR:instance_name",
    ]));
    assert_eq!(keys(&full), want, "admin view");
    let pids = vmm_pids_with(&id);
    assert_eq!(pids.len(), 1, "one VMM for {id}");

    // Console output, whole and its last line; the guest found its config drive.
    let out = api.wait_console(&user, &id, "config-drive: done", 30).await;
    assert!(out.contains(tiny_guest::MARKER), "{out}");
    assert!(out.contains("config-drive: hostname vm1"), "{out}");
    assert!(
        out.contains("config-drive: public key k ssh-ed25519"),
        "{out}"
    );
    let a = api
        .action(&user, &id, json!({"os-getConsoleOutput": {"length": 1}}))
        .await
        .expect(200);
    assert_eq!(
        a.body["output"]
            .as_str()
            .expect("output")
            .trim_end()
            .lines()
            .count(),
        1
    );

    // List, detail, filters, paging, update.
    let second = api
        .create_server(
            &user,
            json!({"name": "vm2", "flavorRef": "tiny-guest", "imageRef": image}),
        )
        .await;
    api.wait_status(&user, &second, "ACTIVE", 30).await;
    let a = api.get("/compute/v2.1/servers", &user).await.expect(200);
    assert_eq!(a.body["servers"].as_array().map(Vec::len), Some(2));
    assert_eq!(keys(&a.body["servers"][0]), set(&["id", "links", "name"]));
    let a = api
        .get("/compute/v2.1/servers/detail?name=%5Evm1%24", &user)
        .await
        .expect(200);
    assert_eq!(a.body["servers"][0]["id"], id.as_str());
    assert_eq!(a.body["servers"].as_array().map(Vec::len), Some(1));
    let a = api
        .get("/compute/v2.1/servers?limit=1", &user)
        .await
        .expect(200);
    let next = a.body["servers_links"][0]["href"]
        .as_str()
        .expect("next")
        .to_string();
    let path = next.split("/compute").nth(1).expect("path");
    let b = api.get(&format!("/compute{path}"), &user).await.expect(200);
    assert_ne!(b.body["servers"][0]["id"], a.body["servers"][0]["id"]);
    let a = api
        .get("/compute/v2.1/servers?status=SHUTOFF", &user)
        .await
        .expect(200);
    assert_eq!(a.body["servers"], json!([]));
    let a = api
        .send(
            Method::PUT,
            &format!("/compute/v2.1/servers/{second}"),
            Some(&user),
            Some(json!({"server": {"name": "renamed"}})),
        )
        .await
        .expect(200);
    assert_eq!(a.body["server"]["name"], "renamed");

    // Actions reach their states, and the guest really stops or runs.
    let steps: [(Value, &str, i64); 8] = [
        (json!({"os-stop": null}), "SHUTOFF", 4),
        (json!({"os-start": null}), "ACTIVE", 1),
        (json!({"reboot": {"type": "HARD"}}), "ACTIVE", 1),
        (json!({"reboot": {"type": "SOFT"}}), "ACTIVE", 1),
        (json!({"pause": null}), "PAUSED", 3),
        (json!({"unpause": null}), "ACTIVE", 1),
        (json!({"suspend": null}), "SUSPENDED", 7),
        (json!({"resume": null}), "ACTIVE", 1),
    ];
    for (body, status, power) in steps {
        api.action(&user, &id, body.clone()).await.expect(202);
        let s = api.wait_status(&user, &id, status, 30).await;
        assert_eq!(s["OS-EXT-STS:power_state"], power, "{body}");
        let running = vmm_pids_with(&id);
        if status == "SHUTOFF" {
            assert!(running.is_empty(), "stopped but VMM {running:?} runs");
        } else {
            assert_eq!(running.len(), 1, "{body}: VMMs {running:?}");
        }
    }
    let m = api
        .action(&user, &id, json!({"os-start": null}))
        .await
        .nova_error(409, "conflictingRequest");
    assert!(m.contains("vm_state active"), "{m}");
    let m = api
        .action(&user, &id, json!({"reboot": {"type": "WARM"}}))
        .await
        .nova_error(400, "badRequest");
    assert!(m.contains("WARM"), "{m}");
    api.action(&user, &id, json!({"frobnicate": null}))
        .await
        .nova_error(400, "badRequest");

    // createImage: a snapshot in the image service that boots again.
    let a = api
        .action(
            &user,
            &id,
            json!({"createImage": {"name": "snap", "metadata": {"k": "v"}}}),
        )
        .await
        .expect(202);
    let loc = a.header("location").expect("Location");
    let snap = loc.rsplit('/').next().expect("image id").to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let img = loop {
        let i = api
            .get(&format!("/image/v2/images/{snap}"), &user)
            .await
            .expect(200);
        if i.body["status"] == "active" {
            break i.body;
        }
        assert!(Instant::now() < deadline, "snapshot not active: {}", i.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (img["disk_format"].as_str(), img["kernel_id"].as_str()),
        (Some("qcow2"), Some(kernel.as_str()))
    );
    assert_eq!(
        (img["image_type"].as_str(), img["k"].as_str()),
        (Some("snapshot"), Some("v"))
    );
    let from_snap = api
        .create_server(
            &user,
            json!({"name": "fromsnap", "flavorRef": "tiny-guest", "imageRef": snap}),
        )
        .await;
    api.wait_status(&user, &from_snap, "ACTIVE", 30).await;

    // A kernel that does not boot: ERROR with a fault saying why, console log kept.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, vec![0x5a_u8; 4096]).expect("junk kernel");
    let bad = api
        .upload_image(&user, "junk", "aki", &junk, json!({}))
        .await;
    let broken = api
        .create_server(
            &user,
            json!({"name": "broken", "flavorRef": "tiny-guest", "imageRef": bad}),
        )
        .await;
    let s = api.wait_status(&user, &broken, "ERROR", 30).await;
    let msg = s["fault"]["message"].as_str().expect("fault message");
    assert!(msg.contains("failed"), "{s:#}");
    // The console log is kept for the post-mortem.
    api.action(&user, &broken, json!({"os-getConsoleOutput": {}}))
        .await
        .expect(200);
    assert!(c.instance_dir(&broken).join("console.log").exists());

    // Delete: no process, no file left.
    for sid in [&id, &second, &from_snap, &broken] {
        api.delete(&format!("/compute/v2.1/servers/{sid}"), &user)
            .await
            .expect(204);
    }
    for sid in [&id, &second, &from_snap, &broken] {
        api.wait_gone(&user, sid, 30).await;
        assert!(vmm_pids_with(sid).is_empty(), "VMM of {sid} still runs");
        assert!(!c.instance_dir(sid).exists(), "files of {sid} left");
    }
    assert!(pids.iter().all(|p| !alive(*p)));
    let a = api.get("/compute/v2.1/limits", &user).await.expect(200);
    assert_eq!(a.body["limits"]["absolute"]["totalInstancesUsed"], 0);
    let h = api
        .get("/compute/v2.1/os-hypervisors/detail", &admin)
        .await
        .expect(200);
    assert_eq!(h.body["hypervisors"][0]["running_vms"], 0);
}

#[tokio::test]
async fn restart_adopts_guests_and_sync_notices_a_dead_vmm() {
    if !kvm_available("restart_adopts_guests_and_sync_notices_a_dead_vmm") {
        return;
    }
    let (mut c, _r) = Cloud::start_compute();
    let api = c.api();
    let admin = api.admin_token().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_k, image) = api.tiny_guest_image(&admin, dir.path()).await;
    let a = api
        .post("/compute/v2.1/servers", &admin, json!({"server": {
            "name": "trio", "flavorRef": "tiny-guest", "imageRef": image, "min_count": 3, "max_count": 3,
        }}))
        .await
        .expect(202);
    assert!(a.body["server"]["id"].is_string());
    let list = api
        .get("/compute/v2.1/servers?name=trio", &admin)
        .await
        .expect(200);
    let ids: Vec<String> = list.body["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    let mut before = Vec::new();
    for id in &ids {
        api.wait_status(&admin, id, "ACTIVE", 30).await;
        let p = vmm_pids_with(id);
        assert_eq!(p.len(), 1);
        before.push(p[0]);
    }

    c.restart();
    let api = c.api(); // the old client's pooled connections died with the old daemon
    let admin = api.admin_token().await;
    for (id, pid) in ids.iter().zip(&before) {
        let s = api.server(&admin, id).await;
        assert_eq!(s["status"], "ACTIVE", "{s:#}");
        assert_eq!(vmm_pids_with(id), vec![*pid], "same VMM after restart");
    }

    // kill -9 one VMM: SHUTOFF within 5 s, and `os-start` boots it again.
    let victim = &ids[1];
    let pid = i32::try_from(before[1]).expect("pid");
    // SAFETY: kill(2) on a VMM this test started; no memory is involved.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let t = Instant::now();
    let s = api.wait_status(&admin, victim, "SHUTOFF", 5).await;
    eprintln!("SHUTOFF seen {:?} after kill -9", t.elapsed());
    assert!(
        [4, 6].contains(&s["OS-EXT-STS:power_state"].as_i64().expect("power")),
        "{s:#}"
    );
    api.action(&admin, victim, json!({"os-start": null}))
        .await
        .expect(202);
    api.wait_status(&admin, victim, "ACTIVE", 30).await;
    let again = vmm_pids_with(victim);
    assert_eq!(again.len(), 1);
    assert_ne!(again[0], before[1]);
    for id in &ids {
        api.delete(&format!("/compute/v2.1/servers/{id}"), &admin)
            .await
            .expect(204);
    }
    for id in &ids {
        api.wait_gone(&admin, id, 30).await;
        assert!(vmm_pids_with(id).is_empty());
    }
}

/// The control socket's `info` of a server's VMM (the boot-progress marks it saw).
fn vmm_info(c: &Cloud, id: &str) -> Value {
    use std::io::{BufRead, BufReader, Write};
    let sock = c.instance_dir(id).join("control.sock");
    let mut s = std::os::unix::net::UnixStream::connect(&sock).expect("control socket");
    s.write_all(b"{\"cmd\":\"info\"}\n").expect("send info");
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("info answer");
    let v: Value = serde_json::from_str(&line).expect("info JSON");
    assert_eq!(v["ok"], true, "{v}");
    v["info"].clone()
}

/// The boot-progress codes of the VMM's current boot.
fn progress_codes(info: &Value) -> Vec<u64> {
    let first = info["boot"]["first_kvm_run_us"]
        .as_u64()
        .expect("in the guest");
    let marks = info["boot"]["progress"].as_array().expect("progress");
    marks
        .iter()
        .filter(|m| m["us"].as_u64() >= Some(first))
        .filter_map(|m| m["code"].as_u64())
        .collect()
}

/// ACTIVE as Nova means it: the VMM runs the guest. A guest that never writes the ready mark
/// (as a stock image would not) goes ACTIVE at once on create, start and both reboots (the
/// old flow waited 60 s for the mark, then ERROR); a guest that writes it gets its time logged.
#[tokio::test]
async fn a_guest_without_the_ready_mark_goes_active() {
    if !kvm_available("a_guest_without_the_ready_mark_goes_active") {
        return;
    }
    let (c, _r) = Cloud::start_compute();
    let api = c.api();
    let admin = api.admin_token().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let tiny = std::path::Path::new(tiny_guest::PATH);
    let kernel = api
        .upload_image(&admin, "tiny-kernel", "aki", tiny, json!({}))
        .await;
    let root = cloud_support::make_qcow2(dir.path(), "root.qcow2", "64M");
    let cmdline = format!("{}; echo up without a mark", tiny_guest::NO_READY_MARK);
    let stock = api
        .upload_image(
            &admin,
            "stock",
            "qcow2",
            &root,
            json!({"kernel_id": kernel, "os_command_line": cmdline}),
        )
        .await;
    let marked = api
        .upload_image(
            &admin,
            "marked",
            "qcow2",
            &root,
            json!({"kernel_id": kernel}),
        )
        .await;

    let t = Instant::now();
    let id = api
        .create_server(
            &admin,
            json!({"name": "stock", "flavorRef": "tiny-guest", "imageRef": stock}),
        )
        .await;
    let s = api.wait_status(&admin, &id, "ACTIVE", 20).await;
    let took = t.elapsed();
    eprintln!("create -> ACTIVE without a ready mark: {took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(s["OS-EXT-STS:power_state"], 1, "{s:#}");
    assert!(s["OS-SRV-USG:launched_at"].is_string(), "{s:#}");
    assert!(s.get("fault").is_none(), "{s:#}");
    // The guest really runs its commands, and really wrote no mark (the VMM saw code 2, the
    // guest's 64-bit entry, and no 123).
    let out = api.wait_console(&admin, &id, "up without a mark", 30).await;
    assert!(out.contains("ready mark skipped"), "{out}");
    assert!(!out.contains("unknown command"), "{out}");
    let codes = progress_codes(&vmm_info(&c, &id));
    assert!(codes.contains(&2) && !codes.contains(&123), "{codes:?}");

    // A guest that writes the mark: ACTIVE as well, and the mark's time is logged.
    let other = api
        .create_server(
            &admin,
            json!({"name": "marked", "flavorRef": "tiny-guest", "imageRef": marked}),
        )
        .await;
    api.wait_status(&admin, &other, "ACTIVE", 20).await;
    assert!(progress_codes(&vmm_info(&c, &other)).contains(&123));
    let logged = |sid: &str| {
        c.log()
            .lines()
            .any(|l| l.contains("wrote its ready mark") && l.contains(sid))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !logged(&other) {
        assert!(
            Instant::now() < deadline,
            "no ready mark logged:\n{}",
            c.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !logged(&id),
        "a ready mark logged for a guest that wrote none"
    );

    // Start and both reboots reach ACTIVE without the mark too.
    let steps: [(Value, &str); 4] = [
        (json!({"os-stop": null}), "SHUTOFF"),
        (json!({"os-start": null}), "ACTIVE"),
        (json!({"reboot": {"type": "HARD"}}), "ACTIVE"),
        (json!({"reboot": {"type": "SOFT"}}), "ACTIVE"),
    ];
    let mut pid = vmm_pids_with(&id);
    for (body, status) in steps {
        api.action(&admin, &id, body.clone()).await.expect(202);
        let s = api.wait_status(&admin, &id, status, 10).await;
        let now = vmm_pids_with(&id);
        if status == "ACTIVE" {
            assert_eq!(s["OS-EXT-STS:power_state"], 1, "{body}: {s:#}");
            assert_eq!(now.len(), 1, "{body}: VMMs {now:?}");
            assert_ne!(now, pid, "{body}: the same VMM");
            let codes = progress_codes(&vmm_info(&c, &id));
            assert!(!codes.contains(&123), "{body}: {codes:?}");
        } else {
            assert!(now.is_empty(), "{body}: VMMs {now:?}");
        }
        pid = now;
    }
    assert!(
        !logged(&id),
        "a ready mark logged for a guest that wrote none"
    );

    for sid in [&id, &other] {
        api.delete(&format!("/compute/v2.1/servers/{sid}"), &admin)
            .await
            .expect(204);
    }
    for sid in [&id, &other] {
        api.wait_gone(&admin, sid, 30).await;
        assert!(vmm_pids_with(sid).is_empty(), "VMM of {sid} still runs");
    }
}
