//! Arbitrary bytes as an image file: the qcow2 header and table validation, the format probe
//! and the store's per-format checks must return an error, never panic, hang or over-allocate.
#![no_main]

use disk::qcow2::{MAX_VIRTUAL_SIZE, Policy, Qcow2Header, validate};
use images::store::{DiskFormat, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Qcow2Header::read(data);
    let deep = Policy { allow_backing: true, deep: true, max_virtual_size: MAX_VIRTUAL_SIZE };
    let _ = validate(data, deep);
    let _ = disk::probe(data);
    for format in [DiskFormat::Qcow2, DiskFormat::Raw, DiskFormat::Vhd, DiskFormat::Vdi] {
        let _ = verify(data, format);
    }
});
