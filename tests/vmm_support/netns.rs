//! A throw-away network namespace with a bridge and a tap for the tiny guest's NIC, and the
//! host side of its UDP echo (tests/vmm_virtio_net.rs, benches/virtio_net.rs).

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

pub const HOST_IP: &str = "10.213.9.1";
pub const GUEST_IP: &str = "10.213.9.2";
pub const GUEST_MAC: &str = "02:00:00:d5:09:02";
pub const PORT: u16 = 7777;
pub const TOTAL: usize = 64 << 20;
pub const DATAGRAM: usize = 60_000;
pub const WINDOW: u64 = 4;

/// A network namespace with a bridge and a tap, deleted on drop.
pub struct Netns(pub String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    out.status
        .success()
        .then_some(())
        .ok_or_else(|| format!("ip {args:?}: {}", String::from_utf8_lossy(&out.stderr)))
}

/// The namespace, its bridge `vbr0` (HOST_IP, MTU 65000) and tap `vtap0` on it.
pub fn netns() -> Result<Netns, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Err("/dev/net/tun missing".into());
    }
    let ns = Netns(format!("virga-vnet-{}", std::process::id()));
    ip(&["netns", "add", &ns.0])?;
    let n = ns.0.as_str();
    for cmd in [
        &["-n", n, "link", "set", "lo", "up"][..],
        &["-n", n, "link", "add", "vbr0", "type", "bridge"],
        &[
            "-n", n, "tuntap", "add", "dev", "vtap0", "mode", "tap", "vnet_hdr",
        ],
        &[
            "-n", n, "link", "set", "vtap0", "mtu", "65000", "master", "vbr0", "up",
        ],
        &["-n", n, "link", "set", "vbr0", "mtu", "65000", "up"],
        &[
            "-n",
            n,
            "addr",
            "add",
            &format!("{HOST_IP}/24"),
            "dev",
            "vbr0",
        ],
        &[
            "-n",
            n,
            "neigh",
            "replace",
            GUEST_IP,
            "lladdr",
            GUEST_MAC,
            "dev",
            "vbr0",
            "nud",
            "permanent",
        ],
    ] {
        ip(cmd)?;
    }
    Ok(ns)
}

/// Datagram `seq`: its number, then bytes from a generator seeded by it.
fn datagram(seq: u64) -> Vec<u8> {
    let mut v = seq.to_le_bytes().to_vec();
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while v.len() < DATAGRAM {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(DATAGRAM);
    v
}

struct Fnv(u64);
impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    fn update(&mut self, b: &[u8]) {
        for &x in b {
            self.0 = (self.0 ^ u64::from(x)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// What the host side of the echo saw.
#[derive(Debug)]
pub struct Transfer {
    pub sent_hash: u64,
    pub echoed_hash: u64,
    pub sent_bytes: u64,
    pub retransmits: u64,
    pub secs: f64,
}

/// Sends TOTAL bytes to the guest (go-back-N, WINDOW datagrams in flight) from inside `ns` and
/// checks every echo against what was sent.
pub fn transfer(ns: &str) -> Transfer {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on a namespace fd we hold; it changes only this thread's namespace.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        let sock = UdpSocket::bind((HOST_IP, 0)).unwrap();
        sock.connect((GUEST_IP, PORT)).unwrap();
        // Room for the window's echoes: a 60 kB datagram takes about twice that of the
        // default 208 KiB receive buffer, and a full buffer drops echoes.
        let size: libc::c_int = 8 << 20;
        // SAFETY: setsockopt reads an int from `size` for the socket we own.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let n = TOTAL.div_ceil(DATAGRAM) as u64;
        let (mut sent, mut echoed) = (Fnv::new(), Fnv::new());
        let (mut base, mut next, mut sent_bytes, mut retransmits) = (0u64, 0u64, 0u64, 0u64);
        let mut buf = vec![0u8; 65536];
        let start = Instant::now();
        while base < n {
            while next < n && next < base + WINDOW {
                sock.send(&datagram(next)).unwrap();
                sent_bytes += DATAGRAM as u64;
                next += 1;
            }
            match sock.recv(&mut buf) {
                Ok(len) => {
                    let seq = u64::from_le_bytes(buf[..8].try_into().unwrap());
                    if seq == base {
                        let want = datagram(seq);
                        assert_eq!(&buf[..len], want.as_slice(), "echo of datagram {seq}");
                        sent.update(&want);
                        echoed.update(&buf[..len]);
                        base += 1;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    retransmits += next - base;
                    next = base;
                    assert!(retransmits < 1000, "the echo keeps losing datagrams");
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
        Transfer {
            sent_hash: sent.0,
            echoed_hash: echoed.0,
            sent_bytes,
            retransmits,
            secs: start.elapsed().as_secs_f64(),
        }
    })
    .join()
    .unwrap()
}
