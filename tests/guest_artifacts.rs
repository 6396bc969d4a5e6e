//! Checks the guest artifacts `guest/build.sh` left in `guest/current/` of the cache:
//! the kernel config holds every line of `kernel/virga.config`, vmlinux carries the PVH note,
//! the bzImage is a 64-bit LZ4 boot-protocol image, the initramfs and the ext4 root hold our
//! init and busybox, and the qcow2 passes `qemu-img check` with the raw image's bytes.
//! Without artifacts the tests say so and pass, except under `CI=true`, where they fail.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod guest_util;

use guest_util::{Entry, Kind, cpio_entries, debugfs, elf_notes, require, run, tool};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

fn repo_guest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("guest")
}

/// `CONFIG_X=v` lines and `# CONFIG_X is not set` lines (as `None`) of the fragment.
fn fragment() -> BTreeMap<String, Option<String>> {
    let path = repo_guest_dir().join("kernel/virga.config");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# CONFIG_") {
            if let Some(name) = rest.strip_suffix(" is not set") {
                out.insert(format!("CONFIG_{name}"), None);
            }
        } else if let Some((name, value)) = line.split_once('=')
            && name.starts_with("CONFIG_")
        {
            out.insert(name.to_string(), Some(value.to_string()));
        }
    }
    out
}

#[test]
fn kernel_config_has_every_option_of_the_fragment() {
    let Some(vmlinux) = require("vmlinux") else {
        return;
    };
    let build_dir = vmlinux
        .parent()
        .expect("vmlinux lives in its build directory");
    let used = build_dir.join("virga.config");
    let repo = repo_guest_dir().join("kernel/virga.config");
    assert_eq!(
        fs::read_to_string(&used).ok(),
        fs::read_to_string(&repo).ok(),
        "{} was built from another kernel/virga.config than {}: run guest/build.sh",
        build_dir.display(),
        repo.display()
    );
    let config_path = build_dir.join("config");
    let config = fs::read_to_string(&config_path)
        .unwrap_or_else(|e| panic!("{}: {e}", config_path.display()));
    let values: BTreeMap<&str, &str> = config
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("CONFIG_"))
        .collect();
    let wanted = fragment();
    assert!(
        wanted.len() > 80,
        "the fragment lost its options: {wanted:?}"
    );
    let mut wrong = Vec::new();
    for (name, value) in &wanted {
        let got = values.get(name.as_str()).copied();
        if got != value.as_deref() {
            wrong.push(format!("{name}: wanted {value:?}, got {got:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} does not match kernel/virga.config (stale build? run guest/build.sh):\n{}",
        config_path.display(),
        wrong.join("\n")
    );
    // The crutches for this host's KVM and the facts the VMM relies on, named once more.
    for (name, value) in [
        ("CONFIG_MODULES", None),
        ("CONFIG_PTP_1588_CLOCK_KVM", None),
        ("CONFIG_64BIT", Some("y")),
        ("CONFIG_PVH", Some("y")),
        ("CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES", Some("y")),
        ("CONFIG_IP_PNP_DHCP", Some("y")),
    ] {
        assert_eq!(
            values.get(name).copied(),
            value,
            "{name} in {}",
            config_path.display()
        );
    }
}

#[test]
fn kernel_sources_carry_the_kvm_pvm_patches() {
    let Some(vmlinux) = require("vmlinux") else {
        return;
    };
    let patches = repo_guest_dir().join("kernel/patches");
    let mut names: Vec<String> = fs::read_dir(&patches)
        .unwrap_or_else(|e| panic!("{}: {e}", patches.display()))
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".patch"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "0001-skip-int3-selftest.patch",
            "0002-fpu-drop-no-fwait.patch"
        ]
    );
    // A patched-out int3_selftest() leaves its exception notifier unused: the linker drops both.
    let syms = run(tool("nm"), &[vmlinux.as_os_str()]);
    assert!(
        syms.contains(" T start_kernel"),
        "nm found no symbols in {}",
        vmlinux.display()
    );
    assert!(
        !syms.contains("int3_exception_notify"),
        "int3 self-test still linked into {}",
        vmlinux.display()
    );
    let arg = std::ffi::OsString::from("--disassemble=fpu__drop");
    let asm = run(
        tool("objdump"),
        &["-d".as_ref(), arg.as_os_str(), vmlinux.as_os_str()],
    );
    assert!(
        asm.contains("<fpu__drop>:"),
        "objdump found no fpu__drop: {asm}"
    );
    assert!(!asm.contains("fwait"), "fpu__drop still has FWAIT:\n{asm}");
}

#[test]
fn vmlinux_has_the_pvh_entry_note() {
    let Some(vmlinux) = require("vmlinux") else {
        return;
    };
    let bytes = fs::read(&vmlinux).unwrap_or_else(|e| panic!("{}: {e}", vmlinux.display()));
    let notes = elf_notes(&bytes).unwrap_or_else(|e| panic!("{}: {e}", vmlinux.display()));
    let entry = notes
        .iter()
        .find(|n| n.name == "Xen" && n.kind == XEN_ELFNOTE_PHYS32_ENTRY)
        .unwrap_or_else(|| panic!("no XEN_ELFNOTE_PHYS32_ENTRY note in {}", vmlinux.display()));
    let addr = match entry.desc.len() {
        4 => u64::from(u32::from_le_bytes(entry.desc[..4].try_into().unwrap())),
        8 => u64::from_le_bytes(entry.desc[..8].try_into().unwrap()),
        n => panic!("PVH entry note has a {n}-byte address"),
    };
    // The 32-bit entry must be a physical address inside the image, above 1 MiB and below 4 GiB.
    assert!(
        (0x10_0000..0x1_0000_0000).contains(&addr),
        "PVH entry at {addr:#x}"
    );
}

#[test]
fn bzimage_is_a_64_bit_lz4_boot_protocol_image() {
    let Some(bz) = require("bzImage") else { return };
    let b = fs::read(&bz).unwrap_or_else(|e| panic!("{}: {e}", bz.display()));
    assert!(b.len() > 0x260, "{} is too short", bz.display());
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    assert_eq!(u16_at(0x1fe), 0xaa55, "boot sector signature");
    assert_eq!(&b[0x202..0x206], b"HdrS", "boot protocol magic");
    assert!(
        u16_at(0x206) >= 0x020c,
        "boot protocol {:#x} < 2.12",
        u16_at(0x206)
    );
    assert_eq!(
        u16_at(0x236) & 1,
        1,
        "XLF_KERNEL_64 missing from xloadflags"
    );
    let setup_sects = usize::from(b[0x1f1]).max(4);
    let payload = (setup_sects + 1) * 512 + u32_at(0x248) as usize;
    assert!(
        payload + 4 <= b.len(),
        "payload offset {payload:#x} beyond the file"
    );
    // LZ4 legacy frame magic: the decompressor's input, chosen for speed under emulation.
    assert_eq!(
        u32_at(payload),
        0x184c_2102,
        "payload is not LZ4 (legacy frame)"
    );
}

fn check_userspace(entries: &BTreeMap<String, Entry>, what: &str) {
    let get = |name: &str| {
        entries
            .get(name)
            .unwrap_or_else(|| panic!("{what} has no /{name}"))
    };
    let init = get("init");
    assert_eq!(init.kind, Kind::File, "{what}: /init");
    assert_eq!(init.mode & 0o111, 0o111, "{what}: /init is not executable");
    let text = String::from_utf8_lossy(&init.data);
    assert!(
        text.starts_with("#!/bin/sh\n"),
        "{what}: /init is not a sh script"
    );
    for marker in [
        "VIRGA-READY",
        "virga.cmd",
        "VIRGA-CMD-BEGIN",
        "VIRGA-CMD-END",
        "poweroff -f",
    ] {
        assert!(text.contains(marker), "{what}: /init lacks {marker}");
    }
    assert!(
        text.contains("seek=$((0x3f0))") && text.contains("\\173"),
        "{what}: no port 0x3f0 write"
    );
    let busybox = get("bin/busybox");
    assert_eq!(busybox.kind, Kind::File, "{what}: /bin/busybox");
    assert!(
        busybox.data.starts_with(b"\x7fELF"),
        "{what}: /bin/busybox is not ELF"
    );
    assert_eq!(
        get("bin/sh").kind,
        Kind::Symlink("/bin/busybox".into()),
        "{what}: /bin/sh"
    );
    assert_eq!(
        get("sbin/init").kind,
        Kind::Symlink("../init".into()),
        "{what}: /sbin/init"
    );
    assert_eq!(
        get("lib/virga/config-drive").kind,
        Kind::File,
        "{what}: config-drive"
    );
    for dir in ["dev", "proc", "sys", "run", "tmp", "root", "etc"] {
        assert_eq!(get(dir).kind, Kind::Dir, "{what}: /{dir}");
    }
    let not_root: Vec<_> = entries
        .iter()
        .filter(|(_, e)| e.uid != 0 || e.gid != 0)
        .collect();
    assert!(
        not_root.is_empty(),
        "{what}: files not owned by root: {not_root:?}"
    );
}

#[test]
fn initramfs_holds_init_busybox_and_console() {
    let Some(path) = require("initramfs.cpio.gz") else {
        return;
    };
    let cpio = guest_util::gunzip(&path);
    let entries = cpio_entries(&cpio).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    check_userspace(&entries, "initramfs");
    let console = &entries["dev/console"];
    assert_eq!(console.kind, Kind::CharDev(5, 1), "initramfs: /dev/console");
}

#[test]
fn rootfs_ext4_holds_init_and_busybox() {
    let Some(img) = require("rootfs.ext4") else {
        return;
    };
    let header = run(tool("dumpe2fs"), &["-h".as_ref(), img.as_os_str()]);
    assert!(
        header.contains("Filesystem volume name:   virga-root"),
        "label: {header}"
    );
    assert!(
        header.contains("extent") && header.contains("has_journal"),
        "features: {header}"
    );
    let mut entries = BTreeMap::new();
    for path in [
        "init",
        "bin/busybox",
        "bin/sh",
        "sbin/init",
        "lib/virga/config-drive",
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "root",
        "etc",
    ] {
        entries.insert(path.to_string(), debugfs(&img, path));
    }
    check_userspace(&entries, "rootfs.ext4");
    let fsck = std::process::Command::new(tool("e2fsck"))
        .args(["-fn".as_ref(), img.as_os_str()])
        .output()
        .expect("e2fsck runs");
    assert!(
        fsck.status.success(),
        "e2fsck: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );
}

#[test]
fn rootfs_qcow2_checks_and_matches_the_raw_image() {
    let Some(qcow2) = require("rootfs.qcow2") else {
        return;
    };
    let Some(raw) = require("rootfs.ext4") else {
        return;
    };
    let info = run(tool("qemu-img"), &["info".as_ref(), qcow2.as_os_str()]);
    assert!(info.contains("file format: qcow2"), "{info}");
    run(
        tool("qemu-img"),
        &[
            "check".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            qcow2.as_os_str(),
        ],
    );
    let args = [
        "compare".as_ref(),
        "-f".as_ref(),
        "raw".as_ref(),
        "-F".as_ref(),
        "qcow2".as_ref(),
    ];
    let mut args = args.to_vec();
    args.extend([raw.as_os_str(), qcow2.as_os_str()]);
    let out = run(tool("qemu-img"), &args);
    assert!(out.contains("Images are identical"), "{out}");
}
