//! Identity v3 against a real `virgad` over HTTP: every endpoint the clients use, and each error
//! status (400, 401, 403, 404, 409, 413) in OpenStack's JSON shape.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod cloud_support;

use std::time::Duration;

use cloud_support::{ADMIN_PASSWORD, Cloud, Options};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn version_documents() {
    let cloud = Cloud::start();
    let api = cloud.api();
    let a = api
        .send(Method::GET, "/identity", None, None)
        .await
        .expect(300);
    let v = &a.body["versions"]["values"][0];
    assert_eq!(v["status"], "stable");
    assert_eq!(v["links"][0]["href"], format!("{}/identity/v3/", cloud.url));
    for path in ["/identity/v3", "/identity/v3/"] {
        let a = api.send(Method::GET, path, None, None).await.expect(200);
        assert_eq!(
            a.body["version"]["media-types"][0]["type"],
            "application/vnd.openstack.identity-v3+json"
        );
    }
}

#[tokio::test]
async fn password_tokens_in_every_form_and_their_failures() {
    let cloud = Cloud::start();
    let api = cloud.api();
    let a = api
        .token("admin", ADMIN_PASSWORD, Some("admin"))
        .await
        .expect(201);
    let token = a.header("x-subject-token").expect("X-Subject-Token");
    let t = &a.body["token"];
    assert_eq!(t["methods"], json!(["password"]));
    assert_eq!(t["user"]["name"], "admin");
    assert_eq!(
        t["user"]["domain"],
        json!({"id": "default", "name": "Default"})
    );
    assert_eq!(t["project"]["name"], "admin");
    let mut roles: Vec<_> = t["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].clone())
        .collect();
    roles.sort_by_key(|r| r.to_string());
    assert_eq!(roles, [json!("admin"), json!("member"), json!("reader")]);
    assert!(t["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(t["issued_at"].as_str().unwrap() < t["expires_at"].as_str().unwrap());
    assert_eq!(t["audit_ids"].as_array().unwrap().len(), 1);
    let types: Vec<_> = t["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["type"].clone())
        .collect();
    assert!(
        types.contains(&json!("identity")) && types.contains(&json!("image")),
        "{types:?}"
    );
    let image = t["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "image")
        .unwrap();
    assert!(image["endpoints"].as_array().unwrap().iter().any(|e| {
        e["interface"] == "public"
            && e["url"] == format!("{}/image", cloud.url)
            && e["region_id"] == "RegionOne"
    }));

    // By ids, without the catalog.
    let uid = t["user"]["id"].as_str().unwrap();
    let pid = t["project"]["id"].as_str().unwrap();
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"id": uid, "password": ADMIN_PASSWORD}}},
        "scope": {"project": {"id": pid}}}});
    let a = api
        .send(
            Method::POST,
            "/identity/v3/auth/tokens?nocatalog",
            None,
            Some(body),
        )
        .await
        .expect(201);
    assert!(a.body["token"].get("catalog").is_none());
    assert_eq!(a.body["token"]["project"]["id"], pid);

    // Unscoped: no project, roles or catalog.
    let a = api.token("admin", ADMIN_PASSWORD, None).await.expect(201);
    assert!(a.body["token"].get("project").is_none() && a.body["token"].get("roles").is_none());

    // Domain scope needs a role on the domain: admin has none there.
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"id": uid, "password": ADMIN_PASSWORD}}},
        "scope": {"domain": {"id": "default"}}}});
    api.send(Method::POST, "/identity/v3/auth/tokens", None, Some(body))
        .await
        .expect(401);

    api.token("admin", "wrong", Some("admin")).await.expect(401);
    api.token("nobody", "x", Some("admin")).await.expect(401);
    api.token("admin", ADMIN_PASSWORD, Some("no-such-project"))
        .await
        .expect(401);
    let raw = api
        .http
        .post(format!("{}/identity/v3/auth/tokens", cloud.url))
        .body("{not json");
    cloud_support::Api::answer(raw).await.expect(400);
    let body = json!({"auth": {"identity": {"methods": [], "password": {"user": {"id": uid, "password": "x"}}}}});
    api.send(Method::POST, "/identity/v3/auth/tokens", None, Some(body))
        .await
        .expect(400);
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"id": uid, "password": ADMIN_PASSWORD}}},
        "scope": {"system": {"all": true}}}});
    api.send(Method::POST, "/identity/v3/auth/tokens", None, Some(body))
        .await
        .expect(400);

    // A user without a role on a project cannot scope to it.
    let (_, _, _) = api.make_user(&token, "alice", &["member"]).await;
    api.token("alice", "alice-pw", Some("admin"))
        .await
        .expect(401);
}

#[tokio::test]
async fn validate_rescope_and_revoke() {
    let cloud = Cloud::start();
    let api = cloud.api();
    let admin = api.admin_token().await;
    let (_, _, bob) = api.make_user(&admin, "bob", &["member"]).await;

    // Validate (GET) and check (HEAD); a user may validate their own token.
    let v = cloud_support::Api::answer(
        api.http
            .get(format!("{}/identity/v3/auth/tokens", cloud.url))
            .header("X-Auth-Token", &bob)
            .header("X-Subject-Token", &bob),
    )
    .await
    .expect(200);
    assert_eq!(v.body["token"]["user"]["name"], "bob");
    let head = |subject: &str, caller: &str| {
        api.http
            .head(format!("{}/identity/v3/auth/tokens", cloud.url))
            .header("X-Auth-Token", caller.to_string())
            .header("X-Subject-Token", subject.to_string())
    };
    assert_eq!(
        cloud_support::Api::answer(head(&bob, &admin)).await.status,
        200
    );
    // Bob may not validate the admin's token; nobody validates garbage.
    cloud_support::Api::answer(
        api.http
            .get(format!("{}/identity/v3/auth/tokens", cloud.url))
            .header("X-Auth-Token", &bob)
            .header("X-Subject-Token", &admin),
    )
    .await
    .expect(403);
    cloud_support::Api::answer(
        api.http
            .get(format!("{}/identity/v3/auth/tokens", cloud.url))
            .header("X-Auth-Token", &admin)
            .header("X-Subject-Token", "garbage"),
    )
    .await
    .expect(404);

    // Rescope: an unscoped token becomes a project token that keeps its parent's audit id.
    let un = api.token("bob", "bob-pw", None).await.expect(201);
    let unscoped = un.header("x-subject-token").unwrap();
    let parent_audit = un.body["token"]["audit_ids"][0].clone();
    let body = json!({"auth": {"identity": {"methods": ["token"], "token": {"id": unscoped}},
        "scope": {"project": {"name": "bob", "domain": {"id": "default"}}}}});
    let r = api
        .send(
            Method::POST,
            "/identity/v3/auth/tokens",
            None,
            Some(body.clone()),
        )
        .await
        .expect(201);
    let scoped = r.header("x-subject-token").unwrap();
    assert_eq!(r.body["token"]["audit_ids"][1], parent_audit);
    assert_eq!(
        r.body["token"]["expires_at"],
        un.body["token"]["expires_at"]
    );
    api.get("/identity/v3/auth/projects", &scoped)
        .await
        .expect(200);

    // Revoking the parent revokes the rescoped child too.
    cloud_support::Api::answer(
        api.http
            .delete(format!("{}/identity/v3/auth/tokens", cloud.url))
            .header("X-Auth-Token", &unscoped)
            .header("X-Subject-Token", &unscoped),
    )
    .await
    .expect(204);
    let a = api
        .get("/identity/v3/auth/projects", &scoped)
        .await
        .expect(401);
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
    api.send(Method::POST, "/identity/v3/auth/tokens", None, Some(body))
        .await
        .expect(401);
    assert_eq!(
        cloud_support::Api::answer(head(&bob, &admin)).await.status,
        200,
        "other tokens live on"
    );

    // No token, garbage token: 401 with WWW-Authenticate.
    let a = api
        .send(Method::GET, "/identity/v3/projects", None, None)
        .await
        .expect(401);
    assert!(
        a.header("www-authenticate")
            .unwrap()
            .starts_with("Keystone")
    );
    api.get("/identity/v3/projects", "not-a-token")
        .await
        .expect(401);
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let cloud = Cloud::start_with(Options {
        extra_toml: "[token]\nexpiration = 1\n".into(),
        ..Default::default()
    });
    let api = cloud.api();
    let t = api.admin_token().await;
    api.get("/identity/v3/projects", &t).await.expect(200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let a = api.get("/identity/v3/projects", &t).await.expect(401);
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

#[tokio::test]
async fn projects_users_and_their_policy() {
    let cloud = Cloud::start();
    let api = cloud.api();
    let admin = api.admin_token().await;
    let p = api
        .post(
            "/identity/v3/projects",
            &admin,
            json!({"project": {"name": "demo", "domain_id": "default",
            "description": "Demo Project", "color": "blue"}}),
        )
        .await
        .expect(201);
    let pid = p.body["project"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        p.body["project"]["color"], "blue",
        "extra attributes are kept"
    );
    assert_eq!(
        p.body["project"]["links"]["self"],
        format!("{}/identity/v3/projects/{pid}", cloud.url)
    );
    api.post(
        "/identity/v3/projects",
        &admin,
        json!({"project": {"name": "demo"}}),
    )
    .await
    .expect(409);
    api.post(
        "/identity/v3/projects",
        &admin,
        json!({"project": {"name": ""}}),
    )
    .await
    .expect(400);
    api.post(
        "/identity/v3/projects",
        &admin,
        json!({"project": {"name": "x", "domain_id": "nope"}}),
    )
    .await
    .expect(400);
    api.post(
        "/identity/v3/projects",
        &admin,
        json!({"project": {"name": 7}}),
    )
    .await
    .expect(400);
    let l = api
        .get("/identity/v3/projects?name=demo", &admin)
        .await
        .expect(200);
    assert_eq!(l.body["projects"].as_array().unwrap().len(), 1);
    assert_eq!(
        api.get("/identity/v3/projects", &admin).await.body["projects"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    api.get("/identity/v3/projects/nope", &admin)
        .await
        .expect(404);
    let a = api
        .patch(
            &format!("/identity/v3/projects/{pid}"),
            &admin,
            json!({"project": {"description": "changed"}}),
        )
        .await
        .expect(200);
    assert_eq!(a.body["project"]["description"], "changed");

    let u = api
        .post(
            "/identity/v3/users",
            &admin,
            json!({"user": {"name": "carol", "password": "pw1",
            "email": "carol@example.invalid", "default_project_id": pid}}),
        )
        .await
        .expect(201);
    let uid = u.body["user"]["id"].as_str().unwrap().to_string();
    assert!(
        u.body["user"].get("password").is_none(),
        "no password in answers"
    );
    assert_eq!(u.body["user"]["email"], "carol@example.invalid");
    api.post(
        "/identity/v3/users",
        &admin,
        json!({"user": {"name": "carol"}}),
    )
    .await
    .expect(409);
    assert_eq!(
        api.get("/identity/v3/users?name=carol", &admin).await.body["users"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Carol is a member of demo; with no scope she lands in her default project.
    let member = api.get("/identity/v3/roles?name=member", &admin).await.body["roles"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let grant = format!("/identity/v3/projects/{pid}/users/{uid}/roles/{member}");
    api.put(&grant, &admin).await.expect(204);
    let t = api.token("carol", "pw1", None).await.expect(201);
    assert_eq!(t.body["token"]["project"]["id"], pid);
    let carol = t.header("x-subject-token").unwrap();

    // Policy: carol is no admin, but may read herself and her project.
    for path in [
        "/identity/v3/projects",
        "/identity/v3/users",
        "/identity/v3/roles",
        "/identity/v3/services",
        "/identity/v3/endpoints",
        "/identity/v3/domains",
        "/identity/v3/regions",
    ] {
        api.get(path, &carol).await.expect(403);
    }
    api.post(
        "/identity/v3/projects",
        &carol,
        json!({"project": {"name": "mine"}}),
    )
    .await
    .expect(403);
    api.get(&format!("/identity/v3/users/{uid}"), &carol)
        .await
        .expect(200);
    api.get(&format!("/identity/v3/projects/{pid}"), &carol)
        .await
        .expect(200);
    let mine = api
        .get(&format!("/identity/v3/users/{uid}/projects"), &carol)
        .await
        .expect(200);
    assert_eq!(mine.body["projects"][0]["id"], pid);

    // Changing her own password revokes her tokens.
    let body = json!({"user": {"original_password": "wrong", "password": "pw2"}});
    api.post(&format!("/identity/v3/users/{uid}/password"), &carol, body)
        .await
        .expect(401);
    let body = json!({"user": {"original_password": "pw1", "password": "pw2"}});
    api.post(&format!("/identity/v3/users/{uid}/password"), &carol, body)
        .await
        .expect(204);
    api.get(&format!("/identity/v3/users/{uid}"), &carol)
        .await
        .expect(401);
    let carol = api
        .token("carol", "pw2", Some("demo"))
        .await
        .expect(201)
        .header("x-subject-token")
        .unwrap();

    // Revoking her role revokes her tokens on that project; disabling the project refuses it.
    api.delete(&grant, &admin).await.expect(204);
    api.delete(&grant, &admin).await.expect(404);
    assert_eq!(
        api.send(Method::HEAD, &grant, Some(&admin), None)
            .await
            .status,
        404
    );
    api.get(&format!("/identity/v3/users/{uid}"), &carol)
        .await
        .expect(401);
    api.token("carol", "pw2", Some("demo")).await.expect(401);
    api.put(&grant, &admin).await.expect(204);
    api.patch(
        &format!("/identity/v3/projects/{pid}"),
        &admin,
        json!({"project": {"enabled": false}}),
    )
    .await
    .expect(200);
    api.token("carol", "pw2", Some("demo")).await.expect(401);

    // Disabled users cannot authenticate; deleted ones are gone.
    api.patch(
        &format!("/identity/v3/users/{uid}"),
        &admin,
        json!({"user": {"enabled": false}}),
    )
    .await
    .expect(200);
    api.token("carol", "pw2", None).await.expect(401);
    api.delete(&format!("/identity/v3/users/{uid}"), &admin)
        .await
        .expect(204);
    api.get(&format!("/identity/v3/users/{uid}"), &admin)
        .await
        .expect(404);
    api.delete(&format!("/identity/v3/projects/{pid}"), &admin)
        .await
        .expect(204);
    api.delete(&format!("/identity/v3/projects/{pid}"), &admin)
        .await
        .expect(404);
}

#[tokio::test]
async fn roles_grants_and_role_assignments() {
    let cloud = Cloud::start();
    let api = cloud.api();
    let admin = api.admin_token().await;
    let r = api
        .post(
            "/identity/v3/roles",
            &admin,
            json!({"role": {"name": "user"}}),
        )
        .await
        .expect(201);
    let rid = r.body["role"]["id"].as_str().unwrap().to_string();
    api.post(
        "/identity/v3/roles",
        &admin,
        json!({"role": {"name": "user"}}),
    )
    .await
    .expect(409);
    api.get(&format!("/identity/v3/roles/{rid}"), &admin)
        .await
        .expect(200);
    let (pid, uid, _) = api.make_user(&admin, "dave", &["user"]).await;

    let list = api
        .get(
            &format!("/identity/v3/projects/{pid}/users/{uid}/roles"),
            &admin,
        )
        .await
        .expect(200);
    assert_eq!(list.body["roles"][0]["name"], "user");
    api.send(
        Method::GET,
        &format!("/identity/v3/projects/{pid}/users/{uid}/roles/{rid}"),
        Some(&admin),
        None,
    )
    .await
    .expect(204);
    api.put(
        &format!("/identity/v3/projects/{pid}/users/{uid}/roles/nope"),
        &admin,
    )
    .await
    .expect(404);
    api.put(
        &format!("/identity/v3/projects/nope/users/{uid}/roles/{rid}"),
        &admin,
    )
    .await
    .expect(404);

    let ra = api
        .get(
            &format!("/identity/v3/role_assignments?user.id={uid}&include_names"),
            &admin,
        )
        .await
        .expect(200);
    let a = &ra.body["role_assignments"][0];
    assert_eq!(a["role"]["name"], "user");
    assert_eq!(a["scope"]["project"]["id"], pid);
    assert_eq!(a["user"]["name"], "dave");
    let admin_pid = api
        .get("/identity/v3/projects?name=admin", &admin)
        .await
        .body["projects"][0]["id"]
        .clone();
    let eff = api
        .get(
            &format!(
                "/identity/v3/role_assignments?scope.project.id={}&effective",
                admin_pid.as_str().unwrap()
            ),
            &admin,
        )
        .await
        .expect(200);
    assert_eq!(
        eff.body["role_assignments"].as_array().unwrap().len(),
        3,
        "admin implies member and reader"
    );

    // Domain grants and domain-scoped tokens.
    api.put(
        &format!("/identity/v3/domains/default/users/{uid}/roles/{rid}"),
        &admin,
    )
    .await
    .expect(204);
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"id": uid, "password": "dave-pw"}}},
        "scope": {"domain": {"name": "Default"}}}});
    let t = api
        .send(Method::POST, "/identity/v3/auth/tokens", None, Some(body))
        .await
        .expect(201);
    assert_eq!(t.body["token"]["domain"]["id"], "default");

    api.patch(
        &format!("/identity/v3/roles/{rid}"),
        &admin,
        json!({"role": {"description": "d"}}),
    )
    .await
    .expect(200);
    api.delete(&format!("/identity/v3/roles/{rid}"), &admin)
        .await
        .expect(204);
    let ra = api
        .get(
            &format!("/identity/v3/role_assignments?user.id={uid}"),
            &admin,
        )
        .await
        .expect(200);
    assert!(ra.body["role_assignments"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn domains_regions_services_endpoints() {
    let cloud = Cloud::start();
    let api = cloud.api();
    let admin = api.admin_token().await;
    let d = api
        .post(
            "/identity/v3/domains",
            &admin,
            json!({"domain": {"name": "other"}}),
        )
        .await
        .expect(201);
    let did = d.body["domain"]["id"].as_str().unwrap().to_string();
    api.post(
        "/identity/v3/domains",
        &admin,
        json!({"domain": {"name": "other"}}),
    )
    .await
    .expect(409);
    assert_eq!(
        api.get("/identity/v3/domains?name=Default", &admin)
            .await
            .body["domains"][0]["id"],
        "default"
    );
    api.delete(&format!("/identity/v3/domains/{did}"), &admin)
        .await
        .expect(403);
    api.patch(
        &format!("/identity/v3/domains/{did}"),
        &admin,
        json!({"domain": {"enabled": false}}),
    )
    .await
    .expect(200);
    api.delete(&format!("/identity/v3/domains/{did}"), &admin)
        .await
        .expect(204);
    api.get(&format!("/identity/v3/domains/{did}"), &admin)
        .await
        .expect(404);

    api.post(
        "/identity/v3/regions",
        &admin,
        json!({"region": {"id": "RegionTwo", "description": "2"}}),
    )
    .await
    .expect(201);
    api.post(
        "/identity/v3/regions",
        &admin,
        json!({"region": {"id": "RegionTwo"}}),
    )
    .await
    .expect(409);
    api.send(
        Method::PUT,
        "/identity/v3/regions/RegionThree",
        Some(&admin),
        Some(json!({"region": {"parent_region_id": "RegionTwo"}})),
    )
    .await
    .expect(201);
    let kids = api
        .get("/identity/v3/regions?parent_region_id=RegionTwo", &admin)
        .await
        .expect(200);
    assert_eq!(kids.body["regions"][0]["id"], "RegionThree");
    api.delete("/identity/v3/regions/RegionTwo", &admin)
        .await
        .expect(409);

    let s = api
        .post(
            "/identity/v3/services",
            &admin,
            json!({"service": {"type": "compute", "name": "nova", "description": "c"}}),
        )
        .await
        .expect(201);
    let sid = s.body["service"]["id"].as_str().unwrap().to_string();
    api.post(
        "/identity/v3/services",
        &admin,
        json!({"service": {"name": "typeless"}}),
    )
    .await
    .expect(400);
    assert_eq!(
        api.get("/identity/v3/services?type=compute", &admin)
            .await
            .body["services"][0]["name"],
        "nova"
    );
    assert_eq!(
        api.get("/identity/v3/services?name=nova", &admin)
            .await
            .body["services"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let ep = json!({"endpoint": {"service_id": sid, "interface": "public", "url": "http://127.0.0.1:1/compute", "region_id": "RegionTwo"}});
    let e = api
        .post("/identity/v3/endpoints", &admin, ep)
        .await
        .expect(201);
    let eid = e.body["endpoint"]["id"].as_str().unwrap().to_string();
    assert_eq!(e.body["endpoint"]["region"], "RegionTwo");
    for bad in [
        json!({"endpoint": {"service_id": sid, "interface": "sideways", "url": "http://x"}}),
        json!({"endpoint": {"service_id": sid, "interface": "public", "url": "ftp://x"}}),
        json!({"endpoint": {"service_id": "nope", "interface": "public", "url": "http://x"}}),
        json!({"endpoint": {"service_id": sid, "interface": "public", "url": "http://x", "region_id": "Nowhere"}}),
    ] {
        api.post("/identity/v3/endpoints", &admin, bad)
            .await
            .expect(400);
    }
    let l = api
        .get(
            &format!("/identity/v3/endpoints?service_id={sid}&interface=public"),
            &admin,
        )
        .await
        .expect(200);
    assert_eq!(l.body["endpoints"].as_array().unwrap().len(), 1);
    api.patch(
        &format!("/identity/v3/endpoints/{eid}"),
        &admin,
        json!({"endpoint": {"url": "http://127.0.0.1:2/compute"}}),
    )
    .await
    .expect(200);
    // The new service shows in new tokens' catalogs.
    let t = api
        .token("admin", ADMIN_PASSWORD, Some("admin"))
        .await
        .expect(201);
    assert!(
        t.body["token"]["catalog"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["type"] == "compute")
    );
    api.delete(&format!("/identity/v3/services/{sid}"), &admin)
        .await
        .expect(204);
    api.get(&format!("/identity/v3/endpoints/{eid}"), &admin)
        .await
        .expect(404);
}

#[tokio::test]
async fn generic_errors_unknown_paths_methods_and_large_bodies() {
    let cloud = Cloud::start();
    let api = cloud.api();
    let admin = api.admin_token().await;
    api.get("/identity/v3/nothing-here", &admin)
        .await
        .expect(404);
    api.get("/nothing", &admin).await.expect(404);
    api.put("/identity/v3/projects", &admin).await.expect(405);
    // Bodies over server.max_request_body (1 MiB by default) are refused with 413.
    let big = "x".repeat(2 << 20);
    let a = api
        .post(
            "/identity/v3/projects",
            &admin,
            json!({"project": {"name": "p", "description": big}}),
        )
        .await;
    a.expect(413);
}

#[tokio::test]
async fn a_second_host_checks_tokens_and_sees_revocations() {
    let a = Cloud::start_with(Options {
        extra_toml: "[token]\nrevocation_poll_ms = 100\n".into(),
        ..Default::default()
    });
    let b = Cloud::start_with(Options {
        extra_toml: "[token]\nrevocation_poll_ms = 100\n".into(),
        share: Some(a.data_dir()),
        ..Default::default()
    });
    let (api_a, api_b) = (a.api(), b.api());
    let admin = api_a.admin_token().await;
    let other = api_a.admin_token().await;
    // Host B opens host A's token with the shared key; no session state is involved.
    api_b.get("/identity/v3/projects", &admin).await.expect(200);
    cloud_support::Api::answer(
        api_a
            .http
            .delete(format!("{}/identity/v3/auth/tokens", a.url))
            .header("X-Auth-Token", &other)
            .header("X-Subject-Token", &admin),
    )
    .await
    .expect(204);
    api_a.get("/identity/v3/projects", &admin).await.expect(401);
    // B learns of it within a poll interval or two.
    let mut refused = false;
    for _ in 0..50 {
        if api_b.get("/identity/v3/projects", &admin).await.status == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "host B never saw the revocation");
    api_b.get("/identity/v3/projects", &other).await.expect(200);
}

#[tokio::test]
async fn sigterm_stops_the_daemon_cleanly() {
    let cloud = Cloud::start();
    cloud.api().admin_token().await;
    let status = cloud.terminate();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn the_remaining_show_update_and_delete_endpoints() {
    let cloud = Cloud::start();
    let api = cloud.api();
    let admin = api.admin_token().await;
    let cat = api
        .get("/identity/v3/auth/catalog", &admin)
        .await
        .expect(200);
    assert_eq!(cat.body["catalog"].as_array().unwrap().len(), 2);
    let doms = api
        .get("/identity/v3/auth/domains", &admin)
        .await
        .expect(200);
    assert!(
        doms.body["domains"].as_array().unwrap().is_empty(),
        "admin has no domain role"
    );
    let d = api
        .get("/identity/v3/domains/default", &admin)
        .await
        .expect(200);
    assert_eq!(d.body["domain"]["name"], "Default");

    let r = api
        .get("/identity/v3/regions/RegionOne", &admin)
        .await
        .expect(200);
    assert_eq!(r.body["region"]["id"], "RegionOne");
    let r = api
        .patch(
            "/identity/v3/regions/RegionOne",
            &admin,
            json!({"region": {"description": "first"}}),
        )
        .await
        .expect(200);
    assert_eq!(r.body["region"]["description"], "first");
    api.post(
        "/identity/v3/regions",
        &admin,
        json!({"region": {"id": "Spare"}}),
    )
    .await
    .expect(201);
    api.delete("/identity/v3/regions/Spare", &admin)
        .await
        .expect(204);
    api.get("/identity/v3/regions/Spare", &admin)
        .await
        .expect(404);

    let services = api
        .get("/identity/v3/services?type=image", &admin)
        .await
        .expect(200);
    let sid = services.body["services"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let s = api
        .get(&format!("/identity/v3/services/{sid}"), &admin)
        .await
        .expect(200);
    assert_eq!(s.body["service"]["name"], "glance");
    let s = api
        .patch(
            &format!("/identity/v3/services/{sid}"),
            &admin,
            json!({"service": {"description": "images"}}),
        )
        .await
        .expect(200);
    assert_eq!(s.body["service"]["description"], "images");
    let eps = api
        .get(
            &format!("/identity/v3/endpoints?service_id={sid}&interface=admin"),
            &admin,
        )
        .await
        .expect(200);
    let eid = eps.body["endpoints"][0]["id"].as_str().unwrap().to_string();
    let e = api
        .get(&format!("/identity/v3/endpoints/{eid}"), &admin)
        .await
        .expect(200);
    assert_eq!(e.body["endpoint"]["interface"], "admin");
    api.delete(&format!("/identity/v3/endpoints/{eid}"), &admin)
        .await
        .expect(204);
    let left = api
        .get(&format!("/identity/v3/endpoints?service_id={sid}"), &admin)
        .await
        .expect(200);
    assert_eq!(left.body["endpoints"].as_array().unwrap().len(), 2);

    let users = api.get("/identity/v3/users", &admin).await.expect(200);
    assert_eq!(users.body["users"][0]["name"], "admin");
    let roles = api.get("/identity/v3/roles", &admin).await.expect(200);
    assert_eq!(roles.body["roles"].as_array().unwrap().len(), 3);
}
