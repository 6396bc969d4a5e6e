use super::*;
use disk::backend::open_disk;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

const MIB: u64 = 1 << 20;
const HOUR: Duration = Duration::from_secs(3600);

fn raw_bytes() -> Vec<u8> {
    (0..2 * MIB as usize)
        .map(|i| (i / 4096) as u8 ^ 0x5a)
        .collect()
}

fn ensure_raw(cache: &BaseCache, image: &str) -> PathBuf {
    cache
        .ensure_base(image, DiskFormat::Raw, |w| w.write_all(&raw_bytes()))
        .unwrap()
}

#[test]
fn a_base_is_fetched_once_even_under_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(BaseCache::open(dir.path(), HOUR).unwrap());
    let fetches = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (cache, fetches) = (cache.clone(), fetches.clone());
            std::thread::spawn(move || {
                cache
                    .ensure_base("img", DiskFormat::Raw, |w| {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        w.write_all(&raw_bytes())
                    })
                    .unwrap()
            })
        })
        .collect();
    let paths: Vec<PathBuf> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    assert!(paths.iter().all(|p| p == &paths[0]));
    assert_eq!(std::fs::read(&paths[0]).unwrap(), raw_bytes());
}

#[test]
fn hostile_or_failed_fetches_leave_no_base() {
    let dir = tempfile::tempdir().unwrap();
    let cache = BaseCache::open(dir.path(), HOUR).unwrap();
    let qcow = disk::qcow2::sample::tiny_image();
    let err = cache
        .ensure_base("disguised", DiskFormat::Raw, |w| w.write_all(&qcow))
        .unwrap_err();
    assert!(matches!(err, CacheError::Refused { .. }), "{err}");
    let err = cache
        .ensure_base("broken", DiskFormat::Raw, |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("connection reset"))
        })
        .unwrap_err();
    assert!(err.to_string().contains("connection reset"), "{err}");
    let err = cache
        .ensure_base("k", DiskFormat::Aki, |_| Ok(()))
        .unwrap_err();
    assert!(matches!(err, CacheError::Unsupported { .. }), "{err}");
    assert!(matches!(
        cache.ensure_base("../x", DiskFormat::Raw, |_| Ok(())),
        Err(CacheError::InvalidId(_))
    ));
    assert!(cache.base_path("disguised").is_none() && cache.base_path("broken").is_none());
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn overlays_grow_to_the_disk_size_and_read_the_base() {
    let dir = tempfile::tempdir().unwrap();
    let cache = BaseCache::open(dir.path(), HOUR).unwrap();
    ensure_raw(&cache, "img");
    let err = cache.create_overlay("img", "vm1", Some(MIB)).unwrap_err();
    assert!(matches!(err, CacheError::DiskTooSmall { .. }), "{err}");
    assert!(matches!(
        cache.create_overlay("nope", "vm1", None),
        Err(CacheError::NoBase(_))
    ));
    let overlay = cache.create_overlay("img", "vm1", Some(10 * MIB)).unwrap();
    assert!(matches!(
        cache.create_overlay("img", "vm1", None),
        Err(CacheError::OverlayExists(_))
    ));
    {
        let disk = open_disk(&overlay, &cache.overlay_open_options()).unwrap();
        assert_eq!(disk.size(), 10 * MIB);
        let mut buf = vec![0u8; 8192];
        disk.read_at(&mut buf, 4096).unwrap();
        assert_eq!(buf, raw_bytes()[4096..12288]);
        disk.write_at(&[7u8; 4096], 0).unwrap();
        disk.write_at(&[8u8; 4096], 9 * MIB).unwrap();
        disk.flush().unwrap();
    }
    // Without trusting the bases directory, the overlay's backing file is refused.
    assert!(open_disk(&overlay, &OpenOptions::new()).is_err());
    let chain = disk::info::backing_chain(&overlay, &[cache.bases_dir().to_owned()]).unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1].info.format, Format::Raw);
    // The base itself is never written.
    assert_eq!(
        std::fs::read(cache.base_path("img").unwrap()).unwrap(),
        raw_bytes()
    );
}

#[test]
fn unused_bases_go_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let cache = BaseCache::open(dir.path(), HOUR).unwrap();
    ensure_raw(&cache, "a");
    ensure_raw(&cache, "b");
    cache.create_overlay("a", "vm1", None).unwrap();
    cache.create_overlay("a", "vm2", None).unwrap();
    assert_eq!(cache.users("a").unwrap(), ["vm1", "vm2"]);
    assert!(cache.users("b").unwrap().is_empty());

    let now = SystemTime::now();
    assert!(
        cache.cleanup(now).unwrap().is_empty(),
        "b is unused but inside its grace period"
    );
    assert_eq!(cache.cleanup(now + 2 * HOUR).unwrap(), ["b"], "a is in use");
    assert!(cache.base_path("b").is_none());

    cache.remove_overlay("vm1").unwrap();
    assert!(matches!(
        cache.remove_overlay("vm1"),
        Err(CacheError::NoOverlay(_))
    ));
    assert!(
        cache.cleanup(now + 2 * HOUR).unwrap().is_empty(),
        "vm2 still uses a"
    );
    cache.remove_overlay("vm2").unwrap();
    assert!(
        cache.cleanup(SystemTime::now()).unwrap().is_empty(),
        "a was just released"
    );
    assert_eq!(cache.cleanup(SystemTime::now() + 2 * HOUR).unwrap(), ["a"]);
    assert!(cache.base_path("a").is_none());
    // A removed base can be fetched again.
    ensure_raw(&cache, "a");
    // A base whose lock is held (a fetch or overlay creation in progress) is skipped.
    let held = cache.lock("a").unwrap();
    assert!(
        cache
            .cleanup(SystemTime::now() + 2 * HOUR)
            .unwrap()
            .is_empty()
    );
    drop(held);
    assert_eq!(cache.cleanup(SystemTime::now() + 2 * HOUR).unwrap(), ["a"]);
}

#[test]
fn qcow2_bases_are_validated_and_chained() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.qcow2");
    disk::create::create_qcow2(&src, 4 * MIB, &Qcow2Options::default()).unwrap();
    {
        let d = open_disk(&src, &OpenOptions::new()).unwrap();
        d.write_at(&[3u8; 65536], MIB).unwrap();
        d.flush().unwrap();
    }
    let cache = BaseCache::open(dir.path().join("cache"), HOUR).unwrap();
    let bytes = std::fs::read(&src).unwrap();
    cache
        .ensure_base("q", DiskFormat::Qcow2, |w| w.write_all(&bytes))
        .unwrap();
    let overlay = cache.create_overlay("q", "vm", Some(8 * MIB)).unwrap();
    let disk = open_disk(&overlay, &cache.overlay_open_options()).unwrap();
    let mut buf = vec![0u8; 65536];
    disk.read_at(&mut buf, MIB).unwrap();
    assert!(buf.iter().all(|&b| b == 3));
}
