//! A small AML (ACPI Machine Language) encoder: the few term types our DSDT needs. Devices
//! added later (virtio-mmio) are built from the same pieces: `device`, `name`, `resources`.

/// Encodes a PkgLength for a body of `body` bytes (the length counts its own bytes).
fn pkg_length(body: usize) -> Vec<u8> {
    if body + 1 < 0x40 {
        return vec![(body + 1) as u8];
    }
    for extra in 1..=3usize {
        let total = body + 1 + extra;
        if total < 1 << (4 + 8 * extra) {
            let mut v = vec![((extra as u8) << 6) | (total & 0xf) as u8];
            for i in 0..extra {
                v.push((total >> (4 + 8 * i)) as u8);
            }
            return v;
        }
    }
    // 2^28 bytes of AML is far beyond any table this VMM writes.
    unreachable!("AML package too large")
}

/// An integer with the shortest encoding.
pub fn integer(v: u64) -> Vec<u8> {
    match v {
        0 => vec![0x00],
        1 => vec![0x01],
        v if v <= 0xff => vec![0x0a, v as u8],
        v if v <= 0xffff => [&[0x0b][..], &(v as u16).to_le_bytes()].concat(),
        v if v <= 0xffff_ffff => [&[0x0c][..], &(v as u32).to_le_bytes()].concat(),
        v => [&[0x0e][..], &v.to_le_bytes()].concat(),
    }
}

/// A string.
pub fn string(s: &str) -> Vec<u8> {
    [&[0x0d][..], s.as_bytes(), &[0]].concat()
}

/// A name string: an optional `\` root prefix and one 4-character segment (padded with `_`).
fn name_string(name: &str) -> Vec<u8> {
    let (root, seg) = match name.strip_prefix('\\') {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    let mut v = Vec::with_capacity(5);
    if root {
        v.push(b'\\');
    }
    let mut seg: Vec<u8> = seg.bytes().take(4).collect();
    seg.resize(4, b'_');
    v.extend(seg);
    v
}

/// `Name(name, object)`.
pub fn name(n: &str, object: Vec<u8>) -> Vec<u8> {
    [vec![0x08], name_string(n), object].concat()
}

/// `Package() { elements }`.
pub fn package(elements: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = std::iter::once(elements.len() as u8)
        .chain(elements.concat())
        .collect();
    [vec![0x12], pkg_length(body.len()), body].concat()
}

/// `Device(name) { terms }`.
pub fn device(n: &str, terms: &[Vec<u8>]) -> Vec<u8> {
    let body = [name_string(n), terms.concat()].concat();
    [vec![0x5b, 0x82], pkg_length(body.len()), body].concat()
}

/// `Scope(name) { terms }`.
pub fn scope(n: &str, terms: &[Vec<u8>]) -> Vec<u8> {
    let body = [name_string(n), terms.concat()].concat();
    [vec![0x10], pkg_length(body.len()), body].concat()
}

/// `Buffer() { bytes }`.
pub fn buffer(bytes: &[u8]) -> Vec<u8> {
    let body = [integer(bytes.len() as u64), bytes.to_vec()].concat();
    [vec![0x11], pkg_length(body.len()), body].concat()
}

/// An EISA ID such as `PNP0501` (three letters, four hex digits), compressed as `EISAID()`
/// does; a malformed ID encodes as 0.
pub fn eisa_id(id: &str) -> Vec<u8> {
    let Ok(c) = <[u8; 7]>::try_from(id.as_bytes()) else {
        return integer(0);
    };
    let hex = |b: u8| (b as char).to_digit(16).unwrap_or(0);
    let letter = |b: u8| u32::from(b.saturating_sub(0x40) & 0x1f);
    let v = (letter(c[0]) << 26)
        | (letter(c[1]) << 21)
        | (letter(c[2]) << 16)
        | (hex(c[3]) << 12)
        | (hex(c[4]) << 8)
        | (hex(c[5]) << 4)
        | hex(c[6]);
    integer(u64::from(v.swap_bytes()))
}

/// Resource descriptors for a `_CRS` buffer.
pub mod resource {
    /// A fixed 16-bit-decoded I/O port range.
    pub fn io(base: u16, len: u8) -> Vec<u8> {
        let b = base.to_le_bytes();
        vec![0x47, 0x01, b[0], b[1], b[0], b[1], 0x01, len]
    }

    /// An edge-triggered, active-high ISA interrupt.
    pub fn irq(line: u8) -> Vec<u8> {
        let mask = (1u16 << (line & 0xf)).to_le_bytes();
        vec![0x22, mask[0], mask[1]]
    }

    /// An extended interrupt (any GSI, not just 0-15): consumer, edge-triggered, active high,
    /// exclusive, as virtio-mmio wants.
    pub fn interrupt(gsi: u32) -> Vec<u8> {
        [&[0x89, 0x06, 0x00, 0x03, 0x01][..], &gsi.to_le_bytes()].concat()
    }

    /// A fixed 32-bit memory range (read/write).
    pub fn memory32(base: u32, len: u32) -> Vec<u8> {
        [
            &[0x86, 0x09, 0x00, 0x01][..],
            &base.to_le_bytes(),
            &len.to_le_bytes(),
        ]
        .concat()
    }
}

/// `ResourceTemplate() { descriptors }` with its end tag.
pub fn resources(descriptors: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = descriptors.concat();
    bytes.extend([0x79, 0x00]);
    buffer(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_iasl() {
        // Name (_S5_, Package (0x02) { 0x05, Zero }) as iasl emits it.
        assert_eq!(
            name("_S5_", package(&[integer(5), integer(0)])),
            [
                0x08, b'_', b'S', b'5', b'_', 0x12, 0x05, 0x02, 0x0a, 0x05, 0x00
            ]
        );
        // EISAID ("PNP0501") == 0x0105D041.
        assert_eq!(eisa_id("PNP0501"), [0x0c, 0x41, 0xd0, 0x05, 0x01]);
        assert_eq!(integer(0x1234), [0x0b, 0x34, 0x12]);
    }

    #[test]
    fn long_packages_use_multibyte_lengths() {
        assert_eq!(pkg_length(0x3e), [0x3f]);
        assert_eq!(pkg_length(0x3f), [0x41, 0x04]); // total 0x41
        let l = pkg_length(3000);
        assert_eq!(l.len(), 2);
        let total = usize::from(l[0] & 0xf) | (usize::from(l[1]) << 4);
        assert_eq!(total, 3002);
        assert_eq!(pkg_length(5000).len(), 3);
    }
}
