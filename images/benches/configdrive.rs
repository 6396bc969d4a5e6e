//! Time to write a typical Nova config drive (it sits on the server-create path): p50/p95 of
//! `write_iso`, including the two fsyncs (file, directory) that make it durable. `cargo bench -p images
//! --bench configdrive`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use images::configdrive::{CONFIG_DRIVE_LABEL, write_iso};
use std::time::{Duration, Instant};

const RUNS: usize = 300;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let meta = format!(
        r#"{{"uuid": "0b2f3f1c-5a7e-4d0e-9f31-3c2b7d1e0a11", "name": "vm1", "hostname": "vm1", "public_keys": {{"k": "{}"}}}}"#,
        "A".repeat(700)
    );
    let user = vec![b'#'; 16 * 1024];
    let network = br#"{"links": [], "networks": [], "services": []}"#;
    let files: Vec<(&str, &[u8])> = vec![
        ("openstack/latest/meta_data.json", meta.as_bytes()),
        ("openstack/latest/user_data", &user),
        ("openstack/latest/network_data.json", network),
        ("openstack/latest/vendor_data.json", b"{}"),
        ("openstack/latest/vendor_data2.json", b"{}"),
        ("openstack/2012-08-10/meta_data.json", meta.as_bytes()),
        ("openstack/2012-08-10/user_data", &user),
    ];
    let dest = dir.path().join("disk.config");
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        write_iso(&dest, CONFIG_DRIVE_LABEL, &files).expect("write_iso");
        times.push(start.elapsed());
    }
    times.sort();
    let size = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
    println!(
        "configdrive write_iso ({size} bytes, 7 files, fsync included): p50 {:?} p95 {:?} min {:?}",
        percentile(&times, 0.5),
        percentile(&times, 0.95),
        times[0]
    );
}
