//! The virtio devices of a VM configuration: drives, NICs, balloon, rng. Their JSON form is
//! part of `VmConfig`; their flag forms (`--drive id=root,path=/x,...`) are parsed here.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Longest virtio-blk serial (the GET_ID answer is 20 bytes).
pub const MAX_SERIAL_LEN: usize = 20;
/// virtio-mmio slots: their GSIs (`virtio::slot_gsi`: pins 5-23 but the SCI's 9) must stay on
/// the IOAPIC's 24 pins.
pub const MAX_VIRTIO_DEVICES: usize = 18;

/// Errors in the device part of a configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceConfigError {
    /// A `key=value` option list that does not parse.
    #[error("--{flag} {value:?}: {why}")]
    Flag {
        flag: &'static str,
        value: String,
        why: String,
    },
    /// An empty device id.
    #[error("a {kind} has an empty id")]
    EmptyId { kind: &'static str },
    /// Two devices with one id.
    #[error("device id {0:?} is used twice")]
    DuplicateId(String),
    /// A drive serial longer than 20 bytes.
    #[error("drive {id}: serial {serial:?} is longer than {MAX_SERIAL_LEN} bytes")]
    SerialTooLong { id: String, serial: String },
    /// A drive whose path is empty.
    #[error("drive {0}: empty path")]
    EmptyPath(String),
    /// An empty entry in a drive's `backing_dirs`.
    #[error("drive {0}: empty backing directory")]
    EmptyBackingDir(String),
    /// One tap fd given to two NICs.
    #[error("tap_fd {0} is given to two NICs")]
    DuplicateTapFd(i32),
    /// A NIC with neither or both of `tap` and `tap_fd`.
    #[error("net {0}: give exactly one of tap and tap_fd")]
    TapChoice(String),
    /// A tap name the kernel would refuse (empty or 16 bytes and more).
    #[error("net {id}: tap name {tap:?} must be 1 to 15 bytes")]
    TapName { id: String, tap: String },
    /// A MAC that does not parse or is multicast.
    #[error("net {id}: MAC {mac:?} is not a unicast address like 02:00:00:00:00:01")]
    Mac { id: String, mac: String },
    /// More virtio devices than slots.
    #[error("{0} virtio devices configured; at most {MAX_VIRTIO_DEVICES} fit")]
    TooManyDevices(usize),
}

/// Disk image format of a drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriveFormat {
    /// Plain bytes, never interpreted.
    Raw,
    /// qcow2 (backing files followed).
    Qcow2,
}

/// One virtio-blk drive; drives take slots in their order, the first is `/dev/vda`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriveConfig {
    /// Name for the control socket (`drive_update`, counters).
    pub id: String,
    /// Disk image file.
    pub path: PathBuf,
    /// Format; absent: probed from the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DriveFormat>,
    /// Refuse guest writes.
    #[serde(default)]
    pub read_only: bool,
    /// GET_ID answer (at most 20 bytes); absent: the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Directories a qcow2 backing file (and each file further down its chain) must lie in;
    /// absent: the directory holding `path`; empty: no backing file at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backing_dirs: Option<Vec<PathBuf>>,
}

/// One virtio-net NIC over a tap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    /// Name for the control socket (counters).
    pub id: String,
    /// Tap device to open (or create) by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap: Option<String>,
    /// An already open tap fd inherited from the parent (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap_fd: Option<i32>,
    /// Guest MAC `aa:bb:cc:dd:ee:ff`; absent: a random locally administered one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// The virtio-balloon (statistics are always offered).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalloonConfig {
    /// Let the guest take pages back when it runs out of memory.
    #[serde(default)]
    pub deflate_on_oom: bool,
    /// Let the guest report free pages, which the VMM returns to the host.
    #[serde(default)]
    pub free_page_reporting: bool,
}

/// Splits `a=1,b=2` into pairs; a bare key (`ro`) reads as `on`.
fn pairs(flag: &'static str, s: &str) -> Result<Vec<(String, String)>, DeviceConfigError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, "on"));
        if out.iter().any(|(o, _)| o == k) {
            return Err(flag_err(flag, s, format!("{k} given twice")));
        }
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

fn flag_err(flag: &'static str, value: &str, why: String) -> DeviceConfigError {
    DeviceConfigError::Flag {
        flag,
        value: value.to_owned(),
        why,
    }
}

fn on_off(flag: &'static str, s: &str, key: &str, v: &str) -> Result<bool, DeviceConfigError> {
    match v {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(flag_err(flag, s, format!("{key}={v}: want on or off"))),
    }
}

impl FromStr for DriveConfig {
    type Err = DeviceConfigError;
    /// `id=ID,path=P[,format=raw|qcow2][,ro=on][,serial=S][,backing_dirs=D1:D2]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (mut id, mut path, mut format, mut read_only, mut serial) =
            (None, None, None, false, None);
        let mut backing_dirs = None;
        for (k, v) in pairs("drive", s)? {
            match k.as_str() {
                "id" => id = Some(v),
                "path" => path = Some(PathBuf::from(v)),
                "format" => {
                    format = Some(match v.as_str() {
                        "raw" => DriveFormat::Raw,
                        "qcow2" => DriveFormat::Qcow2,
                        _ => {
                            return Err(flag_err(
                                "drive",
                                s,
                                format!("format {v:?}: raw or qcow2"),
                            ));
                        }
                    })
                }
                "ro" | "read_only" => read_only = on_off("drive", s, &k, &v)?,
                "serial" => serial = Some(v),
                // `:`-separated, as PATH; an empty value allows no backing file.
                "backing_dirs" => {
                    backing_dirs = Some(if v.is_empty() {
                        Vec::new()
                    } else {
                        v.split(':').map(PathBuf::from).collect()
                    })
                }
                _ => return Err(flag_err("drive", s, format!("unknown key {k:?}"))),
            }
        }
        Ok(Self {
            id: id.ok_or_else(|| flag_err("drive", s, "id= is required".into()))?,
            path: path.ok_or_else(|| flag_err("drive", s, "path= is required".into()))?,
            format,
            read_only,
            serial,
            backing_dirs,
        })
    }
}

impl FromStr for NetConfig {
    type Err = DeviceConfigError;
    /// `id=ID,tap=NAME[,mac=M]` or `id=ID,tap_fd=N[,mac=M]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (mut id, mut tap, mut tap_fd, mut mac) = (None, None, None, None);
        for (k, v) in pairs("net", s)? {
            match k.as_str() {
                "id" => id = Some(v),
                "tap" => tap = Some(v),
                "tap_fd" | "fd" => {
                    tap_fd = Some(
                        v.parse()
                            .map_err(|_| flag_err("net", s, format!("tap_fd {v:?}")))?,
                    )
                }
                "mac" => mac = Some(v),
                _ => return Err(flag_err("net", s, format!("unknown key {k:?}"))),
            }
        }
        Ok(Self {
            id: id.ok_or_else(|| flag_err("net", s, "id= is required".into()))?,
            tap,
            tap_fd,
            mac,
        })
    }
}

impl FromStr for BalloonConfig {
    type Err = DeviceConfigError;
    /// `[deflate_on_oom=on][,free_page_reporting=on]` (empty: both off).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut c = Self::default();
        for (k, v) in pairs("balloon", s)? {
            match k.as_str() {
                "deflate_on_oom" => c.deflate_on_oom = on_off("balloon", s, &k, &v)?,
                "free_page_reporting" => c.free_page_reporting = on_off("balloon", s, &k, &v)?,
                _ => return Err(flag_err("balloon", s, format!("unknown key {k:?}"))),
            }
        }
        Ok(c)
    }
}

impl DriveConfig {
    /// The directories backing files of `image` (this drive's image, or one `drive_update`
    /// puts behind it) may be in: `backing_dirs`, else the directory holding `image`.
    pub fn trusted_backing_dirs(&self, image: &Path) -> Vec<PathBuf> {
        match &self.backing_dirs {
            Some(dirs) => dirs.clone(),
            None => vec![
                image
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_owned(),
            ],
        }
    }

    /// The serial the guest reads: the configured one, else the id cut to 20 bytes.
    pub fn guest_serial(&self) -> String {
        match &self.serial {
            Some(s) => s.clone(),
            None => {
                let mut end = self.id.len().min(MAX_SERIAL_LEN);
                while !self.id.is_char_boundary(end) {
                    end -= 1;
                }
                self.id[..end].to_owned()
            }
        }
    }
}

impl NetConfig {
    /// The configured MAC's six bytes (None: the VMM generates one); a multicast address,
    /// which no NIC may own, is refused.
    pub fn parsed_mac(&self) -> Result<Option<[u8; 6]>, DeviceConfigError> {
        let Some(m) = &self.mac else { return Ok(None) };
        match parse_mac(m) {
            Some(b) if b[0] & 0x01 == 0 => Ok(Some(b)),
            _ => Err(DeviceConfigError::Mac {
                id: self.id.clone(),
                mac: m.clone(),
            }),
        }
    }
}

/// Six hex byte pairs separated by `:` (either case), nothing else.
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut b = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut b {
        let p = parts.next()?;
        // (from_str_radix alone would take "+5")
        if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(b)
}

/// Checks drives, NICs and the slot count (`extra`: balloon and rng).
pub fn validate(
    drives: &[DriveConfig],
    nets: &[NetConfig],
    extra: usize,
) -> Result<(), DeviceConfigError> {
    let total = drives.len() + nets.len() + extra;
    if total > MAX_VIRTIO_DEVICES {
        return Err(DeviceConfigError::TooManyDevices(total));
    }
    let mut ids: Vec<&str> = Vec::new();
    let ids_in_order = drives
        .iter()
        .map(|d| ("drive", d.id.as_str()))
        .chain(nets.iter().map(|n| ("net", n.id.as_str())));
    for (kind, id) in ids_in_order {
        if id.is_empty() {
            return Err(DeviceConfigError::EmptyId { kind });
        }
        if ids.contains(&id) {
            return Err(DeviceConfigError::DuplicateId(id.to_owned()));
        }
        ids.push(id);
    }
    for d in drives {
        if d.path.as_os_str().is_empty() {
            return Err(DeviceConfigError::EmptyPath(d.id.clone()));
        }
        if d.backing_dirs
            .iter()
            .flatten()
            .any(|p| p.as_os_str().is_empty())
        {
            return Err(DeviceConfigError::EmptyBackingDir(d.id.clone()));
        }
        if d.serial.as_ref().is_some_and(|s| s.len() > MAX_SERIAL_LEN) {
            return Err(DeviceConfigError::SerialTooLong {
                id: d.id.clone(),
                serial: d.serial.clone().unwrap_or_default(),
            });
        }
    }
    for (i, n) in nets.iter().enumerate() {
        if let Some(fd) = n.tap_fd
            && nets[..i].iter().any(|o| o.tap_fd == Some(fd))
        {
            return Err(DeviceConfigError::DuplicateTapFd(fd));
        }
        match (&n.tap, n.tap_fd) {
            (Some(t), None) if !t.is_empty() && t.len() < 16 => {}
            (Some(t), None) => {
                return Err(DeviceConfigError::TapName {
                    id: n.id.clone(),
                    tap: t.clone(),
                });
            }
            (None, Some(_)) => {}
            _ => return Err(DeviceConfigError::TapChoice(n.id.clone())),
        }
        n.parsed_mac()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drive_flags() {
        let d: DriveConfig = "id=root,path=/x/d.qcow2,format=qcow2,ro=on,serial=abc"
            .parse()
            .unwrap();
        assert_eq!(
            d,
            DriveConfig {
                id: "root".into(),
                path: "/x/d.qcow2".into(),
                format: Some(DriveFormat::Qcow2),
                read_only: true,
                serial: Some("abc".into()),
                backing_dirs: None,
            }
        );
        assert_eq!(
            d.trusted_backing_dirs(&d.path),
            vec![PathBuf::from("/x")],
            "default: the image's directory"
        );
        let d: DriveConfig = "id=d,path=d.qcow2,backing_dirs=/a:/b/c".parse().unwrap();
        assert_eq!(d.backing_dirs, Some(vec!["/a".into(), "/b/c".into()]));
        assert_eq!(d.trusted_backing_dirs(&d.path), d.backing_dirs.unwrap());
        let d: DriveConfig = "id=d,path=d.qcow2,backing_dirs=".parse().unwrap();
        assert_eq!(d.trusted_backing_dirs(&d.path), Vec::<PathBuf>::new());
        let d: DriveConfig = "id=d,path=d.qcow2".parse().unwrap();
        assert_eq!(d.trusted_backing_dirs(&d.path), vec![PathBuf::from(".")]);
        assert_eq!(
            validate(
                &["id=d,path=/p,backing_dirs=/a::/b".parse().unwrap()],
                &[],
                0
            ),
            Err(DeviceConfigError::EmptyBackingDir("d".into()))
        );
        let d: DriveConfig = "id=d,path=/p,ro".parse().unwrap();
        assert!(d.read_only && d.format.is_none());
        for bad in [
            "path=/p",
            "id=x",
            "id=x,path=/p,format=vmdk",
            "id=x,path=/p,ro=maybe",
            "id=x,path=/p,colour=red",
            "id=x,id=y,path=/p",
        ] {
            assert!(bad.parse::<DriveConfig>().is_err(), "{bad}");
        }
    }

    #[test]
    fn macs_parse_in_either_case_and_no_other_shape() {
        assert_eq!(
            parse_mac("52:54:00:ab:CD:ef"),
            Some([0x52, 0x54, 0, 0xab, 0xcd, 0xef])
        );
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:ef:00",
            "5:54:00:ab:cd:ef",
            "zz:54:00:ab:cd:ef",
            "+5:54:00:ab:cd:ef",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn net_and_balloon_flags() {
        let n: NetConfig = "id=net0,tap=tap0,mac=02:00:00:00:00:01".parse().unwrap();
        assert_eq!(n.tap.as_deref(), Some("tap0"));
        assert_eq!(n.parsed_mac().unwrap(), Some([2, 0, 0, 0, 0, 1]));
        let n: NetConfig = "id=net0,tap_fd=7".parse().unwrap();
        assert_eq!(n.tap_fd, Some(7));
        assert!("id=n,tap_fd=x".parse::<NetConfig>().is_err());
        assert_eq!(
            "".parse::<BalloonConfig>().unwrap(),
            BalloonConfig::default()
        );
        let b: BalloonConfig = "deflate_on_oom=on,free_page_reporting".parse().unwrap();
        assert!(b.deflate_on_oom && b.free_page_reporting);
        assert!("oom=on".parse::<BalloonConfig>().is_err());
    }

    #[test]
    fn validation() {
        let d = |id: &str| DriveConfig {
            id: id.into(),
            path: "/p".into(),
            format: None,
            read_only: false,
            serial: None,
            backing_dirs: None,
        };
        let n = |id: &str, tap: Option<&str>, fd: Option<i32>, mac: Option<&str>| NetConfig {
            id: id.into(),
            tap: tap.map(Into::into),
            tap_fd: fd,
            mac: mac.map(Into::into),
        };
        assert!(validate(&[d("a"), d("b")], &[n("c", Some("t"), None, None)], 2).is_ok());
        assert_eq!(
            validate(&[d("a")], &[n("a", Some("t"), None, None)], 0),
            Err(DeviceConfigError::DuplicateId("a".into()))
        );
        assert!(matches!(
            validate(&[d("")], &[], 0),
            Err(DeviceConfigError::EmptyId { .. })
        ));
        let mut long = d("a");
        long.serial = Some("x".repeat(21));
        assert!(matches!(
            validate(&[long], &[], 0),
            Err(DeviceConfigError::SerialTooLong { .. })
        ));
        assert_eq!(d(&"y".repeat(30)).guest_serial().len(), 20);
        for bad in [
            n("n", None, None, None),
            n("n", Some("t"), Some(3), None),
            n("n", Some("a-name-far-too-long"), None, None),
            n("n", Some("t"), None, Some("01:00:00:00:00:01")),
            n("n", Some("t"), None, Some("nonsense")),
        ] {
            assert!(
                validate(&[], std::slice::from_ref(&bad), 0).is_err(),
                "{bad:?}"
            );
        }
        let many: Vec<_> = (0..19).map(|i| d(&i.to_string())).collect();
        assert_eq!(
            validate(&many, &[], 1),
            Err(DeviceConfigError::TooManyDevices(20))
        );
    }
}
