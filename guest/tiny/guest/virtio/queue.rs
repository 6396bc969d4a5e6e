//! Split virtqueues (virtio 1.2 section 2.7) for polling drivers, and the page pool their rings
//! and buffers come from.

use core::cell::UnsafeCell;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{Ordering, compiler_fence};

/// Pages the drivers may take (rings, headers, receive buffers): 6 MiB of .bss.
const POOL_PAGES: usize = 1536;
const PAGE: usize = 4096;

#[repr(C, align(4096))]
struct Pool(UnsafeCell<[u8; POOL_PAGES * PAGE]>, UnsafeCell<usize>);

// SAFETY: one vCPU runs the guest and the drivers never run from interrupt handlers, so the
// pool is never touched concurrently.
unsafe impl Sync for Pool {}

static POOL: Pool = Pool(UnsafeCell::new([0; POOL_PAGES * PAGE]), UnsafeCell::new(0));

/// Takes `pages` zeroed, page-aligned pages for good; None when the pool is spent.
pub fn alloc_pages(pages: usize) -> Option<&'static mut [u8]> {
    // SAFETY: single-threaded (see `Pool`); each range is handed out once, so the returned
    // slices never alias.
    unsafe {
        let used = &mut *POOL.1.get();
        if *used + pages > POOL_PAGES {
            return None;
        }
        let base = (POOL.0.get() as *mut u8).add(*used * PAGE);
        *used += pages;
        Some(core::slice::from_raw_parts_mut(base, pages * PAGE))
    }
}

/// Size of the scratch buffer console commands move data through.
pub const CHUNK: usize = 1 << 20;

/// The console commands' scratch buffer (taken from the pool once; commands do not nest, so
/// one at a time uses it). None when the pool is spent.
pub fn chunk_buf() -> Option<&'static mut [u8]> {
    static ADDR: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
    let mut a = ADDR.load(Ordering::Relaxed);
    if a == 0 {
        a = alloc_pages(CHUNK / PAGE)?.as_mut_ptr() as u64;
        ADDR.store(a, Ordering::Relaxed);
    }
    // SAFETY: `a` is CHUNK bytes of pool memory handed out once, to this function; only one
    // command runs at a time, so only one of these slices is in use.
    Some(unsafe { core::slice::from_raw_parts_mut(a as *mut u8, CHUNK) })
}

/// Device may read the buffer (NEXT links the next descriptor).
pub const NEXT: u16 = 1;
/// Device writes the buffer.
pub const WRITE: u16 = 2;

/// One buffer of a chain: guest address, length, whether the device writes it.
#[derive(Clone, Copy)]
pub struct Buf {
    pub addr: u64,
    pub len: u32,
    pub write: bool,
}

impl Buf {
    /// A buffer the device reads.
    pub fn out(b: &[u8]) -> Self {
        Self { addr: b.as_ptr() as u64, len: b.len() as u32, write: false }
    }
    /// A buffer the device fills.
    pub fn inp(b: &mut [u8]) -> Self {
        Self { addr: b.as_mut_ptr() as u64, len: b.len() as u32, write: true }
    }
}

/// A split virtqueue in pool pages: descriptor table, avail ring, used ring.
pub struct Virtq {
    size: u16,
    desc: *mut u8,
    avail: *mut u8,
    used: *mut u8,
    /// Descriptors not in any chain (a stack of indices).
    free: [u16; 256],
    nfree: usize,
    avail_idx: u16,
    last_used: u16,
}

impl Virtq {
    /// A queue of `size` entries (a power of two, at most 256).
    pub fn new(size: u16) -> Option<Self> {
        if !size.is_power_of_two() || size > 256 {
            return None;
        }
        let n = usize::from(size);
        // desc 16n, avail 6 + 2n, used (4-aligned) 6 + 8n: two pages hold a 256-entry queue.
        let mem = alloc_pages(if n <= 64 { 1 } else { 3 })?;
        let base = mem.as_mut_ptr();
        let avail_off = 16 * n;
        let used_off = (avail_off + 6 + 2 * n + 3) & !3;
        let used_off = if n <= 64 { used_off } else { 2 * PAGE };
        let mut q = Self {
            size,
            desc: base,
            // SAFETY: both offsets lie inside the pages just taken.
            avail: unsafe { base.add(avail_off) },
            used: unsafe { base.add(used_off) },
            free: [0; 256],
            nfree: n,
            avail_idx: 0,
            last_used: 0,
        };
        for i in 0..n {
            q.free[i] = i as u16;
        }
        Some(q)
    }

    /// Entries.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Guest physical addresses of the descriptor table, avail and used rings.
    pub fn addresses(&self) -> (u64, u64, u64) {
        (self.desc as u64, self.avail as u64, self.used as u64)
    }

    /// Free descriptors.
    pub fn free(&self) -> usize {
        self.nfree
    }

    /// Publishes a chain of `bufs`; returns its head, or None when descriptors run short.
    pub fn push(&mut self, bufs: &[Buf]) -> Option<u16> {
        if bufs.is_empty() || bufs.len() > self.nfree {
            return None;
        }
        let mut next = 0u16;
        let mut head = 0u16;
        for (i, b) in bufs.iter().enumerate().rev() {
            self.nfree -= 1;
            let d = self.free[self.nfree];
            let mut flags = if b.write { WRITE } else { 0 };
            if i + 1 < bufs.len() {
                flags |= NEXT;
            }
            // SAFETY: `d` < size, so the 16-byte descriptor lies inside the table.
            unsafe {
                let p = self.desc.add(16 * usize::from(d));
                write_volatile(p as *mut u64, b.addr);
                write_volatile(p.add(8) as *mut u32, b.len);
                write_volatile(p.add(12) as *mut u16, flags);
                write_volatile(p.add(14) as *mut u16, next);
            }
            next = d;
            head = d;
        }
        let slot = usize::from(self.avail_idx % self.size);
        // SAFETY: ring entry `slot` < size lies inside the avail ring.
        unsafe { write_volatile(self.avail.add(4 + 2 * slot) as *mut u16, head) };
        // The entry must be visible before the index that publishes it (x86 keeps stores in
        // order; the fence keeps the compiler from reordering them).
        compiler_fence(Ordering::SeqCst);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        // SAFETY: the avail ring's idx field.
        unsafe { write_volatile(self.avail.add(2) as *mut u16, self.avail_idx) };
        compiler_fence(Ordering::SeqCst);
        Some(head)
    }

    /// Publishes an avail index `ahead` entries past the real one, as a broken or hostile
    /// driver might (for the robustness test); the queue is unusable afterwards.
    pub fn corrupt_avail_idx(&mut self, ahead: u16) {
        // SAFETY: the avail ring's idx field.
        unsafe { write_volatile(self.avail.add(2) as *mut u16, self.avail_idx.wrapping_add(ahead)) };
    }

    /// Takes the next used chain: (head, bytes written). Its descriptors become free again.
    pub fn pop_used(&mut self) -> Option<(u16, u32)> {
        // SAFETY: the used ring's idx field.
        let idx = unsafe { read_volatile(self.used.add(2) as *const u16) };
        if idx == self.last_used {
            return None;
        }
        compiler_fence(Ordering::SeqCst);
        let slot = usize::from(self.last_used % self.size);
        // SAFETY: used ring element `slot` < size.
        let (id, len) = unsafe {
            let p = self.used.add(4 + 8 * slot);
            (read_volatile(p as *const u32), read_volatile(p.add(4) as *const u32))
        };
        self.last_used = self.last_used.wrapping_add(1);
        let head = (id % u32::from(self.size)) as u16;
        self.release(head);
        Some((head, len))
    }

    fn release(&mut self, head: u16) {
        let mut d = head;
        for _ in 0..self.size {
            if self.nfree == usize::from(self.size) {
                return;
            }
            self.free[self.nfree] = d;
            self.nfree += 1;
            // SAFETY: `d` < size.
            let (flags, next) = unsafe {
                let p = self.desc.add(16 * usize::from(d));
                (read_volatile(p.add(12) as *const u16), read_volatile(p.add(14) as *const u16))
            };
            if flags & NEXT == 0 {
                return;
            }
            d = next % self.size;
        }
    }
}

/// Spins until `done()` or about `limit` polls passed; true when done.
pub fn spin_until(limit: u64, mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..limit {
        if done() {
            return true;
        }
        core::hint::spin_loop();
    }
    done()
}
