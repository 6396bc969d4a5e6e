//! virtio-balloon and virtio-rng end to end on /dev/kvm with the tiny guest: the balloon
//! inflates and deflates on `balloon_set`, the VMM's RSS drops by at least 48 MiB when 64 MiB
//! are inflated, `balloon_stats` reports the guest's numbers; rng hands out random bytes.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod vmm_support;

use tiny_guest::MARKER;
use vmm::control::Request;
use vmm_support::virtio::rss_kib;
use vmm_support::{Vmm, control, kvm_available, wait_for_path};

#[test]
fn balloon_inflates_on_request_and_the_rss_drops() {
    if !kvm_available("balloon_inflates_on_request_and_the_rss_drops") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ctl.sock");
    let mut vm = Vmm::tiny(&[
        "--memory",
        "256",
        "--balloon",
        "deflate_on_oom=on",
        "--control-socket",
        sock.to_str().unwrap(),
        "--cmdline",
        "balloon touch 64; balloon serve",
    ]);
    vm.wait_prefix(MARKER);
    vm.wait_prefix("balloon: touched 64 MiB");
    vm.wait_prefix("balloon: serving");
    wait_for_path(&sock);
    let before = rss_kib(vm.pid());
    assert!(
        before > 64 * 1024,
        "the touched pages are resident: {before} KiB"
    );

    // Statistics from the guest, before any inflation.
    let r = control(&sock, Request::BalloonStats);
    let b = r.balloon.expect("balloon info");
    let stats = b.stats.expect("the guest sent statistics");
    assert_eq!(stats.total_memory, Some(256 << 20));
    assert_eq!((b.target_mib, b.actual_pages, b.inflated_pages), (0, 0, 0));

    assert!(control(&sock, Request::BalloonSet { target_mib: 64 }).ok);
    vm.wait_prefix("balloon: actual 16384 pages");
    let inflated = rss_kib(vm.pid());
    eprintln!("balloon: VMM RSS {before} KiB before, {inflated} KiB with 64 MiB inflated");
    assert!(
        before.saturating_sub(inflated) >= 48 * 1024,
        "RSS {before} KiB -> {inflated} KiB: must drop by 48 MiB or more"
    );
    let b = control(&sock, Request::BalloonStats).balloon.unwrap();
    assert_eq!(
        (b.target_mib, b.actual_pages, b.inflated_pages, b.errors),
        (64, 16384, 16384, 0)
    );
    let free = b.stats.unwrap().free_memory.unwrap();
    assert!(
        free <= (256 - 64) << 20,
        "fresh statistics after inflating: {free}"
    );

    // Deflate halfway, then fully; the guest can use the pages again.
    assert!(control(&sock, Request::BalloonSet { target_mib: 32 }).ok);
    vm.wait_prefix("balloon: actual 8192 pages");
    assert!(control(&sock, Request::BalloonSet { target_mib: 0 }).ok);
    vm.wait_prefix("balloon: actual 0 pages");
    let b = control(&sock, Request::BalloonStats).balloon.unwrap();
    assert_eq!((b.actual_pages, b.inflated_pages), (0, 0));
    let r = control(&sock, Request::BalloonSet { target_mib: 257 });
    assert_eq!(
        r.error.as_deref(),
        Some("balloon target 257 MiB exceeds the guest's 256 MiB")
    );
    vm.send("");
    vm.wait_prefix("balloon: stopped");
    vm.send("balloon touch 64");
    vm.wait_prefix("balloon: touched 64 MiB");
    let c = control(&sock, Request::Counters).counters.unwrap();
    assert_eq!(c["balloon0"].kind, "balloon");
    assert!(c["balloon0"].bytes_from_guest >= 64 << 20, "{c:?}");
    assert!(control(&sock, Request::Kill).ok);
    assert_eq!(vm.exit_code(), Some(0));
}

#[test]
fn rng_hands_out_random_bytes() {
    if !kvm_available("rng_hands_out_random_bytes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ctl.sock");
    let mut vm = Vmm::tiny(&[
        "--rng",
        "--control-socket",
        sock.to_str().unwrap(),
        "--cmdline",
        "virtio; rng; rng 64",
    ]);
    vm.wait_prefix("virtio: slot 0 device 4");
    let a = vm.wait_prefix("rng: 32 bytes, first 0x");
    let b = vm.wait_prefix("rng: 64 bytes, first 0x");
    let first = |l: &str| {
        l.split("first ")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_ne!(first(&a), first(&b), "two reads give different bytes");
    wait_for_path(&sock);
    let c = control(&sock, Request::Counters).counters.unwrap();
    assert_eq!((c["rng0"].requests, c["rng0"].bytes_to_guest), (2, 96));
    // Without a rng the guest finds none.
    drop(vm);
    let mut vm = Vmm::tiny(&["--cmdline", "rng"]);
    vm.wait_prefix("rng: no device");
}
