//! `cargo bench --bench virtio_blk`: block throughput seen by the tiny guest's polling
//! virtio-blk driver (release VMM) on a raw file and on a qcow2 image of the same data, against
//! the same file read and written on the host with the same request sizes (buffered pread /
//! pwrite, as the raw back end does). Sequential MiB/s with 1 MiB and 128 KiB requests, 4 KiB
//! random IOPS. The guest never touches the data, so its figures are request-rate bound: on
//! kvm_pvm every guest instruction is emulated (docs/devices.md).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[path = "../tests/vmm_support/mod.rs"]
mod vmm_support;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};
use vmm_support::Vmm;
use vmm_support::virtio::qemu_img;

const DISK_MIB: u64 = 256;

struct Case {
    name: &'static str,
    mode: &'static str,
    bytes: u64,
    block: u64,
}

const CASES: &[Case] = &[
    Case {
        name: "seq read 1 MiB",
        mode: "sr",
        bytes: 128 << 20,
        block: 1 << 20,
    },
    Case {
        name: "seq write 1 MiB",
        mode: "sw",
        bytes: 128 << 20,
        block: 1 << 20,
    },
    Case {
        name: "seq read 128 KiB",
        mode: "sr",
        bytes: 64 << 20,
        block: 128 << 10,
    },
    Case {
        name: "seq write 128 KiB",
        mode: "sw",
        bytes: 64 << 20,
        block: 128 << 10,
    },
    Case {
        name: "rand read 4 KiB",
        mode: "rr",
        bytes: 4000 * 4096,
        block: 4096,
    },
    Case {
        name: "rand write 4 KiB",
        mode: "rw",
        bytes: 4000 * 4096,
        block: 4096,
    },
];

/// Seconds the guest spent between `blkbench: start` and `blkbench: done`.
fn guest(disk: &Path, format: &str, c: &Case) -> f64 {
    let mut vm = Vmm::tiny(&[
        "--drive",
        &format!("id=d,path={},format={format}", disk.display()),
        "--cmdline",
        &format!("blkbench 0 {} {} {}; poweroff", c.mode, c.bytes, c.block),
    ]);
    vm.wait_for(Duration::from_secs(600), |l| l == "blkbench: start");
    let t = Instant::now();
    vm.wait_for(Duration::from_secs(600), |l| {
        l.starts_with("blkbench: done")
    });
    let secs = t.elapsed().as_secs_f64();
    vm.wait_exit(Duration::from_secs(30));
    secs
}

/// The same requests against the file on the host.
fn host(disk: &Path, c: &Case) -> f64 {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .unwrap();
    let mut buf = vec![0x5au8; c.block as usize];
    let blocks = (DISK_MIB << 20) / c.block;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let t = Instant::now();
    for i in 0..c.bytes / c.block {
        let index = if c.mode.starts_with('r') {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % blocks
        } else {
            i % blocks
        };
        let off = index * c.block;
        if c.mode.ends_with('w') {
            f.write_all_at(&buf, off).unwrap();
        } else {
            f.read_exact_at(&mut buf, off).unwrap();
        }
    }
    t.elapsed().as_secs_f64()
}

fn main() {
    if !vmm_support::kvm_available("virtio_blk bench") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    {
        let f = std::fs::File::create(&raw).unwrap();
        let chunk = vec![0xa5u8; 1 << 20];
        for i in 0..DISK_MIB {
            f.write_all_at(&chunk, i << 20).unwrap();
        }
        f.sync_all().unwrap();
    }
    let qcow2 = dir.path().join("disk.qcow2");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        raw.to_str().unwrap(),
        qcow2.to_str().unwrap(),
    ]);
    println!(
        "{:<18} {:>11} {:>11} {:>11} {:>9} {:>9}",
        "case", "host", "guest raw", "guest qcow2", "raw/host", "qcow2/raw"
    );
    for c in CASES {
        let h = host(&raw, c);
        let r = guest(&raw, "raw", c);
        let q = guest(&qcow2, "qcow2", c);
        let rate = |secs: f64| {
            if c.block == 4096 {
                format!("{:.0} IOPS", (c.bytes / c.block) as f64 / secs)
            } else {
                format!("{:.1} MiB/s", c.bytes as f64 / secs / (1 << 20) as f64)
            }
        };
        println!(
            "{:<18} {:>11} {:>11} {:>11} {:>8.1}% {:>8.1}%",
            c.name,
            rate(h),
            rate(r),
            rate(q),
            100.0 * h / r,
            100.0 * r / q
        );
    }
}
