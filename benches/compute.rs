//! `cargo bench --bench compute`: `POST /servers` → ACTIVE (the guest's ready mark seen by the
//! agent) with the tiny test guest on a warm host, p50/p95 over sequential creates; then 20
//! concurrent creates: instances per second, and the daemon's CPU time and peak RSS meanwhile;
//! and the RSS of one running VMM. A real `virgad` (release build) with the real agent.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[path = "../tests/cloud_support/mod.rs"]
mod cloud_support;

use std::time::{Duration, Instant};

use cloud_support::compute::{kvm_available, vmm_pids_with};
use cloud_support::{Api, Cloud};
use reqwest::Method;
use serde_json::json;

const SEQUENTIAL: usize = 30;
const CONCURRENT: usize = 20;

/// (utime + stime) in clock ticks, and VmRSS in KiB, of a process.
fn cpu_and_rss(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(") ").next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    // Fields after "(comm) ": state is 0, utime 11, stime 12.
    let cpu = tick(11) + tick(12);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (cpu, rss)
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf reads a constant of the running system; no memory is involved.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

async fn create_active(api: &Api, token: &str, image: &str, name: &str) -> (String, Duration) {
    let t = Instant::now();
    let id = api
        .create_server(
            token,
            json!({"name": name, "flavorRef": "tiny-guest", "imageRef": image}),
        )
        .await;
    loop {
        let s = api.server(token, &id).await;
        if s["status"] == "ACTIVE" {
            return (id, t.elapsed());
        }
        assert!(s["status"] != "ERROR", "server went ERROR: {s:#}");
        assert!(t.elapsed() < Duration::from_secs(60), "not ACTIVE: {s:#}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn delete_all(api: &Api, token: &str, ids: &[String]) {
    for id in ids {
        api.delete(&format!("/compute/v2.1/servers/{id}"), token)
            .await
            .expect(204);
    }
    for id in ids {
        api.wait_gone(token, id, 60).await;
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    if !kvm_available("bench compute") {
        return;
    }
    let (cloud, _reaper) = Cloud::start_compute();
    let api = cloud.api();
    let token = api.admin_token().await;
    let project = {
        let a = api
            .get("/identity/v3/auth/projects", &token)
            .await
            .expect(200);
        a.body["projects"][0]["id"]
            .as_str()
            .expect("project")
            .to_string()
    };
    api.send(
        Method::PUT,
        &format!("/compute/v2.1/os-quota-sets/{project}"),
        Some(&token),
        Some(json!({"quota_set": {"instances": -1, "cores": -1, "ram": -1}})),
    )
    .await
    .expect(200);
    let dir = tempfile::tempdir().expect("tempdir");
    let (_kernel, image) = api.tiny_guest_image(&token, dir.path()).await;

    // Warm the host: the base image cached, code paths and connections hot.
    let (warm, _) = create_active(&api, &token, &image, "warm").await;
    delete_all(&api, &token, &[warm]).await;

    let mut lat = Vec::new();
    for i in 0..SEQUENTIAL {
        let (id, d) = create_active(&api, &token, &image, &format!("seq{i}")).await;
        lat.push(d);
        delete_all(&api, &token, &[id]).await;
    }
    lat.sort();
    println!(
        "POST /servers -> ACTIVE, tiny guest, sequential x{SEQUENTIAL}: p50 {:.1} ms, p95 {:.1} ms, min {:.1} ms, max {:.1} ms",
        pct(&lat, 0.5).as_secs_f64() * 1e3,
        pct(&lat, 0.95).as_secs_f64() * 1e3,
        lat[0].as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3,
    );

    let pid = cloud.pid();
    let (cpu0, rss0) = cpu_and_rss(pid);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(rss0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let (_, rss) = cpu_and_rss(pid);
                peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let t = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|i| {
            let (api, token, image) = (api.clone(), token.clone(), image.clone());
            tokio::spawn(async move { create_active(&api, &token, &image, &format!("c{i}")).await })
        })
        .collect();
    let mut ids = Vec::new();
    let mut each = Vec::new();
    for task in tasks {
        let (id, d) = task.await.expect("create task");
        ids.push(id);
        each.push(d);
    }
    let wall = t.elapsed();
    sampler.abort();
    let (cpu1, _) = cpu_and_rss(pid);
    each.sort();
    let cpu_s = (cpu1 - cpu0) as f64 / ticks_per_sec();
    println!(
        "{CONCURRENT} concurrent creates -> all ACTIVE in {:.0} ms: {:.1} instances/s; each p50 {:.0} ms, max {:.0} ms",
        wall.as_secs_f64() * 1e3,
        CONCURRENT as f64 / wall.as_secs_f64(),
        pct(&each, 0.5).as_secs_f64() * 1e3,
        each[each.len() - 1].as_secs_f64() * 1e3,
    );
    println!(
        "virgad meanwhile: {:.2} s CPU ({:.0}% of one core), RSS {} KiB before, {} KiB peak",
        cpu_s,
        100.0 * cpu_s / wall.as_secs_f64(),
        rss0,
        peak.load(std::sync::atomic::Ordering::Relaxed),
    );
    let rss: Vec<u64> = ids
        .iter()
        .flat_map(|id| vmm_pids_with(id))
        .map(|p| cpu_and_rss(p).1)
        .collect();
    if !rss.is_empty() {
        println!(
            "VMM RSS per running tiny guest (64 MiB flavor): mean {} KiB over {} VMMs",
            rss.iter().sum::<u64>() / rss.len() as u64,
            rss.len()
        );
    }
    delete_all(&api, &token, &ids).await;
}
