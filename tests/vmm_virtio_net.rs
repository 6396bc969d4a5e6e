//! virtio-net end to end on /dev/kvm: the tiny guest's NIC on a tap on a bridge in a throw-away
//! network namespace. The host kernel answers the guest's ARP request and ICMP echo; then 64 MiB
//! of UDP go host -> guest -> host (the guest echoes each datagram in place) and the stream's
//! hash is the same both ways. Needs root, `ip` and /dev/net/tun (else SKIPPED; a failure
//! under CI=true).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod vmm_support;

use vmm::control::Request;
use vmm_support::netns::{GUEST_IP, GUEST_MAC, HOST_IP, PORT, TOTAL, netns, open_tap_fd, transfer};
use vmm_support::{Vmm, control, kvm_available, wait_for_path};

#[test]
fn arp_ping_and_64_mib_echoed_through_a_tap_on_a_bridge() {
    if !kvm_available("arp_ping_and_64_mib_echoed_through_a_tap_on_a_bridge") {
        return;
    }
    let ns = match netns() {
        Ok(ns) => ns,
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "the net test cannot run under CI: {why}"
            );
            eprintln!("SKIPPED arp_ping_and_64_mib_echoed: needs root, ip and /dev/net/tun: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ctl.sock");
    let mut vm = Vmm::spawn_in_netns(
        &ns.0,
        &[
            "--kernel",
            tiny_guest::PATH,
            "--control-socket",
            sock.to_str().unwrap(),
            "--net",
            &format!("id=net0,tap=vtap0,mac={GUEST_MAC}"),
            "--cmdline",
            &format!("net; net ping {GUEST_IP} {HOST_IP}; net echo {PORT}"),
        ],
    );
    vm.wait_prefix(&format!("net: mac {GUEST_MAC} status 0x1"));
    vm.wait_prefix("net: arp ");
    vm.wait_prefix("net: ping reply seq 1");
    vm.wait_prefix("net: echoing");

    let t = transfer(&ns.0);
    eprintln!(
        "net: {} MiB echoed in {:.2} s ({:.1} MiB/s each way), {} retransmits",
        TOTAL >> 20,
        t.secs,
        (TOTAL >> 20) as f64 / t.secs,
        t.retransmits
    );
    assert_eq!(t.sent_hash, t.echoed_hash, "same hash both ways: {t:?}");
    vm.send("");
    let line = vm.wait_prefix("net: echoed ");
    let guest_bytes: u64 = line.split(' ').nth(4).unwrap().parse().unwrap();
    assert!(
        guest_bytes >= TOTAL as u64 && guest_bytes <= t.sent_bytes,
        "{line} vs {t:?}"
    );

    wait_for_path(&sock);
    let c = control(&sock, Request::Counters).counters.unwrap();
    let net = &c["net0"];
    assert_eq!(net.kind, "net");
    assert!(net.bytes_to_guest >= TOTAL as u64, "{net:?}");
    assert!(net.bytes_from_guest >= TOTAL as u64, "{net:?}");
    assert!(control(&sock, Request::Kill).ok);
    assert_eq!(vm.exit_code(), Some(0));

    drop(vm);

    // The same tap handed over as an inherited fd (as the compute agent may do): the VMM runs
    // outside the namespace and still reaches the bridge through it.
    let fd = open_tap_fd(&ns.0, "vtap0");
    let mut vm = Vmm::tiny(&[
        "--net",
        &format!("id=net0,tap_fd={fd},mac={GUEST_MAC}"),
        "--cmdline",
        &format!("net ping {GUEST_IP} {HOST_IP}; poweroff"),
    ]);
    vm.wait_prefix("net: ping reply seq 1");
    assert_eq!(vm.exit_code(), Some(0));
    // SAFETY: closes the fd this test opened (the VMM had its own copy).
    unsafe { libc::close(fd) };
}
