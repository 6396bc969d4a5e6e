//! The real `openstack` client (python-openstackclient, pinned, in the venv that
//! scripts/setup.d/30-openstack-client.sh builds) against a real `virgad`: the command
//! list, outputs parsed from `-f json`, and a second user who sees public images only.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod cloud_support;

use std::path::Path;

use cloud_support::cli::{Client, openstack_or_skip};
use cloud_support::{Cloud, Options, digest, make_qcow2};
use serde_json::Value;

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a JSON list")
        .iter()
        .map(|i| i["Name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn openstack_cli_drives_identity_and_image() {
    let Some(bin) = openstack_or_skip() else {
        return;
    };
    // Bootstrap only the identity service, like keystone-manage: the test then registers the
    // image service and its endpoint with the client itself, as the command list does
    // (a second service of type image would make `endpoint create ... image` ambiguous).
    let cloud = Cloud::start_with(Options {
        services: "identity",
        ..Default::default()
    });
    let home = cloud.dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let os = Client {
        bin,
        home,
        auth_url: format!("{}/identity", cloud.url),
    };

    let token = os.admin_json(&["token", "issue"]);
    assert!(
        token["id"].as_str().is_some_and(|t| t.len() > 100),
        "{token}"
    );
    assert!(
        token["project_id"].as_str().is_some_and(|p| p.len() == 32),
        "{token}"
    );

    let p = os.admin_json(&[
        "project",
        "create",
        "--domain",
        "default",
        "--description",
        "Demo Project",
        "demo",
    ]);
    assert_eq!(
        (p["name"].as_str(), p["description"].as_str()),
        (Some("demo"), Some("Demo Project"))
    );
    let u = os.admin_json(&[
        "user",
        "create",
        "--domain",
        "default",
        "--password",
        "demo-pw",
        "demo",
    ]);
    assert_eq!(u["name"], "demo");
    assert_eq!(u["domain_id"], "default");
    let r = os.admin_json(&["role", "create", "user"]);
    assert_eq!(r["name"], "user");
    os.admin(&["role", "add", "--project", "demo", "--user", "demo", "user"]);
    let ra = os.admin_json(&[
        "role",
        "assignment",
        "list",
        "--project",
        "demo",
        "--user",
        "demo",
        "--names",
    ]);
    assert_eq!(ra[0]["Role"], "user", "{ra}");
    assert!(
        ra[0]["Project"]
            .as_str()
            .unwrap_or_default()
            .starts_with("demo"),
        "{ra}"
    );

    let s = os.admin_json(&["service", "create", "--name", "glance", "image"]);
    assert_eq!(
        (s["name"].as_str(), s["type"].as_str()),
        (Some("glance"), Some("image"))
    );
    let image_url = format!("{}/image", cloud.url);
    let e = os.admin_json(&[
        "endpoint",
        "create",
        "--region",
        "RegionOne",
        "image",
        "public",
        &image_url,
    ]);
    assert_eq!(
        (e["interface"].as_str(), e["url"].as_str()),
        (Some("public"), Some(image_url.as_str()))
    );
    let eps = os.admin_json(&["endpoint", "list"]);
    assert!(
        eps.as_array()
            .unwrap()
            .iter()
            .any(|e| e["Service Type"] == "image" && e["URL"] == image_url.as_str()),
        "{eps}"
    );

    // The guest root filesystem built by guest/build.sh when it exists; else a qcow2
    // made here with qemu-img (the image path is the same either way).
    let rootfs = std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".cache/virga/guest/current/rootfs.qcow2"))
        .filter(|p| p.exists());
    let qcow2 = match rootfs {
        Some(p) => p,
        None => {
            eprintln!("guest rootfs.qcow2 not built; using a qcow2 made by qemu-img");
            make_qcow2(cloud.dir.path(), "cirros.qcow2", "64M")
        }
    };
    let qpath = qcow2.to_string_lossy().into_owned();
    let img = os.admin_json(&[
        "image",
        "create",
        "cirros",
        "--file",
        &qpath,
        "--disk-format",
        "qcow2",
        "--container-format",
        "bare",
        "--public",
    ]);
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(
        img["checksum"].as_str(),
        Some(digest("md5sum", &qcow2).as_str())
    );
    assert_eq!(img["visibility"], "public");
    let size = std::fs::metadata(&qcow2).unwrap().len();
    assert_eq!(img["size"].as_u64(), Some(size));

    assert!(names(&os.admin_json(&["image", "list"])).contains(&"cirros".to_string()));
    let shown = os.admin_json(&["image", "show", "cirros"]);
    assert_eq!(shown["disk_format"], "qcow2");
    assert_eq!(shown["container_format"], "bare");
    let saved = cloud.dir.path().join("saved.qcow2");
    os.admin(&[
        "image",
        "save",
        "--file",
        &saved.to_string_lossy(),
        "cirros",
    ]);
    assert_eq!(
        std::fs::read(&saved).unwrap(),
        std::fs::read(&qcow2).unwrap(),
        "image save returns the bytes"
    );

    // A private image of the admin project, next to the public one.
    let small = make_qcow2(cloud.dir.path(), "private.qcow2", "1M");
    os.admin_json(&[
        "image",
        "create",
        "admin-only",
        "--file",
        &small.to_string_lossy(),
        "--disk-format",
        "qcow2",
        "--container-format",
        "bare",
        "--private",
    ]);
    let demo = |args: &[&str]| os.run("demo", "demo-pw", "demo", args);
    let demo_list: Value =
        serde_json::from_str(&demo(&["image", "list", "-f", "json"]).unwrap()).unwrap();
    assert_eq!(
        names(&demo_list),
        ["cirros"],
        "demo sees the public image only"
    );
    assert!(demo(&["image", "show", "admin-only"]).is_err());
    // The `user` role reads but does not write images.
    let err = demo(&[
        "image",
        "create",
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "nope",
    ])
    .unwrap_err();
    assert!(err.contains("403"), "{err}");

    os.admin(&["image", "delete", "cirros"]);
    assert_eq!(names(&os.admin_json(&["image", "list"])), ["admin-only"]);
}
