//! A Linux tap device carrying virtio-net headers (IFF_VNET_HDR), the host end of virtio-net.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use vmm_sys_util::ioctl::{ioctl_with_mut_ref, ioctl_with_ref, ioctl_with_val};
use vmm_sys_util::{ioctl_ior_nr, ioctl_iow_nr};

use super::{FrameIo, VNET_HDR_LEN};

const TUNTAP: u32 = b'T' as u32;
ioctl_iow_nr!(TUNSETIFF, TUNTAP, 202, std::os::raw::c_int);
ioctl_iow_nr!(TUNSETOFFLOAD, TUNTAP, 208, std::os::raw::c_uint);
ioctl_ior_nr!(TUNGETIFF, TUNTAP, 210, std::os::raw::c_uint);
ioctl_iow_nr!(TUNSETVNETHDRSZ, TUNTAP, 216, std::os::raw::c_int);

const IFF_TAP: u16 = 0x0002;
const IFF_NO_PI: u16 = 0x1000;
const IFF_VNET_HDR: u16 = 0x4000;

/// TUNSETOFFLOAD bits: what the tap may hand us (and so the guest) un-checksummed or unsegmented.
pub mod offload {
    /// Partial checksums.
    pub const CSUM: u32 = 0x01;
    /// TCPv4 segmentation offload.
    pub const TSO4: u32 = 0x02;
    /// TCPv6 segmentation offload.
    pub const TSO6: u32 = 0x04;
    /// TSO with ECN.
    pub const TSO_ECN: u32 = 0x08;
}

/// Why a tap cannot be opened or configured.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The interface name is empty, too long (15 bytes at most) or contains a NUL.
    #[error("invalid tap name {0:?}")]
    Name(String),
    /// /dev/net/tun cannot be opened.
    #[error("cannot open /dev/net/tun: {0}")]
    OpenTun(std::io::Error),
    /// An ioctl on the tap failed.
    #[error("{op} on tap {name:?} failed: {source}")]
    Ioctl {
        op: &'static str,
        name: String,
        source: std::io::Error,
    },
    /// A passed fd is not a tap with IFF_VNET_HDR and IFF_NO_PI.
    #[error("fd {fd} is not a tap with vnet headers and no packet info (flags {flags:#x})")]
    NotVnetTap { fd: RawFd, flags: u16 },
}

#[repr(C)]
#[derive(Default)]
struct IfReq {
    name: [u8; 16],
    flags: u16,
    _pad: [u8; 22],
}

/// An open tap interface, non-blocking, reading and writing one frame (with its 12-byte
/// virtio-net header) per call.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Opens (creating it if needed) the tap interface `name`.
    pub fn open(name: &str) -> Result<Self, TapError> {
        if name.is_empty() || name.len() > 15 || name.contains('\0') {
            return Err(TapError::Name(name.to_string()));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(TapError::OpenTun)?;
        let mut req = IfReq {
            flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
            ..IfReq::default()
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes an ifreq; `req` is one, valid for the call.
        let ret = unsafe { ioctl_with_mut_ref(&file, TUNSETIFF(), &mut req) };
        let tap = Self {
            file,
            name: name.to_string(),
        };
        tap.check(ret, "TUNSETIFF")?;
        tap.set_vnet_hdr_size()?;
        Ok(tap)
    }

    /// Takes a tap opened elsewhere (e.g. by the orchestrator, passed over a socket). It must
    /// have been created with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR.
    pub fn from_fd(fd: OwnedFd) -> Result<Self, TapError> {
        let raw = fd.as_raw_fd();
        let file = File::from(fd);
        let mut req = IfReq::default();
        // SAFETY: TUNGETIFF fills an ifreq; `req` is one, valid for the call.
        let ret = unsafe { ioctl_with_mut_ref(&file, TUNGETIFF(), &mut req) };
        let mut tap = Self {
            file,
            name: format!("fd {raw}"),
        };
        tap.check(ret, "TUNGETIFF")?;
        let end = req
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(req.name.len());
        tap.name = String::from_utf8_lossy(&req.name[..end]).into_owned();
        let need = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        if req.flags & need != need {
            return Err(TapError::NotVnetTap {
                fd: raw,
                flags: req.flags,
            });
        }
        // SAFETY: F_GETFL/F_SETFL on an fd we own; no memory is passed.
        let ret = unsafe {
            let fl = libc::fcntl(raw, libc::F_GETFL);
            if fl < 0 {
                fl
            } else {
                libc::fcntl(raw, libc::F_SETFL, fl | libc::O_NONBLOCK)
            }
        };
        tap.check(ret, "fcntl(O_NONBLOCK)")?;
        tap.set_vnet_hdr_size()?;
        Ok(tap)
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the TUNSETOFFLOAD flags ([`offload`]).
    pub fn set_offload(&self, flags: u32) -> Result<(), TapError> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value; no memory is passed.
        let ret =
            unsafe { ioctl_with_val(&self.file, TUNSETOFFLOAD(), libc::c_ulong::from(flags)) };
        self.check(ret, "TUNSETOFFLOAD")
    }

    fn set_vnet_hdr_size(&self) -> Result<(), TapError> {
        // The virtio 1.x header (with num_buffers) so frames pass through unchanged.
        let size = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads an int; `size` is one, valid for the call.
        let ret = unsafe { ioctl_with_ref(&self.file, TUNSETVNETHDRSZ(), &size) };
        self.check(ret, "TUNSETVNETHDRSZ")
    }

    fn check(&self, ret: i32, op: &'static str) -> Result<(), TapError> {
        if ret < 0 {
            let source = std::io::Error::last_os_error();
            return Err(TapError::Ioctl {
                op,
                name: self.name.clone(),
                source,
            });
        }
        Ok(())
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl FrameIo for Tap {
    fn read_frame(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.read(buf)
    }

    fn write_frame(&mut self, frame: &[u8]) -> std::io::Result<()> {
        let n = self.file.write(frame)?;
        if n != frame.len() {
            return Err(std::io::Error::other(format!(
                "tap took {n} of {} bytes",
                frame.len()
            )));
        }
        Ok(())
    }

    fn offloads_supported(&self) -> bool {
        true
    }

    fn set_offloads(&mut self, flags: u32) -> std::io::Result<()> {
        self.set_offload(flags).map_err(std::io::Error::other)
    }
}
