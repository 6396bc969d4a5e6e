//! virtio-net over a real tap in a throw-away network namespace: the host kernel answers the
//! guest's ARP request and ICMP echo, with the guest's offloads set on the tap.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

use super::*;

const HOST_IP: [u8; 4] = [10, 213, 7, 1];
const GUEST_IP: [u8; 4] = [10, 213, 7, 2];
const GUEST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x0a, 0xd5, 0x02];

/// A network namespace deleted on drop.
struct Netns(String);

impl Netns {
    /// Creates it, or says why it cannot (not root, no `ip`, no tun).
    fn create() -> Result<Self, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root".into());
        }
        if !std::path::Path::new("/dev/net/tun").exists() {
            return Err("/dev/net/tun missing".into());
        }
        let name = format!("virga-dev-{}", std::process::id());
        let ns = Netns(name.clone());
        ip(&["netns", "add", &name])?;
        Ok(ns)
    }

    /// Opens tap `tap` inside the namespace (from a thread that enters it).
    fn open_tap(&self, tap: &str) -> Tap {
        let path = format!("/run/netns/{}", self.0);
        let tap = tap.to_string();
        std::thread::spawn(move || {
            let f = std::fs::File::open(&path).unwrap();
            // SAFETY: setns on a namespace fd we hold; it changes only this thread's namespace.
            let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            Tap::open(&tap).unwrap()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn skip_or_fail(why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "tap test cannot run under CI: {why}"
    );
    eprintln!("SKIPPED: virtio-net tap test needs root, ip and /dev/net/tun: {why}");
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn eth(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend_from_slice(&dst);
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn arp_request() -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&GUEST_MAC);
    a.extend_from_slice(&GUEST_IP);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&HOST_IP);
    eth([0xff; 6], 0x0806, &a)
}

fn icmp_echo(dst_mac: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
    icmp.extend_from_slice(payload);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let total = (20 + icmp.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 1, 0, 0]);
    ip.extend_from_slice(&GUEST_IP);
    ip.extend_from_slice(&HOST_IP);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&icmp);
    eth(dst_mac, 0x0800, &ip)
}

struct Guest<'m> {
    mem: &'m Memory,
    dev: Net,
    rx: TestQueue<'m>,
    tx: TestQueue<'m>,
    rx_posted: bool,
    slot: u64,
}

impl Guest<'_> {
    fn send(&mut self, f: &[u8]) {
        let at = 0x20_0000 + self.slot * 0x1_0000;
        self.slot = (self.slot + 1) % 8;
        self.mem.write_slice(f, GuestAddress(at)).unwrap();
        let before = self.tx.used_idx();
        self.tx.add_chain(&[rdesc(at, f.len() as u32)]);
        self.dev.process_tx();
        assert_eq!(self.tx.used_idx(), before.wrapping_add(1));
    }

    /// Next frame the host sends us that `want` accepts, within two seconds.
    fn receive(&mut self, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if !self.rx_posted {
                self.rx.add_chain(&[wdesc(0x10_0000, 2048)]);
                self.rx_posted = true;
            }
            let mut pfd = libc::pollfd {
                fd: self.dev.backend_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            unsafe { libc::poll(&mut pfd, 1, 100) };
            let before = self.rx.used_idx();
            self.dev.process_rx();
            if self.rx.used_idx() == before {
                continue;
            }
            self.rx_posted = false;
            let (_, len) = self.rx.used(before);
            let f = read(self.mem, 0x10_0000, len as usize);
            if want(&f[VNET_HDR_LEN..]) {
                return f;
            }
        }
        panic!("no matching frame from the host within 2 s");
    }
}

#[test]
fn arp_and_ping_answered_by_the_host_through_a_real_tap() {
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(why) => return skip_or_fail(&why),
    };
    let opened = ns.open_tap("vtap0");
    assert_eq!(opened.name(), "vtap0");
    // The orchestrator's way: a tap fd passed in. A dup of ours stands in for it.
    // SAFETY: dup of an fd we own; the new fd is owned by the OwnedFd alone.
    let dup = unsafe { OwnedFd::from_raw_fd(libc::dup(opened.as_raw_fd())) };
    let tap = Tap::from_fd(dup).unwrap();
    assert_eq!(tap.name(), "vtap0");
    drop(opened);
    ip(&["-n", &ns.0, "addr", "add", "10.213.7.1/24", "dev", "vtap0"]).unwrap();
    ip(&["-n", &ns.0, "link", "set", "vtap0", "up"]).unwrap();

    let mem = test_memory();
    let cfg = NetConfig {
        mac: Some(MacAddr(GUEST_MAC)),
        queue_size: 16,
    };
    let mut dev = Net::new(Box::new(tap), cfg).unwrap();
    let offered = dev.avail_features();
    for f in [
        VIRTIO_NET_F_CSUM,
        VIRTIO_NET_F_GUEST_CSUM,
        VIRTIO_NET_F_GUEST_TSO4,
        VIRTIO_NET_F_HOST_TSO6,
    ] {
        assert_ne!(offered & (1 << f), 0, "a tap offers offload {f}");
    }
    let rx = TestQueue::at(&mem, GuestAddress(0), 16);
    let tx = TestQueue::at(&mem, GuestAddress(0x8000), 16);
    let (irq, _) = test_interrupt();
    // Every offload the tap offers: TUNSETOFFLOAD must accept the matching flags.
    let acked = offered;
    let a = Activation {
        mem: mem.clone(),
        queues: vec![rx.queue(), tx.queue()],
        acked_features: acked,
        interrupt: irq,
    };
    dev.activate(a).unwrap();
    let mut g = Guest {
        mem: &mem,
        dev,
        rx,
        tx,
        rx_posted: false,
        slot: 0,
    };

    g.send(&arp_request());
    let reply = g.receive(|f| f.len() >= 42 && f[12..14] == [8, 6] && f[20..22] == [0, 2]);
    let host_mac: [u8; 6] = reply[VNET_HDR_LEN + 6..VNET_HDR_LEN + 12]
        .try_into()
        .unwrap();
    let arp = &reply[VNET_HDR_LEN + 14..];
    assert_eq!(&arp[14..18], &HOST_IP, "sender is the host address");
    assert_eq!(&arp[18..24], &GUEST_MAC);

    let payload: Vec<u8> = (0..56u8).collect();
    g.send(&icmp_echo(host_mac, &payload));
    let pong = g.receive(|f| f.len() >= 34 && f[12..14] == [8, 0] && f[23] == 1 && f[34] == 0);
    let ip = &pong[VNET_HDR_LEN + 14..];
    assert_eq!(&ip[12..16], &HOST_IP);
    assert_eq!(&ip[28..], &payload[..], "echo reply carries our payload");
    let c = g.dev.counters().snapshot();
    assert!(c.requests >= 4 && c.errors == 0, "{c:?}");
}
