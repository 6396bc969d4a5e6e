//! The OpenStack config drive, read at boot as cloud-init would: the first virtio-blk drive
//! holding an ISO 9660 volume labelled `config-2` (any case), then
//! `openstack/latest/meta_data.json` and `user_data`. What a real guest would do with them,
//! this one prints on COM1 (lines starting `config-drive:`):
//! - hostname: kept, shown by the `hostname` command;
//! - public keys: each `name key` printed ("installed" has no further meaning here);
//! - user data: its size and first line; a script starting with the line `#tiny` is run, one
//!   console command per line (`#` lines are comments), as cloud-init runs a `#!` script.
//!   Anything else (`#cloud-config`, shell scripts) is reported and not run.
//!
//! Every size is bounded and every error is printed; nothing on the drive can fault the guest.

mod json;

use crate::console;
use crate::iso9660::{BLOCK, IsoError, ReadBlock, Volume};
use crate::serial::{print, print_bytes, print_dec};
use crate::virtio::blk;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};
use json::{Str, Value};

/// The label Nova gives the drive; cloud-init also accepts it upper case.
const LABEL: &[u8] = b"config-2";
const META_DATA: &[u8] = b"openstack/latest/meta_data.json";
const USER_DATA: &[u8] = b"openstack/latest/user_data";
const NETWORK_DATA: &[u8] = b"openstack/latest/network_data.json";
/// Larger meta_data.json files are refused (Nova's are a few KiB).
const META_MAX: usize = 32 * 1024;
/// Nova accepts at most 65535 bytes of base64 user data: less than this once decoded.
const USER_MAX: usize = 64 * 1024;
/// Longest hostname kept (DNS names are at most 253 characters).
const HOSTNAME_MAX: usize = 255;
/// Longest key printed in full.
const KEY_PRINT_MAX: usize = 1024;
/// Longest first line of user data printed.
const FIRST_LINE_MAX: usize = 120;
/// Most commands run from a `#tiny` script.
const SCRIPT_MAX_COMMANDS: usize = 64;
const SCRIPT_MARKER: &[u8] = b"#tiny";

/// File buffers, in .bss rather than on the 16 KiB stack.
struct Files {
    meta: [u8; META_MAX],
    user: [u8; USER_MAX],
}

/// The hostname the drive gave; its own cell, so that a `#tiny` script can say `hostname`
/// while the files are in use.
struct Hostname {
    name: [u8; HOSTNAME_MAX],
    len: usize,
}

/// A static that one caller at a time borrows mutably.
struct Guarded<T> {
    busy: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: `with` hands out the only `&mut T` while `busy` is set, whatever the thread.
unsafe impl<T> Sync for Guarded<T> {}

impl<T> Guarded<T> {
    const fn new(value: T) -> Self {
        Self {
            busy: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Runs `f` with the value; `false` (and `f` not run) when it is already borrowed.
    fn with(&self, f: impl FnOnce(&mut T)) -> bool {
        if self.busy.swap(true, Ordering::Acquire) {
            return false;
        }
        // SAFETY: `busy` was clear and we set it, so no other reference exists until we clear
        // it below.
        f(unsafe { &mut *self.value.get() });
        self.busy.store(false, Ordering::Release);
        true
    }
}

static FILES: Guarded<Files> = Guarded::new(Files {
    meta: [0; META_MAX],
    user: [0; USER_MAX],
});
static HOSTNAME: Guarded<Hostname> = Guarded::new(Hostname {
    name: [0; HOSTNAME_MAX],
    len: 0,
});

/// Reads the config drive, if any, and acts on it. Called at boot and by `configdrive`.
pub fn run(_: &[u8]) {
    // Busy: a `#tiny` script said `configdrive`; reading again would recurse.
    let done = FILES.with(|files| match find() {
        Some((index, mut dev, volume)) => {
            print("config-drive: found on drive ");
            print_dec(index as u64);
            print(if volume.joliet { " (joliet)\n" } else { " (iso9660)\n" });
            read_drive(files, &mut dev, &volume);
        }
        None => print("config-drive: none found\n"),
    });
    if !done {
        print("config-drive: already being read\n");
    }
}

/// The `hostname` command: the hostname the config drive gave.
pub fn hostname(_: &[u8]) {
    HOSTNAME.with(|h| {
        print("hostname: ");
        if h.len == 0 {
            print("(none)\n");
        } else {
            print_clean(&h.name[..h.len]);
            print("\n");
        }
    });
}

/// 2048-byte ISO blocks over a drive's 512-byte sectors.
struct Drive(blk::Drive);

impl ReadBlock for Drive {
    fn read_block(&mut self, lba: u32, buf: &mut [u8; BLOCK]) -> bool {
        let per_block = (BLOCK / blk::SECTOR) as u64;
        self.0.read(u64::from(lba) * per_block, buf).is_ok()
    }
}

fn find() -> Option<(usize, Drive, Volume)> {
    for index in 0..blk::count() {
        let mut dev = Drive(blk::drive(index)?);
        match Volume::open(&mut dev) {
            Ok(v) if v.label().eq_ignore_ascii_case(LABEL) => return Some((index, dev, v)),
            Ok(_) | Err(IsoError::NotIso) | Err(IsoError::Read(_)) => {}
            Err(e) => {
                print("config-drive: drive ");
                print_dec(index as u64);
                print(": ");
                print(e.message());
                print("\n");
            }
        }
    }
    None
}

fn read_drive(files: &mut Files, dev: &mut Drive, volume: &Volume) {
    match read(dev, volume, META_DATA, &mut files.meta) {
        Some(len) => meta_data(&files.meta[..len]),
        None => print("config-drive: no usable meta_data.json\n"),
    }
    if let Some(len) = read(dev, volume, NETWORK_DATA, &mut files.user) {
        print("config-drive: network-data ");
        print_dec(len as u64);
        print(" bytes");
        match json::members(&files.user[..len], |_, _| {}) {
            Ok(()) => print("\n"),
            Err(e) => json_error(e),
        }
    }
    match read(dev, volume, USER_DATA, &mut files.user) {
        Some(len) => user_data(&files.user[..len]),
        None => print("config-drive: no user-data\n"),
    }
    print("config-drive: done\n");
}

/// Reads a whole file into `buf`; prints why and returns `None` when it cannot.
fn read(dev: &mut Drive, volume: &Volume, path: &[u8], buf: &mut [u8]) -> Option<usize> {
    let result = volume.lookup(dev, path).and_then(|file| {
        if file.size as usize > buf.len() {
            return Err(IsoError::Unsupported("file larger than the guest's buffer"));
        }
        volume.read_file(dev, file, buf)
    });
    match result {
        Ok(len) => Some(len),
        Err(IsoError::NotFound) if path == USER_DATA || path == NETWORK_DATA => None,
        Err(e) => {
            print("config-drive: ");
            print_bytes(path);
            print(": ");
            print(e.message());
            print("\n");
            None
        }
    }
}

fn json_error(e: json::JsonError) {
    print(": bad JSON: ");
    print(e.what);
    print(" at byte ");
    print_dec(e.at as u64);
    print("\n");
}

fn meta_data(doc: &[u8]) {
    let result = json::members(doc, |key, value| match value {
        Value::Str(s) if key.is(b"hostname") => {
            HOSTNAME.with(|h| {
                h.len = s.decode_into(&mut h.name);
                print("config-drive: hostname ");
                print_clean(&h.name[..h.len]);
                print("\n");
            });
        }
        Value::Str(s) if key.is(b"uuid") || key.is(b"name") => {
            print("config-drive: ");
            print_str(key, 32);
            print(" ");
            print_str(s, 64);
            print("\n");
        }
        Value::Object(keys) if key.is(b"public_keys") => public_keys(keys),
        _ => {}
    });
    if let Err(e) = result {
        print("config-drive: meta_data.json");
        json_error(e);
    }
}

fn public_keys(object: &[u8]) {
    let result = json::members(object, |name, key| {
        print("config-drive: public key ");
        print_str(name, 64);
        print(" ");
        match key {
            Value::Str(k) => print_str(k, KEY_PRINT_MAX),
            _ => print("(not a string)"),
        }
        print("\n");
    });
    if let Err(e) = result {
        print("config-drive: public_keys");
        json_error(e);
    }
}

fn user_data(data: &[u8]) {
    let first = data.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    print("config-drive: user-data ");
    print_dec(data.len() as u64);
    print(" bytes");
    if !data.is_empty() {
        print(": ");
        print_clean(&first[..first.len().min(FIRST_LINE_MAX)]);
    }
    print("\n");
    if data.is_empty() {
        return;
    }
    if first.trim_ascii_end() != SCRIPT_MARKER {
        print("config-drive: user-data not run (only #tiny scripts run in this guest)\n");
        return;
    }
    let mut run = 0;
    for line in data.split(|&b| b == b'\n').skip(1) {
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        if run == SCRIPT_MAX_COMMANDS {
            print("config-drive: user-data script stopped after 64 commands\n");
            return;
        }
        run += 1;
        print("config-drive: run ");
        print_clean(&line[..line.len().min(FIRST_LINE_MAX)]);
        print("\n");
        console::execute(line);
    }
}

/// Prints a JSON string decoded, at most `max` (<= `KEY_PRINT_MAX`) bytes, without trailing
/// whitespace (Nova ends keys with a newline), control characters as `?`.
fn print_str(s: Str, max: usize) {
    let mut buf = [0u8; KEY_PRINT_MAX];
    let max = max.min(KEY_PRINT_MAX);
    let n = s.decode_into(&mut buf[..max]);
    print_clean(buf[..n].trim_ascii_end());
    if s.bytes().nth(max).is_some() {
        print("...");
    }
}

/// Prints bytes with control characters (which could drive the host's terminal) as `?`.
fn print_clean(bytes: &[u8]) {
    for &b in bytes {
        if b < 0x20 || b == 0x7f {
            print("?");
        } else {
            print_bytes(&[b]);
        }
    }
}
