//! Config drives we write, read back by the real tools: isoinfo (genisoimage), xorriso, blkid,
//! and Linux's isofs through a loop mount where the kernel has it. Packages:
//! `scripts/packages/configdrive.txt`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use images::configdrive::{CONFIG_DRIVE_LABEL, write_iso};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::process::{Command, Output};

/// The files Nova puts on a config drive, plus awkward cases: multi-sector, empty, sector
/// sized, non-ASCII, the longest name, the deepest path, colliding 8.3 names.
fn sample() -> Vec<(String, Vec<u8>)> {
    let all_bytes: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
    let meta = br#"{"uuid": "0b2f3f1c-0000-4000-8000-000000000001", "hostname": "vm1", "name": "vm1", "public_keys": {"mykey": "ssh-ed25519 AAAAC3Nza mykey"}}"#;
    vec![
        ("openstack/latest/meta_data.json".into(), meta.to_vec()),
        ("openstack/latest/user_data".into(), all_bytes),
        (
            "openstack/latest/network_data.json".into(),
            br#"{"links": [], "networks": [], "services": []}"#.to_vec(),
        ),
        ("openstack/latest/vendor_data.json".into(), b"{}".to_vec()),
        (
            "openstack/latest/vendor_data2.json".into(),
            b"{}\n".to_vec(),
        ),
        ("openstack/2012-08-10/meta_data.json".into(), meta.to_vec()),
        ("ec2/2009-04-04/meta-data.json".into(), b"{}".to_vec()),
        ("ec2/latest/user-data".into(), Vec::new()),
        ("content/0000".into(), vec![0xa5; 2048]),
        ("caf\u{e9}/na\u{ef}ve.txt".into(), b"unicode".to_vec()),
        ("n".repeat(64), b"long name".to_vec()),
        ("1/2/3/4/5/6/7/deep".into(), b"deep".to_vec()),
    ]
}

fn write_sample(dir: &Path) -> std::path::PathBuf {
    let files = sample();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_slice()))
        .collect();
    let iso = dir.join("disk.config");
    write_iso(&iso, CONFIG_DRIVE_LABEL, &refs).unwrap();
    iso
}

fn run<S: AsRef<OsStr>>(tool: &str, args: &[S]) -> Output {
    Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {tool} (scripts/packages/configdrive.txt, via scripts/setup.sh): {e}")
    })
}

fn ok<S: AsRef<OsStr> + std::fmt::Debug>(tool: &str, args: &[S]) -> Vec<u8> {
    let out = run(tool, args);
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn ok_text(tool: &str, args: &[&str]) -> String {
    latin1_decode(&ok(tool, args))
}

/// isoinfo converts Joliet names to ISO 8859-1 (it has no UTF-8 option): both ways here.
fn latin1_decode(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn latin1_arg(s: &str) -> OsString {
    OsString::from_vec(s.chars().map(|c| u8::try_from(c).unwrap()).collect())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn isoinfo_sees_label_joliet_and_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let iso = write_sample(dir.path());
    let info = ok_text("isoinfo", &["-d", "-i", s(&iso)]);
    assert!(info.contains("Volume id: config-2"), "{info}");
    assert!(info.contains("Joliet with UCS level 3 found"), "{info}");
    assert!(info.contains("Logical block size is: 2048"), "{info}");
    let size = std::fs::metadata(&iso).unwrap().len();
    assert!(
        info.contains(&format!("Volume size is: {}", size / 2048)),
        "{info}"
    );

    for (path, data) in sample() {
        let args = ["-J", "-i", s(&iso), "-x"].map(OsString::from);
        let got = ok(
            "isoinfo",
            &[&args[..], &[latin1_arg(&format!("/{path}"))]].concat(),
        );
        assert_eq!(got, data, "isoinfo -J -x /{path}");
    }
    // The primary (8.3) hierarchy holds the same data.
    let got = ok(
        "isoinfo",
        &["-i", s(&iso), "-x", "/OPENSTAC/LATEST/META_DAT.JSO;1"],
    );
    assert_eq!(got, sample()[0].1);
}

#[test]
fn listings_match_genisoimage_for_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let ours = write_sample(dir.path());
    let tree = dir.path().join("tree");
    for (path, data) in sample() {
        let file = tree.join(&path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, data).unwrap();
    }
    let theirs = dir.path().join("genisoimage.iso");
    ok(
        "genisoimage",
        &[
            "-quiet",
            "-J",
            "-r",
            "-V",
            "config-2",
            "-o",
            s(&theirs),
            s(&tree),
        ],
    );
    // `-f` lists every path; Joliet names must agree exactly, and so must the 8.3 names that
    // genisoimage gives the plain ASCII files (it keeps non-ASCII bytes as they are).
    let list = |iso: &Path, joliet: bool| {
        let mut args = vec!["-f", "-i", s(iso)];
        if joliet {
            args.insert(0, "-J");
        }
        let mut lines: Vec<String> = ok_text("isoinfo", &args)
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    let ours_j = list(&ours, true);
    assert_eq!(ours_j, list(&theirs, true));
    assert!(
        ours_j.contains(&"/caf\u{e9}/na\u{ef}ve.txt".to_owned()),
        "{ours_j:?}"
    );
    let ascii = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .filter(|l| l.starts_with("/OPENSTAC") || l.starts_with("/EC2"))
            .collect()
    };
    assert_eq!(ascii(list(&ours, false)), ascii(list(&theirs, false)));

    let blkid = |iso: &Path| ok_text("blkid", &["-p", "-s", "LABEL", "-s", "TYPE", s(iso)]);
    assert_eq!(
        blkid(&ours).replace(s(&ours), "X"),
        blkid(&theirs).replace(s(&theirs), "X")
    );
}

#[test]
fn blkid_finds_the_config_drive_label() {
    let dir = tempfile::tempdir().unwrap();
    let iso = write_sample(dir.path());
    let out = ok_text("blkid", &["-p", s(&iso)]);
    assert!(out.contains("LABEL=\"config-2\""), "{out}");
    assert!(out.contains("TYPE=\"iso9660\""), "{out}");
    // cloud-init's lookup: `blkid -t LABEL=config-2 -o device`.
    let out = ok_text("blkid", &["-t", "LABEL=config-2", "-o", "device", s(&iso)]);
    assert_eq!(out.trim(), s(&iso));
}

#[test]
fn xorriso_checks_and_extracts_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let iso = write_sample(dir.path());
    let out_dir = dir.path().join("extracted");
    // With no Rock Ridge, xorriso loads the Joliet tree: check its media report, then extract
    // everything and compare.
    let out = run(
        "xorriso",
        &[
            "-abort_on",
            "FAILURE",
            "-indev",
            s(&iso),
            "-pvd_info",
            "-check_media",
            "--",
            "-osirrox",
            "on",
            "-extract",
            "/",
            s(&out_dir),
        ],
    );
    let report =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("Volume Id    : config-2"), "{report}");
    assert!(
        !report.contains("SORRY") && !report.contains("WARNING"),
        "{report}"
    );
    let listing = ok_text("find", &[s(&out_dir)]);
    for (path, data) in sample() {
        let got = std::fs::read(out_dir.join(&path))
            .unwrap_or_else(|e| panic!("{path}: {e}\n{listing}\n{report}"));
        assert_eq!(got, data, "{path} extracted by xorriso");
    }
}

#[test]
fn linux_isofs_mounts_it() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: the loop mount needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let iso = write_sample(dir.path());
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = run(
        "mount",
        &["-t", "iso9660", "-o", "loop,ro", s(&iso), s(&mnt)],
    );
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("unknown filesystem type") {
            // This machine's kernel is built without CONFIG_ISO9660_FS (docs/configdrive.md).
            eprintln!("SKIPPED: this kernel has no iso9660 file system: {err}");
            return;
        }
        panic!("mount failed: {err}");
    }
    let unmount = Unmount(mnt.clone());
    for (path, data) in sample() {
        let got = std::fs::read(mnt.join(&path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(got, data, "{path} through isofs");
    }
    drop(unmount);
}

/// Unmounts on drop, so a failed assertion leaves no mount behind.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// What isoinfo, xorriso and Linux do not look at, Windows does: the path tables. Each table
/// (primary and Joliet, L and M) must list the directories breadth first, each with the extent
/// its directory record gives and the right parent; `.` and `..` must point at the directory and
/// its parent; records must be sorted.
#[test]
fn path_tables_and_directory_records_agree() {
    let dir = tempfile::tempdir().unwrap();
    let image = std::fs::read(write_sample(dir.path())).unwrap();
    let le32 = |at: usize| u32::from_le_bytes(image[at..at + 4].try_into().unwrap());
    let be32 = |at: usize| u32::from_be_bytes(image[at..at + 4].try_into().unwrap());
    for descriptor in [16usize, 17] {
        let d = descriptor * 2048;
        let table_len = le32(d + 132) as usize;
        let (l, m) = (le32(d + 140) as usize * 2048, be32(d + 148) as usize * 2048);
        // Walk the directory records breadth first: (extent, parent index, name).
        let root = le32(d + 156 + 2);
        let mut walk = vec![(root, 1u16, vec![0u8])];
        let mut i = 0;
        while i < walk.len() {
            let (lba, parent, _) = walk[i].clone();
            let parent_lba = walk[usize::from(parent) - 1].0;
            let start = lba as usize * 2048;
            let size = le32(start + 10) as usize;
            let mut at = start;
            let mut names = Vec::new();
            while at < start + size {
                let len = image[at] as usize;
                if len == 0 {
                    at = (at / 2048 + 1) * 2048;
                    continue;
                }
                let rec = &image[at..at + len];
                assert!((at % 2048) + len <= 2048, "record inside its block");
                let id = rec[33..33 + rec[32] as usize].to_vec();
                let ext = u32::from_le_bytes(rec[2..6].try_into().unwrap());
                assert_eq!(ext, u32::from_be_bytes(rec[6..10].try_into().unwrap()));
                match names.len() {
                    0 => assert_eq!((id.as_slice(), ext), (&[0u8][..], lba), "."),
                    1 => assert_eq!((id.as_slice(), ext), (&[1u8][..], parent_lba), ".."),
                    _ => {
                        if rec[25] & 2 != 0 {
                            walk.push((ext, (i + 1) as u16, id.clone()));
                        }
                    }
                }
                names.push(id);
                at += len;
            }
            let children = &names[2..];
            assert!(children.is_sorted(), "records sorted: {children:?}");
            i += 1;
        }
        // The L and M tables hold the same records in the walk's order.
        let (mut at_l, mut at_m) = (l, m);
        for (lba, parent, name) in &walk {
            let len = image[at_l] as usize;
            assert_eq!(&image[at_l + 8..at_l + 8 + len], name.as_slice());
            assert_eq!(le32(at_l + 2), *lba);
            assert_eq!(
                u16::from_le_bytes([image[at_l + 6], image[at_l + 7]]),
                *parent
            );
            assert_eq!(&image[at_m + 8..at_m + 8 + len], name.as_slice());
            assert_eq!(be32(at_m + 2), *lba);
            assert_eq!(
                u16::from_be_bytes([image[at_m + 6], image[at_m + 7]]),
                *parent
            );
            at_l += 8 + len + len % 2;
            at_m += 8 + len + len % 2;
        }
        assert_eq!(at_l - l, table_len, "path table size");
        assert!(walk.len() > 10, "the sample has many directories");
    }
}
