//! The image service's disk formats, and the check that content is what its owner claims.

use disk::probe::{self, Format};
use disk::qcow2::{Policy, validate};
use disk::readat::ReadAt;
use std::fmt;
use std::str::FromStr;

/// A disk format as the image service names it (`disk_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskFormat {
    /// Plain bytes.
    Raw,
    /// qcow2.
    Qcow2,
    /// A kernel (Amazon kernel image): stored as given.
    Aki,
    /// A ramdisk (Amazon ramdisk image): stored as given.
    Ari,
    /// A raw machine image (Amazon machine image).
    Ami,
    /// An ISO 9660 image.
    Iso,
    /// VMware.
    Vmdk,
    /// VirtualBox.
    Vdi,
    /// Virtual PC.
    Vhd,
    /// Hyper-V.
    Vhdx,
    /// Virtuozzo.
    Ploop,
}

impl DiskFormat {
    /// Every format, in the image service's default `disk_formats` order.
    pub const ALL: [DiskFormat; 11] = [
        DiskFormat::Ami,
        DiskFormat::Ari,
        DiskFormat::Aki,
        DiskFormat::Vhd,
        DiskFormat::Vhdx,
        DiskFormat::Vmdk,
        DiskFormat::Raw,
        DiskFormat::Qcow2,
        DiskFormat::Vdi,
        DiskFormat::Iso,
        DiskFormat::Ploop,
    ];

    /// The image service's name.
    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Aki => "aki",
            DiskFormat::Ari => "ari",
            DiskFormat::Ami => "ami",
            DiskFormat::Iso => "iso",
            DiskFormat::Vmdk => "vmdk",
            DiskFormat::Vdi => "vdi",
            DiskFormat::Vhd => "vhd",
            DiskFormat::Vhdx => "vhdx",
            DiskFormat::Ploop => "ploop",
        }
    }
}

impl fmt::Display for DiskFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `disk_format` name the image service does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown disk format {0:?}")]
pub struct UnknownDiskFormat(pub String);

impl FromStr for DiskFormat {
    type Err = UnknownDiskFormat;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DiskFormat::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownDiskFormat(s.to_owned()))
    }
}

/// What checking the content found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Format probed from the content.
    pub content: Format,
    /// Virtual disk size, where the format tells it.
    pub virtual_size: Option<u64>,
}

/// Why content was refused for its claimed format.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The content is another format than claimed.
    #[error("disk_format {claimed} claimed but the content is {actual}")]
    Mismatch {
        /// Claimed format.
        claimed: DiskFormat,
        /// Probed format (qemu-img's name).
        actual: String,
    },
    /// The content is the claimed format but unsafe.
    #[error("{0}")]
    Hostile(String),
    /// A format we cannot check for references to host files.
    #[error("{0}")]
    Unsupported(String),
    /// Reading failed.
    #[error("reading the image: {0}")]
    Io(#[from] std::io::Error),
}

/// Checks that `src` holds what `claimed` says and nothing that could reach outside the image.
pub fn verify<R: ReadAt + ?Sized>(src: &R, claimed: DiskFormat) -> Result<Verified, VerifyError> {
    let content = probe::probe(src)?;
    let len = src.len()?;
    let expected: &[Format] = match claimed {
        // Plain bytes of any kind, but never another image format in disguise: something that
        // probes later would read a qcow2 header here and follow its backing file.
        DiskFormat::Raw | DiskFormat::Ami | DiskFormat::Aki | DiskFormat::Ari => {
            &[Format::Raw, Format::Iso]
        }
        DiskFormat::Qcow2 => &[Format::Qcow2],
        DiskFormat::Iso => &[Format::Iso],
        DiskFormat::Vhd => &[Format::Vhd],
        DiskFormat::Vdi => &[Format::Vdi],
        DiskFormat::Ploop => &[Format::Ploop],
        DiskFormat::Vmdk | DiskFormat::Vhdx => {
            return Err(VerifyError::Unsupported(format!(
                "disk_format {claimed} is not accepted: its extents or parent locators can name host \
                 files and we do not parse it; convert the image to qcow2 or raw"
            )));
        }
    };
    if !expected.contains(&content) {
        return Err(VerifyError::Mismatch {
            claimed,
            actual: content.name().to_owned(),
        });
    }
    let virtual_size = match claimed {
        DiskFormat::Qcow2 => {
            let v = validate(src, Policy::STANDALONE_DEEP)
                .map_err(|e| VerifyError::Hostile(e.to_string()))?;
            Some(v.header.size)
        }
        DiskFormat::Vhd => Some(vhd_size(src, len)?),
        DiskFormat::Vdi => Some(vdi_size(src)?),
        DiskFormat::Iso | DiskFormat::Ploop => None,
        _ => Some(len),
    };
    Ok(Verified {
        content,
        virtual_size,
    })
}

/// VHD footer (last 512 bytes, or a copy at the start): disk type at 60, current size at 48.
fn vhd_size<R: ReadAt + ?Sized>(src: &R, len: u64) -> Result<u64, VerifyError> {
    let mut footer = [0u8; 512];
    let at = len.saturating_sub(512);
    src.read_exact_at(&mut footer[..len.min(512) as usize], at)?;
    if &footer[..8] != b"conectix" {
        src.read_exact_at(&mut footer[..len.min(512) as usize], 0)?;
    }
    let disk_type = u32::from_be_bytes([footer[60], footer[61], footer[62], footer[63]]);
    match disk_type {
        2 | 3 => Ok(u64::from_be_bytes(
            footer[48..56].try_into().unwrap_or([0; 8]),
        )),
        4 => Err(VerifyError::Hostile(
            "VHD differencing disk: its parent locators name host files".into(),
        )),
        t => Err(VerifyError::Hostile(format!(
            "VHD disk type {t} is not fixed (2) or dynamic (3)"
        ))),
    }
}

/// VDI header: image type at 0x4c (1 dynamic, 2 fixed, 4 differencing), disk size at 0x170.
fn vdi_size<R: ReadAt + ?Sized>(src: &R) -> Result<u64, VerifyError> {
    let mut hdr = [0u8; 0x178];
    src.read_exact_at(&mut hdr, 0)?;
    let kind = u32::from_le_bytes([hdr[0x4c], hdr[0x4d], hdr[0x4e], hdr[0x4f]]);
    if kind != 1 && kind != 2 {
        return Err(VerifyError::Hostile(format!(
            "VDI image type {kind} is not normal (1) or fixed (2): differencing images need a parent"
        )));
    }
    Ok(u64::from_le_bytes(
        hdr[0x170..0x178].try_into().unwrap_or([0; 8]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in DiskFormat::ALL {
            assert_eq!(f.name().parse::<DiskFormat>().unwrap(), f);
        }
        assert!("qcow3".parse::<DiskFormat>().is_err());
    }

    #[test]
    fn raw_claims_refuse_other_formats() {
        let mut qcow = disk::qcow2::sample::tiny_image();
        for claimed in [
            DiskFormat::Raw,
            DiskFormat::Aki,
            DiskFormat::Ari,
            DiskFormat::Ami,
            DiskFormat::Iso,
        ] {
            let err = verify(&qcow[..], claimed).unwrap_err();
            assert!(
                matches!(err, VerifyError::Mismatch { .. }),
                "{claimed}: {err}"
            );
        }
        assert_eq!(
            verify(&qcow[..], DiskFormat::Qcow2).unwrap().virtual_size,
            Some(1 << 20)
        );
        qcow[..4].copy_from_slice(b"\0\0\0\0");
        assert_eq!(
            verify(&qcow[..], DiskFormat::Aki).unwrap().virtual_size,
            Some(qcow.len() as u64)
        );
    }

    #[test]
    fn vhd_and_vdi_are_checked_for_parents() {
        let mut vhd = vec![0u8; 2048];
        vhd[1536..1544].copy_from_slice(b"conectix");
        vhd[1536 + 48..1536 + 56].copy_from_slice(&(1u64 << 30).to_be_bytes());
        vhd[1536 + 60..1536 + 64].copy_from_slice(&2u32.to_be_bytes());
        assert_eq!(
            verify(&vhd[..], DiskFormat::Vhd).unwrap().virtual_size,
            Some(1 << 30)
        );
        vhd[1536 + 60..1536 + 64].copy_from_slice(&4u32.to_be_bytes());
        assert!(matches!(
            verify(&vhd[..], DiskFormat::Vhd),
            Err(VerifyError::Hostile(_))
        ));

        let mut vdi = vec![0u8; 1024];
        vdi[0x40..0x44].copy_from_slice(&0xbeda_107f_u32.to_le_bytes());
        vdi[0x4c] = 4;
        assert!(matches!(
            verify(&vdi[..], DiskFormat::Vdi),
            Err(VerifyError::Hostile(_))
        ));
        vdi[0x4c] = 1;
        vdi[0x170..0x178].copy_from_slice(&4096u64.to_le_bytes());
        assert_eq!(
            verify(&vdi[..], DiskFormat::Vdi).unwrap().virtual_size,
            Some(4096)
        );
        assert!(matches!(
            verify(&vdi[..], DiskFormat::Vmdk),
            Err(VerifyError::Unsupported(_))
        ));
    }
}
