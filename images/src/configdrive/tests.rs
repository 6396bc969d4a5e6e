//! Bad input and the atomic write; the image itself is checked by real readers in
//! `images/tests/configdrive.rs`.

use super::*;

fn write(files: &[(&str, &[u8])]) -> Result<(), ConfigDriveError> {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("disk.config");
    let result = write_iso(&dest, CONFIG_DRIVE_LABEL, files);
    assert_eq!(
        dest.exists(),
        result.is_ok(),
        "an image exists exactly when writing succeeded"
    );
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        usize::from(result.is_ok()),
        "no temporary file is left behind"
    );
    result
}

fn bad_path_reason(path: &str) -> String {
    match write(&[(path, b"x")]) {
        Err(ConfigDriveError::BadPath { path: p, reason }) => {
            assert_eq!(p, path);
            reason
        }
        other => panic!("{path:?}: expected BadPath, got {other:?}"),
    }
}

#[test]
fn labels_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("x.iso");
    for (label, needle) in [
        ("", "empty"),
        ("a-label-that-is-too-long", "at most 16"),
        ("config 2", "' '"),
        ("конфиг", "'к'"),
        ("cfg/2", "'/'"),
    ] {
        let err = write_iso(&dest, label, &[]).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConfigDriveError::BadLabel { .. }), "{msg}");
        assert!(msg.contains(needle), "{label:?}: {msg}");
        assert!(
            msg.contains(&format!("{label:?}")),
            "names the label: {msg}"
        );
    }
    assert!(!dest.exists());
    write_iso(&dest, "CONFIG-2.x_y", &[]).unwrap();
}

#[test]
fn paths_are_checked() {
    assert!(bad_path_reason("").contains("empty path"));
    assert!(bad_path_reason("/etc/passwd").contains("empty component"));
    assert!(bad_path_reason("openstack//x").contains("empty component"));
    assert!(bad_path_reason("openstack/").contains("empty component"));
    assert!(bad_path_reason("../x").contains("\"..\""));
    assert!(bad_path_reason("a/./x").contains("\".\""));
    assert!(bad_path_reason("a/b:c").contains("':'"));
    assert!(bad_path_reason("a/b\0c").contains("'\\0'"));
    assert!(bad_path_reason("a\\b").contains("'\\\\'"));
    assert!(bad_path_reason("emoji\u{1f600}").contains("outside UCS-2"));
    assert!(bad_path_reason(&"n".repeat(65)).contains("65 characters"));
    assert!(bad_path_reason("1/2/3/4/5/6/7/8/f").contains("directory levels"));
    let long = format!("{}/{}", "d".repeat(60), vec!["x".repeat(60); 4].join("/"));
    assert!(bad_path_reason(&long).contains("255 bytes"));
    // The deepest and longest allowed.
    write(&[("1/2/3/4/5/6/7/f", b"x"), (&"n".repeat(64), b"y")]).unwrap();
}

#[test]
fn duplicates_and_conflicts_are_refused() {
    let err = write(&[("a/b", b"1"), ("a/b", b"2")]).unwrap_err();
    assert!(
        matches!(&err, ConfigDriveError::DuplicatePath { path } if path == "a/b"),
        "{err}"
    );
    for files in [
        [("a/b", b"1".as_slice()), ("a/b/c", b"2".as_slice())],
        [("a/b/c", b"1"), ("a/b", b"2")],
    ] {
        let err = write(&files).unwrap_err();
        assert!(
            matches!(err, ConfigDriveError::PathConflict { .. }),
            "{err}"
        );
    }
}

#[test]
fn size_and_count_are_bounded() {
    let big = vec![0u8; MAX_IMAGE_BYTES as usize];
    let err = write(&[("big", &big)]).unwrap_err();
    assert!(matches!(err, ConfigDriveError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("67108864"), "{err}");
    // Just below the limit, the metadata pushes it over.
    let almost = &big[..MAX_IMAGE_BYTES as usize - SECTOR * 4];
    assert!(matches!(
        write(&[("a", almost), ("b", b"x")]),
        Err(ConfigDriveError::TooLarge { .. })
    ));
    let names: Vec<String> = (0..=tree::MAX_ENTRIES).map(|i| format!("f{i}")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
    let err = write(&files).unwrap_err();
    assert!(
        matches!(err, ConfigDriveError::TooManyEntries { max: 4096 }),
        "{err}"
    );
}

#[test]
fn failed_write_leaves_the_old_image() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("disk.config");
    write_iso(&dest, CONFIG_DRIVE_LABEL, &[("a", b"first")]).unwrap();
    let before = fs::read(&dest).unwrap();
    assert!(write_iso(&dest, CONFIG_DRIVE_LABEL, &[("a/", b"x")]).is_err());
    assert_eq!(fs::read(&dest).unwrap(), before);
    write_iso(&dest, CONFIG_DRIVE_LABEL, &[("a", b"second")]).unwrap();
    assert_ne!(fs::read(&dest).unwrap(), before);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

    let missing = dir.path().join("no-such-dir/disk.config");
    let err = write_iso(&missing, CONFIG_DRIVE_LABEL, &[]).unwrap_err();
    assert!(matches!(err, ConfigDriveError::Io { .. }), "{err}");
    assert!(err.to_string().contains("no-such-dir"), "{err}");
    let err = write_iso(Path::new("/"), CONFIG_DRIVE_LABEL, &[]).unwrap_err();
    assert!(err.to_string().contains("no file name"), "{err}");
}

#[test]
fn layout_is_sector_aligned_with_descriptors_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("disk.config");
    let data = vec![7u8; 5000];
    write_iso(&dest, CONFIG_DRIVE_LABEL, &[("x/y", &data), ("z", b"")]).unwrap();
    let image = fs::read(&dest).unwrap();
    assert_eq!(image.len() % SECTOR, 0);
    assert_eq!(&image[16 * SECTOR..16 * SECTOR + 6], b"\x01CD001");
    assert_eq!(&image[17 * SECTOR..17 * SECTOR + 6], b"\x02CD001");
    assert_eq!(&image[18 * SECTOR..18 * SECTOR + 6], b"\xffCD001");
    assert_eq!(&image[16 * SECTOR + 40..16 * SECTOR + 48], b"config-2");
    let total = u32::from_le_bytes(
        image[16 * SECTOR + 80..16 * SECTOR + 84]
            .try_into()
            .unwrap(),
    );
    assert_eq!(total as usize * SECTOR, image.len());
}
