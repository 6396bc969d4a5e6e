//! The guest's ISO 9660 reader (`guest/iso9660.rs`, included as is) on the host, over images
//! made by our writer and by genisoimage, and over damaged ones.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[allow(dead_code)]
#[path = "../guest/iso9660.rs"]
mod iso9660;

use images::configdrive::{CONFIG_DRIVE_LABEL, write_iso};
use iso9660::{BLOCK, IsoError, Volume};
use std::process::Command;

/// Block reads over an image in memory; blocks past its end fail as a short device would.
fn reader(image: &[u8]) -> impl FnMut(u32, &mut [u8; BLOCK]) -> bool + '_ {
    move |lba, buf| match image.get(lba as usize * BLOCK..(lba as usize + 1) * BLOCK) {
        Some(block) => {
            buf.copy_from_slice(block);
            true
        }
        None => false,
    }
}

fn files() -> Vec<(String, Vec<u8>)> {
    vec![
        (
            "openstack/latest/meta_data.json".into(),
            br#"{"hostname": "vm1"}"#.to_vec(),
        ),
        (
            "openstack/latest/user_data".into(),
            (0..9000u32).map(|i| (i % 251) as u8).collect(),
        ),
        ("openstack/latest/empty".into(), Vec::new()),
        ("caf\u{e9}/na\u{ef}ve".into(), b"unicode".to_vec()),
        ("n".repeat(64), b"long".to_vec()),
        ("1/2/3/4/5/6/7/deep".into(), b"deep".to_vec()),
    ]
}

fn ours() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("cd.iso");
    let files = files();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_slice()))
        .collect();
    write_iso(&dest, CONFIG_DRIVE_LABEL, &refs).unwrap();
    std::fs::read(dest).unwrap()
}

fn genisoimage(joliet: bool) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    for (path, data) in files() {
        let file = tree.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, data).unwrap();
    }
    let iso = dir.path().join("g.iso");
    let mut cmd = Command::new("genisoimage");
    cmd.args(["-quiet", "-input-charset", "utf-8", "-V", "config-2", "-o"])
        .arg(&iso);
    if joliet {
        cmd.args(["-J", "-r"]);
    }
    let status = cmd
        .arg(&tree)
        .status()
        .expect("genisoimage (scripts/packages/configdrive.txt)");
    assert!(status.success());
    std::fs::read(iso).unwrap()
}

fn read_all(image: &[u8], path: &str) -> Result<Vec<u8>, IsoError> {
    let mut dev = reader(image);
    let volume = Volume::open(&mut dev)?;
    let file = volume.lookup(&mut dev, path.as_bytes())?;
    let mut out = vec![0u8; file.size as usize];
    let n = volume.read_file(&mut dev, file, &mut out)?;
    assert_eq!(n, out.len());
    Ok(out)
}

#[test]
fn reads_every_file_our_writer_stores() {
    let image = ours();
    let volume = Volume::open(&mut reader(&image)).unwrap();
    assert_eq!(volume.label(), b"config-2");
    assert!(volume.joliet);
    assert_eq!(volume.blocks as usize * BLOCK, image.len());
    for (path, data) in files() {
        assert_eq!(read_all(&image, &path).unwrap(), data, "{path}");
        assert_eq!(
            read_all(&image, &format!("/{path}")).unwrap(),
            data,
            "/{path}"
        );
    }
}

#[test]
fn reads_genisoimage_joliet_and_primary_names() {
    let image = genisoimage(true);
    for (path, data) in files() {
        let got = read_all(&image, &path).unwrap_or_else(|e| panic!("{path}: {e:?}"));
        assert_eq!(got, data, "{path}");
    }
    // Without Joliet, the 8.3 names (case and version ignored).
    let image = genisoimage(false);
    let volume = Volume::open(&mut reader(&image)).unwrap();
    assert!(!volume.joliet);
    assert_eq!(volume.label(), b"config-2");
    assert_eq!(
        read_all(&image, "openstac/latest/meta_dat.jso").unwrap(),
        files()[0].1
    );
    assert_eq!(
        read_all(&image, "OPENSTAC/LATEST/META_DAT.JSO").unwrap(),
        files()[0].1
    );
}

#[test]
fn partial_reads_and_lookup_errors() {
    let image = ours();
    let mut dev = reader(&image);
    let volume = Volume::open(&mut dev).unwrap();
    let file = volume
        .lookup(&mut dev, b"openstack/latest/user_data")
        .unwrap();
    assert_eq!(file.size, 9000);
    let mut small = [0u8; 100];
    assert_eq!(volume.read_file(&mut dev, file, &mut small).unwrap(), 100);
    assert_eq!(&small[..], &files()[1].1[..100]);

    let err = |path: &[u8]| volume.lookup(&mut reader(&image), path).unwrap_err();
    assert_eq!(err(b"openstack/latest/nothing"), IsoError::NotFound);
    assert_eq!(
        err(b"openstack/latest/meta_data.json/x"),
        IsoError::WrongKind
    );
    assert_eq!(err(b""), IsoError::BadPath);
    assert_eq!(err(b"a/b/c/d/e/f/g/h/i"), IsoError::BadPath);
    assert_eq!(err(b"caf\xff"), IsoError::NotFound);
    let dir = volume.lookup(&mut dev, b"openstack").unwrap();
    assert_eq!(
        volume.read_file(&mut dev, dir, &mut small),
        Err(IsoError::WrongKind)
    );
}

#[test]
fn refuses_what_is_not_an_iso() {
    assert_eq!(
        Volume::open(&mut reader(&[0u8; 40 * BLOCK])).unwrap_err(),
        IsoError::NotIso
    );
    assert_eq!(
        Volume::open(&mut reader(&[0u8; 4 * BLOCK])).unwrap_err(),
        IsoError::Read(16)
    );
    // Truncated after the descriptors: the file data cannot be read.
    let image = ours();
    let cut = &image[..20 * BLOCK];
    assert!(matches!(
        read_all(cut, "openstack/latest/meta_data.json"),
        Err(IsoError::Read(_) | IsoError::Malformed(_))
    ));
}

#[test]
fn damaged_fields_give_errors() {
    let image = ours();
    let pvd = 16 * BLOCK;
    let svd = 17 * BLOCK;
    let mut bad = image.clone();
    bad[pvd + 84] ^= 1; // volume size: the big-endian half no longer agrees
    assert_eq!(
        Volume::open(&mut reader(&bad)).unwrap_err(),
        IsoError::Malformed("volume size fields disagree")
    );
    let mut bad = image.clone();
    bad[svd + 156] = 33; // Joliet root record length
    assert!(matches!(
        Volume::open(&mut reader(&bad)).unwrap_err(),
        IsoError::Malformed(_)
    ));
    let mut bad = image.clone();
    // Joliet root extent far past the end (both halves consistent).
    bad[svd + 158..svd + 162].copy_from_slice(&0x00ff_0000u32.to_le_bytes());
    bad[svd + 162..svd + 166].copy_from_slice(&0x00ff_0000u32.to_be_bytes());
    assert_eq!(
        Volume::open(&mut reader(&bad)).unwrap_err(),
        IsoError::Malformed("extent past the end of the volume")
    );
    let mut bad = image.clone();
    bad[pvd + 129] = 2; // block size 2048 -> 512
    assert!(matches!(
        Volume::open(&mut reader(&bad)).unwrap_err(),
        IsoError::Unsupported(_)
    ));
}

/// Random damage to every metadata block must give results or errors, never a panic, and
/// never reads past a bound.
#[test]
fn random_damage_never_panics() {
    let image = ours();
    let metadata_end = 40 * BLOCK;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut errors = 0;
    for _ in 0..3000 {
        let mut bad = image.clone();
        for _ in 0..1 + next() % 8 {
            let at = 16 * BLOCK + (next() as usize % (metadata_end - 16 * BLOCK));
            bad[at] = next() as u8;
        }
        let mut reads = 0;
        let mut dev = |lba: u32, buf: &mut [u8; BLOCK]| {
            reads += 1;
            reader(&bad)(lba, buf)
        };
        let result = Volume::open(&mut dev).and_then(|v| {
            let f = v.lookup(&mut dev, b"openstack/latest/user_data")?;
            let mut out = [0u8; 16 * 1024];
            v.read_file(&mut dev, f, &mut out)
        });
        errors += usize::from(result.is_err());
        assert!(reads < 200, "bounded work: {reads} reads");
    }
    assert!(errors > 0, "the damage was noticed at least once");
}
