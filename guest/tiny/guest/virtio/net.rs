//! virtio-net: a MAC, one receive and one transmit queue, no offloads (the host kernel
//! checksums and segments for us). Commands: `net` (MAC), `net ping <guest-ip> <host-ip>`
//! (ARP, then an ICMP echo the host answers), `net echo <port>` (sends every UDP datagram to
//! <port> back where it came from, in place: the payload is never copied or read, which matters
//! when every guest instruction is emulated).

use super::mmio::{self, Device};
use super::queue::{Buf, Virtq, alloc_pages};
use super::{parse_num, words};
use crate::serial::{print, print_dec, print_hex, try_getc};
use crate::irq;

const F_MAC: u64 = 1 << 5;
/// virtio_net_hdr with num_buffers (virtio 1.x).
const HDR: usize = 12;
const RX_BUFS: usize = 16;
/// Room for a 64 KiB frame (the test's tap MTU is 65000) and the header.
const RX_PAGES: usize = 17;
const ETH: usize = HDR;
const IP: usize = ETH + 14;
const ETHERTYPE_IP: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
/// A tx head that carries no receive buffer.
const NOT_RX: usize = usize::MAX;

struct Nic {
    dev: Device,
    rx: Virtq,
    tx: Virtq,
    mac: [u8; 6],
    bufs: [usize; RX_BUFS],
    /// Which receive buffer each descriptor head carries (rx and tx chains are one
    /// descriptor each here).
    rx_head: [usize; 256],
    tx_head: [usize; 256],
}

/// The receive buffers, taken from the pool once (every `net` command reuses them).
fn rx_buffers() -> Option<[usize; RX_BUFS]> {
    use core::sync::atomic::{AtomicUsize, Ordering};
    static BASE: AtomicUsize = AtomicUsize::new(0);
    let mut base = BASE.load(Ordering::Relaxed);
    if base == 0 {
        base = alloc_pages(RX_PAGES * RX_BUFS)?.as_mut_ptr() as usize;
        BASE.store(base, Ordering::Relaxed);
    }
    Some(core::array::from_fn(|i| base + i * RX_PAGES * 4096))
}

fn buf(addr: usize) -> &'static mut [u8] {
    // SAFETY: `addr` is one of the RX_PAGES-page pool buffers taken in `Nic::start`, used by one
    // frame at a time (it is either in the rx ring, in the tx ring, or being edited here).
    unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, RX_PAGES * 4096) }
}

impl Nic {
    fn start() -> Option<Self> {
        let mut dev = None;
        mmio::each(mmio::ID_NET, |d| dev = dev.or(Some(d)));
        let dev = dev?;
        let features = dev.begin(F_MAC).ok()?;
        let rx = Virtq::new(16)?;
        let tx = Virtq::new(16)?;
        dev.setup_queue(0, &rx).ok()?;
        dev.setup_queue(1, &tx).ok()?;
        dev.finish().ok()?;
        let mut mac = [0u8; 6];
        if features & F_MAC != 0 {
            for (i, b) in mac.iter_mut().enumerate() {
                *b = dev.config8(i as u64);
            }
        }
        let mut nic = Self { dev, rx, tx, mac, bufs: rx_buffers()?, rx_head: [0; 256], tx_head: [NOT_RX; 256] };
        for i in 0..RX_BUFS {
            nic.post_rx(i);
        }
        nic.dev.notify(0);
        Some(nic)
    }

    fn post_rx(&mut self, i: usize) {
        if let Some(h) = self.rx.push(&[Buf::inp(buf(self.bufs[i]))]) {
            self.rx_head[usize::from(h)] = i;
        }
    }

    /// The next received frame: (buffer index, length including the header).
    fn recv(&mut self) -> Option<(usize, usize)> {
        let (head, len) = self.rx.pop_used()?;
        Some((self.rx_head[usize::from(head)], len as usize))
    }

    /// Sends `len` bytes of buffer `i` (header included); the buffer goes back to the rx ring
    /// once the device is done with it.
    fn send_buf(&mut self, i: usize, len: usize) -> bool {
        self.reap_tx();
        let b = buf(self.bufs[i]);
        b[..HDR].fill(0);
        match self.tx.push(&[Buf::out(&b[..len])]) {
            Some(h) => {
                self.tx_head[usize::from(h)] = i;
                self.dev.notify(1);
                true
            }
            None => false,
        }
    }

    /// Returns transmitted buffers to the receive ring.
    fn reap_tx(&mut self) {
        let mut any = false;
        while let Some((h, _)) = self.tx.pop_used() {
            let i = core::mem::replace(&mut self.tx_head[usize::from(h)], NOT_RX);
            if i != NOT_RX {
                self.post_rx(i);
                any = true;
            }
        }
        if any {
            self.dev.notify(0);
        }
    }

    fn recycle(&mut self, i: usize) {
        self.post_rx(i);
        self.dev.notify(0);
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum = 0u32;
    for pair in b.chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn parse_ip(s: &[u8]) -> Option<[u8; 4]> {
    let mut ip = [0u8; 4];
    let mut parts = s.split(|&b| b == b'.');
    for o in &mut ip {
        *o = u8::try_from(parse_num(parts.next()?)?).ok()?;
    }
    parts.next().is_none().then_some(ip)
}

fn print_mac(m: &[u8]) {
    for (i, b) in m.iter().enumerate() {
        let hex = |d: u8| if d < 10 { b'0' + d } else { b'a' + d - 10 };
        crate::serial::print_bytes(&[hex(b >> 4), hex(b & 0xf)]);
        if i < 5 {
            print(":");
        }
    }
}

/// Waits up to `ticks` PIT ticks (10 ms) for a frame `want` accepts; other frames are dropped.
fn wait_frame(nic: &mut Nic, ticks: u64, want: impl Fn(&[u8]) -> bool) -> Option<usize> {
    let deadline = irq::ticks() + ticks;
    while irq::ticks() < deadline {
        if let Some((i, len)) = nic.recv() {
            if want(&buf(nic.bufs[i])[..len]) {
                return Some(i);
            }
            nic.recycle(i);
        } else {
            irq::wait();
        }
    }
    None
}

fn ping(nic: &mut Nic, me: [u8; 4], host: [u8; 4]) {
    // ARP who-has host, from us: ask through a receive buffer we take out of the ring first.
    let Some(tmp) = alloc_pages(1) else { return print("net: out of memory\n") };
    let f = &mut tmp[..HDR + 42];
    f.fill(0);
    f[ETH..ETH + 6].fill(0xff);
    f[ETH + 6..ETH + 12].copy_from_slice(&nic.mac);
    put16(f, ETH + 12, ETHERTYPE_ARP);
    let arp = ETH + 14;
    f[arp..arp + 8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f[arp + 8..arp + 14].copy_from_slice(&nic.mac);
    f[arp + 14..arp + 18].copy_from_slice(&me);
    f[arp + 24..arp + 28].copy_from_slice(&host);
    send_once(nic, f);
    let Some(i) = wait_frame(nic, 300, |b| {
        b.len() >= HDR + 42 && be16(b, ETH + 12) == ETHERTYPE_ARP && be16(b, arp + 6) == 2
            && b[arp + 14..arp + 18] == host
    }) else {
        return print("net: no ARP reply\n");
    };
    let mut host_mac = [0u8; 6];
    host_mac.copy_from_slice(&buf(nic.bufs[i])[arp + 8..arp + 14]);
    nic.recycle(i);
    print("net: arp ");
    print_mac(&host_mac);
    print("\n");

    // ICMP echo request, 56 bytes of data.
    let f = &mut tmp[..HDR + 14 + 20 + 64];
    f.fill(0);
    f[ETH..ETH + 6].copy_from_slice(&host_mac);
    f[ETH + 6..ETH + 12].copy_from_slice(&nic.mac);
    put16(f, ETH + 12, ETHERTYPE_IP);
    f[IP] = 0x45;
    put16(f, IP + 2, 84);
    f[IP + 8] = 64;
    f[IP + 9] = 1;
    f[IP + 12..IP + 16].copy_from_slice(&me);
    f[IP + 16..IP + 20].copy_from_slice(&host);
    let c = checksum(&f[IP..IP + 20]);
    put16(f, IP + 10, c);
    let icmp = IP + 20;
    f[icmp] = 8;
    put16(f, icmp + 4, 0x7667);
    put16(f, icmp + 6, 1);
    for (k, b) in f[icmp + 8..icmp + 64].iter_mut().enumerate() {
        *b = k as u8;
    }
    let c = checksum(&f[icmp..icmp + 64]);
    put16(f, icmp + 2, c);
    send_once(nic, f);
    let Some(i) = wait_frame(nic, 300, |b| {
        b.len() >= HDR + 98 && be16(b, ETH + 12) == ETHERTYPE_IP && b[IP + 9] == 1
            && b[icmp] == 0 && be16(b, icmp + 4) == 0x7667 && b[icmp + 8..icmp + 64] == f_data()
    }) else {
        return print("net: no ICMP echo reply\n");
    };
    nic.recycle(i);
    print("net: ping reply seq 1\n");
}

fn f_data() -> [u8; 56] {
    let mut d = [0u8; 56];
    for (k, b) in d.iter_mut().enumerate() {
        *b = k as u8;
    }
    d
}

/// Sends a frame from a buffer outside the rx set and waits for the device to take it.
fn send_once(nic: &mut Nic, f: &[u8]) {
    nic.reap_tx();
    if let Some(h) = nic.tx.push(&[Buf::out(f)]) {
        nic.tx_head[usize::from(h)] = NOT_RX;
        nic.dev.notify(1);
        let deadline = irq::ticks() + 100;
        while irq::ticks() < deadline && nic.tx.free() < usize::from(nic.tx.size()) {
            nic.reap_tx();
            irq::wait();
        }
    }
}

/// Echoes UDP to `port` until a key arrives; prints datagrams and payload bytes echoed.
fn echo(nic: &mut Nic, port: u16) {
    print("net: echoing\n");
    let (mut count, mut bytes) = (0u64, 0u64);
    loop {
        if try_getc().is_some() {
            break;
        }
        let Some((i, len)) = nic.recv() else {
            nic.reap_tx();
            continue;
        };
        let b = buf(nic.bufs[i]);
        let ok = len >= IP + 28 && be16(b, ETH + 12) == ETHERTYPE_IP && b[IP] == 0x45 && b[IP + 9] == 17
            && be16(b, IP + 22) == port;
        if !ok {
            nic.recycle(i);
            continue;
        }
        // Swap MACs, IPs and ports in place; both checksums are sums, so they still hold.
        let mut t = [0u8; 6];
        t.copy_from_slice(&b[ETH..ETH + 6]);
        b.copy_within(ETH + 6..ETH + 12, ETH);
        b[ETH + 6..ETH + 12].copy_from_slice(&t);
        let mut ip = [0u8; 4];
        ip.copy_from_slice(&b[IP + 12..IP + 16]);
        b.copy_within(IP + 16..IP + 20, IP + 12);
        b[IP + 16..IP + 20].copy_from_slice(&ip);
        let sport = be16(b, IP + 20);
        put16(b, IP + 20, port);
        put16(b, IP + 22, sport);
        count += 1;
        bytes += u64::from(be16(b, IP + 24).saturating_sub(8));
        while !nic.send_buf(i, len) {
            nic.reap_tx();
        }
    }
    print("net: echoed ");
    print_dec(count);
    print(" datagrams ");
    print_dec(bytes);
    print(" bytes\n");
}

/// `net`, `net ping <guest-ip> <host-ip>`, `net echo <port>`.
pub fn cmd(args: &[u8]) {
    let (w, n) = words::<3>(args);
    let Some(mut nic) = Nic::start() else { return print("net: no device\n") };
    irq::start_timer(100);
    match (n, w[0]) {
        (0, _) => {
            print("net: mac ");
            print_mac(&nic.mac);
            print(" status ");
            print_hex(u64::from(nic.dev.config8(6)));
            print("\n");
        }
        (3, b"ping") => match (parse_ip(w[1]), parse_ip(w[2])) {
            (Some(me), Some(host)) => ping(&mut nic, me, host),
            _ => print("usage: net ping <guest-ip> <host-ip>\n"),
        },
        (2, b"echo") => match parse_num(w[1]).and_then(|p| u16::try_from(p).ok()) {
            Some(port) => echo(&mut nic, port),
            None => print("usage: net echo <port>\n"),
        },
        _ => print("usage: net | net ping <guest-ip> <host-ip> | net echo <port>\n"),
    }
    irq::stop_timer();
    // Reset the device: the next command starts it afresh with new rings.
    nic.dev.begin(0).ok();
}
