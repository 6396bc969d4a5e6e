//! Linux user space driving virtio devices under `virga-vmm` in the box (scripts/kvmbox): an ext4
//! root on virtio-blk read-write, raw and as a qcow2 overlay, whose data survives a reboot and a
//! new VMM (checked by e2fsck and qemu-img in the box); virtio-net taking a DHCP lease from a
//! server on the box's bridge, then TCP both ways with throughput figures; the balloon
//! inflating and deflating as the guest (its MemTotal) and the host (the VMM's RSS) see it.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod box_support;

use box_support::*;

/// The box spec for these tests: the guests, plus e2fsck and qemu-img to check disks inside.
fn spec(extra: &[(&str, &str)]) -> Option<Spec> {
    let mut spec = spec_with_guests()?;
    for (host, inside) in extra {
        spec = spec.file(host, inside);
    }
    Some(spec)
}

fn run(test: &str, spec: &Spec, script: &str) -> Option<kvmbox::Run> {
    let run = kvmbox::run(test, spec, &format!(". /kvmbox/lib.sh\n{script}"), T)?;
    assert_eq!(
        run.status, 0,
        "{test}: the box script failed:\n{}",
        run.output
    );
    Some(run)
}

#[test]
fn ext4_root_on_virtio_blk_raw_and_qcow2_overlay_keeps_data_across_reboot_and_a_new_vmm() {
    let test =
        "ext4_root_on_virtio_blk_raw_and_qcow2_overlay_keeps_data_across_reboot_and_a_new_vmm";
    let dir = tempfile::tempdir().unwrap();
    let overlay = dir.path().join("overlay.qcow2");
    // The overlay's backing file as the box sees it; -u: it does not exist here.
    let Some(guests) = linux_guest::artifacts(&["rootfs.ext4"]) else {
        return;
    };
    let size = std::fs::metadata(guests.join("rootfs.ext4")).unwrap().len();
    let made = std::process::Command::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "qcow2",
            "-u",
            "-F",
            "qcow2",
            "-b",
            ROOTFS_QCOW2,
        ])
        .arg(&overlay)
        .arg(size.to_string())
        .status()
        .expect("qemu-img (qemu-utils)");
    assert!(made.success());
    let overlay = overlay.to_str().unwrap();
    let Some(spec) = spec(&[
        (overlay, "/g/overlay.qcow2"),
        ("/sbin/e2fsck", "/usr/sbin/e2fsck"),
        ("/usr/bin/qemu-img", "/usr/bin/qemu-img"),
    ]) else {
        return;
    };
    // First boot writes and reboots the guest; the second reads, writes again and powers off;
    // a new VMM on the same disk reads both.
    let twice = guest_cmd(
        "if [ -f /boot1 ]; then echo \"BOOT2 $(cat /boot1)\"; echo second >/boot2; \
         else echo first >/boot1; echo BOOT1; reboot; sleep 600; fi",
    );
    let again = guest_cmd("echo \"NEWVMM $(cat /boot1) $(cat /boot2)\"");
    let script = format!(
        r#"for fmt in raw qcow2; do
          if [ $fmt = raw ]; then disk=path={ROOTFS_RAW},format=raw
          else disk=path=/g/overlay.qcow2,format=qcow2; fi
          vm_start $fmt-1 --kernel {BZIMAGE} --vcpus 1 --memory 256 --drive id=root,$disk \
            --cmdline '{CMDLINE} root=/dev/vda rw {twice}'
          vm_exit $fmt-1 120; vm_log $fmt-1
          vm_start $fmt-2 --kernel {VMLINUX} --vcpus 2 --memory 256 --drive id=root,$disk \
            --cmdline '{CMDLINE} root=/dev/vda ro {again}'
          vm_exit $fmt-2 120; vm_log $fmt-2
        done
        echo "E2FSCK $(e2fsck -fn {ROOTFS_RAW} >/tmp/fsck 2>&1; echo $?)"; cat /tmp/fsck
        echo "QCOW2-CHECK $(qemu-img check /g/overlay.qcow2 2>&1 | tr '\n' ' ')"
        echo "QCOW2-BACKING $(qemu-img info /g/overlay.qcow2 | grep '^backing file:')""#
    );
    let Some(run) = run(test, &spec, &script) else {
        return;
    };
    for fmt in ["raw", "qcow2"] {
        let first = run.log(&format!("{fmt}-1"));
        assert!(first.contains("BOOT1"), "{fmt}:\n{first}");
        assert!(
            first.contains("BOOT2 first"),
            "{fmt}: after the reboot:\n{first}"
        );
        assert!(first.contains("VIRGA-REBOOT"), "{fmt}:\n{first}");
        assert_eq!(run.exit(&format!("{fmt}-1")).0, 0, "{fmt}:\n{first}");
        let second = run.log(&format!("{fmt}-2"));
        assert!(
            second.contains("NEWVMM first second"),
            "{fmt}: the new VMM reads both boots' files:\n{second}"
        );
    }
    assert_eq!(run.value("E2FSCK").as_deref(), Some("0"), "{}", run.output);
    let check = run.value("QCOW2-CHECK").unwrap_or_default();
    assert!(check.contains("No errors were found"), "{check}");
    assert!(
        run.value("QCOW2-BACKING")
            .is_some_and(|b| b.contains(ROOTFS_QCOW2)),
        "{}",
        run.output
    );
}

#[test]
fn virtio_net_takes_a_dhcp_lease_on_the_box_bridge_and_carries_tcp_both_ways() {
    let test = "virtio_net_takes_a_dhcp_lease_on_the_box_bridge_and_carries_tcp_both_ways";
    let Some(spec) = spec(&[]) else { return };
    // These addresses exist only on the box's own bridge, which has no way out. The guest stays
    // up after its last line (its init would power off at once), so the box can still read the
    // VMM's counters before it kills it: seen once as a control socket already gone.
    let guest = guest_cmd(
        "printf '#!/bin/sh\\n[ \"$1\" = bound ] && ip addr add $ip/$mask dev $interface\\nexit 0\\n' \
           >/tmp/lease.sh; chmod +x /tmp/lease.sh; ip link set eth0 up; \
         udhcpc -i eth0 -f -q -n -t 30 -T 1 -s /tmp/lease.sh >/dev/null 2>&1; \
         echo \"LEASE $(ip -4 -o addr show eth0 | awk '{print $4}')\"; \
         nc -l -p 5002 >/tmp/rx & sleep 0.5; echo RX-LISTENING; \
         dd if=/dev/zero bs=64k count=256 2>/dev/null | nc 10.99.0.1 5001; \
         i=0; while [ $(wc -c </tmp/rx) -lt 16777216 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; \
         echo \"RX-BYTES $(wc -c </tmp/rx)\"; sleep 600",
    );
    let script = format!(
        r#"ip link add br0 type bridge; ip addr add 10.99.0.1/24 dev br0; ip link set br0 up
        ip tuntap add tap0 mode tap; ip link set tap0 master br0; ip link set tap0 up
        printf 'start 10.99.0.50\nend 10.99.0.50\ninterface br0\nmax_leases 1\nlease_file /tmp/leases\npidfile /tmp/udhcpd.pid\nopt subnet 255.255.255.0\n' >/tmp/udhcpd.conf
        touch /tmp/leases; udhcpd -f /tmp/udhcpd.conf >/tmp/udhcpd.out 2>&1 &
        # guest -> box: 16 MiB into a file, timed from its first byte to its last
        socat -u TCP-LISTEN:5001,reuseaddr OPEN:/tmp/from-guest,creat,trunc &
        vm_start net --kernel {BZIMAGE} --initrd {INITRAMFS} --vcpus 2 --memory 512 \
          --net id=n0,tap=tap0 --cmdline '{CMDLINE} {guest}'
        vm_wait net RX-LISTENING 120
        # box -> guest: 16 MiB, timed on the box
        up() {{ cut -d' ' -f1 /proc/uptime; }}
        t0=$(up); dd if=/dev/zero bs=64k count=256 2>/dev/null | socat -u - TCP:10.99.0.50:5002; t1=$(up)
        echo "TO-GUEST-SECONDS $(echo "$t1 $t0" | awk '{{print $1 - $2}}')"
        i=0; while [ ! -s /tmp/from-guest ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; t0=$(up)
        i=0; while [ $(wc -c </tmp/from-guest) -lt 16777216 ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; t1=$(up)
        echo "FROM-GUEST-BYTES $(wc -c </tmp/from-guest)"
        echo "FROM-GUEST-SECONDS $(echo "$t1 $t0" | awk '{{print $1 - $2}}')"
        vm_wait net RX-BYTES 120
        vm_ctl net '{{"cmd":"counters"}}'
        vm_ctl net '{{"cmd":"kill"}}'
        vm_exit net; vm_log net; echo "LEASES $(cat /tmp/udhcpd.out | tr '\n' ' ')""#
    );
    let Some(run) = run(test, &spec, &script) else {
        return;
    };
    let log = run.log("net");
    assert!(
        log.lines().any(|l| l.trim() == "LEASE 10.99.0.50/24"),
        "the guest's DHCP client took the lease:\n{log}\n{}",
        run.output
    );
    assert!(log.contains("RX-BYTES 16777216"), "box -> guest:\n{log}");
    assert_eq!(
        run.value("FROM-GUEST-BYTES").as_deref(),
        Some("16777216"),
        "guest -> box:\n{}",
        run.output
    );
    let secs = |key: &str| -> f64 {
        run.value(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key}:\n{}", run.output))
    };
    let mib_s = |s: f64| 16.0 / s.max(0.01);
    eprintln!(
        "virtio-net in the box (TCG, nested KVM, debug VMM): box -> guest {:.1} MiB/s, \
         guest -> box {:.1} MiB/s",
        mib_s(secs("TO-GUEST-SECONDS")),
        mib_s(secs("FROM-GUEST-SECONDS"))
    );
    let counters = &run.answers("net")[0]["counters"]["n0"];
    assert!(
        counters["bytes_to_guest"].as_u64().unwrap_or(0) >= 16 << 20
            && counters["bytes_from_guest"].as_u64().unwrap_or(0) >= 16 << 20,
        "{counters}"
    );
}

#[test]
fn balloon_inflate_and_deflate_show_in_the_guest_and_in_the_vmm_rss() {
    let test = "balloon_inflate_and_deflate_show_in_the_guest_and_in_the_vmm_rss";
    let Some(spec) = spec(&[]) else { return };
    // The guest touches 300 MiB (so the host holds it), frees it, then reports its memory.
    let guest = guest_cmd(
        "dd if=/dev/zero of=/tmp/fill bs=1M count=300 2>/dev/null; rm /tmp/fill; \
         while :; do echo \"MEM $(awk '/MemTotal/ {print $2}' /proc/meminfo)\"; sleep 0.5; done",
    );
    let script = format!(
        r#"vm_start bal --kernel {BZIMAGE} --initrd {INITRAMFS} --vcpus 2 --memory 512 --balloon \
             --cmdline '{CMDLINE} {guest}'
        vm_wait bal MEM 120; sleep 1.2
        # The newest complete MEM line: the last one may be half written (the console is
        # written a byte at a time), so the one before it.
        last_mem() {{ grep '^MEM ' /tmp/bal.log | sed '$d' | tail -n 1 | cut -d' ' -f2; }}
        # balloon_until PAGES: until the driver holds that many 4 KiB pages.
        balloon_until() {{
          i=0
          while :; do
            a=$(echo '{{"cmd":"balloon_stats"}}' | socat -t 30 - UNIX-CONNECT:/tmp/bal.sock)
            case $a in *"\"actual_pages\":$1,"*) break ;; esac
            i=$((i+1)); [ $i -gt 600 ] && fail "balloon never reached $1 pages: $a"; sleep 0.2
          done
        }}
        echo "BEFORE $(last_mem) $(vm_rss bal)"
        vm_ctl bal '{{"cmd":"balloon_set","target_mib":300}}'
        balloon_until 76800; sleep 1.5
        echo "INFLATED $(last_mem) $(vm_rss bal)"
        vm_ctl bal '{{"cmd":"balloon_set","target_mib":0}}'
        balloon_until 0; sleep 1.5
        echo "DEFLATED $(last_mem) $(vm_rss bal)"
        vm_ctl bal '{{"cmd":"kill"}}'
        vm_exit bal"#
    );
    let Some(run) = run(test, &spec, &script) else {
        return;
    };
    let pair = |key: &str| -> (u64, u64) {
        let v = run
            .value(key)
            .unwrap_or_else(|| panic!("no {key}:\n{}", run.output));
        let mut it = v.split_whitespace().map(|n| n.parse::<u64>().unwrap());
        (it.next().unwrap(), it.next().unwrap())
    };
    let (total0, rss0) = pair("BEFORE");
    let (total1, rss1) = pair("INFLATED");
    let (total2, _) = pair("DEFLATED");
    eprintln!(
        "balloon 300 MiB: guest MemTotal {total0} -> {total1} -> {total2} KiB, \
         VMM RSS {rss0} -> {rss1} KiB"
    );
    // The guest gave up the balloon's 300 MiB and took it back.
    assert!(
        total0 - total1 >= 290 * 1024,
        "MemTotal {total0} -> {total1}"
    );
    assert!(total2 + 1024 >= total0, "MemTotal {total1} -> {total2}");
    // The host got back (at least most of) the 300 MiB the guest had touched.
    assert!(
        rss0 > rss1 && rss0 - rss1 >= 200 * 1024,
        "VMM RSS {rss0} -> {rss1} KiB"
    );
}
