use super::*;
use crate::checksum::digest_reader;
use disk::create::{Qcow2Options, create_qcow2};

fn store(dir: &Path) -> ImageStore {
    ImageStore::open(dir, 64 << 20).unwrap()
}

fn upload(
    s: &ImageStore,
    id: &str,
    data: &[u8],
    fmt: DiskFormat,
) -> Result<StoredImage, StoreError> {
    let mut up = s.begin_upload(id)?;
    for chunk in data.chunks(7919) {
        up.write(chunk)?;
    }
    up.finish(fmt)
}

fn tmp_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("tmp")).unwrap().count()
}

#[test]
fn a_raw_upload_is_published_with_its_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut up = s.begin_upload("img-1").unwrap();
    up.write(&data[..1000]).unwrap();
    assert!(s.path("img-1").is_none(), "nothing visible before finish");
    up.write(&data[1000..]).unwrap();
    let stored = up.finish(DiskFormat::Raw).unwrap();
    let want = digest_reader(&data[..]).unwrap();
    assert_eq!(
        (stored.size, &stored.md5, &stored.sha512),
        (want.size, &want.md5, &want.sha512)
    );
    assert_eq!(stored.virtual_size, Some(data.len() as u64));
    assert_eq!(std::fs::read(s.path("img-1").unwrap()).unwrap(), data);
    let mut back = Vec::new();
    io::Read::read_to_end(&mut s.open_image("img-1").unwrap(), &mut back).unwrap();
    assert_eq!(back, data);
    assert_eq!(tmp_files(dir.path()), 0);
    assert!(matches!(
        s.begin_upload("img-1"),
        Err(StoreError::Exists(_))
    ));
    s.delete("img-1").unwrap();
    assert!(matches!(s.delete("img-1"), Err(StoreError::NotFound(_))));
    assert!(matches!(
        s.open_image("img-1"),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn a_qcow2_upload_reports_its_virtual_size() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("src.qcow2");
    create_qcow2(&img, 3 << 30, &Qcow2Options::default()).unwrap();
    let s = store(&dir.path().join("store"));
    let stored = upload(&s, "q", &std::fs::read(&img).unwrap(), DiskFormat::Qcow2).unwrap();
    assert_eq!(stored.virtual_size, Some(3 << 30));
    assert_eq!(stored.format, DiskFormat::Qcow2);
}

#[test]
fn refusals_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let s = ImageStore::open(dir.path(), 100_000).unwrap();
    let big = vec![1u8; 100_001];
    assert!(matches!(
        upload(&s, "big", &big, DiskFormat::Raw),
        Err(StoreError::TooLarge { limit: 100_000 })
    ));

    let qcow = disk::qcow2::sample::tiny_image();
    let s = store(dir.path());
    let err = upload(&s, "disguised", &qcow, DiskFormat::Raw).unwrap_err();
    assert!(
        matches!(err, StoreError::FormatMismatch { claimed: DiskFormat::Raw, ref actual } if actual == "qcow2"),
        "{err}"
    );
    let err = upload(&s, "kernel", &qcow, DiskFormat::Aki).unwrap_err();
    assert!(matches!(err, StoreError::FormatMismatch { .. }), "{err}");
    let err = upload(&s, "notqcow", &[0u8; 4096], DiskFormat::Qcow2).unwrap_err();
    assert!(matches!(err, StoreError::FormatMismatch { .. }), "{err}");

    let mut dirty = qcow.clone();
    dirty[72..80].copy_from_slice(&1u64.to_be_bytes());
    let err = upload(&s, "dirty", &dirty, DiskFormat::Qcow2).unwrap_err();
    assert!(
        matches!(err, StoreError::Hostile(ref why) if why.contains("dirty")),
        "{err}"
    );
    let err = upload(&s, "vm", b"# Disk DescriptorFile\n", DiskFormat::Vmdk).unwrap_err();
    assert!(matches!(err, StoreError::Unsupported(_)), "{err}");

    for id in ["disguised", "kernel", "notqcow", "dirty", "vm", "big"] {
        assert!(s.path(id).is_none(), "{id} must not be published");
    }
    assert_eq!(tmp_files(dir.path()), 0);
}

#[test]
fn ids_cannot_escape_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    for id in [
        "",
        "..",
        "../etc/passwd",
        "a/b",
        ".hidden",
        "x\0y",
        "é",
        &"a".repeat(129),
    ] {
        assert!(
            matches!(s.begin_upload(id), Err(StoreError::InvalidId(_))),
            "{id:?}"
        );
        assert!(
            matches!(s.open_image(id), Err(StoreError::InvalidId(_))),
            "{id:?}"
        );
        assert!(
            matches!(s.delete(id), Err(StoreError::InvalidId(_))),
            "{id:?}"
        );
        assert!(s.path(id).is_none());
    }
    s.begin_upload("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
        .unwrap();
}

#[test]
fn dropped_and_dead_uploads_are_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let mut up = s.begin_upload("gone").unwrap();
    up.write(b"partial").unwrap();
    assert_eq!(tmp_files(dir.path()), 1);
    drop(up);
    assert_eq!(tmp_files(dir.path()), 0);
    // A file left by a process that no longer exists (pid far above pid_max).
    std::fs::write(dir.path().join("tmp/old.2147483000.0.part"), b"x").unwrap();
    let live = s.begin_upload("live").unwrap();
    let _s2 = store(dir.path());
    assert_eq!(
        tmp_files(dir.path()),
        1,
        "only the live upload's file remains"
    );
    drop(live);
}

#[test]
fn racing_uploads_publish_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let mut a = s.begin_upload("same").unwrap();
    let mut b = s.begin_upload("same").unwrap();
    a.write(b"first").unwrap();
    b.write(b"second").unwrap();
    a.finish(DiskFormat::Raw).unwrap();
    assert!(matches!(
        b.finish(DiskFormat::Raw),
        Err(StoreError::Exists(_))
    ));
    assert_eq!(std::fs::read(s.path("same").unwrap()).unwrap(), b"first");
    assert_eq!(tmp_files(dir.path()), 0);
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 13 % 253) as u8).collect()
}

#[test]
fn a_multi_block_upload_has_the_single_thread_digests() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let data = pattern((3 << 20) + 1);
    let stored = upload(&s, "multi", &data, DiskFormat::Raw).unwrap();
    let mut reference = crate::checksum::Hasher::new();
    reference.update(&data);
    let want = reference.finish();
    assert_eq!(
        (stored.size, &stored.md5, &stored.sha512),
        (want.size, &want.md5, &want.sha512)
    );
    assert_eq!(std::fs::read(s.path("multi").unwrap()).unwrap(), data);
}

#[test]
fn an_oversized_upload_stops_at_the_limit_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let limit = (3 << 20) + 5;
    let s = ImageStore::open(dir.path(), limit).unwrap();
    let mut up = s.begin_upload("huge").unwrap();
    let probe = up.hasher.threads_probe();
    let chunk = vec![9u8; 65536];
    let err = (0..64).try_for_each(|_| up.write(&chunk)).unwrap_err();
    assert!(
        matches!(err, StoreError::TooLarge { limit: l } if l == limit),
        "{err}"
    );
    assert!(up.len() <= limit);
    assert!(up.len() + chunk.len() as u64 > limit);
    drop(up);
    assert!(s.path("huge").is_none());
    assert_eq!(tmp_files(dir.path()), 0);
    assert!(
        probe.upgrade().is_none(),
        "hashing threads outlived the upload"
    );
}

#[test]
fn dropping_an_upload_half_way_leaves_no_file_and_no_thread() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let mut up = s.begin_upload("half").unwrap();
    let probe = up.hasher.threads_probe();
    for c in pattern(5 << 20).chunks(100_000) {
        up.write(c).unwrap();
    }
    assert_eq!(tmp_files(dir.path()), 1);
    assert!(probe.upgrade().is_some());
    drop(up);
    assert_eq!(tmp_files(dir.path()), 0);
    assert!(s.path("half").is_none());
    assert!(
        probe.upgrade().is_none(),
        "hashing threads outlived the upload"
    );
}
