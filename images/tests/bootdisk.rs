//! `images::bootdisk` on real partitioned images: GPT and MBR tables written by `sfdisk`, ext4
//! file systems by `mke2fs -d` from a staging tree with fake kernels, raw and qcow2 (through
//! `qemu-img convert`); and hostile variants, each refused with its own error.
//! Needs `fdisk`, `e2fsprogs`, `qemu-utils` (scripts/packages/cloudimage.txt).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use disk::OpenOptions;
use images::bootdisk::{BootDiskError, Limits, TableKind, find_boot_files};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const MIB: u64 = 1 << 20;
const ROOT_UUID: &str = "5b0ed9f6-6c3e-4a41-9d0a-7a1f0e2c9b11";
const FS_UUID: &str = "2c4b3f0e-9a7d-4c61-8e55-0d3b6f1a7e21";
const LINUX: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

fn run(cmd: &mut Command) {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!("{cmd:?}: {e} (scripts/packages/cloudimage.txt lists the tools)")
    });
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fake bzImage: `HdrS` at 0x202, then `tag` so each kernel is told apart.
fn kernel(tag: &str) -> Vec<u8> {
    let mut k = vec![0u8; 4096];
    k[0x202..0x206].copy_from_slice(b"HdrS");
    k.extend_from_slice(tag.as_bytes());
    k
}

fn initrd(tag: &str) -> Vec<u8> {
    format!("070701 fake initrd {tag}").into_bytes()
}

/// A staging tree: `/boot` with a kernel and initrd per version, and the given links.
struct Tree {
    dir: PathBuf,
}

impl Tree {
    fn new(parent: &Path) -> Tree {
        let dir = parent.join(format!("tree-{}", rand_tag()));
        fs::create_dir_all(dir.join("boot")).unwrap();
        fs::create_dir_all(dir.join("etc")).unwrap();
        fs::write(dir.join("etc/hostname"), "debian\n").unwrap();
        Tree { dir }
    }
    fn version(self, v: &str, with_initrd: bool) -> Tree {
        fs::write(self.dir.join(format!("boot/vmlinuz-{v}")), kernel(v)).unwrap();
        if with_initrd {
            fs::write(self.dir.join(format!("boot/initrd.img-{v}")), initrd(v)).unwrap();
        }
        self
    }
    fn link(self, at: &str, to: &str) -> Tree {
        symlink(to, self.dir.join(at.trim_start_matches('/'))).unwrap();
        self
    }
    fn file(self, at: &str, data: &[u8]) -> Tree {
        fs::write(self.dir.join(at.trim_start_matches('/')), data).unwrap();
        self
    }
    fn dir(self, at: &str) -> Tree {
        fs::create_dir_all(self.dir.join(at.trim_start_matches('/'))).unwrap();
        self
    }
}

fn rand_tag() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// What goes in one partition.
enum Part<'a> {
    /// An ext4 file system made from the tree.
    Ext4(&'a Tree),
    /// Zeroes (an EFI system partition without a file system, say).
    Empty,
}

/// A disk of `mib` MiB with the partitions (each `size` MiB, from 1 MiB on), `label` gpt or dos.
fn disk(dir: &Path, label: &str, mib: u64, parts: &[(u64, &str, Part)]) -> PathBuf {
    let path = dir.join(format!("disk-{}.raw", rand_tag()));
    fs::File::create(&path).unwrap().set_len(mib * MIB).unwrap();
    let mut script = format!("label: {label}\n");
    if label == "gpt" {
        script.push_str("label-id: 8E0A0D5C-57A4-4F0E-9C1B-1F6F3A8C7D01\n");
    } else {
        script.push_str("label-id: 0x12345678\n");
    }
    let mut start = 1;
    for (i, (size, ty, _)) in parts.iter().enumerate() {
        let uuid = if label == "gpt" && i == parts.len() - 1 {
            format!(", uuid={ROOT_UUID}")
        } else {
            String::new()
        };
        script.push_str(&format!(
            "start={}, size={}, type={ty}{uuid}\n",
            start * 2048,
            size * 2048
        ));
        start += size;
    }
    let mut child = Command::new("sfdisk")
        .arg("-q")
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("sfdisk (Debian package fdisk)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "sfdisk:\n{script}");
    let mut start = 1;
    for (size, _, part) in parts {
        if let Part::Ext4(tree) = part {
            run(Command::new("mke2fs")
                .args(["-q", "-F", "-t", "ext4", "-L", "root", "-U", FS_UUID])
                .arg("-E")
                .arg(format!("offset={}", start * MIB))
                .arg("-d")
                .arg(&tree.dir)
                .arg(&path)
                .arg(format!("{}k", size * 1024)));
        }
        start += size;
    }
    path
}

fn to_qcow2(raw: &Path) -> PathBuf {
    let q = raw.with_extension("qcow2");
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(raw)
        .arg(&q));
    q
}

fn find(path: &Path) -> Result<images::bootdisk::BootFiles, BootDiskError> {
    find_boot_files(path, &OpenOptions::new(), &Limits::default())
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn debian_layout_on_gpt_behind_an_esp_raw_and_qcow2() {
    let t = tmp();
    // Debian's links at the root, an older kernel beside the current one.
    let tree = Tree::new(t.path())
        .version("6.1.0-13-cloud-amd64", true)
        .version("6.12.95+deb12-cloud-amd64", true)
        .link("/vmlinuz", "boot/vmlinuz-6.1.0-13-cloud-amd64")
        .link("/initrd.img", "boot/initrd.img-6.1.0-13-cloud-amd64");
    let raw = disk(
        t.path(),
        "gpt",
        16,
        &[(2, ESP, Part::Empty), (12, LINUX, Part::Ext4(&tree))],
    );
    for image in [raw.clone(), to_qcow2(&raw)] {
        let b = find(&image).unwrap_or_else(|e| panic!("{}: {e}", image.display()));
        // The link wins over the newer version: it names what the distribution boots.
        assert_eq!(b.kernel_path, "/boot/vmlinuz-6.1.0-13-cloud-amd64");
        assert_eq!(b.kernel, kernel("6.1.0-13-cloud-amd64"));
        assert_eq!(
            b.initrd_path.as_deref(),
            Some("/boot/initrd.img-6.1.0-13-cloud-amd64")
        );
        assert_eq!(b.initrd, Some(initrd("6.1.0-13-cloud-amd64")));
        assert_eq!(b.root.table, TableKind::Gpt);
        assert_eq!(b.root.partition.number, 2);
        assert_eq!(b.root.partition.start, 3 * MIB);
        assert_eq!(b.root.partition.len, 12 * MIB);
        assert_eq!(b.root.fs_uuid, FS_UUID);
        assert_eq!(b.root.fs_label, "root");
        assert_eq!(b.root_arg(), format!("root=PARTUUID={ROOT_UUID}"));
    }
}

#[test]
fn without_links_the_newest_boot_kernel_and_its_initrd() {
    let t = tmp();
    let tree = Tree::new(t.path())
        .version("6.9.3-amd64", true)
        .version("6.12.1-amd64", true)
        .version("6.10.0-amd64", true)
        .file("/boot/config-6.99", b"not a kernel");
    let raw = disk(t.path(), "gpt", 12, &[(10, LINUX, Part::Ext4(&tree))]);
    let b = find(&raw).unwrap();
    assert_eq!(b.kernel_path, "/boot/vmlinuz-6.12.1-amd64");
    assert_eq!(b.kernel, kernel("6.12.1-amd64"));
    assert_eq!(b.initrd, Some(initrd("6.12.1-amd64")));
    assert_eq!(b.root.partition.number, 1);
}

#[test]
fn boot_links_and_a_kernel_link_without_initrd_link() {
    let t = tmp();
    // /boot/vmlinuz (no /boot/initrd.img): the initrd of the version the link names.
    let tree = Tree::new(t.path())
        .version("5.10.0-9-amd64", true)
        .version("5.10.0-28-amd64", true)
        .link("/boot/vmlinuz", "vmlinuz-5.10.0-9-amd64");
    let raw = disk(t.path(), "gpt", 12, &[(10, LINUX, Part::Ext4(&tree))]);
    let b = find(&raw).unwrap();
    assert_eq!(b.kernel_path, "/boot/vmlinuz-5.10.0-9-amd64");
    assert_eq!(b.initrd, Some(initrd("5.10.0-9-amd64")));
}

#[test]
fn a_kernel_without_initrd_is_returned_alone() {
    let t = tmp();
    let tree = Tree::new(t.path()).version("6.12.0", false);
    let raw = disk(t.path(), "gpt", 12, &[(10, LINUX, Part::Ext4(&tree))]);
    let b = find(&raw).unwrap();
    assert_eq!(b.kernel_path, "/boot/vmlinuz-6.12.0");
    assert_eq!(b.initrd, None);
    assert_eq!(b.initrd_path, None);
}

#[test]
fn mbr_disk_gives_the_signature_partuuid() {
    let t = tmp();
    let tree = Tree::new(t.path())
        .version("6.12.0", true)
        .link("/vmlinuz", "/boot/vmlinuz-6.12.0")
        .link("/initrd.img", "/boot/initrd.img-6.12.0");
    let raw = disk(
        t.path(),
        "dos",
        16,
        &[(2, "ef", Part::Empty), (12, "83", Part::Ext4(&tree))],
    );
    let b = find(&raw).unwrap();
    assert_eq!(b.root.table, TableKind::Mbr);
    assert_eq!(b.root.partition.number, 2);
    assert_eq!(b.root_arg(), "root=PARTUUID=12345678-02");
    // An absolute link target resolves inside the image, not on the host.
    assert_eq!(b.kernel_path, "/boot/vmlinuz-6.12.0");
    assert_eq!(b.initrd, Some(initrd("6.12.0")));
}

// ---- bad and hostile input: each a precise error, never a panic ----

fn expect_err(path: &Path, limits: &Limits) -> BootDiskError {
    match find_boot_files(path, &OpenOptions::new(), limits) {
        Ok(b) => panic!("{}: expected an error, got {b:?}", path.display()),
        Err(e) => e,
    }
}

#[test]
fn a_bare_file_system_or_zeroes_is_no_partition_table() {
    let t = tmp();
    let tree = Tree::new(t.path()).version("6.12.0", true);
    let bare = t.path().join("bare.ext4");
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(&tree.dir)
        .arg(&bare)
        .arg("8M"));
    let zero = t.path().join("zero.raw");
    fs::File::create(&zero).unwrap().set_len(4 * MIB).unwrap();
    let tiny = t.path().join("tiny.raw");
    fs::write(&tiny, [0u8; 100]).unwrap();
    for p in [&bare, &zero, &tiny] {
        let e = expect_err(p, &Limits::default());
        assert!(
            matches!(e, BootDiskError::NoPartitionTable(_)),
            "{}: {e}",
            p.display()
        );
    }
}

#[test]
fn no_ext_partition_and_no_kernel() {
    let t = tmp();
    let raw = disk(
        t.path(),
        "gpt",
        8,
        &[(2, ESP, Part::Empty), (4, LINUX, Part::Empty)],
    );
    let e = expect_err(&raw, &Limits::default());
    assert!(
        matches!(e, BootDiskError::NoExtPartition { count: 2, .. }),
        "{e}"
    );

    let tree = Tree::new(t.path())
        .file("/boot/config-6.12", b"x")
        .link("/vmlinuz", "boot/vmlinuz-gone");
    let raw = disk(t.path(), "gpt", 12, &[(10, LINUX, Part::Ext4(&tree))]);
    let e = expect_err(&raw, &Limits::default());
    assert!(
        matches!(e, BootDiskError::NoKernel { ref partitions } if partitions == &[1]),
        "{e}"
    );
}

#[test]
fn a_truncated_image_is_refused() {
    let t = tmp();
    let tree = Tree::new(t.path()).version("6.12.0", true);
    let raw = disk(t.path(), "gpt", 12, &[(10, LINUX, Part::Ext4(&tree))]);
    let q = to_qcow2(&raw);
    // The raw file cut inside the partition: the table still reads (the backup GPT is gone).
    let f = fs::OpenOptions::new().write(true).open(&raw).unwrap();
    f.set_len(6 * MIB).unwrap();
    let e = expect_err(&raw, &Limits::default());
    assert!(
        matches!(e, BootDiskError::PartitionPastEnd { number: 1, disk_size, .. } if disk_size == 6 * MIB),
        "{e}"
    );
    // A qcow2 cut short: its own validation refuses it before any table is read.
    let len = fs::metadata(&q).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&q).unwrap();
    f.set_len(len / 2).unwrap();
    let e = expect_err(&q, &Limits::default());
    assert!(matches!(e, BootDiskError::Open(_)), "{e}");
}

#[test]
fn a_symlink_loop_is_named() {
    let t = tmp();
    let tree = Tree::new(t.path())
        .version("6.12.0", true)
        .link("/vmlinuz", "vmlinuz.a")
        .link("/vmlinuz.a", "/vmlinuz");
    let raw = disk(t.path(), "gpt", 12, &[(10, LINUX, Part::Ext4(&tree))]);
    let e = expect_err(&raw, &Limits::default());
    assert!(
        matches!(e, BootDiskError::SymlinkLoop { partition: 1, ref path } if path == "/vmlinuz"),
        "{e}"
    );
}

#[test]
fn sizes_over_the_limits_are_refused_before_reading() {
    let t = tmp();
    let tree = Tree::new(t.path()).version("6.12.0", true);
    let raw = disk(t.path(), "gpt", 12, &[(10, LINUX, Part::Ext4(&tree))]);
    let small_kernel = Limits {
        kernel_max: 1024,
        ..Limits::default()
    };
    let e = expect_err(&raw, &small_kernel);
    assert!(
        matches!(
            e,
            BootDiskError::TooLarge {
                what: "a kernel",
                limit: 1024,
                ..
            }
        ),
        "{e}"
    );
    let small_initrd = Limits {
        initrd_max: 4,
        ..Limits::default()
    };
    let e = expect_err(&raw, &small_initrd);
    assert!(
        matches!(
            e,
            BootDiskError::TooLarge {
                what: "an initrd",
                ..
            }
        ),
        "{e}"
    );
    // A sparse "kernel" claiming 600 MiB against the default 512 MiB cap: refused by its size.
    let huge = Tree::new(t.path());
    let f = fs::File::create(huge.dir.join("boot/vmlinuz-9.9")).unwrap();
    f.set_len(600 * MIB).unwrap();
    let raw = disk(t.path(), "gpt", 12, &[(10, LINUX, Part::Ext4(&huge))]);
    let e = expect_err(&raw, &Limits::default());
    assert!(
        matches!(e, BootDiskError::TooLarge { size, .. } if size == 600 * MIB),
        "{e}"
    );
}

#[test]
fn not_a_kernel_and_not_a_file() {
    let t = tmp();
    let tree = Tree::new(t.path()).file("/boot/vmlinuz-6.12.0", b"#!/bin/sh\necho hi\n");
    let raw = disk(t.path(), "gpt", 12, &[(10, LINUX, Part::Ext4(&tree))]);
    let e = expect_err(&raw, &Limits::default());
    assert!(matches!(e, BootDiskError::NotAKernel { .. }), "{e}");

    let tree = Tree::new(t.path()).dir("/vmlinuz");
    let raw = disk(t.path(), "gpt", 12, &[(10, LINUX, Part::Ext4(&tree))]);
    let e = expect_err(&raw, &Limits::default());
    assert!(
        matches!(e, BootDiskError::NotAFile { ref path, .. } if path == "/vmlinuz"),
        "{e}"
    );
}

#[test]
fn a_corrupt_file_system_is_an_ext4_error() {
    let t = tmp();
    let tree = Tree::new(t.path()).version("6.12.0", true);
    let raw = disk(t.path(), "gpt", 12, &[(10, LINUX, Part::Ext4(&tree))]);
    // The superblock's log2 block size (byte 24) made absurd; the magic stays.
    patch(&raw, MIB + 1024 + 24, &40u32.to_le_bytes());
    let e = expect_err(&raw, &Limits::default());
    assert!(matches!(e, BootDiskError::Ext4 { partition: 1, .. }), "{e}");
}

// GPT headers rewritten with valid checksums, so only our own checks stand between them and
// gptman (which would allocate for 2^32 entries, or panic on an entry at LBA 0).

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn patch(path: &Path, at: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, at).unwrap();
}

fn read(path: &Path, at: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut buf, at)
        .unwrap();
    buf
}

/// Rewrites the primary GPT header (LBA 1) with `edit`, then its checksum.
fn edit_primary_header(path: &Path, edit: impl FnOnce(&mut [u8])) {
    let mut h = read(path, 512, 92);
    edit(&mut h);
    h[16..20].fill(0);
    let crc = crc32(&h);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    patch(path, 512, &h);
}

fn simple_gpt(t: &Path) -> PathBuf {
    let tree = Tree::new(t).version("6.12.0", true);
    disk(t, "gpt", 12, &[(10, LINUX, Part::Ext4(&tree))])
}

#[test]
fn hostile_gpt_entry_counts_sizes_and_locations() {
    let t = tmp();
    type Edit = fn(&mut [u8]);
    let cases: [(&str, Edit); 4] = [
        ("4294967295 partition entries", |h| {
            h[80..84].copy_from_slice(&u32::MAX.to_le_bytes())
        }),
        ("entries of 64 bytes", |h| {
            h[84..88].copy_from_slice(&64u32.to_le_bytes())
        }),
        ("outside the disk", |h| {
            h[72..80].copy_from_slice(&(u64::MAX / 2).to_le_bytes())
        }),
        ("outside the disk", |h| {
            h[72..80].copy_from_slice(&100_000u64.to_le_bytes())
        }),
    ];
    for (want, edit) in cases {
        let raw = simple_gpt(t.path());
        edit_primary_header(&raw, edit);
        let e = expect_err(&raw, &Limits::default());
        assert!(
            matches!(e, BootDiskError::Gpt(ref m) if m.contains(want)),
            "want {want:?}, got: {e}"
        );
    }
}

#[test]
fn hostile_gpt_partition_at_lba_0() {
    let t = tmp();
    let raw = simple_gpt(t.path());
    // Entry 1 starts at LBA 0; the entry array's checksum and the header's are fixed up.
    patch(&raw, 1024 + 32, &0u64.to_le_bytes());
    let array = read(&raw, 1024, 128 * 128);
    let array_crc = crc32(&array);
    edit_primary_header(&raw, |h| {
        h[88..92].copy_from_slice(&array_crc.to_le_bytes())
    });
    let e = expect_err(&raw, &Limits::default());
    assert!(
        matches!(e, BootDiskError::Gpt(ref m) if m.contains("starts at LBA 0")),
        "{e}"
    );
}

#[test]
fn a_gpt_with_a_bad_checksum_falls_back_to_its_backup_and_without_both_is_refused() {
    let t = tmp();
    let raw = simple_gpt(t.path());
    // The primary header's checksum broken: gptman reads the backup at the last LBA.
    patch(&raw, 512 + 16, &[1, 2, 3, 4]);
    let b = find(&raw).unwrap();
    assert_eq!(b.root_arg(), format!("root=PARTUUID={ROOT_UUID}"));
    // And the backup's too: refused with both reasons.
    patch(&raw, 12 * MIB - 512 + 16, &[1, 2, 3, 4]);
    let e = expect_err(&raw, &Limits::default());
    assert!(
        matches!(e, BootDiskError::Gpt(ref m) if m.contains("primary header") && m.contains("backup header")),
        "{e}"
    );
}

#[test]
fn a_gpt_without_its_protective_mbr_is_not_read() {
    let t = tmp();
    let raw = simple_gpt(t.path());
    patch(&raw, 510, &[0, 0]);
    let e = expect_err(&raw, &Limits::default());
    assert!(
        matches!(e, BootDiskError::NoPartitionTable(ref m) if m.contains("no protective MBR")),
        "{e}"
    );
}

/// The base cache unpacks a cached image's kernel once (`boot/<image>/`), remembers an image
/// with none and why, and drops both with their bases.
#[test]
fn the_base_cache_unpacks_an_images_kernel_once_and_remembers_one_without() {
    use images::cache::{BaseCache, ImageBoot};
    use images::store::DiskFormat;
    use std::time::{Duration, SystemTime};
    let t = tmp();
    let tree = Tree::new(t.path())
        .version("6.12.95+deb12-cloud-amd64", true)
        .link("/vmlinuz", "boot/vmlinuz-6.12.95+deb12-cloud-amd64")
        .link("/initrd.img", "boot/initrd.img-6.12.95+deb12-cloud-amd64");
    let raw = disk(t.path(), "gpt", 12, &[(10, LINUX, Part::Ext4(&tree))]);
    let qcow2 = to_qcow2(&raw);
    let cache = BaseCache::open(t.path().join("cache"), Duration::ZERO).unwrap();
    let copy = |from: &Path| {
        let from = from.to_owned();
        move |out: &mut dyn std::io::Write| {
            std::io::copy(&mut fs::File::open(&from)?, out).map(drop)
        }
    };
    let img = "0b5e6f0c-1d2e-4f3a-8b4c-5d6e7f8a9b0c";
    // Not cached yet: a precise error, nothing unpacked.
    let err = cache
        .image_boot(img, DiskFormat::Qcow2, &Limits::default())
        .unwrap_err();
    assert!(err.to_string().contains("not cached"), "{err}");
    cache
        .ensure_base(img, DiskFormat::Qcow2, copy(&qcow2))
        .unwrap();
    let ImageBoot::Kernel(files) = cache
        .image_boot(img, DiskFormat::Qcow2, &Limits::default())
        .unwrap()
    else {
        panic!("no kernel found");
    };
    assert_eq!(
        fs::read(&files.kernel).unwrap(),
        kernel("6.12.95+deb12-cloud-amd64")
    );
    let initrd_file = files.initrd.clone().expect("the initrd");
    assert_eq!(
        fs::read(&initrd_file).unwrap(),
        initrd("6.12.95+deb12-cloud-amd64")
    );
    assert_eq!(files.root_arg, format!("root=PARTUUID={ROOT_UUID}"));
    // Once: a second look reads the unpacked files (changing one shows it is not redone).
    fs::write(&files.kernel, b"unpacked already").unwrap();
    let again = cache
        .image_boot(img, DiskFormat::Qcow2, &Limits::default())
        .unwrap();
    assert_eq!(again, ImageBoot::Kernel(files.clone()));
    assert_eq!(fs::read(&files.kernel).unwrap(), b"unpacked already");

    // A bare file system (no partition table, as our test root disks are): no kernel, and why.
    let bare = t.path().join("bare.ext4");
    fs::File::create(&bare).unwrap().set_len(4 * MIB).unwrap();
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4"])
        .arg(&bare));
    let plain = "9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
    cache
        .ensure_base(plain, DiskFormat::Raw, copy(&bare))
        .unwrap();
    for _ in 0..2 {
        match cache
            .image_boot(plain, DiskFormat::Raw, &Limits::default())
            .unwrap()
        {
            ImageBoot::NotBootable(why) => assert!(why.contains("partition table"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
    // Hostile ids are refused before any path is made of them.
    assert!(
        cache
            .image_boot("../bases", DiskFormat::Raw, &Limits::default())
            .is_err()
    );

    // No overlay uses either base: cleanup takes the bases and what was unpacked from them.
    let removed = cache
        .cleanup(SystemTime::now() + Duration::from_secs(1))
        .unwrap();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(!files.kernel.exists() && !initrd_file.exists());
    assert!(
        fs::read_dir(t.path().join("cache/boot"))
            .unwrap()
            .next()
            .is_none()
    );
}
