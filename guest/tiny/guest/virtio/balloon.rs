//! virtio-balloon: gives the top of RAM back to the host when the VMM asks (config `num_pages`)
//! and answers statistics requests. The pages come from a region at the top of RAM that
//! `balloon touch` dirtied first, so the host sees its RSS drop when they are inflated.

use super::mmio::{self, Device};
use super::queue::{Buf, Virtq, alloc_pages, spin_until};
use super::{parse_num, words};
use crate::serial::{print, print_dec, try_getc};
use crate::{irq, pvh};

const F_STATS_VQ: u64 = 1 << 1;
const PAGE: u64 = 4096;
/// PFNs per inflate/deflate chain.
const BATCH: usize = 256;
const SPIN_LIMIT: u64 = 1 << 32;
/// Statistics tags (virtio 1.2 section 5.5.6.3).
const TAG_FREE: u16 = 4;
const TAG_TOTAL: u16 = 5;
const TAG_AVAILABLE: u16 = 6;

/// `balloon touch <mib>`: writes one byte in every page of the top `mib` MiB of RAM, so the
/// host backs them (the region the balloon later gives back).
pub fn cmd_touch(args: &[u8]) {
    let mib = parse_num(args).unwrap_or(64);
    let top = pvh::ram_end();
    let start = top.saturating_sub(mib << 20);
    let mut a = start;
    while a < top {
        // SAFETY: [start, top) is RAM at the top of the PVH memory map, identity mapped, above
        // the guest image and its pool; nothing else of the guest lives there.
        unsafe { core::ptr::write_volatile(a as *mut u8, 0x5a) };
        a += PAGE;
    }
    print("balloon: touched ");
    print_dec(mib);
    print(" MiB\n");
}

struct Balloon {
    dev: Device,
    inflate: Virtq,
    deflate: Virtq,
    stats: Option<Virtq>,
    pfns: &'static mut [u8],
    stats_buf: &'static mut [u8],
    actual: u32,
    top_pfn: u64,
}

impl Balloon {
    fn start(dev: Device) -> Option<Self> {
        let features = dev.begin(F_STATS_VQ).ok()?;
        let inflate = Virtq::new(16)?;
        let deflate = Virtq::new(16)?;
        dev.setup_queue(0, &inflate).ok()?;
        dev.setup_queue(1, &deflate).ok()?;
        let stats = if features & F_STATS_VQ != 0 {
            let q = Virtq::new(4)?;
            dev.setup_queue(2, &q).ok()?;
            Some(q)
        } else {
            None
        };
        let mut b = Self {
            dev,
            inflate,
            deflate,
            stats,
            pfns: alloc_pages(1)?,
            stats_buf: alloc_pages(1)?,
            actual: 0,
            top_pfn: pvh::ram_end() / PAGE,
        };
        b.fill_stats();
        if let Some(q) = &mut b.stats {
            // The driver hands the device its first statistics at start.
            q.push(&[Buf::out(&b.stats_buf[..30])])?;
        }
        dev.finish().ok()?;
        dev.write_config32(4, 0);
        dev.notify(2);
        Some(b)
    }

    fn fill_stats(&mut self) {
        let total = self.top_pfn * PAGE;
        let free = total.saturating_sub((u64::from(self.actual) + 4096) * PAGE);
        for (i, (tag, v)) in [(TAG_TOTAL, total), (TAG_FREE, free), (TAG_AVAILABLE, free)]
            .into_iter()
            .enumerate()
        {
            self.stats_buf[i * 10..i * 10 + 2].copy_from_slice(&tag.to_le_bytes());
            self.stats_buf[i * 10 + 2..i * 10 + 10].copy_from_slice(&v.to_le_bytes());
        }
    }

    /// Gives (`inflate`) or takes back pages `actual..actual+n` counted from the top of RAM.
    fn move_pages(&mut self, n: u32, inflate: bool) -> bool {
        let mut left = n;
        while left > 0 {
            let batch = (left as usize).min(BATCH);
            for i in 0..batch {
                let k = if inflate {
                    u64::from(self.actual) + i as u64
                } else {
                    u64::from(self.actual) - 1 - i as u64
                };
                let pfn = (self.top_pfn - 1 - k) as u32;
                self.pfns[i * 4..i * 4 + 4].copy_from_slice(&pfn.to_le_bytes());
            }
            let (q, index) = if inflate { (&mut self.inflate, 0) } else { (&mut self.deflate, 1) };
            if q.push(&[Buf::out(&self.pfns[..batch * 4])]).is_none() {
                return false;
            }
            self.dev.notify(index);
            if !spin_until(SPIN_LIMIT, || q.pop_used().is_some()) {
                return false;
            }
            if inflate {
                self.actual += batch as u32;
            } else {
                self.actual -= batch as u32;
            }
            left -= batch as u32;
        }
        self.dev.write_config32(4, self.actual);
        true
    }

    /// Answers a statistics request: the device returned our buffer; send fresh numbers.
    fn serve_stats(&mut self) {
        let Some(q) = &mut self.stats else { return };
        if q.pop_used().is_none() {
            return;
        }
        self.fill_stats();
        let Some(q) = &mut self.stats else { return };
        if q.push(&[Buf::out(&self.stats_buf[..30])]).is_some() {
            self.dev.notify(2);
        }
    }
}

/// `balloon serve`: follows the VMM's target (checked 100 times a second) and answers
/// statistics requests until a key arrives on the console.
pub fn cmd_serve(_: &[u8]) {
    let mut dev = None;
    mmio::each(mmio::ID_BALLOON, |d| dev = dev.or(Some(d)));
    let Some(dev) = dev else { return print("balloon: no device\n") };
    let Some(mut b) = Balloon::start(dev) else { return print("balloon: device did not start\n") };
    print("balloon: serving\n");
    irq::start_timer(100);
    loop {
        if try_getc().is_some() {
            break;
        }
        dev.ack_interrupt();
        let target = dev.config32(0);
        if target != b.actual {
            let ok = if target > b.actual {
                // Never more than the region above the guest's own 16 MiB.
                let room = b.top_pfn.saturating_sub(4096) as u32;
                let n = target.min(room).saturating_sub(b.actual);
                b.move_pages(n, true)
            } else {
                b.move_pages(b.actual - target, false)
            };
            print(if ok { "balloon: actual " } else { "balloon: failed at " });
            print_dec(b.actual.into());
            print(" pages\n");
        }
        b.serve_stats();
        irq::wait();
    }
    irq::stop_timer();
    print("balloon: stopped\n");
}

/// `balloon touch <mib>` or `balloon serve`.
pub fn cmd(args: &[u8]) {
    let (w, n) = words::<2>(args);
    match (n, w[0]) {
        (_, b"touch") => cmd_touch(w[1]),
        (_, b"serve") => cmd_serve(w[1]),
        _ => print("usage: balloon touch <mib> | balloon serve\n"),
    }
}
