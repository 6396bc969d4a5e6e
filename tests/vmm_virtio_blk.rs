//! virtio-blk end to end on /dev/kvm with the tiny guest's polling driver: a pattern written
//! survives power-off and a new VMM; read-only drives refuse writes; serials and drive order;
//! a qcow2 overlay reads its base and writes only into itself (qemu-img check clean); the
//! control socket's counters and drive_update.

mod vmm_support;

use std::time::Duration;
use vmm::control::Request;
use vmm_support::virtio::{bad_sectors, qemu_img, read_at, sparse_file, write_pattern};
use vmm_support::{Vmm, control, kvm_available, wait_for_path};

const EXIT: Duration = Duration::from_secs(60);

fn drive(id: &str, path: &std::path::Path, extra: &str) -> String {
    format!("id={id},path={}{extra}", path.display())
}

#[test]
fn pattern_survives_power_off_and_a_new_vmm_reads_it() {
    if !kvm_available("pattern_survives_power_off_and_a_new_vmm_reads_it") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.raw");
    let data = dir.path().join("data.raw");
    sparse_file(&disk, 16);
    sparse_file(&data, 1);
    write_pattern(&data, 0, 1 << 20, 42);

    let mut vm = Vmm::tiny(&[
        "--drive",
        &drive("root", &disk, ",format=raw,serial=ROOT-SERIAL"),
        "--drive",
        &drive("data", &data, ",ro=on"),
        "--cmdline",
        "blk; blkwrite 0 0 4194304 7; blkwrite 0 30000 65536 9; blkwrite 1 0 512 1; poweroff",
    ]);
    // Drive order is slot order; serials default to the id.
    vm.wait_prefix("blk0: slot 0 sectors 32768 rw serial ROOT-SERIAL");
    vm.wait_prefix("blk1: slot 1 sectors 2048 ro serial data");
    vm.wait_prefix("blkwrite: 4194304 bytes seed 7 flushed");
    vm.wait_prefix("blkwrite: 65536 bytes seed 9 flushed");
    // The guest driver refuses to write a drive offered read-only.
    vm.wait_prefix("blk: error read-only");
    assert_eq!(vm.wait_exit(EXIT).code(), Some(0), "{}", vm.stderr_text());

    // The host sees exactly the pattern, where the guest put it.
    assert_eq!(bad_sectors(&read_at(&disk, 0, 4 << 20), 0, 7), 0);
    assert_eq!(bad_sectors(&read_at(&disk, 30000, 65536), 30000, 9), 0);
    assert_eq!(read_at(&disk, 8192, 4096), vec![0; 4096], "nothing beyond");
    assert_eq!(bad_sectors(&read_at(&data, 0, 1 << 20), 0, 42), 0);

    // A new VMM on the same file (now read-only) reads it back.
    let mut vm = Vmm::tiny(&[
        "--drive",
        &drive("root", &disk, ",ro=on"),
        "--drive",
        &drive("data", &data, ""),
        "--cmdline",
        "blkread 0 0 4194304 7; blkread 0 30000 65536 9; blkread 0 0 4096 8; blkread 1 0 1048576 42; poweroff",
    ]);
    vm.wait_prefix("blkread: 4194304 bytes seed 7 bad sectors 0");
    vm.wait_prefix("blkread: 65536 bytes seed 9 bad sectors 0");
    // A wrong seed is noticed (the check is real).
    vm.wait_prefix("blkread: 4096 bytes seed 8 bad sectors 8");
    vm.wait_prefix("blkread: 1048576 bytes seed 42 bad sectors 0");
    assert_eq!(vm.wait_exit(EXIT).code(), Some(0));
}

#[test]
fn qcow2_overlay_reads_its_base_and_writes_only_into_itself() {
    if !kvm_available("qcow2_overlay_reads_its_base_and_writes_only_into_itself") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("base.raw");
    let base = dir.path().join("base.qcow2");
    let overlay = dir.path().join("overlay.qcow2");
    sparse_file(&raw, 8);
    write_pattern(&raw, 0, 8 << 20, 3);
    let (raw_s, base_s, overlay_s) = (
        raw.to_str().unwrap(),
        base.to_str().unwrap(),
        overlay.to_str().unwrap(),
    );
    qemu_img(&["convert", "-f", "raw", "-O", "qcow2", raw_s, base_s]);
    qemu_img(&[
        "create", "-f", "qcow2", "-b", base_s, "-F", "qcow2", overlay_s, "16M",
    ]);
    let base_before = std::fs::read(&base).unwrap();

    let mut vm = Vmm::tiny(&[
        "--drive",
        &drive("root", &overlay, ",format=qcow2"),
        "--cmdline",
        // Base data through the overlay; a write over part of it; the rest of the base still
        // shows; beyond the base (8-16 MiB) reads zeroes, then gets written too.
        "blk; blkread 0 0 8388608 3; blkwrite 0 2048 1048576 5; blkread 0 2048 1048576 5; \
         blkread 0 0 1048576 3; blkread 0 4096 4194304 3; blkwrite 0 20000 65536 6; poweroff",
    ]);
    vm.wait_prefix("blk0: slot 0 sectors 32768 rw");
    vm.wait_prefix("blkread: 8388608 bytes seed 3 bad sectors 0");
    vm.wait_prefix("blkwrite: 1048576 bytes seed 5 flushed");
    vm.wait_prefix("blkread: 1048576 bytes seed 5 bad sectors 0");
    vm.wait_prefix("blkread: 1048576 bytes seed 3 bad sectors 0");
    vm.wait_prefix("blkread: 4194304 bytes seed 3 bad sectors 0");
    vm.wait_prefix("blkwrite: 65536 bytes seed 6 flushed");
    assert_eq!(vm.wait_exit(EXIT).code(), Some(0), "{}", vm.stderr_text());

    assert_eq!(
        std::fs::read(&base).unwrap(),
        base_before,
        "the base is unchanged"
    );
    let check = qemu_img(&["check", overlay_s]);
    assert!(check.contains("No errors"), "{check}");
    // What the overlay holds, as qemu reads it.
    let flat = dir.path().join("flat.raw");
    qemu_img(&["convert", "-O", "raw", overlay_s, flat.to_str().unwrap()]);
    assert_eq!(bad_sectors(&read_at(&flat, 0, 1 << 20), 0, 3), 0);
    assert_eq!(bad_sectors(&read_at(&flat, 2048, 1 << 20), 2048, 5), 0);
    assert_eq!(bad_sectors(&read_at(&flat, 4096, 4 << 20), 4096, 3), 0);
    assert_eq!(bad_sectors(&read_at(&flat, 20000, 65536), 20000, 6), 0);
    // Only the guest's writes were allocated in the overlay (1 MiB + 64 KiB, in 64 KiB
    // clusters): its data is far below the base's 8 MiB.
    let info = qemu_img(&["info", "--output=json", overlay_s]);
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    let used = v["actual-size"].as_u64().unwrap();
    assert!(used < 4 << 20, "overlay uses {used} bytes: {info}");
}

#[test]
fn counters_and_drive_update_over_the_control_socket() {
    if !kvm_available("counters_and_drive_update_over_the_control_socket") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ctl.sock");
    let first = dir.path().join("first.raw");
    let second = dir.path().join("second.raw");
    sparse_file(&first, 2);
    write_pattern(&first, 0, 1 << 20, 11);
    sparse_file(&second, 4);
    write_pattern(&second, 0, 1 << 20, 12);
    let mut vm = Vmm::tiny(&[
        "--control-socket",
        sock.to_str().unwrap(),
        "--drive",
        &drive("vol", &first, ""),
        "--cmdline",
        "blkread 0 0 1048576 11",
    ]);
    vm.wait_prefix("blkread: 1048576 bytes seed 11 bad sectors 0");
    wait_for_path(&sock);
    let r = control(&sock, Request::Counters);
    let c = &r.counters.expect("counters")["vol"];
    assert_eq!(c.kind, "blk");
    assert!(c.requests >= 1, "{c:?}");
    assert!(c.bytes_to_guest >= 1 << 20, "{c:?}");
    assert_eq!((c.bytes_from_guest, c.errors), (0, 0), "{c:?}");

    let r = control(
        &sock,
        Request::DriveUpdate {
            id: "nope".into(),
            path: second.clone(),
        },
    );
    assert_eq!(r.error.as_deref(), Some("no drive \"nope\""));
    let r = control(
        &sock,
        Request::DriveUpdate {
            id: "vol".into(),
            path: dir.path().join("missing.raw"),
        },
    );
    assert!(r.error.unwrap().contains("missing.raw"));
    let r = control(
        &sock,
        Request::DriveUpdate {
            id: "vol".into(),
            path: second.clone(),
        },
    );
    assert!(r.ok, "{r:?}");
    vm.send("blk");
    vm.wait_prefix("blk0: slot 0 sectors 8192 rw");
    vm.send("blkread 0 0 1048576 12");
    vm.wait_prefix("blkread: 1048576 bytes seed 12 bad sectors 0");
    let r = control(&sock, Request::BalloonStats);
    assert_eq!(r.error.as_deref(), Some("this VM has no balloon"));
    assert!(control(&sock, Request::Kill).ok);
    assert_eq!(vm.exit_code(), Some(0));
}

#[test]
fn bad_device_options_are_refused_before_the_guest_runs() {
    if !kvm_available("bad_device_options_are_refused_before_the_guest_runs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.qcow2");
    std::fs::write(&garbage, b"QFI\xfb but not really a qcow2 image").unwrap();
    let missing = dir.path().join("missing.raw");
    let cases: [(&[&str], &str); 5] = [
        (&["--drive", &drive("root", &missing, "")], "drive root: "),
        (
            &["--drive", &drive("root", &garbage, ",format=qcow2")],
            "drive root: ",
        ),
        (&["--drive", "id=root"], "path= is required"),
        (
            &["--net", "id=n0"],
            "net n0: give exactly one of tap and tap_fd",
        ),
        (
            &["--net", "id=n0,tap_fd=999"],
            "net n0: tap_fd 999 is not an open file descriptor",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["--kernel", tiny_guest::PATH];
        all.extend_from_slice(args);
        let (status, stderr) = vmm_support::run_to_end(&all, EXIT);
        assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: want {want:?} in {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
