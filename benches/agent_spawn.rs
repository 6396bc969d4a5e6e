//! Compute agent figures with the tiny guest on /dev/kvm (release build):
//! - `Driver::spawn` → `observe().ready` (the guest wrote boot-progress 123), p50/p95: the
//!   agent's share of `POST /servers` → ACTIVE (instance directory, VMM config, detached VMM
//!   start, control socket round trips);
//! - `observe` of a running instance (what a power-state sync pays per instance);
//! - `destroy` of a running instance;
//! - RSS of each VMM with several instances running (total and anonymous).
//!
//! `cargo bench --bench agent_spawn` (`AGENT_BENCH_RUNS`, default 40; `AGENT_BENCH_VMS`,
//! default 10). Without /dev/kvm it says so and exits.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[path = "../tests/agent_support/mod.rs"]
mod agent_support;

use agent_support::Host;
use orchestrator::agent::Agent;
use orchestrator::compute::driver::{Driver, InstanceSpec};
use std::time::{Duration, Instant};
use uuid::Uuid;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{what:<34} n={:<3} p50 {:>8.2} ms  p95 {:>8.2} ms  min {:>8.2} ms  max {:>8.2} ms",
        samples.len(),
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.95)),
        ms(samples[0]),
        ms(samples[samples.len() - 1]),
    );
}

fn wait_ready(agent: &Agent, id: Uuid) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !agent.observe(id).map(|o| o.ready).unwrap_or(false) {
        assert!(Instant::now() < deadline, "{id} not ready after 20 s");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// `VmRSS` and `RssAnon` of `pid`, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("RssAnon:"))
}

fn main() {
    if !agent_support::kvm_available("agent_spawn") {
        return;
    }
    // The tiny guest as kernel, no disk; no config drive (the tiny guest cannot read one).
    let host = Host::new();
    let agent = &host.agent;
    let spec = |name: &str| host.tiny(name, "");
    let runs = env_usize("AGENT_BENCH_RUNS", 40);

    let (mut to_return, mut to_ready, mut observe, mut destroy) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs + 3 {
        let s = spec(&format!("bench-{i}"));
        let t = Instant::now();
        agent.spawn(&s).expect("spawn");
        let returned = t.elapsed();
        wait_ready(agent, s.id);
        let ready = t.elapsed();
        let t = Instant::now();
        agent.observe(s.id).expect("observe");
        let observed = t.elapsed();
        let t = Instant::now();
        agent.destroy(s.id).expect("destroy");
        let destroyed = t.elapsed();
        // The first runs warm the page cache and the binary.
        if i >= 3 {
            to_return.push(returned);
            to_ready.push(ready);
            observe.push(observed);
            destroy.push(destroyed);
        }
    }
    report("spawn() returns", to_return);
    report("spawn -> ready (123 seen)", to_ready);
    report("observe() of a running instance", observe);
    report("destroy() of a running instance", destroy);

    let vms = env_usize("AGENT_BENCH_VMS", 10);
    let specs: Vec<InstanceSpec> = (0..vms).map(|i| spec(&format!("rss-{i}"))).collect();
    let mut pids = Vec::new();
    for s in &specs {
        pids.push(agent.spawn(s).expect("spawn").pid.expect("pid"));
        wait_ready(agent, s.id);
    }
    std::thread::sleep(Duration::from_millis(200));
    let (rss, anon): (Vec<u64>, Vec<u64>) = pids.iter().map(|&p| rss_kib(p)).unzip();
    let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len() as f64 / 1024.0;
    println!(
        "VMM RSS with {vms} tiny guests (32 MiB each) running: mean {:.2} MiB (anonymous {:.2} MiB)",
        mean(&rss),
        mean(&anon)
    );
    let t = Instant::now();
    let listed = agent.list();
    println!(
        "list() of {} running instances: {:.2} ms",
        listed.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    for s in &specs {
        agent.destroy(s.id).expect("destroy");
    }
}
