//! Format detection from content, never from a file name.
//!
//! The magics are those qemu-img and OpenStack's format inspector look for. Anything that matches
//! none of them is raw: a raw disk can hold any bytes, so "raw" only means "no known header".

use crate::readat::ReadAt;
use std::fmt;
use std::io;

/// A disk image format recognised by its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// No known header: plain bytes.
    Raw,
    /// qcow2 (or the obsolete qcow v1, which carries the same magic; the qcow2 parser refuses it).
    Qcow2,
    /// QEMU enhanced disk.
    Qed,
    /// VMware: sparse extent or a text descriptor.
    Vmdk,
    /// VirtualBox.
    Vdi,
    /// Virtual PC / Hyper-V VHD (footer at the end, or its copy at the start).
    Vhd,
    /// Hyper-V VHDX.
    Vhdx,
    /// Virtuozzo ploop.
    Ploop,
    /// LUKS-encrypted volume.
    Luks,
    /// ISO 9660 (or UDF) file system image.
    Iso,
}

impl Format {
    /// The name qemu-img uses for the format.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Qed => "qed",
            Format::Vmdk => "vmdk",
            Format::Vdi => "vdi",
            Format::Vhd => "vpc",
            Format::Vhdx => "vhdx",
            Format::Ploop => "parallels",
            Format::Luks => "luks",
            Format::Iso => "iso",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// qcow2 magic: "QFI\xfb".
pub const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";
const ISO_OFFSETS: [u64; 3] = [0x8001, 0x8801, 0x9001];
/// Enough of the start of a file for every magic checked at the front.
const HEAD_LEN: usize = 0x48;

/// Detects the format of `src` from its content.
pub fn probe<R: ReadAt + ?Sized>(src: &R) -> io::Result<Format> {
    let len = src.len()?;
    let mut head = [0u8; HEAD_LEN];
    let n = read_upto(src, &mut head, 0)?;
    if let Some(f) = probe_head(&head[..n]) {
        return Ok(f);
    }
    if len >= 512 {
        let mut foot = [0u8; 8];
        // Old Virtual PC versions wrote a 511-byte footer.
        for back in [512u64, 511] {
            if read_upto(src, &mut foot, len - back)? == 8 && &foot == b"conectix" {
                return Ok(Format::Vhd);
            }
        }
    }
    for off in ISO_OFFSETS {
        let mut sig = [0u8; 5];
        if read_upto(src, &mut sig, off)? == 5
            && matches!(&sig, b"CD001" | b"BEA01" | b"NSR02" | b"NSR03")
        {
            return Ok(Format::Iso);
        }
    }
    Ok(Format::Raw)
}

/// Formats recognisable from the first bytes alone.
pub fn probe_head(head: &[u8]) -> Option<Format> {
    let starts = |magic: &[u8]| head.starts_with(magic);
    if starts(&QCOW2_MAGIC) {
        Some(Format::Qcow2)
    } else if starts(b"QED\0") {
        Some(Format::Qed)
    } else if starts(b"KDMV") || starts(b"COWD") || starts(b"# Disk DescriptorFile") {
        Some(Format::Vmdk)
    } else if starts(b"vhdxfile") {
        Some(Format::Vhdx)
    } else if starts(b"conectix") {
        Some(Format::Vhd)
    } else if starts(b"LUKS\xba\xbe") {
        Some(Format::Luks)
    } else if starts(b"WithoutFreeSpace") || starts(b"WithouFreSpacExt") {
        Some(Format::Ploop)
    } else if head.len() >= 0x44 && head[0x40..0x44] == 0xbeda_107f_u32.to_le_bytes() {
        Some(Format::Vdi)
    } else {
        None
    }
}

fn read_upto<R: ReadAt + ?Sized>(src: &R, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match src.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_at(len: usize, at: usize, magic: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; len];
        v[at..at + magic.len()].copy_from_slice(magic);
        v
    }

    #[test]
    fn magics_are_recognised() {
        let cases: &[(Vec<u8>, Format)] = &[
            (with_at(1024, 0, b"QFI\xfb\0\0\0\x03"), Format::Qcow2),
            (with_at(1024, 0, b"QED\0"), Format::Qed),
            (with_at(1024, 0, b"KDMV"), Format::Vmdk),
            (with_at(1024, 0, b"# Disk DescriptorFile\n"), Format::Vmdk),
            (with_at(1024, 0, b"vhdxfile"), Format::Vhdx),
            (with_at(1024, 1024 - 512, b"conectix"), Format::Vhd),
            (with_at(1024, 0, b"LUKS\xba\xbe"), Format::Luks),
            (with_at(1024, 0, b"WithoutFreeSpace"), Format::Ploop),
            (
                with_at(1024, 0x40, &0xbeda_107f_u32.to_le_bytes()),
                Format::Vdi,
            ),
            (with_at(0x9000, 0x8001, b"CD001"), Format::Iso),
            (vec![0u8; 4096], Format::Raw),
            (Vec::new(), Format::Raw),
        ];
        for (data, want) in cases {
            assert_eq!(probe(&data[..]).unwrap(), *want);
        }
    }

    #[test]
    fn qcow2_wins_over_an_iso_signature_inside_it() {
        let mut v = with_at(0x9000, 0x8001, b"CD001");
        v[..4].copy_from_slice(&QCOW2_MAGIC);
        assert_eq!(probe(&v[..]).unwrap(), Format::Qcow2);
    }
}
