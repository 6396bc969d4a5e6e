//! Unit tests over images built in memory; interop with qemu-img lives in tests/.

use super::*;

use super::sample::tiny_image;

const CS: usize = 65536;

fn set64(img: &mut [u8], at: usize, v: u64) {
    img[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

fn deep() -> Policy {
    Policy::STANDALONE_DEEP
}

#[test]
fn the_tiny_image_is_valid() {
    let img = tiny_image();
    let v = validate(&img[..], deep()).unwrap();
    assert_eq!(v.header.size, 1 << 20);
    assert_eq!(
        v.stats,
        TableStats {
            l2_tables: 1,
            data_clusters: 1,
            compressed_clusters: 0
        }
    );
}

#[test]
fn hostile_headers_are_refused_with_their_reason() {
    type Mutate = fn(&mut Vec<u8>);
    let cases: &[(&str, Mutate, &str)] = &[
        (
            "unknown feature",
            |i| set64(i, 72, 1 << 40),
            "unknown incompatible feature",
        ),
        ("dirty", |i| set64(i, 72, 1), "dirty"),
        ("corrupt", |i| set64(i, 72, 2), "corrupt"),
        ("extended l2", |i| set64(i, 72, 1 << 4), "extended L2"),
        (
            "data file bit",
            |i| set64(i, 72, 1 << 2),
            "external data file",
        ),
        (
            "encrypted",
            |i| i[32..36].copy_from_slice(&1u32.to_be_bytes()),
            "encrypted",
        ),
        (
            "version",
            |i| i[4..8].copy_from_slice(&1u32.to_be_bytes()),
            "version 1",
        ),
        (
            "cluster bits",
            |i| i[20..24].copy_from_slice(&30u32.to_be_bytes()),
            "cluster_bits 30",
        ),
        (
            "absurd size",
            |i| set64(i, 24, u64::MAX),
            "exceeds the limit",
        ),
        ("l1 too small", |i| set64(i, 24, 1 << 40), "needs"),
        ("l1 beyond file", |i| set64(i, 40, 1 << 30), "past the end"),
        (
            "l1 unaligned",
            |i| set64(i, 40, 3 * CS as u64 + 8),
            "not cluster-aligned",
        ),
        (
            "l1 absurd",
            |i| i[36..40].copy_from_slice(&u32::MAX.to_be_bytes()),
            "absurd",
        ),
        (
            "reftable beyond file",
            |i| set64(i, 48, 1 << 40),
            "past the end",
        ),
        (
            "reftable absurd",
            |i| i[56..60].copy_from_slice(&u32::MAX.to_be_bytes()),
            "absurd",
        ),
        (
            "reftable at header",
            |i| set64(i, 48, 0),
            "overlaps the header",
        ),
        (
            "l2 beyond file",
            |i| set64(i, 3 * CS, 1 << 40),
            "beyond the end",
        ),
        (
            "data beyond file",
            |i| set64(i, 4 * CS, 1 << 40),
            "beyond the end",
        ),
        (
            "l2 reserved bits",
            |i| set64(i, 4 * CS, (5 * CS as u64) | 2),
            "reserved",
        ),
        (
            "refblock beyond file",
            |i| set64(i, CS, 1 << 40),
            "beyond the end",
        ),
        (
            "snapshots beyond file",
            |i| {
                i[60..64].copy_from_slice(&1u32.to_be_bytes());
                set64(i, 64, 1 << 40);
            },
            "past the end",
        ),
    ];
    for (name, mutate, want) in cases {
        let mut img = tiny_image();
        mutate(&mut img);
        let err = validate(&img[..], deep()).expect_err(name).to_string();
        assert!(
            err.contains(want),
            "{name}: {err:?} should mention {want:?}"
        );
    }
}

/// Appends a header extension after the 112-byte header, then an end marker.
fn with_extension(kind: u32, data: &[u8]) -> Vec<u8> {
    let mut img = tiny_image();
    let mut at = 112;
    img[at..at + 4].copy_from_slice(&kind.to_be_bytes());
    img[at + 4..at + 8].copy_from_slice(&(data.len() as u32).to_be_bytes());
    at += 8;
    img[at..at + data.len()].copy_from_slice(data);
    img
}

#[test]
fn backing_and_data_files_are_refused_by_default() {
    let img = with_extension(0x4441_5441, b"/etc/shadow");
    let err = validate(&img[..], deep()).unwrap_err();
    assert!(
        matches!(err, Qcow2Error::ExternalDataFile(ref n) if n == "/etc/shadow"),
        "{err}"
    );

    let mut img = tiny_image();
    let name = b"/etc/passwd";
    img[512..512 + name.len()].copy_from_slice(name);
    set64(&mut img, 8, 512);
    img[16..20].copy_from_slice(&(name.len() as u32).to_be_bytes());
    let err = validate(&img[..], deep()).unwrap_err();
    assert!(
        matches!(err, Qcow2Error::BackingFile(ref n) if n == "/etc/passwd"),
        "{err}"
    );
    let ok = validate(
        &img[..],
        Policy {
            allow_backing: true,
            ..deep()
        },
    )
    .unwrap();
    assert_eq!(ok.header.backing_file.as_deref(), Some("/etc/passwd"));
}

#[test]
fn malformed_extensions_are_refused() {
    let mut img = with_extension(0xe279_2aca, b"raw");
    img[116..120].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        validate(&img[..], deep()),
        Err(Qcow2Error::Extension(_))
    ));
    let img = with_extension(0x0537_be77, &[0u8; 16]);
    assert!(matches!(
        validate(&img[..], deep()),
        Err(Qcow2Error::UnsupportedFeature(_))
    ));
}

#[test]
fn truncated_input_is_an_error_not_a_panic() {
    let img = tiny_image();
    for len in [0, 3, 4, 71, 72, 103, 104, 200, CS, 3 * CS + 4] {
        assert!(validate(&img[..len], deep()).is_err(), "length {len}");
    }
}
