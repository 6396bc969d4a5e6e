//! Interoperability with the real qemu-img, both ways.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[path = "../../disk/tests/common/mod.rs"]
mod common;

use common::{assert_check_clean, assert_same, ok, p, pattern, qemu_img};
use disk::create::{Qcow2Options, create_qcow2, create_raw, resize};
use disk::{BlockBackend, Format, OpenOptions, RawBackend, open_disk};
use images::convert::{ConvertError, ConvertStats, convert};
use std::path::Path;

const MIB: u64 = 1 << 20;

/// Applies the same mix of requests to every back end given.
fn apply_mix(disks: &[&dyn BlockBackend]) {
    let writes: &[(u64, usize)] = &[
        (0, 4096),
        (65536 - 100, 300),          // crosses a cluster boundary, unaligned
        (3 * MIB + 512, 128 * 1024), // spans three clusters
        (17 * MIB, 1),
        (32 * MIB - 4096, 4096),     // last block
        (5 * MIB, 2 * MIB as usize), // large sequential
    ];
    for (i, &(off, len)) in writes.iter().enumerate() {
        let data = pattern(i as u64 + 1, off, len);
        for d in disks {
            d.write_at(&data, off).unwrap();
        }
    }
    for d in disks {
        d.write_zeroes(5 * MIB + 65536, 65536, false).unwrap();
        d.write_zeroes(6 * MIB, 3 * 65536, true).unwrap();
        // Overwrite part of an allocated cluster after zeroing it.
        d.write_at(&pattern(99, 6 * MIB + 100, 50), 6 * MIB + 100)
            .unwrap();
        d.flush().unwrap();
    }
}

#[test]
fn images_we_write_pass_qemu_img_check_and_compare() {
    let dir = tempfile::tempdir().unwrap();
    let (q, r) = (dir.path().join("a.qcow2"), dir.path().join("a.raw"));
    create_qcow2(&q, 32 * MIB, &Qcow2Options::default()).unwrap();
    create_raw(&r, 32 * MIB).unwrap();
    {
        let qd = open_disk(&q, &OpenOptions::new()).unwrap();
        let rd = open_disk(&r, &OpenOptions::new()).unwrap();
        assert_eq!(qd.size(), 32 * MIB);
        apply_mix(&[qd.as_ref(), rd.as_ref()]);
    }
    assert_check_clean(&q);
    assert_same(&q, &r);
    let info = qemu_img(&format!("info --output=json {}", p(&q)));
    assert!(info.contains("\"compat\": \"1.1\""), "{info}");
}

#[test]
fn small_clusters_and_a_backing_file_interoperate() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.raw");
    let ov = dir.path().join("overlay.qcow2");
    let want = dir.path().join("want.raw");
    create_raw(&base, 8 * MIB).unwrap();
    RawBackend::open(&base, false)
        .unwrap()
        .write_at(&pattern(7, 0, 8 * MIB as usize), 0)
        .unwrap();
    std::fs::copy(&base, &want).unwrap();
    let opts = Qcow2Options {
        cluster_size: 4096,
        backing: Some(("base.raw".into(), Format::Raw)),
    };
    create_qcow2(&ov, 8 * MIB, &opts).unwrap();
    {
        let trusted = OpenOptions::new().trust_backing_dir(dir.path());
        let d = open_disk(&ov, &trusted).unwrap();
        let w = RawBackend::open(&want, false).unwrap();
        let mut buf = vec![0u8; 10000];
        d.read_at(&mut buf, 12345).unwrap();
        assert_eq!(buf, pattern(7, 12345, 10000), "backing data shows through");
        for (off, len) in [
            (1000u64, 5000usize),
            (4 * MIB - 10, 20),
            (8 * MIB - 4096, 4096),
        ] {
            let data = pattern(off, off, len);
            d.write_at(&data, off).unwrap();
            w.write_at(&data, off).unwrap();
        }
        d.flush().unwrap();
    }
    assert_check_clean(&ov);
    assert_same(&ov, &want);
    let info = qemu_img(&format!("info --output=json {}", p(&ov)));
    assert!(
        info.contains("\"backing-filename-format\": \"raw\""),
        "{info}"
    );
    assert!(info.contains("\"cluster-size\": 4096"), "{info}");
}

/// qemu-img's own conversion to raw is the ground truth for what an image holds.
fn assert_reads_like_qemu(img: &Path, opts: &OpenOptions) {
    let truth = img.with_extension("truth");
    qemu_img(&format!("convert -O raw {} {}", p(img), p(&truth)));
    let want = std::fs::read(&truth).unwrap();
    let d = open_disk(img, &opts.clone().read_only(true)).unwrap();
    assert_eq!(d.size(), want.len() as u64);
    let mut got = vec![0u8; want.len()];
    // Odd-sized reads at odd offsets exercise the cluster-splitting paths.
    let mut off = 0usize;
    let mut step = 1000usize;
    while off < got.len() {
        let end = (off + step).min(got.len());
        d.read_at(&mut got[off..end], off as u64).unwrap();
        off = end;
        step = step * 3 % 300_007 + 511;
    }
    assert!(
        got == want,
        "{} reads differently from qemu-img",
        img.display()
    );
}

fn seeded_raw(path: &Path, size: u64) {
    create_raw(path, size).unwrap();
    let d = RawBackend::open(path, false).unwrap();
    // Data in some places only, so qemu-img leaves holes and zero clusters.
    for (i, off) in [0u64, 70_000, MIB, 3 * MIB + 4096, size - 8192]
        .into_iter()
        .enumerate()
    {
        d.write_at(&pattern(i as u64, off, 8192), off).unwrap();
    }
}

#[test]
fn qemu_made_images_read_back_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.raw");
    seeded_raw(&src, 4 * MIB);
    let cases: &[(&str, &[&str])] = &[
        ("v2.qcow2", &["-o", "compat=0.10"]),
        ("v3.qcow2", &["-o", "compat=1.1"]),
        ("compressed.qcow2", &["-c"]),
        ("v2compressed.qcow2", &["-c", "-o", "compat=0.10"]),
        ("small.qcow2", &["-o", "cluster_size=512"]),
        ("big.qcow2", &["-o", "cluster_size=2M"]),
    ];
    for (name, extra) in cases {
        let img = dir.path().join(name);
        let mut args = vec!["convert", "-f", "raw", "-O", "qcow2"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[p(&src), p(&img)]);
        ok("qemu-img", &args);
        assert_reads_like_qemu(&img, &OpenOptions::new());
    }
}

#[test]
fn qemu_made_backing_chains_read_back_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("src.raw");
    seeded_raw(&raw, 4 * MIB);
    let base = dir.path().join("base.qcow2");
    qemu_img(&format!("convert -c -O qcow2 {} {}", p(&raw), p(&base)));
    let mid = dir.path().join("mid.qcow2");
    qemu_img(&format!(
        "create -f qcow2 -o compat=0.10 -b base.qcow2 -F qcow2 {}",
        p(&mid)
    ));
    ok(
        "qemu-io",
        &[
            "-c",
            "write -P 0x5a 65536 100000",
            "-c",
            "write -z 1048576 65536",
            p(&mid),
        ],
    );
    let top = dir.path().join("top.qcow2");
    qemu_img(&format!(
        "create -f qcow2 -b {} -F qcow2 {} 6M",
        p(&mid),
        p(&top)
    ));
    ok(
        "qemu-io",
        &[
            "-c",
            "write -P 0xc3 4000 9000",
            "-c",
            "write -P 0x11 5242880 4096",
            p(&top),
        ],
    );
    assert_reads_like_qemu(&top, &OpenOptions::new().trust_backing_dir(dir.path()));
}

#[test]
fn resize_grows_qcow2_and_raw() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("g.qcow2");
    create_qcow2(&q, 10 * MIB, &Qcow2Options::default()).unwrap();
    {
        let d = open_disk(&q, &OpenOptions::new()).unwrap();
        d.write_at(&pattern(1, 0, 4096), 10 * MIB - 4096).unwrap();
        d.flush().unwrap();
    }
    // Past one L2 table's reach (512 MiB with 64 KiB clusters), so the L1 table must grow.
    resize(&q, 3 << 30).unwrap();
    assert_check_clean(&q);
    let info = qemu_img(&format!("info --output=json {}", p(&q)));
    assert!(
        info.contains(&format!("\"virtual-size\": {}", 3u64 << 30)),
        "{info}"
    );
    let d = open_disk(&q, &OpenOptions::new()).unwrap();
    let mut buf = vec![0u8; 4096];
    d.read_at(&mut buf, 10 * MIB - 4096).unwrap();
    assert_eq!(buf, pattern(1, 0, 4096));
    d.write_at(&pattern(2, 0, 4096), (3 << 30) - 4096).unwrap();
    drop(d);
    assert_check_clean(&q);
    assert!(resize(&q, MIB).is_err(), "shrinking is refused");

    let r = dir.path().join("g.raw");
    create_raw(&r, MIB).unwrap();
    resize(&r, 2 * MIB).unwrap();
    assert_eq!(std::fs::metadata(&r).unwrap().len(), 2 * MIB);
}

fn conv(src: &Path, dst: &Path, format: Format) -> Result<ConvertStats, ConvertError> {
    convert(
        src,
        &OpenOptions::new(),
        dst,
        format,
        &Qcow2Options::default(),
    )
}

#[test]
fn convert_round_trips_and_stays_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.raw");
    seeded_raw(&src, 64 * MIB);
    let q = dir.path().join("c.qcow2");
    let stats = conv(&src, &q, Format::Qcow2).unwrap();
    assert!(
        stats.written <= 10 * 65536,
        "only the data blocks are written: {stats:?}"
    );
    assert_check_clean(&q);
    assert_same(&q, &src);
    let info = disk::info::info(&q).unwrap();
    assert!(info.allocated_size < 2 * MIB, "qcow2 stays small: {info:?}");

    let back = dir.path().join("back.raw");
    conv(&q, &back, Format::Raw).unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&src).unwrap());
    let allocated = disk::info::info(&back).unwrap().allocated_size;
    assert!(
        allocated < 2 * MIB,
        "raw result is sparse: {allocated} bytes allocated"
    );

    // qemu-made compressed qcow2 in, raw out.
    let comp = dir.path().join("comp.qcow2");
    qemu_img(&format!("convert -c -O qcow2 {} {}", p(&src), p(&comp)));
    let out = dir.path().join("out.raw");
    conv(&comp, &out, Format::Raw).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&src).unwrap());
    let err = conv(&src, &dir.path().join("x.vdi"), Format::Vdi);
    assert!(err.is_err());
}

#[test]
fn info_reports_what_qemu_img_reports() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("b.qcow2");
    qemu_img(&format!(
        "create -f qcow2 -o cluster_size=128k,lazy_refcounts=on,refcount_bits=32 {} 5G",
        p(&base)
    ));
    let ov = dir.path().join("o.qcow2");
    qemu_img(&format!(
        "create -f qcow2 -o compat=0.10 -b b.qcow2 -F qcow2 {}",
        p(&ov)
    ));
    let i = disk::info::info(&base).unwrap();
    let q = i.qcow2.as_ref().unwrap();
    assert_eq!((i.format, i.virtual_size), (Format::Qcow2, 5 << 30));
    assert_eq!(
        (q.version, q.cluster_size, q.refcount_bits),
        (3, 128 * 1024, 32)
    );
    assert!(q.lazy_refcounts && !q.dirty && !q.corrupt);
    let chain = disk::info::backing_chain(&ov, &[dir.path().to_owned()]).unwrap();
    assert_eq!(chain.len(), 2);
    let top = chain[0].info.qcow2.as_ref().unwrap();
    assert_eq!(top.version, 2);
    assert_eq!(
        (top.backing_file.as_deref(), top.backing_format.as_deref()),
        (Some("b.qcow2"), Some("qcow2"))
    );
    assert_eq!(chain[0].info.virtual_size, 5 << 30);
    assert!(
        disk::info::backing_chain(&ov, &[]).is_err(),
        "untrusted chains are not followed"
    );
}
