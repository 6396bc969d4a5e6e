//! `cargo bench --bench virtio_net`: UDP throughput through virtio-net and a tap on a bridge in
//! a network namespace: the host sends 64 MiB in 60 kB datagrams (4 in flight) to the tiny
//! guest, which echoes each one in place; MiB/s each way. Needs root, `ip`, /dev/net/tun.
//! (TCP with iperf3 needs a Linux guest with a user space, which kvm_pvm does not run.)

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[path = "../tests/vmm_support/mod.rs"]
mod vmm_support;

use vmm_support::Vmm;
use vmm_support::netns::{GUEST_IP, GUEST_MAC, HOST_IP, PORT, TOTAL, netns, transfer};

const RUNS: usize = 3;

fn main() {
    if !vmm_support::kvm_available("virtio_net bench") {
        return;
    }
    let ns = match netns() {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!("SKIPPED virtio_net bench: {why}");
            return;
        }
    };
    let mut rates = Vec::new();
    for _ in 0..RUNS {
        let mut vm = Vmm::spawn_in_netns(
            &ns.0,
            &[
                "--kernel",
                tiny_guest::PATH,
                "--net",
                &format!("id=net0,tap=vtap0,mac={GUEST_MAC}"),
                "--cmdline",
                &format!("net ping {GUEST_IP} {HOST_IP}; net echo {PORT}"),
            ],
        );
        vm.wait_prefix("net: echoing");
        let t = transfer(&ns.0);
        assert_eq!(t.sent_hash, t.echoed_hash);
        let rate = (TOTAL >> 20) as f64 / t.secs;
        println!(
            "64 MiB echoed in {:.2} s: {rate:.1} MiB/s each way ({} retransmits)",
            t.secs, t.retransmits
        );
        rates.push(rate);
        vm.send("");
        vm.wait_prefix("net: echoed ");
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "median {:.1} MiB/s each way over {RUNS} runs",
        rates[RUNS / 2]
    );
}
