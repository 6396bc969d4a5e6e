//! virtio-blk, polling, one request at a time. The API other guest code uses (the config-drive
//! reader, the console commands):
//!
//! ```ignore
//! for i in 0..blk::count() {
//!     let d = blk::drive(i).unwrap();
//!     let sectors = d.capacity();           // 512-byte sectors
//!     d.read(0, &mut buf)?;                 // buf.len() a multiple of 512
//! }
//! ```

use super::mmio::{self, Device, InitError};
use super::queue::{Buf, CHUNK, Virtq, alloc_pages, chunk_buf, spin_until};
use super::{check_sectors, fill_sectors, parse_num, words};
use crate::serial::{print, print_bytes, print_dec, print_hex};
use core::cell::UnsafeCell;

/// Bytes in a sector, whatever the drive's block size.
pub const SECTOR: usize = 512;
/// Drives the driver keeps.
pub const MAX_DRIVES: usize = 8;

const F_SIZE_MAX: u64 = 1 << 1;
const F_RO: u64 = 1 << 5;
const F_FLUSH: u64 = 1 << 9;
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const S_OK: u8 = 0;
const QUEUE_SIZE: u16 = 16;
/// Polls before a request is declared lost (the device thread answers in microseconds).
const SPIN_LIMIT: u64 = 1 << 34;

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkError {
    /// No drive with that index.
    NoDrive,
    /// The buffer is not a whole number of sectors.
    Unaligned,
    /// The range goes past the end of the drive.
    OutOfRange,
    /// The drive is read-only.
    ReadOnly,
    /// The device answered IOERR (1) or UNSUPP (2), or another status.
    Status(u8),
    /// The device never answered.
    Timeout,
}

struct Drive_ {
    dev: Device,
    q: Virtq,
    features: u64,
    capacity: u64,
    size_max: u32,
    /// Header (16 bytes) and status byte, in pool memory.
    scratch: &'static mut [u8],
}

struct Drives(UnsafeCell<([Option<Drive_>; MAX_DRIVES], usize, bool)>);

// SAFETY: one vCPU, no driver code in interrupt handlers: never accessed concurrently.
unsafe impl Sync for Drives {}

static DRIVES: Drives = Drives(UnsafeCell::new(([const { None }; MAX_DRIVES], 0, false)));

fn drives() -> &'static mut ([Option<Drive_>; MAX_DRIVES], usize, bool) {
    // SAFETY: see `Drives`; callers do not hold two of these references at once.
    let d = unsafe { &mut *DRIVES.0.get() };
    if !d.2 {
        d.2 = true;
        mmio::each(mmio::ID_BLOCK, |dev| {
            if d.1 < MAX_DRIVES {
                match init(dev) {
                    Ok(drive) => {
                        d.0[d.1] = Some(drive);
                        d.1 += 1;
                    }
                    Err(e) => report_init_error(dev, e),
                }
            }
        });
    }
    d
}

fn report_init_error(dev: Device, e: InitError) {
    print("blk: slot ");
    print_dec(dev.slot);
    print(match e {
        InitError::Features => ": features refused\n",
        InitError::Queue => ": queue set-up failed\n",
        InitError::Status => ": device did not start\n",
    });
}

fn init(dev: Device) -> Result<Drive_, InitError> {
    let features = dev.begin(F_SIZE_MAX | F_RO | F_FLUSH)?;
    let q = Virtq::new(QUEUE_SIZE).ok_or(InitError::Queue)?;
    dev.setup_queue(0, &q)?;
    dev.finish()?;
    let size_max = if features & F_SIZE_MAX != 0 { dev.config32(8) } else { 0 };
    Ok(Drive_ {
        dev,
        q,
        features,
        capacity: dev.config64(0),
        // Whole sectors, at least one, at most 1 MiB per descriptor.
        size_max: (size_max.clamp(SECTOR as u32, 1 << 20)) & !(SECTOR as u32 - 1),
        scratch: alloc_pages(1).ok_or(InitError::Queue)?,
    })
}

/// Number of virtio-blk drives (found on first use, in slot order: index 0 is /dev/vda).
pub fn count() -> usize {
    drives().1
}

/// A handle to drive `index`.
#[derive(Clone, Copy, Debug)]
pub struct Drive(usize);

/// Drive `index`, if there is one.
pub fn drive(index: usize) -> Option<Drive> {
    (index < count()).then_some(Drive(index))
}

impl Drive {
    fn state(&self) -> Result<&'static mut Drive_, BlkError> {
        drives().0.get_mut(self.0).and_then(Option::as_mut).ok_or(BlkError::NoDrive)
    }

    /// Capacity in 512-byte sectors, read afresh (the VMM's `drive_update` may change it).
    pub fn capacity(&self) -> u64 {
        self.state().map_or(0, |d| {
            d.capacity = d.dev.config64(0);
            d.capacity
        })
    }

    /// True when the device offered VIRTIO_BLK_F_RO.
    pub fn read_only(&self) -> bool {
        self.state().is_ok_and(|d| d.features & F_RO != 0)
    }

    /// The slot the drive sits in.
    pub fn slot(&self) -> u64 {
        self.state().map_or(0, |d| d.dev.slot)
    }

    /// Reads `buf.len()` bytes (whole sectors) from `sector` on.
    pub fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        let d = self.state()?;
        check(d, sector, buf.len())?;
        let step = d.size_max as usize;
        for (i, chunk) in buf.chunks_mut(step).enumerate() {
            let s = sector + (i * step / SECTOR) as u64;
            request(d, T_IN, s, Buf::inp(chunk))?;
        }
        Ok(())
    }

    /// Writes `buf` (whole sectors) from `sector` on.
    pub fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlkError> {
        let d = self.state()?;
        if d.features & F_RO != 0 {
            return Err(BlkError::ReadOnly);
        }
        check(d, sector, buf.len())?;
        let step = d.size_max as usize;
        for (i, chunk) in buf.chunks(step).enumerate() {
            let s = sector + (i * step / SECTOR) as u64;
            request(d, T_OUT, s, Buf::out(chunk))?;
        }
        Ok(())
    }

    /// Makes written data durable.
    pub fn flush(&self) -> Result<(), BlkError> {
        let d = self.state()?;
        if d.features & F_FLUSH == 0 {
            return Ok(());
        }
        request(d, T_FLUSH, 0, Buf { addr: 0, len: 0, write: false })
    }

    /// The drive's serial (GET_ID): up to 20 bytes.
    pub fn serial(&self, out: &mut [u8; 20]) -> Result<usize, BlkError> {
        let d = self.state()?;
        request(d, T_GET_ID, 0, Buf::inp(out))?;
        Ok(out.iter().position(|&b| b == 0).unwrap_or(20))
    }
}

fn check(d: &Drive_, sector: u64, len: usize) -> Result<(), BlkError> {
    if len % SECTOR != 0 {
        return Err(BlkError::Unaligned);
    }
    match sector.checked_add((len / SECTOR) as u64) {
        Some(end) if end <= d.capacity => Ok(()),
        _ => Err(BlkError::OutOfRange),
    }
}

/// One request: header, the data buffer (none when `len` is 0), status; waits for it.
fn request(d: &mut Drive_, kind: u32, sector: u64, data: Buf) -> Result<(), BlkError> {
    let (hdr, rest) = d.scratch.split_at_mut(16);
    hdr[..4].copy_from_slice(&kind.to_le_bytes());
    hdr[4..8].fill(0);
    hdr[8..16].copy_from_slice(&sector.to_le_bytes());
    let status = &mut rest[..1];
    status[0] = 0xff;
    let hdr = Buf::out(hdr);
    let st = Buf::inp(status);
    let pushed = if data.len == 0 { d.q.push(&[hdr, st]) } else { d.q.push(&[hdr, data, st]) };
    pushed.ok_or(BlkError::Timeout)?;
    d.dev.notify(0);
    let q = &mut d.q;
    if !spin_until(SPIN_LIMIT, || q.pop_used().is_some()) {
        return Err(BlkError::Timeout);
    }
    d.dev.ack_interrupt();
    // SAFETY: the status byte sits in pool memory the device wrote (volatile: not the
    // compiler's to cache).
    let s = unsafe { core::ptr::read_volatile(d.scratch.as_ptr().add(16)) };
    if s == S_OK { Ok(()) } else { Err(BlkError::Status(s)) }
}

fn print_error(e: BlkError) {
    print("blk: error ");
    match e {
        BlkError::NoDrive => print("no such drive"),
        BlkError::Unaligned => print("unaligned"),
        BlkError::OutOfRange => print("out of range"),
        BlkError::ReadOnly => print("read-only"),
        BlkError::Status(s) => {
            print("status ");
            print_dec(s.into());
        }
        BlkError::Timeout => print("timeout"),
    }
    print("\n");
}

/// `blk`: lists the drives (slot, sectors, ro, serial).
pub fn cmd_list(_: &[u8]) {
    print("blk: ");
    print_dec(count() as u64);
    print(" drives\n");
    for i in 0..count() {
        let Some(d) = drive(i) else { continue };
        let mut serial = [0u8; 20];
        print("blk");
        print_dec(i as u64);
        print(": slot ");
        print_dec(d.slot());
        print(" sectors ");
        print_dec(d.capacity());
        print(if d.read_only() { " ro" } else { " rw" });
        print(" serial ");
        match d.serial(&mut serial) {
            Ok(n) => print_bytes(&serial[..n]),
            Err(e) => print_error(e),
        }
        print("\n");
    }
}

/// Parses `<drive> <sector> <bytes> [seed]`.
fn args4(args: &[u8]) -> Option<(Drive, u64, u64, u16)> {
    let (w, n) = words::<4>(args);
    if n < 3 {
        return None;
    }
    let d = drive(parse_num(w[0])? as usize)?;
    let seed = if n == 4 { parse_num(w[3])? as u16 } else { 1 };
    Some((d, parse_num(w[1])?, parse_num(w[2])?, seed))
}

fn usage(text: &str) {
    print("usage: ");
    print(text);
    print("\n");
}

/// `blkwrite <drive> <sector> <bytes> [seed] [noflush]`: writes the pattern (see
/// `sector_word`), then flushes unless `noflush` ends the line (so the host can test what it
/// sees of writes the guest never flushed).
pub fn cmd_write(args: &[u8]) {
    let trimmed = args.trim_ascii_end();
    let (args, flush) = match trimmed.strip_suffix(b"noflush") {
        Some(rest) if rest.is_empty() || rest.ends_with(b" ") => (rest, false),
        _ => (args, true),
    };
    let Some((d, sector, bytes, seed)) = args4(args) else {
        return usage("blkwrite <drive> <sector> <bytes> [seed] [noflush]");
    };
    let Some(buf) = chunk_buf() else { return print("blk: out of memory\n") };
    let mut done = 0u64;
    while done < bytes {
        let n = ((bytes - done) as usize).min(CHUNK);
        let s = sector + done / SECTOR as u64;
        fill_sectors(&mut buf[..n], s, seed);
        if let Err(e) = d.write(s, &buf[..n]) {
            return print_error(e);
        }
        done += n as u64;
    }
    if flush && let Err(e) = d.flush() {
        return print_error(e);
    }
    print("blkwrite: ");
    print_dec(bytes);
    print(" bytes seed ");
    print_dec(seed.into());
    print(if flush { " flushed\n" } else { " not flushed\n" });
}

/// `blkread <drive> <sector> <bytes> [seed]`: reads, counts the sectors that differ from the
/// pattern of `seed`.
pub fn cmd_read(args: &[u8]) {
    let Some((d, sector, bytes, seed)) = args4(args) else {
        return usage("blkread <drive> <sector> <bytes> [seed]");
    };
    let Some(buf) = chunk_buf() else { return print("blk: out of memory\n") };
    let mut bad = 0u64;
    let mut done = 0u64;
    while done < bytes {
        let n = ((bytes - done) as usize).min(CHUNK);
        let s = sector + done / SECTOR as u64;
        if let Err(e) = d.read(s, &mut buf[..n]) {
            return print_error(e);
        }
        bad += check_sectors(&buf[..n], s, seed);
        done += n as u64;
    }
    print("blkread: ");
    print_dec(bytes);
    print(" bytes seed ");
    print_dec(seed.into());
    print(" bad sectors ");
    print_dec(bad);
    print("\n");
}

/// `blkbench <drive> <sr|sw|rr|rw> <bytes> <block>`: sequential or random (block-aligned,
/// xorshift) reads or writes of `block`-byte requests until `bytes` moved; the data is never
/// touched by the guest. Prints `blkbench: start` and `blkbench: done <requests>` so the host
/// can time the span between the two lines.
pub fn cmd_bench(args: &[u8]) {
    let (w, n) = words::<4>(args);
    let parsed = (n == 4).then(|| {
        Some((drive(parse_num(w[0])? as usize)?, w[1], parse_num(w[2])?, parse_num(w[3])?))
    });
    let Some(Some((d, mode, bytes, block))) = parsed else {
        return usage("blkbench <drive> <sr|sw|rr|rw> <bytes> <block>");
    };
    let Some(buf) = chunk_buf() else { return print("blk: out of memory\n") };
    let block = (block as usize).clamp(SECTOR, CHUNK) & !(SECTOR - 1);
    let blocks_on_disk = d.capacity() / (block / SECTOR) as u64;
    if blocks_on_disk == 0 {
        return print("blkbench: drive too small\n");
    }
    let (write, random) = match mode {
        b"sr" => (false, false),
        b"sw" => (true, false),
        b"rr" => (false, true),
        b"rw" => (true, true),
        _ => return usage("blkbench <drive> <sr|sw|rr|rw> <bytes> <block>"),
    };
    print("blkbench: start\n");
    let (mut x, mut requests, mut done) = (0x2545_f491_4f6c_dd1du64, 0u64, 0u64);
    while done < bytes {
        let index = if random {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % blocks_on_disk
        } else {
            requests % blocks_on_disk
        };
        let sector = index * (block / SECTOR) as u64;
        let r = if write { d.write(sector, &buf[..block]) } else { d.read(sector, &mut buf[..block]) };
        if let Err(e) = r {
            return print_error(e);
        }
        requests += 1;
        done += block as u64;
    }
    print("blkbench: done ");
    print_dec(requests);
    print("\n");
}

/// `blkevil <drive>`: misbehaves on purpose against the VMM: a request whose data buffer lies
/// outside guest memory (it must come back failed, with nothing written), then an avail index
/// far ahead of the ring (the device must set DEVICE_NEEDS_RESET); then resets the device and
/// reads again.
pub fn cmd_evil(args: &[u8]) {
    let Some(d) = parse_num(args).and_then(|i| drive(i as usize)) else {
        return usage("blkevil <drive>");
    };
    let Ok(st) = d.state() else { return };
    let outside = Buf { addr: 0x7f00_0000_0000, len: 4096, write: true };
    match request(st, T_IN, 0, outside) {
        Err(BlkError::Status(s)) => {
            print("blkevil: buffer outside memory refused, status ");
            print_dec(s.into());
            print("\n");
        }
        Ok(()) => print("blkevil: buffer outside memory ACCEPTED\n"),
        Err(e) => print_error(e),
    }
    st.q.corrupt_avail_idx(1000);
    st.dev.notify(0);
    let dev = st.dev;
    if spin_until(SPIN_LIMIT, || dev.status() & mmio::NEEDS_RESET != 0) {
        print("blkevil: device needs reset\n");
    } else {
        print("blkevil: device did not flag the bad ring\n");
    }
    match init(dev) {
        Ok(fresh) => *st = fresh,
        Err(e) => return report_init_error(dev, e),
    }
    let mut sector = [0u8; SECTOR];
    match d.read(0, &mut sector) {
        Ok(()) => print("blkevil: reset and read again\n"),
        Err(e) => print_error(e),
    }
}
