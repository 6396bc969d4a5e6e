//! Root disks and config drives of instances: the base fetched once per host into the cache,
//! a qcow2 overlay per instance grown to the flavor's disk, a config-2 ISO, a snapshot that
//! stands alone, and destroy removing the overlay's registration. Checked with the real
//! `qemu-img` and `isoinfo`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod agent_support;

use agent_support::{Host, kvm_available};
use orchestrator::compute::driver::{Driver, DriverError, InstanceSpec, PowerState};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn qemu_info(path: &Path) -> serde_json::Value {
    let text = run(
        "qemu-img",
        &["info", "--output=json", path.to_str().unwrap()],
    );
    serde_json::from_str(&text).unwrap()
}

/// A 64 MiB qcow2 image (made by qemu-img) with a marker at 1 MiB.
fn image(dir: &Path) -> std::path::PathBuf {
    let raw = dir.join("image.raw");
    let mut data = vec![0u8; 64 << 20];
    data[1 << 20..(1 << 20) + 12].copy_from_slice(b"VIRGA-ROOTFS");
    std::fs::write(&raw, &data).unwrap();
    let qcow = dir.join("image.qcow2");
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            raw.to_str().unwrap(),
            qcow.to_str().unwrap(),
        ],
    );
    qcow
}

fn with_disk(host: &Host, name: &str, image: &Path, image_id: uuid::Uuid) -> InstanceSpec {
    let mut spec = host.tiny(name, "blk");
    spec.root_gb = 1;
    spec.boot.image_id = image_id;
    spec.boot.disk = Some(image.to_owned());
    spec.boot.disk_format = "qcow2".into();
    spec.config_drive.user_data = Some(b"#tiny\necho user data ran\n".to_vec());
    spec
}

/// The tiny guest's `blkwrite` pattern: every 8 bytes of sector `s` hold `s << 16 | seed`.
fn pattern(first_sector: u64, len: usize, seed: u16) -> Vec<u8> {
    (0..len / 8)
        .flat_map(|i| ((first_sector + (i * 8 / 512) as u64) << 16 | u64::from(seed)).to_le_bytes())
        .collect()
}

/// `len` bytes at `offset` of a disk image, read through qemu-img (any format, backing files).
fn bytes_at(image: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let out = std::env::temp_dir().join(format!("agent-disk-{}.raw", uuid::Uuid::new_v4()));
    let (src, dst) = (image.to_str().unwrap(), out.to_str().unwrap());
    run("qemu-img", &["convert", "-O", "raw", src, dst]);
    let mut data = vec![0; len];
    let read = std::fs::File::open(&out).and_then(|f| f.read_exact_at(&mut data, offset));
    let _ = std::fs::remove_file(&out);
    read.unwrap();
    data
}

#[test]
fn root_disk_config_drive_snapshot_and_destroy() {
    if !kvm_available("root_disk_config_drive_snapshot_and_destroy") {
        return;
    }
    let host = Host::new();
    let image = image(host.root.path());
    let image_id = uuid::Uuid::new_v4();
    let mut a = with_disk(&host, "disk-a", &image, image_id);
    // The guest writes 64 KiB at 2 MiB of its root disk (and flushes), then 64 KiB at 4 MiB
    // that it never flushes (the snapshot must hold it all the same).
    a.boot.cmdline = Some("blk; blkwrite 0 4096 65536 5; blkwrite 0 8192 65536 6 noflush".into());
    let b = with_disk(&host, "disk-b", &image, image_id);
    host.agent.spawn(&a).expect("spawn a");
    let cache = host.agent.base_cache();
    let base = cache.base_path(&image_id.to_string()).expect("base cached");
    let base_ino = std::fs::metadata(&base).unwrap().ino();
    host.agent.spawn(&b).expect("spawn b");
    assert_eq!(
        std::fs::metadata(&base).unwrap().ino(),
        base_ino,
        "the base is fetched once per host"
    );
    let mut users = vec![a.id.to_string(), b.id.to_string()];
    users.sort();
    assert_eq!(cache.users(&image_id.to_string()).unwrap(), users);

    // What the guest sees: vda is the overlay (1 GiB), vdb the read-only config drive.
    let console = host.wait_console(a.id, "blkwrite: 65536 bytes seed 5 flushed");
    assert!(
        console.contains("sectors 2097152 rw serial root"),
        "{console}"
    );
    assert!(console.contains("ro serial config-2"), "{console}");
    host.wait_console(a.id, "blkwrite: 65536 bytes seed 6 not flushed");
    let console = host.wait_console(a.id, "user data ran");
    assert!(
        console.contains("config-drive: hostname disk-a"),
        "{console}"
    );
    let overlay = cache.overlay_path(&a.id.to_string()).expect("overlay");
    let info = qemu_info(&overlay);
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["virtual-size"], 1u64 << 30, "grown to root_gb");
    assert_eq!(info["backing-filename"], base.to_str().unwrap());
    // The VMM may follow the overlay's backing file into the cache's bases only.
    let vmm_json = std::fs::read(host.file(a.id, "vmm.json")).unwrap();
    let vmm_cfg: vmm::config::VmConfig = serde_json::from_slice(&vmm_json).unwrap();
    assert_eq!(
        vmm_cfg.drives[0].backing_dirs,
        Some(vec![cache.bases_dir().to_owned()])
    );
    assert!(base.starts_with(cache.bases_dir()));

    // The config drive as cloud-init would find it.
    let iso = host.file(a.id, "config-drive.iso");
    let iso = iso.to_str().unwrap();
    assert!(run("isoinfo", &["-d", "-i", iso]).contains("Volume id: config-2"));
    let meta = run(
        "isoinfo",
        &["-J", "-i", iso, "-x", "/openstack/latest/meta_data.json"],
    );
    assert!(meta.contains("\"hostname\":\"disk-a\""), "{meta}");
    let user = run(
        "isoinfo",
        &["-J", "-i", iso, "-x", "/openstack/latest/user_data"],
    );
    assert_eq!(user, "#tiny\necho user data ran\n");

    // A snapshot of the running guest: standalone, with the image, the guest's flushed write
    // and the one it did not flush (the agent asks the VMM to flush its drives while the
    // guest is paused); consistent for qemu-img; the guest runs on afterwards.
    let snap = host.root.path().join("snap.qcow2");
    host.agent.snapshot(a.id, &snap).expect("snapshot");
    assert_eq!(host.agent.observe(a.id).unwrap().power, PowerState::Running);
    let info = qemu_info(&snap);
    assert_eq!(info["format"], "qcow2");
    assert!(info.get("backing-filename").is_none(), "{info}");
    assert_eq!(bytes_at(&snap, 1 << 20, 12), b"VIRGA-ROOTFS");
    assert!(
        bytes_at(&snap, 2 << 20, 65536) == pattern(4096, 65536, 5),
        "the flushed write is in the snapshot"
    );
    assert!(
        bytes_at(&snap, 4 << 20, 65536) == pattern(8192, 65536, 6),
        "the write the guest did not flush is in the snapshot"
    );
    let check = run("qemu-img", &["check", snap.to_str().unwrap()]);
    assert!(check.contains("No errors"), "{check}");
    assert!(
        bytes_at(&image, 2 << 20, 4096).iter().all(|&b| b == 0),
        "the image is untouched"
    );

    // The snapshot boots as an image of its own, with the guest's data on it.
    let mut c = with_disk(&host, "from-snap", &snap, uuid::Uuid::new_v4());
    c.boot.cmdline = Some("blkread 0 4096 65536 5; blkread 0 8192 65536 6".into());
    host.agent.spawn(&c).expect("spawn from the snapshot");
    host.wait_console(c.id, "blkread: 65536 bytes seed 5 bad sectors 0");
    host.wait_console(c.id, "blkread: 65536 bytes seed 6 bad sectors 0");

    // A paused guest is flushed too and stays paused.
    host.agent.pause(a.id).unwrap();
    let snap2 = host.root.path().join("snap2.qcow2");
    host.agent
        .snapshot(a.id, &snap2)
        .expect("snapshot of a paused guest");
    assert_eq!(host.agent.observe(a.id).unwrap().power, PowerState::Paused);
    assert!(bytes_at(&snap2, 4 << 20, 65536) == pattern(8192, 65536, 6));
    host.agent.unpause(a.id).unwrap();

    for spec in [&a, &b, &c] {
        host.agent.destroy(spec.id).unwrap();
        assert!(cache.overlay_path(&spec.id.to_string()).is_none());
        assert!(!host.agent.instance_dir(spec.id).path().exists());
    }
    assert!(cache.users(&image_id.to_string()).unwrap().is_empty());
}

#[test]
fn disks_that_cannot_be_made_are_refused_before_anything_runs() {
    if !kvm_available("disks_that_cannot_be_made_are_refused_before_anything_runs") {
        return;
    }
    let host = Host::new();
    let image = image(host.root.path());
    let mut small = with_disk(&host, "small", &image, uuid::Uuid::new_v4());
    small.root_gb = 0;
    let big = host.root.path().join("big.qcow2");
    run(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", big.to_str().unwrap(), "2G"],
    );
    small.boot.disk = Some(big);
    small.root_gb = 1;
    let err = host.agent.spawn(&small).unwrap_err();
    assert!(
        matches!(&err, DriverError::Prepare { reason, .. } if reason.contains("too small")),
        "{err}"
    );
    let mut odd = with_disk(&host, "odd", &image, uuid::Uuid::new_v4());
    odd.boot.disk_format = "vmdk".into();
    let err = host.agent.spawn(&odd).unwrap_err();
    assert!(err.to_string().contains("vmdk"), "{err}");
    for spec in [&small, &odd] {
        assert!(!host.agent.instance_dir(spec.id).path().exists());
        assert!(
            host.agent
                .base_cache()
                .overlay_path(&spec.id.to_string())
                .is_none()
        );
    }
    assert!(host.agent.list().is_empty());
}
