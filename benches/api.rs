//! `cargo bench --bench api`: token issue and validation rates, and image upload throughput for
//! a 1 GiB file against this machine's raw disk write speed (dd with conv=fdatasync on the same
//! file system). A real `virgad` (release build) on loopback serves the HTTP figures.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[path = "../tests/cloud_support/mod.rs"]
mod cloud_support;

use std::process::Command;
use std::time::{Duration, Instant};

use api::auth::token::{Claims, TokenKeys, TokenRole, new_audit_id};
use cloud_support::{ADMIN_PASSWORD, Api, Cloud};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::json;

const GIB: u64 = 1 << 30;

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn in_process_tokens() {
    let keys = TokenKeys::from_raw(&[[3; 32], [4; 32]]);
    let claims = Claims {
        user_id: "0123456789abcdef0123456789abcdef".into(),
        project_id: Some("fedcba9876543210fedcba9876543210".into()),
        domain_id: None,
        roles: ["admin", "member", "reader"]
            .iter()
            .map(|n| TokenRole {
                id: format!("{n:0>32}"),
                name: (*n).into(),
            })
            .collect(),
        methods: vec!["password".into()],
        issued_at: 1,
        expires_at: i64::MAX,
        audit_ids: vec![new_audit_id().expect("random")],
    };
    let n = 200_000;
    let t = Instant::now();
    let mut last = String::new();
    for _ in 0..n {
        last = keys.seal(&claims).expect("seal");
    }
    let seal = rate(n, t.elapsed());
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(keys.open(&last, 0).expect("open"));
    }
    let open = rate(n, t.elapsed());
    println!(
        "token seal (in process):          {seal:>10.0} /s   ({} bytes)",
        last.len()
    );
    println!("token open+verify (in process):   {open:>10.0} /s");
}

async fn http_tokens(api: &Api) {
    // Issue with the password method: one argon2id verification each (by design ~tens of ms).
    let n = 100;
    let t = Instant::now();
    for _ in 0..n {
        api.token("admin", ADMIN_PASSWORD, Some("admin"))
            .await
            .expect(201);
    }
    println!(
        "token issue, password (HTTP, 1 client):   {:>8.1} /s",
        rate(n, t.elapsed())
    );

    let admin = api.admin_token().await;
    let body = json!({"auth": {"identity": {"methods": ["token"], "token": {"id": admin}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}});
    let n = 2000;
    let t = Instant::now();
    for _ in 0..n {
        api.send(
            Method::POST,
            "/identity/v3/auth/tokens?nocatalog",
            None,
            Some(body.clone()),
        )
        .await
        .expect(201);
    }
    println!(
        "token issue, token method (HTTP, 1 client): {:>6.0} /s",
        rate(n, t.elapsed())
    );

    // HEAD /v3/auth/tokens: caller's and subject token opened and checked, no database.
    for clients in [1usize, 4] {
        let per = 5000;
        let t = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let api = api.clone();
                let tok = admin.clone();
                tokio::spawn(async move {
                    for _ in 0..per {
                        let rb = api
                            .http
                            .head(format!("{}/identity/v3/auth/tokens", api.base))
                            .header("X-Auth-Token", &tok)
                            .header("X-Subject-Token", &tok);
                        assert_eq!(Api::answer(rb).await.status, 200);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("client task");
        }
        println!(
            "token validate, HEAD (HTTP, {clients} clients):   {:>8.0} /s",
            rate(per * clients, t.elapsed())
        );
    }
}

fn dd_write_speed(dir: &std::path::Path) -> f64 {
    let out = dir.join("dd.bin");
    let t = Instant::now();
    let st = Command::new("dd")
        .args([
            "if=/dev/zero",
            "bs=4M",
            "count=256",
            "conv=fdatasync",
            "status=none",
        ])
        .arg(format!("of={}", out.display()))
        .status()
        .expect("dd");
    assert!(st.success());
    let secs = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(out);
    1024.0 / secs
}

async fn upload(api: &Api, dir: &std::path::Path) {
    let token = api.admin_token().await;
    // 1 GiB of non-zero data (a repeated 1 MiB pattern), written once, streamed from the file.
    let src = dir.join("upload.raw");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).expect("source file"));
        let block: Vec<u8> = (0..(1usize << 20))
            .map(|i| (i * 7 % 251) as u8 + 1)
            .collect();
        for _ in 0..1024 {
            f.write_all(&block).expect("write source");
        }
        f.flush().expect("flush");
    }
    let mut best = 0.0f64;
    for round in 0..2 {
        let a = api
            .post("/image/v2/images", &token, json!({"name": format!("big{round}"), "disk_format": "raw", "container_format": "bare"}))
            .await
            .expect(201);
        let id = a.body["id"].as_str().expect("id").to_string();
        let file = tokio::fs::File::open(&src).await.expect("open source");
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20).map(|r| r);
        let t = Instant::now();
        let rb = api
            .http
            .put(format!("{}/image/v2/images/{id}/file", api.base))
            .header("X-Auth-Token", &token)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", GIB)
            .body(reqwest::Body::wrap_stream(stream));
        Api::answer(rb).await.expect(204);
        let mibs = 1024.0 / t.elapsed().as_secs_f64();
        best = best.max(mibs);
        println!("image upload 1 GiB (HTTP, round {round}):     {mibs:>8.1} MiB/s");
        api.delete(&format!("/image/v2/images/{id}"), &token)
            .await
            .expect(204);
    }
    // The same bytes straight into the images store (no HTTP): its hashing (md5 + sha512 in
    // one thread), write, probe and fsync are the ceiling of the HTTP upload above.
    let store = images::store::ImageStore::open(dir.join("direct"), 2 * GIB).expect("store");
    let block: Vec<u8> = (0..(1usize << 20))
        .map(|i| (i * 7 % 251) as u8 + 1)
        .collect();
    let t = Instant::now();
    let mut up = store.begin_upload("direct").expect("begin");
    for _ in 0..1024 {
        up.write(&block).expect("write");
    }
    up.finish(images::store::DiskFormat::Raw).expect("finish");
    let direct = 1024.0 / t.elapsed().as_secs_f64();
    println!("images store direct 1 GiB (no HTTP):      {direct:>8.1} MiB/s");
    store.delete("direct").expect("delete");
    let _ = std::fs::remove_file(&src);
    let dd = dd_write_speed(dir);
    println!("raw disk write, dd 1 GiB conv=fdatasync:  {dd:>8.1} MiB/s");
    println!(
        "upload / raw disk:                         {:>8.0} %",
        100.0 * best / dd
    );
}

fn main() {
    // `cargo test --benches` runs this with --test-like flags; do the work only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("api bench: run with `cargo bench --bench api`");
        return;
    }
    in_process_tokens();
    let cloud = Cloud::start();
    let api = cloud.api();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        http_tokens(&api).await;
        upload(&api, cloud.dir.path()).await;
    });
}
