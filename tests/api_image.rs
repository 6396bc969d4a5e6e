//! Image v2 against a real `virgad` over HTTP: create, upload into the images store (real
//! qcow2 files made by `qemu-img`), download, list with filters and paging, both JSON-patch
//! dialects, tags, members and visibility, and each error status.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod cloud_support;

use cloud_support::{Api, Cloud, Options, digest, make_qcow2};
use reqwest::Method;
use serde_json::{Value, json};

const PATCH21: &str = "application/openstack-images-v2.1-json-patch";
const PATCH20: &str = "application/openstack-images-v2.0-json-patch";

async fn create(api: &Api, token: &str, body: Value) -> String {
    let a = api.post("/image/v2/images", token, body).await.expect(201);
    a.body["id"].as_str().expect("image id").to_string()
}

async fn upload(api: &Api, token: &str, id: &str, data: Vec<u8>) -> cloud_support::Answer {
    Api::answer(
        api.http
            .put(format!("{}/image/v2/images/{id}/file", api.base))
            .header("X-Auth-Token", token)
            .header("Content-Type", "application/octet-stream")
            .body(data),
    )
    .await
}

async fn patch(api: &Api, token: &str, id: &str, ct: &str, body: Value) -> cloud_support::Answer {
    Api::answer(
        api.http
            .patch(format!("{}/image/v2/images/{id}", api.base))
            .header("X-Auth-Token", token)
            .header("Content-Type", ct)
            .body(body.to_string()),
    )
    .await
}

#[tokio::test]
async fn versions_and_schemas() {
    let cloud = Cloud::start();
    let api = cloud.api();
    let a = api
        .send(Method::GET, "/image", None, None)
        .await
        .expect(300);
    let current = a.body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["status"] == "CURRENT")
        .unwrap();
    assert_eq!(
        current["links"][0]["href"],
        format!("{}/image/v2/", cloud.url)
    );
    let t = api.admin_token().await;
    let s = api.get("/image/v2/schemas/image", &t).await.expect(200);
    assert_eq!(s.body["name"], "image");
    assert_eq!(s.body["additionalProperties"]["type"], "string");
    assert_eq!(
        api.get("/image/v2/schemas/images", &t)
            .await
            .expect(200)
            .body["name"],
        "images"
    );
    assert_eq!(
        api.get("/image/v2/schemas/member", &t)
            .await
            .expect(200)
            .body["name"],
        "member"
    );
    api.send(Method::GET, "/image/v2/images", None, None)
        .await
        .expect(401);
}

#[tokio::test]
async fn create_upload_download_delete_a_real_qcow2() {
    let cloud = Cloud::start();
    let api = cloud.api();
    let t = api.admin_token().await;
    let file = make_qcow2(cloud.dir.path(), "disk.qcow2", "16M");
    let bytes = std::fs::read(&file).unwrap();

    let body = json!({"name": "cirros", "disk_format": "qcow2", "container_format": "bare",
        "visibility": "public", "min_ram": 64, "tags": ["b", "a"], "hypervisor_type": "virga"});
    let created = api.post("/image/v2/images", &t, body).await.expect(201);
    let img = &created.body;
    let id = img["id"].as_str().unwrap().to_string();
    assert_eq!(img["status"], "queued");
    assert_eq!(img["hypervisor_type"], "virga", "extra properties are kept");
    assert_eq!(img["tags"], json!(["a", "b"]));
    assert_eq!(img["size"], Value::Null);
    assert_eq!(img["self"], format!("/v2/images/{id}"));
    assert_eq!(img["file"], format!("/v2/images/{id}/file"));
    assert!(img["created_at"].as_str().unwrap().ends_with('Z'));

    // Nothing to download yet.
    assert_eq!(
        api.get(&format!("/image/v2/images/{id}/file"), &t)
            .await
            .status,
        204
    );
    upload(&api, &t, &id, bytes.clone()).await.expect(204);
    let shown = api
        .get(&format!("/image/v2/images/{id}"), &t)
        .await
        .expect(200)
        .body;
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["size"], json!(bytes.len()));
    assert_eq!(shown["virtual_size"], json!(16 << 20));
    assert_eq!(shown["checksum"], digest("md5sum", &file));
    assert_eq!(shown["os_hash_algo"], "sha512");
    assert_eq!(shown["os_hash_value"], digest("sha512sum", &file));
    // A second upload is a conflict.
    upload(&api, &t, &id, bytes.clone()).await.expect(409);

    let d = api
        .get(&format!("/image/v2/images/{id}/file"), &t)
        .await
        .expect(200);
    assert_eq!(d.bytes, bytes);
    assert_eq!(d.header("content-md5").unwrap(), digest("md5sum", &file));
    assert_eq!(
        d.header("content-type").unwrap(),
        "application/octet-stream"
    );

    // Protected images cannot be deleted until unprotected.
    patch(
        &api,
        &t,
        &id,
        PATCH21,
        json!([{"op": "replace", "path": "/protected", "value": true}]),
    )
    .await
    .expect(200);
    api.delete(&format!("/image/v2/images/{id}"), &t)
        .await
        .expect(403);
    patch(
        &api,
        &t,
        &id,
        PATCH21,
        json!([{"op": "replace", "path": "/protected", "value": false}]),
    )
    .await
    .expect(200);
    api.delete(&format!("/image/v2/images/{id}"), &t)
        .await
        .expect(204);
    api.get(&format!("/image/v2/images/{id}"), &t)
        .await
        .expect(404);
    api.delete(&format!("/image/v2/images/{id}"), &t)
        .await
        .expect(404);
    let leftovers = std::fs::read_dir(cloud.data_dir().join("images").join("images"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "the data went with the image");
}

#[tokio::test]
async fn bad_uploads_kill_the_image_or_are_refused_up_front() {
    let cloud = Cloud::start_with(Options {
        extra_toml: "[image]\nmax_image_bytes = 1048576\n".into(),
        ..Default::default()
    });
    let api = cloud.api();
    let t = api.admin_token().await;
    let qcow = std::fs::read(make_qcow2(cloud.dir.path(), "q.qcow2", "8M")).unwrap();

    // No disk format yet: 400, image stays queued.
    let id = create(&api, &t, json!({"name": "noformat"})).await;
    upload(&api, &t, &id, qcow.clone()).await.expect(400);
    assert_eq!(
        api.get(&format!("/image/v2/images/{id}"), &t).await.body["status"],
        "queued"
    );

    // A qcow2 claimed as raw is refused (a guest could otherwise read host files through it).
    let id = create(
        &api,
        &t,
        json!({"name": "liar", "disk_format": "raw", "container_format": "bare"}),
    )
    .await;
    let a = upload(&api, &t, &id, qcow.clone()).await.expect(400);
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("qcow2"),
        "{}",
        a.body
    );
    assert_eq!(
        api.get(&format!("/image/v2/images/{id}"), &t).await.body["status"],
        "killed"
    );
    upload(&api, &t, &id, qcow.clone()).await.expect(409);

    // Past the size cap while streaming (no Content-Length): 413 and killed.
    let id = create(
        &api,
        &t,
        json!({"name": "big", "disk_format": "raw", "container_format": "bare"}),
    )
    .await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..3).map(|_| Ok(vec![0u8; 512 * 1024])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let a = Api::answer(
        api.http
            .put(format!("{}/image/v2/images/{id}/file", api.base))
            .header("X-Auth-Token", &t)
            .header("Content-Type", "application/octet-stream")
            .body(body),
    )
    .await;
    a.expect(413);
    assert_eq!(
        api.get(&format!("/image/v2/images/{id}"), &t).await.body["status"],
        "killed"
    );

    // Declared too large: refused before reading, still queued.
    let id = create(
        &api,
        &t,
        json!({"name": "big2", "disk_format": "raw", "container_format": "bare"}),
    )
    .await;
    upload(&api, &t, &id, vec![0u8; 2 << 20]).await.expect(413);
    assert_eq!(
        api.get(&format!("/image/v2/images/{id}"), &t).await.body["status"],
        "queued"
    );

    // Wrong media type.
    let a = Api::answer(
        api.http
            .put(format!("{}/image/v2/images/{id}/file", api.base))
            .header("X-Auth-Token", &t)
            .header("Content-Type", "application/json")
            .body("{}"),
    )
    .await;
    a.expect(415);
    upload(&api, &t, "00000000-0000-0000-0000-000000000000", vec![1])
        .await
        .expect(404);
    let leftovers = std::fs::read_dir(cloud.data_dir().join("images").join("tmp"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "failed uploads leave no temporary files");
}

#[tokio::test]
async fn create_and_update_validation() {
    let cloud = Cloud::start();
    let api = cloud.api();
    let t = api.admin_token().await;
    for (body, status) in [
        (json!({"name": "x", "status": "active"}), 403),
        (json!({"name": "x", "checksum": "0"}), 403),
        (json!({"name": "x", "deleted": true}), 403),
        (json!({"name": "x", "disk_format": "exe"}), 400),
        (json!({"name": "x", "container_format": "zip"}), 400),
        (json!({"name": "x", "min_ram": -1}), 400),
        (json!({"name": "x", "visibility": "everyone"}), 400),
        (json!({"name": "x", "extra": 5}), 400),
        (json!({"name": "x", "id": "not-a-uuid"}), 400),
        (json!({"name": "x", "tags": "notalist"}), 400),
        (json!(["not", "an", "object"]), 400),
    ] {
        api.post("/image/v2/images", &t, body.clone())
            .await
            .expect(status);
    }
    let raw = api
        .http
        .post(format!("{}/image/v2/images", cloud.url))
        .header("X-Auth-Token", &t)
        .body("{broken");
    Api::answer(raw).await.expect(400);
    let fixed = "8d8c3d56-5b5a-4f39-a5b8-2f3c7a8f6a11";
    create(&api, &t, json!({"id": fixed, "name": "fixed"})).await;
    api.post("/image/v2/images", &t, json!({"id": fixed}))
        .await
        .expect(409);

    // Both patch dialects, JSON-pointer escapes, and their errors.
    let a = patch(
        &api,
        &t,
        fixed,
        PATCH21,
        json!([
            {"op": "replace", "path": "/name", "value": "renamed"},
            {"op": "add", "path": "/os~1distro", "value": "debian"},
            {"op": "replace", "path": "/tags", "value": ["x"]},
            {"op": "replace", "path": "/min_disk", "value": 2}
        ]),
    )
    .await
    .expect(200);
    assert_eq!(a.body["name"], "renamed");
    assert_eq!(a.body["os/distro"], "debian");
    assert_eq!(a.body["tags"], json!(["x"]));
    assert_eq!(a.body["min_disk"], 2);
    let a = patch(
        &api,
        &t,
        fixed,
        PATCH20,
        json!([{"replace": "/name", "value": "old-dialect"}, {"remove": "/os~1distro"}]),
    )
    .await
    .expect(200);
    assert_eq!(a.body["name"], "old-dialect");
    assert!(a.body.get("os/distro").is_none());
    patch(&api, &t, fixed, "application/json", json!([]))
        .await
        .expect(415);
    patch(
        &api,
        &t,
        fixed,
        PATCH21,
        json!([{"op": "replace", "path": "/missing", "value": "v"}]),
    )
    .await
    .expect(409);
    patch(
        &api,
        &t,
        fixed,
        PATCH21,
        json!([{"op": "replace", "path": "/size", "value": 1}]),
    )
    .await
    .expect(403);
    patch(&api, &t, fixed, PATCH21, json!({"op": "replace"}))
        .await
        .expect(400);
    patch(
        &api,
        &t,
        "00000000-0000-0000-0000-000000000000",
        PATCH21,
        json!([]),
    )
    .await
    .expect(404);

    // Tags one at a time.
    api.put(&format!("/image/v2/images/{fixed}/tags/new"), &t)
        .await
        .expect(204);
    let tags = api.get(&format!("/image/v2/images/{fixed}"), &t).await.body["tags"].clone();
    assert_eq!(tags, json!(["new", "x"]));
    api.delete(&format!("/image/v2/images/{fixed}/tags/x"), &t)
        .await
        .expect(204);
    api.delete(&format!("/image/v2/images/{fixed}/tags/x"), &t)
        .await
        .expect(404);
    let long = "t".repeat(256);
    api.put(&format!("/image/v2/images/{fixed}/tags/{long}"), &t)
        .await
        .expect(400);
}

#[tokio::test]
async fn list_filters_sorting_and_paging() {
    let cloud = Cloud::start();
    let api = cloud.api();
    let t = api.admin_token().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let df = if i % 2 == 0 { "raw" } else { "qcow2" };
        let tags = if i < 3 { json!(["low"]) } else { json!([]) };
        ids.push(create(&api, &t, json!({"name": format!("img{i}"), "disk_format": df, "container_format": "bare", "tags": tags})).await);
    }
    // Paging by following `next` links (relative to the endpoint, as glance writes them).
    let mut seen = Vec::new();
    let mut path = "/image/v2/images?limit=3&sort_key=name&sort_dir=asc".to_string();
    loop {
        let page = api.get(&path, &t).await.expect(200).body;
        assert_eq!(page["first"], "/v2/images");
        for img in page["images"].as_array().unwrap() {
            seen.push(img["name"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(n) => path = format!("/image{n}"),
            None => break,
        }
    }
    let want: Vec<String> = (0..7).map(|i| format!("img{i}")).collect();
    assert_eq!(seen, want);

    assert_eq!(
        api.image_count("/image/v2/images?disk_format=qcow2", &t)
            .await,
        3
    );
    assert_eq!(api.image_count("/image/v2/images?tag=low", &t).await, 3);
    assert_eq!(api.image_count("/image/v2/images?name=img4", &t).await, 1);
    assert_eq!(
        api.image_count("/image/v2/images?status=queued&limit=100", &t)
            .await,
        7
    );
    let desc = api
        .get("/image/v2/images?sort=name:desc&limit=1", &t)
        .await
        .expect(200)
        .body;
    assert_eq!(desc["images"][0]["name"], "img6");
    api.get("/image/v2/images?limit=-1", &t).await.expect(400);
    api.get("/image/v2/images?sort_key=color", &t)
        .await
        .expect(400);
    api.get("/image/v2/images?sort_dir=up", &t)
        .await
        .expect(400);
    api.get("/image/v2/images?visibility=everyone", &t)
        .await
        .expect(400);
    api.get(
        "/image/v2/images?marker=00000000-0000-0000-0000-000000000000",
        &t,
    )
    .await
    .expect(400);
}

#[tokio::test]
async fn visibility_membership_and_policy() {
    let cloud = Cloud::start();
    let api = cloud.api();
    let admin = api.admin_token().await;
    let (demo_pid, _, demo) = api.make_user(&admin, "demo", &["member"]).await;
    let (_, _, reader) = api.make_user(&admin, "viewer", &["reader"]).await;
    let (other_pid, _, other) = api.make_user(&admin, "other", &["member"]).await;

    let public = create(&api, &admin, json!({"name": "pub", "visibility": "public"})).await;
    let private = create(
        &api,
        &admin,
        json!({"name": "priv", "visibility": "private"}),
    )
    .await;
    let names = |b: Value| -> Vec<String> {
        b["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect()
    };
    // Demo sees the public image, not the admin's private one (404, not 403: no leak).
    assert_eq!(
        names(api.get("/image/v2/images", &demo).await.expect(200).body),
        ["pub"]
    );
    api.get(&format!("/image/v2/images/{public}"), &demo)
        .await
        .expect(200);
    api.get(&format!("/image/v2/images/{private}"), &demo)
        .await
        .expect(404);
    api.get(&format!("/image/v2/images/{private}/file"), &demo)
        .await
        .expect(404);
    // ...and cannot change the public one.
    patch(
        &api,
        &demo,
        &public,
        PATCH21,
        json!([{"op": "replace", "path": "/name", "value": "mine"}]),
    )
    .await
    .expect(403);
    api.delete(&format!("/image/v2/images/{public}"), &demo)
        .await
        .expect(403);

    // Members create in their project; only admins publicize; readers only read.
    let shared = create(
        &api,
        &demo,
        json!({"name": "shared-one", "visibility": "shared"}),
    )
    .await;
    let own = api
        .get(&format!("/image/v2/images/{shared}"), &demo)
        .await
        .body;
    assert_eq!(own["owner"], demo_pid);
    api.post(
        "/image/v2/images",
        &demo,
        json!({"name": "p", "visibility": "public"}),
    )
    .await
    .expect(403);
    patch(
        &api,
        &demo,
        &shared,
        PATCH21,
        json!([{"op": "replace", "path": "/visibility", "value": "public"}]),
    )
    .await
    .expect(403);
    api.post(
        "/image/v2/images",
        &demo,
        json!({"name": "x", "owner": other_pid}),
    )
    .await
    .expect(403);
    api.post("/image/v2/images", &reader, json!({"name": "r"}))
        .await
        .expect(403);
    assert!(
        names(api.get("/image/v2/images", &reader).await.expect(200).body)
            .contains(&"pub".to_string())
    );

    // Sharing: other sees the image once a member; in lists once accepted.
    api.get(&format!("/image/v2/images/{shared}"), &other)
        .await
        .expect(404);
    let m = api
        .post(
            &format!("/image/v2/images/{shared}/members"),
            &demo,
            json!({"member": other_pid}),
        )
        .await
        .expect(200);
    assert_eq!(m.body["status"], "pending");
    api.post(
        &format!("/image/v2/images/{shared}/members"),
        &demo,
        json!({"member": other_pid}),
    )
    .await
    .expect(409);
    api.get(&format!("/image/v2/images/{shared}"), &other)
        .await
        .expect(200);
    assert!(
        !names(api.get("/image/v2/images", &other).await.body).contains(&"shared-one".to_string())
    );
    let member_path = format!("/image/v2/images/{shared}/members/{other_pid}");
    api.send(
        Method::PUT,
        &member_path,
        Some(&demo),
        Some(json!({"status": "accepted"})),
    )
    .await
    .expect(403);
    api.send(
        Method::PUT,
        &member_path,
        Some(&other),
        Some(json!({"status": "maybe"})),
    )
    .await
    .expect(400);
    api.send(
        Method::PUT,
        &member_path,
        Some(&other),
        Some(json!({"status": "accepted"})),
    )
    .await
    .expect(200);
    assert!(
        names(api.get("/image/v2/images", &other).await.body).contains(&"shared-one".to_string())
    );
    let one = api.get(&member_path, &other).await.expect(200);
    assert_eq!(one.body["member_id"], other_pid);
    assert_eq!(one.body["schema"], "/v2/schemas/member");
    api.get(&member_path, &reader).await.expect(404);
    let ms = api
        .get(&format!("/image/v2/images/{shared}/members"), &demo)
        .await
        .expect(200);
    assert_eq!(ms.body["members"][0]["status"], "accepted");
    api.post(
        &format!("/image/v2/images/{private}/members"),
        &admin,
        json!({"member": demo_pid}),
    )
    .await
    .expect(403);
    api.delete(&member_path, &demo).await.expect(204);
    api.get(&format!("/image/v2/images/{shared}"), &other)
        .await
        .expect(404);

    // Community: visible by id to all, listed only when asked for.
    let comm = create(
        &api,
        &demo,
        json!({"name": "comm", "visibility": "community"}),
    )
    .await;
    api.get(&format!("/image/v2/images/{comm}"), &other)
        .await
        .expect(200);
    assert!(!names(api.get("/image/v2/images", &other).await.body).contains(&"comm".to_string()));
    assert_eq!(
        names(
            api.get("/image/v2/images?visibility=community", &other)
                .await
                .body
        ),
        ["comm"]
    );

    // A token without a project cannot use the image API.
    let unscoped = api
        .token("demo", "demo-pw", None)
        .await
        .expect(201)
        .header("x-subject-token")
        .unwrap();
    api.get("/image/v2/images", &unscoped).await.expect(403);
}
