//! Hostile images, made with the real qemu-img and then patched, are refused with their reason:
//! by open_disk (what the VMM uses) and by the image store (what uploads go through).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[path = "../../disk/tests/common/mod.rs"]
mod common;

use common::{ok, p, qemu_img};
use disk::{Format, OpenOptions, open_disk};
use images::store::{DiskFormat, ImageStore, StoreError};
use std::path::{Path, PathBuf};

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Self {
        Case {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// A qemu-made v3 image with one allocated cluster.
    fn qcow2(&self, name: &str, extra: &str) -> PathBuf {
        let img = self.path(name);
        qemu_img(&format!("create -f qcow2 {extra} {} 16M", p(&img)));
        ok("qemu-io", &["-c", "write -P 0x42 0 65536", p(&img)]);
        img
    }
    fn trusting(&self) -> OpenOptions {
        OpenOptions::new().trust_backing_dir(self.dir.path())
    }
}

fn patch(img: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

fn be64(img: &Path, offset: u64, v: u64) {
    patch(img, offset, &v.to_be_bytes());
}

/// Asserts opening fails and the message names `why`.
fn refused(img: &Path, opts: &OpenOptions, why: &str) {
    let err = open_disk(img, opts)
        .err()
        .unwrap_or_else(|| panic!("{} was opened", img.display()));
    let msg = err.to_string();
    assert!(
        msg.contains(why),
        "{}: {msg:?} should say {why:?}",
        img.display()
    );
}

/// Asserts the store refuses the image as qcow2 with `why`, and leaves nothing published.
fn store_refuses(img: &Path, why: &str) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path(), 1 << 30).unwrap();
    let mut up = store.begin_upload("img").unwrap();
    up.write(&std::fs::read(img).unwrap()).unwrap();
    let err = up.finish(DiskFormat::Qcow2).unwrap_err();
    assert!(matches!(err, StoreError::Hostile(_)), "{err}");
    assert!(err.to_string().contains(why), "{err:?} should say {why:?}");
    assert!(store.path("img").is_none());
}

#[test]
fn backing_files_pointing_at_host_paths_are_refused() {
    let c = Case::new();
    let img = c.path("evil.qcow2");
    qemu_img(&format!(
        "create -f qcow2 -u -b /etc/passwd -F raw {} 1M",
        p(&img)
    ));
    refused(&img, &OpenOptions::new(), "backing file \"/etc/passwd\"");
    refused(
        &img,
        &c.trusting(),
        "outside the trusted backing directories",
    );
    store_refuses(&img, "backing file");

    // A relative name that climbs out of the trusted directory.
    let img = c.path("climb.qcow2");
    qemu_img(&format!(
        "create -f qcow2 -u -b ../../../../../../etc/passwd -F raw {} 1M",
        p(&img)
    ));
    refused(
        &img,
        &c.trusting(),
        "outside the trusted backing directories",
    );

    // A symlink inside the trusted directory that points out of it.
    std::os::unix::fs::symlink("/etc/passwd", c.path("link.raw")).unwrap();
    let img = c.path("link.qcow2");
    qemu_img(&format!(
        "create -f qcow2 -u -b link.raw -F raw {} 1M",
        p(&img)
    ));
    refused(
        &img,
        &c.trusting(),
        "outside the trusted backing directories",
    );

    // A block device or other non-file as backing.
    let img = c.path("dev.qcow2");
    qemu_img(&format!(
        "create -f qcow2 -u -b /dev/zero -F raw {} 1M",
        p(&img)
    ));
    refused(
        &img,
        &OpenOptions::new().trust_backing_dir("/dev"),
        "not a regular file",
    );
}

#[test]
fn backing_files_without_a_recorded_format_are_not_probed() {
    let c = Case::new();
    let base = c.qcow2("base.qcow2", "");
    let img = c.path("noformat.qcow2");
    qemu_img(&format!(
        "create -f qcow2 -b {} -F qcow2 {}",
        p(&base),
        p(&img)
    ));
    // Turn the backing-format extension into an unknown (ignored) one.
    let data = std::fs::read(&img).unwrap();
    let at = data
        .windows(4)
        .position(|w| w == 0xe279_2acau32.to_be_bytes())
        .unwrap();
    patch(&img, at as u64, &0x1234_5678u32.to_be_bytes());
    refused(&img, &c.trusting(), "records no backing format");
}

#[test]
fn a_raw_backing_holding_qcow2_is_refused() {
    let c = Case::new();
    let base = c.qcow2("base.img", "");
    let img = c.path("top.qcow2");
    qemu_img(&format!(
        "create -f qcow2 -b {} -F raw {}",
        p(&base),
        p(&img)
    ));
    refused(&img, &c.trusting(), "expected raw but the content is qcow2");
}

#[test]
fn backing_chain_loops_are_refused() {
    let c = Case::new();
    let (a, b) = (c.path("a.qcow2"), c.path("b.qcow2"));
    qemu_img(&format!("create -f qcow2 {} 1M", p(&a)));
    qemu_img(&format!("create -f qcow2 -b a.qcow2 -F qcow2 {}", p(&b)));
    qemu_img(&format!("rebase -u -b b.qcow2 -F qcow2 {}", p(&a)));
    refused(&b, &c.trusting(), "deeper than 16");
}

#[test]
fn external_data_files_are_refused() {
    let c = Case::new();
    let img = c.path("data.qcow2");
    let data = c.path("data.raw");
    qemu_img(&format!(
        "create -f qcow2 -o data_file={} {} 1M",
        p(&data),
        p(&img)
    ));
    refused(&img, &c.trusting(), "external data file");
    store_refuses(&img, "external data file");
    // Point it at a host file instead (OSSA-2024-001).
    let bytes = std::fs::read(&img).unwrap();
    let at = bytes
        .windows(p(&data).len())
        .position(|w| w == p(&data).as_bytes())
        .unwrap();
    let mut name = b"/etc/shadow".to_vec();
    name.resize(p(&data).len(), b'/');
    patch(&img, at as u64, &name);
    refused(&img, &c.trusting(), "/etc/shadow");
}

#[test]
fn unknown_or_unsupported_features_are_refused() {
    let c = Case::new();
    let img = c.qcow2("unknown.qcow2", "");
    be64(&img, 72, 1 << 33);
    refused(
        &img,
        &OpenOptions::new(),
        "unknown incompatible feature bits 0x200000000",
    );
    store_refuses(&img, "unknown incompatible feature");

    let img = c.qcow2("dirty.qcow2", "-o lazy_refcounts=on");
    be64(&img, 72, 1);
    refused(&img, &OpenOptions::new(), "dirty");
    let img = c.qcow2("corrupt.qcow2", "");
    be64(&img, 72, 2);
    refused(&img, &OpenOptions::new(), "corrupt");
    let img = c.qcow2("sub.qcow2", "-o extended_l2=on");
    refused(&img, &OpenOptions::new(), "extended L2");

    let img = c.path("enc.qcow2");
    ok(
        "qemu-img",
        &[
            "create",
            "--object",
            "secret,id=s0,data=pw",
            "-f",
            "qcow2",
            "-o",
            "encrypt.format=luks,encrypt.key-secret=s0",
            p(&img),
            "1M",
        ],
    );
    refused(&img, &OpenOptions::new(), "encrypt");
    store_refuses(&img, "encrypt");

    let img = c.path("v1.qcow");
    qemu_img(&format!("create -f qcow {} 1M", p(&img)));
    refused(&img, &OpenOptions::new(), "version 1");
}

#[test]
fn zstd_compression_is_refused() {
    let c = Case::new();
    let img = c.path("zstd.qcow2");
    let out = common::run(
        "qemu-img",
        &[
            "create",
            "-f",
            "qcow2",
            "-o",
            "compression_type=zstd",
            p(&img),
            "1M",
        ],
    );
    if !out.status.success() {
        // qemu-img built without zstd: patch the header bit and field instead.
        qemu_img(&format!("create -f qcow2 {} 1M", p(&img)));
        be64(&img, 72, 1 << 3);
        patch(&img, 104, &[1]);
    }
    refused(
        &img,
        &OpenOptions::new(),
        "compression type other than zlib",
    );
}

#[test]
fn tables_beyond_the_file_or_absurd_sizes_are_refused() {
    let c = Case::new();
    let img = c.qcow2("l1.qcow2", "");
    be64(&img, 40, 1 << 40);
    refused(
        &img,
        &OpenOptions::new(),
        "L1 table at offset 0x10000000000",
    );
    store_refuses(&img, "run past the end");

    let img = c.qcow2("reft.qcow2", "");
    be64(&img, 48, 1 << 40);
    refused(&img, &OpenOptions::new(), "refcount table at offset");

    let img = c.qcow2("size.qcow2", "");
    be64(&img, 24, 1 << 62);
    refused(&img, &OpenOptions::new(), "exceeds the limit");
    store_refuses(&img, "exceeds the limit");

    let img = c.qcow2("l1size.qcow2", "");
    patch(&img, 36, &u32::MAX.to_be_bytes());
    refused(&img, &OpenOptions::new(), "absurd");

    // An L2 entry pointing past the end: found by the deep walk (the store always does it).
    let img = c.qcow2("l2.qcow2", "");
    let bytes = std::fs::read(&img).unwrap();
    let l1 = u64::from_be_bytes(bytes[40..48].try_into().unwrap()) as usize;
    let l2 =
        (u64::from_be_bytes(bytes[l1..l1 + 8].try_into().unwrap()) & 0x00ff_ffff_ffff_fe00) as u64;
    be64(&img, l2, (1 << 63) | (1 << 40));
    let deep = OpenOptions {
        deep_check: true,
        ..OpenOptions::new()
    };
    refused(&img, &deep, "L2 entry 0");
    store_refuses(&img, "beyond the end of the file");
}

#[test]
fn a_claimed_format_that_does_not_match_the_content_is_refused() {
    let c = Case::new();
    let img = c.qcow2("q.img", "");
    let raw_img = c.path("r.img");
    std::fs::write(&raw_img, vec![0u8; 65536]).unwrap();
    refused(
        &raw_img,
        &OpenOptions::new().format(Format::Qcow2),
        "expected qcow2 but the content is raw",
    );
    // A disk the caller says is raw is read as plain bytes, qcow2 header or not: nothing in it
    // is interpreted, so nothing outside it can be reached.
    let raw = open_disk(&img, &OpenOptions::new().format(Format::Raw)).unwrap();
    assert_eq!(raw.size(), std::fs::metadata(&img).unwrap().len());
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path(), 1 << 30).unwrap();
    for claimed in [
        DiskFormat::Raw,
        DiskFormat::Aki,
        DiskFormat::Ari,
        DiskFormat::Ami,
        DiskFormat::Iso,
    ] {
        let mut up = store.begin_upload("x").unwrap();
        up.write(&std::fs::read(&img).unwrap()).unwrap();
        let err = up.finish(claimed).unwrap_err();
        assert!(
            matches!(err, StoreError::FormatMismatch { .. }),
            "{claimed}: {err}"
        );
    }
    // A qemu-made vmdk whose descriptor could name host files is not accepted at all.
    let vmdk = c.path("d.vmdk");
    qemu_img(&format!("create -f vmdk {} 1M", p(&vmdk)));
    let mut up = store.begin_upload("v").unwrap();
    up.write(&std::fs::read(&vmdk).unwrap()).unwrap();
    assert!(matches!(
        up.finish(DiskFormat::Vmdk),
        Err(StoreError::Unsupported(_))
    ));
    refused(&vmdk, &OpenOptions::new(), "vmdk disks are not supported");
}
