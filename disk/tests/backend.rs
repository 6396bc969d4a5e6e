//! Block back end behaviour common to raw and qcow2.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::pattern;
use disk::create::{Qcow2Options, create_qcow2, create_raw};
use disk::{Format, OpenError, OpenOptions, open_disk};
use std::io::{IoSlice, IoSliceMut};
use std::path::PathBuf;

const MIB: u64 = 1 << 20;

fn both(dir: &std::path::Path) -> Vec<PathBuf> {
    let (q, r) = (dir.join("d.qcow2"), dir.join("d.raw"));
    create_qcow2(&q, 4 * MIB, &Qcow2Options::default()).unwrap();
    create_raw(&r, 4 * MIB).unwrap();
    vec![q, r]
}

#[test]
fn requests_beyond_the_end_and_writes_to_read_only_disks_fail() {
    let dir = tempfile::tempdir().unwrap();
    for path in both(dir.path()) {
        let d = open_disk(&path, &OpenOptions::new()).unwrap();
        let mut buf = [0u8; 512];
        assert!(d.read_at(&mut buf, 4 * MIB - 100).is_err());
        assert!(d.write_at(&buf, 4 * MIB).is_err());
        assert!(d.write_at(&buf, u64::MAX - 10).is_err());
        assert!(d.discard(4 * MIB, 1).is_err());
        drop(d);
        let ro = open_disk(&path, &OpenOptions::new().read_only(true)).unwrap();
        assert!(ro.read_only());
        let err = ro.write_at(&buf, 0).unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::PermissionDenied,
            "{}",
            path.display()
        );
        assert!(ro.write_zeroes(0, 512, true).is_err());
        ro.read_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [0u8; 512]);
    }
}

#[test]
fn vectored_io_matches_plain_io() {
    let dir = tempfile::tempdir().unwrap();
    for path in both(dir.path()) {
        let d = open_disk(&path, &OpenOptions::new()).unwrap();
        let data = pattern(3, 0, 3 * 70_000);
        let parts: Vec<IoSlice<'_>> = data.chunks(70_000).map(IoSlice::new).collect();
        d.write_vectored_at(&parts, 65_000).unwrap();
        let mut back = vec![0u8; data.len()];
        {
            let (a, rest) = back.split_at_mut(1000);
            let (b, c) = rest.split_at_mut(100_000);
            let mut bufs = [IoSliceMut::new(a), IoSliceMut::new(b), IoSliceMut::new(c)];
            d.read_vectored_at(&mut bufs, 65_000).unwrap();
        }
        assert!(back == data, "{}", path.display());
        let mut plain = vec![0u8; data.len()];
        d.read_at(&mut plain, 65_000).unwrap();
        assert!(plain == data);
    }
}

#[test]
fn discard_and_write_zeroes_read_back_as_zeroes() {
    let dir = tempfile::tempdir().unwrap();
    for path in both(dir.path()) {
        let d = open_disk(&path, &OpenOptions::new()).unwrap();
        d.write_at(&pattern(1, 0, MIB as usize), 0).unwrap();
        d.write_zeroes(4096, 8192, false).unwrap();
        d.write_zeroes(128 * 1024, 128 * 1024, true).unwrap();
        let mut buf = vec![0u8; MIB as usize];
        d.read_at(&mut buf, 0).unwrap();
        assert!(buf[4096..12288].iter().all(|&b| b == 0));
        assert!(buf[128 * 1024..256 * 1024].iter().all(|&b| b == 0));
        assert_eq!(&buf[..4096], &pattern(1, 0, 4096)[..]);
        assert_eq!(
            &buf[12288..128 * 1024],
            &pattern(1, 12288, 128 * 1024 - 12288)[..]
        );
        d.discard(512 * 1024, 256 * 1024).unwrap();
        d.flush().unwrap();
    }
}

#[test]
fn the_format_is_checked_against_the_content() {
    let dir = tempfile::tempdir().unwrap();
    let paths = both(dir.path());
    // Said to be raw, a qcow2 file is read as plain bytes: its header is never interpreted.
    let raw = open_disk(&paths[0], &OpenOptions::new().format(Format::Raw)).unwrap();
    assert_eq!(raw.size(), std::fs::metadata(&paths[0]).unwrap().len());
    let mut magic = [0u8; 4];
    raw.read_at(&mut magic, 0).unwrap();
    assert_eq!(&magic, b"QFI\xfb");
    let err = open_disk(&paths[1], &OpenOptions::new().format(Format::Qcow2))
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            OpenError::FormatMismatch {
                actual: Format::Raw,
                ..
            }
        ),
        "{err}"
    );
    let vmdk = dir.path().join("x.vmdk");
    std::fs::write(
        &vmdk,
        b"# Disk DescriptorFile\nRW 8 FLAT \"/etc/shadow\" 0\n",
    )
    .unwrap();
    let err = open_disk(&vmdk, &OpenOptions::new()).err().unwrap();
    assert!(
        matches!(
            err,
            OpenError::Unsupported {
                format: Format::Vmdk,
                ..
            }
        ),
        "{err}"
    );
    let missing = open_disk(dir.path().join("nope"), &OpenOptions::new())
        .err()
        .unwrap();
    assert!(missing.to_string().contains("nope"), "{missing}");
}

#[test]
fn threads_share_one_back_end() {
    let dir = tempfile::tempdir().unwrap();
    for path in both(dir.path()) {
        let d: std::sync::Arc<dyn disk::BlockBackend> =
            std::sync::Arc::from(open_disk(&path, &OpenOptions::new()).unwrap());
        // Each thread owns one MiB; one of them also discards and rewrites its own clusters.
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let d = d.clone();
                std::thread::spawn(move || {
                    let base = t * MIB;
                    for round in 0..20u64 {
                        for i in 0..16u64 {
                            let off = base + i * 65536 + (round % 7) * 512;
                            d.write_at(&pattern(t * 100 + round, off, 4096), off)
                                .unwrap();
                        }
                        if t == 3 {
                            d.write_zeroes(base, MIB / 2, true).unwrap();
                            d.discard(base + MIB / 2, 65536).unwrap();
                        }
                        let mut back = vec![0u8; 4096];
                        let off = base + MIB - 65536 + (round % 7) * 512;
                        d.read_at(&mut back, off).unwrap();
                        assert_eq!(back, pattern(t * 100 + round, off, 4096));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        d.flush().unwrap();
        let mut back = vec![0u8; (MIB / 2) as usize];
        d.read_at(&mut back, 3 * MIB).unwrap();
        assert!(back.iter().all(|&b| b == 0), "{}", path.display());
        drop(d);
        if path.extension().is_some_and(|e| e == "qcow2") {
            common::assert_check_clean(&path);
        }
    }
}
