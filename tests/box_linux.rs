//! Linux guests under `virga-vmm` in the box (scripts/kvmbox: a real KVM under QEMU's TCG), with
//! their user space: our minimal kernel through both entry points and Debian's stock cloud kernel;
//! 1, 2 and 4 vCPUs; memory above 4 GiB; the console both ways; shutdown, reboot, panic, pause.
//! Each test is one box run (about 8 s to start) whose script drives the guests inside with the
//! helpers of tests/box_support/lib.sh; the test then checks what the script printed.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod box_support;

use box_support::*;

#[test]
fn minimal_kernel_pvh_with_4_vcpus_and_memory_above_4_gib_reaches_user_space() {
    let test = "minimal_kernel_pvh_with_4_vcpus_and_memory_above_4_gib_reaches_user_space";
    let cmd = guest_cmd("nproc; grep MemTotal /proc/meminfo; cat /proc/tty/driver/serial");
    let Some(run) = run_guests(
        test,
        &format!(
            "vm_start pvh4 --kernel {VMLINUX} --initrd {INITRAMFS} --vcpus 4 --memory 4608 \
             --cmdline '{CMDLINE} {cmd}'
             vm_exit pvh4 120; vm_log pvh4"
        ),
        T,
    ) else {
        return;
    };
    let log = run.log("pvh4");
    let (code, exit) = run.exit("pvh4");
    assert_eq!(code, 0, "powered off: {exit}\n{log}");
    assert!(log.contains("VIRGA-READY"), "{log}");
    let out = cmd_output(&log);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("4"), "nproc:\n{log}");
    let total_kib: u64 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("MemTotal:\n{log}"));
    assert!(
        total_kib > 4 * 1024 * 1024,
        "MemTotal {total_kib} KiB:\n{log}"
    );
    // User space's output went out through the UART's interrupt-driven path (legacy irq 4),
    // not only through printk's polling: COM1 counts what it sent.
    assert!(
        out.lines()
            .any(|l| l.contains("port:000003F8 irq:4 tx:") && !l.contains(" tx:0 ")),
        "{out}"
    );
    assert!(log.contains("VIRGA-POWEROFF (done)"), "{log}");
}

#[test]
fn minimal_kernel_bzimage_console_input_reboot_and_shutdown_through_the_control_socket() {
    let test =
        "minimal_kernel_bzimage_console_input_reboot_and_shutdown_through_the_control_socket";
    let Some(run) = run_guests(
        test,
        &format!(
            r#"vm_start con --kernel {BZIMAGE} --initrd {INITRAMFS} --vcpus 1 --memory 256 \
                 --cmdline '{CMDLINE} virga.shell=1'
            vm_wait con VIRGA-READY
            # Typed on the console, run by the shell init started there.
            vm_type con 'echo typed-$((6 * 7))'
            vm_wait con typed-42
            # reboot in the guest: the VMM (default --on-reset restart) boots it again.
            vm_type con reboot
            vm_wait con VIRGA-REBOOT
            i=0; while [ "$(vm_count con VIRGA-READY)" -lt 2 ]; do
              i=$((i+1)); [ $i -gt 600 ] && fail "no second boot"; sleep 0.1; done
            vm_ctl con '{{"cmd":"info"}}'
            # shutdown presses Ctrl-Alt-Del; the guest's init powers off.
            vm_ctl con '{{"cmd":"shutdown"}}'
            vm_exit con; vm_log con"#
        ),
        T,
    ) else {
        return;
    };
    let log = run.log("con");
    assert!(
        log.lines().any(|l| l.trim() == "typed-42"),
        "the typed line's output:\n{log}"
    );
    let info = &run.answers("con")[0];
    assert_eq!(info["info"]["boots"], 2, "{info}");
    let (code, exit) = run.exit("con");
    assert_eq!(code, 0, "{exit}\n{log}");
    assert_eq!(exit["reason"], "power_off", "{exit}");
    assert!(log.contains("VIRGA-POWEROFF (ctrl-alt-del)"), "{log}");
}

#[test]
fn debian_kernel_with_2_vcpus_finds_its_devices_through_acpi_and_a_panic_ends_the_vmm() {
    let test = "debian_kernel_with_2_vcpus_finds_its_devices_through_acpi_and_a_panic_ends_the_vmm";
    // Debian's unpatched cloud kernel, its virtio drivers loaded from the initramfs, and a data
    // disk, a rng and a balloon found through the DSDT alone.
    let cmd = guest_cmd(
        "echo KERNEL $(uname -r); echo CPUS $(nproc); echo SECTORS $(cat /sys/block/vda/size); \
         echo RNG $(dd if=/dev/hwrng bs=16 count=1 2>/dev/null | od -An -tx1 | tr -d ' \\n'); \
         echo BALLOON $(ls /sys/bus/virtio/drivers/virtio_balloon | grep -c virtio); \
         sleep 1; echo c >/proc/sysrq-trigger",
    );
    let Some(run) = run_guests(
        test,
        &format!(
            "vm_start deb --kernel {DEBIAN_KERNEL} --initrd {DEBIAN_INITRAMFS} --vcpus 2 \
             --memory 512 --drive id=data,path={ROOTFS_RAW},ro=on --rng --balloon \
             --no-virtio-cmdline --cmdline 'console=ttyS0 panic=-1 {cmd}'
             vm_exit deb 120; vm_log deb"
        ),
        T,
    ) else {
        return;
    };
    let log = run.log("deb");
    let (code, exit) = run.exit("deb");
    // The guest's pvpanic driver (ACPI QEMU0001) tells the VMM before the kernel reboots.
    assert_eq!(code, 4, "exit status of a guest panic: {exit}\n{log}");
    assert_eq!(exit["reason"], "guest_panic", "{exit}");
    let value = |key: &str| {
        let prefix = format!("{key} ");
        log.lines()
            .find_map(|l| l.trim().strip_prefix(&prefix).map(str::to_string))
            .unwrap_or_else(|| panic!("no {key} in the guest's output:\n{log}"))
    };
    assert!(value("KERNEL").contains("cloud-amd64"), "{log}");
    assert_eq!(value("CPUS"), "2", "{log}");
    let raw = linux_guest::artifacts_dir().unwrap().join("rootfs.ext4");
    let sectors = std::fs::metadata(raw).unwrap().len() / 512;
    assert_eq!(value("SECTORS"), sectors.to_string(), "{log}");
    let rng = value("RNG");
    assert!(
        rng.len() == 32 && rng != "0".repeat(32),
        "16 bytes from virtio-rng: {rng:?}"
    );
    assert_eq!(value("BALLOON"), "1", "balloon bound:\n{log}");
    assert!(log.contains("Kernel panic"), "{log}");
}

#[test]
fn pause_stops_the_guest_clock_and_resume_continues_it() {
    let test = "pause_stops_the_guest_clock_and_resume_continues_it";
    let cmd = guest_cmd("while :; do echo UP $(cut -d' ' -f1 /proc/uptime); sleep 0.2; done");
    let Some(run) = run_guests(
        test,
        &format!(
            r#"vm_start clk --kernel {BZIMAGE} --initrd {INITRAMFS} --vcpus 2 --memory 256 \
                 --cmdline '{CMDLINE} {cmd}'
            # at_least N: until the guest has printed N uptimes (a loaded host slows it down).
            at_least() {{ i=0; while [ "$(vm_count clk UP)" -lt $1 ]; do
              i=$((i+1)); [ $i -gt 600 ] && fail "fewer than $1 uptimes"; sleep 0.1; done; }}
            at_least 6
            vm_ctl clk '{{"cmd":"pause"}}'
            vm_ctl clk '{{"cmd":"info"}}'
            before=$(vm_count clk UP)
            sleep 6
            echo "PRINTED-WHILE-PAUSED $(( $(vm_count clk UP) - before ))"
            vm_ctl clk '{{"cmd":"resume"}}'
            at_least $((before + 6))
            vm_ctl clk '{{"cmd":"kill"}}'
            vm_exit clk; vm_log clk"#
        ),
        T,
    ) else {
        return;
    };
    let log = run.log("clk");
    assert_eq!(run.answers("clk")[1]["info"]["state"], "paused");
    assert_eq!(
        run.value("PRINTED-WHILE-PAUSED").as_deref(),
        Some("0"),
        "{log}"
    );
    let uptimes: Vec<f64> = log
        .lines()
        .filter_map(|l| l.trim().strip_prefix("UP ")?.parse().ok())
        .collect();
    assert!(uptimes.len() > 10, "{log}");
    let largest_step = uptimes
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(0.0f64, f64::max);
    // Each step is the 0.2 s sleep plus TCG's slowness (under 1 s on a loaded host); across the
    // 6 s pause the guest's clock must not have moved on.
    assert!(
        largest_step < 3.0,
        "the guest's clock jumped {largest_step:.2} s across the pause:\n{log}"
    );
    assert!(
        uptimes.last() > uptimes.first(),
        "the clock runs after resume"
    );
}
