//! Random requests on a qcow2 overlay checked against an in-memory model of the disk.
//!
//! The qcow2 back end serves reads and in-place writes from mappings it remembers (see
//! `backend/mapcache.rs`); writes that allocate or copy clusters, write-zeroes and discards
//! change those mappings. Mixing all of them at random offsets and lengths (across cluster, L2
//! and backing-file boundaries, over a compressed qemu-made base) and checking every read
//! against the model catches a remembered mapping that outlived its metadata. The result must
//! then be a clean image that `qemu-img compare` finds identical to the model.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{Rng, assert_check_clean, assert_same, p, pattern, qemu_img};
use disk::{BlockBackend, OpenOptions, open_disk};
use std::path::Path;

const KIB: u64 = 1024;
const MIB: u64 = 1 << 20;
/// The base covers the first 3 MiB; the overlay is 6 MiB, so its tail has no backing data.
const BASE: u64 = 3 * MIB;
const DISK: u64 = 6 * MIB;

/// A random range: 512-byte aligned most of the time (as virtio-blk sends), sometimes not.
fn range(rng: &mut Rng, max_len: u64) -> (u64, u64) {
    let aligned = rng.below(4) != 0;
    let mut len = 1 + rng.below(max_len);
    let mut off = rng.below(DISK - 1);
    if aligned {
        off &= !511;
        len = (len + 511) & !511;
    }
    (off, len.min(DISK - off))
}

fn check_read(d: &dyn BlockBackend, model: &[u8], off: u64, len: u64, what: &str) {
    let mut back = vec![0xeeu8; len as usize];
    d.read_at(&mut back, off).unwrap();
    let want = &model[off as usize..(off + len) as usize];
    if back != want {
        let first = back.iter().zip(want).position(|(a, b)| a != b).unwrap();
        panic!(
            "{what}: read of {len} at {off} differs from the model at byte {} (got {:#x}, want {:#x})",
            off + first as u64,
            back[first],
            want[first]
        );
    }
}

fn setup(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let raw = dir.join("base.raw");
    let base_bytes = pattern(7, 0, BASE as usize);
    std::fs::write(&raw, &base_bytes).unwrap();
    let base = dir.join("base.qcow2");
    // Compressed clusters: reads of them are left to imago, never remembered.
    qemu_img(&format!("convert -c -O qcow2 {} {}", p(&raw), p(&base)));
    let top = dir.join("top.qcow2");
    qemu_img(&format!(
        "create -f qcow2 -o cluster_size=4096 -b base.qcow2 -F qcow2 {} {DISK}",
        p(&top)
    ));
    let mut model = base_bytes;
    model.resize(DISK as usize, 0);
    (top, model)
}

#[test]
fn random_requests_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let (top, mut model) = setup(dir.path());
    let opts = OpenOptions::new().trust_backing_dir(dir.path());
    let d = open_disk(&top, &opts).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut counts = [0u32; 5];
    for step in 0..4000u64 {
        let op = rng.below(20);
        let what = format!("step {step}");
        if step % 1000 == 999 {
            // A sequential pass: the lookahead grows along it to whole L2 tables.
            for off in (0..DISK).step_by(32 * KIB as usize) {
                check_read(&*d, &model, off, 32 * KIB, &format!("{what}, streaming"));
            }
        }
        match op {
            // Reads dominate, as they do for a guest; re-reading the last range hits the cache.
            0..=8 => {
                let (off, len) = range(&mut rng, 256 * KIB);
                check_read(&*d, &model, off, len, &what);
                check_read(&*d, &model, off, len, &what);
                counts[0] += 1;
            }
            9..=14 => {
                let (off, len) = range(&mut rng, 128 * KIB);
                let data = pattern(step, off, len as usize);
                d.write_at(&data, off).unwrap();
                model[off as usize..(off + len) as usize].copy_from_slice(&data);
                check_read(&*d, &model, off, len, &what);
                counts[1] += 1;
            }
            15..=16 => {
                let (off, len) = range(&mut rng, 96 * KIB);
                let unmap = rng.below(2) == 0;
                d.write_zeroes(off, len, unmap).unwrap();
                model[off as usize..(off + len) as usize].fill(0);
                check_read(&*d, &model, off, len, &what);
                counts[2 + unmap as usize] += 1;
            }
            _ => {
                // Discard promises nothing about what reads back (zeroes, old data, or the
                // backing file's data); take what the disk says, byte by byte, if it is one of
                // those, and hold it to that from now on.
                let (off, len) = range(&mut rng, 96 * KIB);
                d.discard(off, len).unwrap();
                let mut back = vec![0u8; len as usize];
                d.read_at(&mut back, off).unwrap();
                let base_byte = |i: usize| {
                    let at = off as usize + i;
                    if (at as u64) < BASE {
                        pattern(7, at as u64, 1)[0]
                    } else {
                        0
                    }
                };
                for (i, &b) in back.iter().enumerate() {
                    let old = model[off as usize + i];
                    assert!(
                        b == old || b == 0 || b == base_byte(i),
                        "{what}: discarded byte {} reads {b:#x}",
                        off + i as u64
                    );
                }
                model[off as usize..(off + len) as usize].copy_from_slice(&back);
                counts[4] += 1;
            }
        }
    }
    assert!(
        counts.iter().all(|&c| c > 50),
        "every operation ran: {counts:?}"
    );
    d.flush().unwrap();
    drop(d);

    // A fresh open (nothing remembered) reads the same disk.
    let d = open_disk(&top, &opts).unwrap();
    check_read(&*d, &model, 0, DISK, "after reopening");
    drop(d);

    assert_check_clean(&top);
    let truth = dir.path().join("model.raw");
    std::fs::write(&truth, &model).unwrap();
    assert_same(&top, &truth);
}

#[test]
fn a_write_into_a_backing_cluster_is_seen_by_the_next_read() {
    // The first read remembers the run as living in the base; the write copies the cluster up
    // into the overlay; the read after it must come from the overlay.
    let dir = tempfile::tempdir().unwrap();
    let (top, mut model) = setup(dir.path());
    let qcow2_base = dir.path().join("base.qcow2");
    // An uncompressed base, so its clusters are remembered runs too.
    qemu_img(&format!(
        "convert -O qcow2 {} {}",
        p(&dir.path().join("base.raw")),
        p(&qcow2_base.with_extension("plain"))
    ));
    std::fs::rename(qcow2_base.with_extension("plain"), &qcow2_base).unwrap();
    let d = open_disk(&top, &OpenOptions::new().trust_backing_dir(dir.path())).unwrap();
    for off in [0, 4096, 65536 + 512, BASE - 4096, BASE + 4096] {
        check_read(&*d, &model, off, 8192, "before");
        let data = pattern(off, off, 1024);
        d.write_at(&data, off + 1024).unwrap();
        model[(off + 1024) as usize..(off + 2048) as usize].copy_from_slice(&data);
        check_read(&*d, &model, off, 8192, "after the write");
        d.write_zeroes(off, 4096, false).unwrap();
        model[off as usize..(off + 4096) as usize].fill(0);
        check_read(&*d, &model, off, 8192, "after write-zeroes");
    }
    d.flush().unwrap();
    drop(d);
    assert_check_clean(&top);
}
