//! The real `openstack` client against a real `virgad` whose compute role boots real tiny
//! guests: flavors, images with `kernel_id`, key pairs, `server create --wait`, console log,
//! the power actions, `server image create`, `server delete --wait` and a quota refusal.
//! Actions are issued with the client; their end states are read over HTTP (each client run
//! costs seconds here, a poll over HTTP milliseconds).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod cloud_support;

use cloud_support::cli::{Client, openstack_or_skip};
use cloud_support::compute::{kvm_available, vmm_pids_with};
use cloud_support::{Cloud, make_qcow2};
use serde_json::Value;

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn openstack_cli_drives_compute() {
    let Some(bin) = openstack_or_skip() else {
        return;
    };
    if !kvm_available("openstack_cli_drives_compute") {
        return;
    }
    let (cloud, _reaper) = Cloud::start_compute();
    let home = cloud.dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let os = Client {
        bin,
        home,
        auth_url: format!("{}/identity", cloud.url),
    };
    let api = cloud.api();
    let token = api.admin_token().await;
    // The client blocks; run it off the runtime the HTTP polls use.
    let run = |args: &[&str]| {
        let os = os.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            os.run("admin", cloud_support::ADMIN_PASSWORD, "admin", &a)
        })
    };
    let json = |out: String| -> Value {
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    };

    let f = json(
        run(&[
            "flavor", "create", "--ram", "64", "--disk", "0", "--vcpus", "1", "f.tiny", "-f",
            "json",
        ])
        .await
        .expect("join")
        .expect("flavor create"),
    );
    assert_eq!(
        (f["ram"].as_i64(), f["vcpus"].as_i64()),
        (Some(64), Some(1)),
        "{f}"
    );
    let flavors = run(&["flavor", "list", "-f", "value", "-c", "Name"])
        .await
        .expect("join")
        .expect("flavor list");
    assert!(
        flavors.contains("m1.tiny") && flavors.contains("f.tiny"),
        "{flavors}"
    );

    let k = json(
        run(&[
            "image",
            "create",
            "--disk-format",
            "aki",
            "--container-format",
            "bare",
            "--file",
            tiny_guest::PATH,
            "tiny-kernel",
            "-f",
            "json",
        ])
        .await
        .expect("join")
        .expect("kernel image"),
    );
    let kernel = id_of(&k);
    let root = make_qcow2(cloud.dir.path(), "root.qcow2", "64M");
    let prop = format!("kernel_id={kernel}");
    let root_s = root.to_string_lossy().to_string();
    let img = json(
        run(&[
            "image",
            "create",
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "--file",
            &root_s,
            "--property",
            &prop,
            "tiny",
            "-f",
            "json",
        ])
        .await
        .expect("join")
        .expect("image create"),
    );
    assert_eq!(img["status"], "active", "{img}");

    let key_out = run(&["keypair", "create", "k1"])
        .await
        .expect("join")
        .expect("keypair create");
    assert!(key_out.contains("PRIVATE KEY"), "{key_out}");
    let ud = cloud.dir.path().join("user-data");
    std::fs::write(&ud, "#tiny\necho hello from user data\n").expect("user data");
    let ud_s = ud.to_string_lossy().to_string();
    let s = json(
        run(&[
            "server",
            "create",
            "--flavor",
            "f.tiny",
            "--image",
            "tiny",
            "--key-name",
            "k1",
            "--user-data",
            &ud_s,
            "--wait",
            "vm1",
            "-f",
            "json",
        ])
        .await
        .expect("join")
        .expect("server create"),
    );
    assert_eq!(s["status"], "ACTIVE", "{s}");
    assert_eq!(s["key_name"], "k1");
    let vm1 = id_of(&s);
    let listed = run(&[
        "server", "list", "-f", "value", "-c", "Name", "-c", "Status",
    ])
    .await
    .expect("join")
    .expect("server list");
    assert!(listed.contains("vm1 ACTIVE"), "{listed}");
    // The guest reads its config drive: hostname, the key pair's public key, the user data
    // (a `#tiny` script: one console command per line, as cloud-init runs a script).
    api.wait_console(&token, &vm1, "config-drive: done", 30)
        .await;
    let log = run(&["console", "log", "show", "vm1"])
        .await
        .expect("join")
        .expect("console log");
    assert!(log.contains(tiny_guest::MARKER), "{log}");
    assert!(log.contains("config-drive: hostname vm1"), "{log}");
    assert!(log.contains("config-drive: public key k1 ssh-"), "{log}");
    assert!(log.contains("hello from user data"), "{log}");

    let steps: [(&[&str], &str); 8] = [
        (&["server", "stop", "vm1"], "SHUTOFF"),
        (&["server", "start", "vm1"], "ACTIVE"),
        (&["server", "reboot", "--hard", "--wait", "vm1"], "ACTIVE"),
        (&["server", "reboot", "--wait", "vm1"], "ACTIVE"),
        (&["server", "pause", "vm1"], "PAUSED"),
        (&["server", "unpause", "vm1"], "ACTIVE"),
        (&["server", "suspend", "vm1"], "SUSPENDED"),
        (&["server", "resume", "vm1"], "ACTIVE"),
    ];
    for (args, status) in steps {
        run(args)
            .await
            .expect("join")
            .unwrap_or_else(|e| panic!("{e}"));
        api.wait_status(&token, &vm1, status, 30).await;
        let vmms = vmm_pids_with(&vm1);
        assert_eq!(
            vmms.len(),
            usize::from(status != "SHUTOFF"),
            "{args:?}: {vmms:?}"
        );
    }

    let snap = json(
        run(&[
            "server", "image", "create", "--name", "snap1", "--wait", "vm1", "-f", "json",
        ])
        .await
        .expect("join")
        .expect("server image create"),
    );
    assert_eq!(snap["status"], "active", "{snap}");
    let s2 = json(
        run(&[
            "server", "create", "--flavor", "f.tiny", "--image", "snap1", "--wait", "fromsnap",
            "-f", "json",
        ])
        .await
        .expect("join")
        .expect("boot the snapshot"),
    );
    assert_eq!(s2["status"], "ACTIVE", "{s2}");

    for (args, want) in [
        (vec!["hypervisor", "list", "-f", "json"], "State"),
        (
            vec!["compute", "service", "list", "-f", "json"],
            "nova-compute",
        ),
        (
            vec!["availability", "zone", "list", "--compute", "-f", "json"],
            "nova",
        ),
        (
            vec!["limits", "show", "--absolute", "-f", "json"],
            "instances",
        ),
    ] {
        let out = run(&args)
            .await
            .expect("join")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(out.contains(want), "{args:?}: {out}");
    }

    run(&["server", "delete", "--wait", "vm1", "fromsnap"])
        .await
        .expect("join")
        .expect("server delete");
    let fromsnap = id_of(&s2);
    for id in [&vm1, &fromsnap] {
        assert!(vmm_pids_with(id).is_empty(), "VMM of {id} left");
        assert!(!cloud.instance_dir(id).exists(), "files of {id} left");
    }

    run(&["quota", "set", "--instances", "1", "admin"])
        .await
        .expect("join")
        .expect("quota set");
    let q = json(
        run(&["quota", "show", "admin", "-f", "json"])
            .await
            .expect("join")
            .expect("quota show"),
    );
    let instances = q.as_array().and_then(|rows| {
        rows.iter()
            .find(|r| r["Resource"] == "instances")
            .map(|r| r["Limit"].clone())
    });
    assert_eq!(instances, Some(Value::from(1)), "{q}");
    run(&[
        "server", "create", "--flavor", "f.tiny", "--image", "tiny", "--wait", "q1",
    ])
    .await
    .expect("join")
    .expect("first server");
    let err = run(&[
        "server", "create", "--flavor", "f.tiny", "--image", "tiny", "q2",
    ])
    .await
    .expect("join")
    .expect_err("second server refused");
    assert!(
        err.contains("Quota exceeded for instances") && err.contains("403"),
        "{err}"
    );
    run(&["server", "delete", "--wait", "q1"])
        .await
        .expect("join")
        .expect("delete q1");
}
