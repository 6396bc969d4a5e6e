//! Commands: first those on the PVH command line (separated by `;`), then lines typed on COM1.
//! Ctrl-Alt-Del on the i8042 (the VMM's `shutdown`) powers off.
//!
//! To add a command, add a line to `COMMANDS`.

use crate::io::{ACPI_SLEEP_CONTROL, I8042_COMMAND, PVPANIC, outb};
use crate::serial::{print, print_bytes, print_dec, try_getc};
use crate::{configdrive, cpus, irq, kbd::Keyboard, pvh, virtio};

const LINE_MAX: usize = 256;
/// SLP_TYP 5 (the DSDT's `_S5_`) | SLP_EN.
const SLEEP_S5: u8 = (5 << 2) | (1 << 5);

type Handler = fn(&[u8]);

const COMMANDS: &[(&str, Handler, &str)] = &[
    ("echo", echo, "echo <text>: print <text>"),
    ("mem", |_| pvh::report_memory(), "mem: memory from the PVH memory map"),
    ("cpus", |_| cpus::report(), "cpus: vCPUs from the MADT or MP table"),
    ("ticks", ticks, "ticks [n]: print `tick <i>` 10 times a second, n times or until input"),
    ("poweroff", |_| poweroff(), "poweroff: ACPI S5 through port 0x600"),
    ("reset", |_| reset(), "reset: i8042 CPU reset (0xfe to port 0x64)"),
    ("panic", |_| panic(), "panic: report a panic through pvpanic"),
    ("triplefault", |_| irq::triple_fault(), "triplefault: fault with no IDT"),
    ("cmdline", |_| cmdline(), "cmdline: print the command line the VMM gave"),
    ("virtio", virtio::list, "virtio: the virtio-mmio devices in the slots"),
    ("blk", virtio::blk::cmd_list, "blk: virtio-blk drives (slot, sectors, ro/rw, serial)"),
    ("blkwrite", virtio::blk::cmd_write, "blkwrite <drive> <sector> <bytes> [seed] [noflush]: write a pattern, flush"),
    ("blkread", virtio::blk::cmd_read, "blkread <drive> <sector> <bytes> [seed]: read, hash, compare with the pattern"),
    ("blkbench", virtio::blk::cmd_bench, "blkbench <drive> <sr|sw|rr|rw> <bytes> <block>: timed I/O, data untouched"),
    ("blkevil", virtio::blk::cmd_evil, "blkevil <drive>: bad buffer, bad avail index, then reset"),
    ("rng", virtio::rng::cmd_read, "rng [bytes]: read up to 64 bytes from virtio-rng"),
    ("balloon", virtio::balloon::cmd, "balloon touch <mib> | balloon serve: dirty the top of RAM; follow the VMM's balloon target"),
    ("net", virtio::net::cmd, "net | net ping <guest-ip> <host-ip> | net echo <port>: virtio-net"),
    ("configdrive", configdrive::run, "configdrive: read the config drive again"),
    ("hostname", configdrive::hostname, "hostname: the hostname from the config drive"),
    ("help", help, "help: this list"),
];

/// Runs the command line, then serves COM1 forever.
pub fn run() -> ! {
    let mut line = Line::default();
    let mut cmdline = [0u8; 2048];
    let mut len = 0;
    pvh::cmdline(|b| {
        if len < cmdline.len() {
            cmdline[len] = b;
            len += 1;
        }
    });
    for command in cmdline[..len].split(|&b| b == b';') {
        // Words the VMM appends for Linux (`virtio_mmio.device=4K@0x...:5`) are not commands.
        // Nor is the boot-time word that skips the ready mark.
        let skip = |w: &&[u8]| w.starts_with(b"virtio_mmio.") || *w == crate::NO_READY_MARK;
        for word in command.split(|&b| b == b' ').filter(|w| !skip(w)) {
            word.iter().for_each(|&b| line.push(b));
            line.push(b' ');
        }
        line.finish();
    }

    let mut keyboard = Keyboard::default();
    loop {
        while let Some(b) = try_getc() {
            match b {
                b'\r' | b'\n' => line.finish(),
                0x08 | 0x7f => line.pop(),
                _ => line.push(b),
            }
        }
        if keyboard.poll() {
            print("ctrl-alt-del: powering off\n");
            poweroff();
        }
        irq::wait();
    }
}

struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Default for Line {
    fn default() -> Self {
        Self { buf: [0; LINE_MAX], len: 0 }
    }
}

impl Line {
    fn push(&mut self, b: u8) {
        if self.len < LINE_MAX {
            self.buf[self.len] = b;
            self.len += 1;
        }
    }

    fn pop(&mut self) {
        self.len = self.len.saturating_sub(1);
    }

    fn finish(&mut self) {
        let len = core::mem::take(&mut self.len);
        execute(self.buf[..len].trim_ascii());
    }
}

/// Runs one command line (also used for `#tiny` user data).
pub fn execute(line: &[u8]) {
    if line.is_empty() {
        return;
    }
    let (name, args) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], line[i + 1..].trim_ascii()),
        None => (line, &[][..]),
    };
    match COMMANDS.iter().find(|(n, _, _)| n.as_bytes() == name) {
        Some((_, handler, _)) => handler(args),
        None => {
            print("unknown command: ");
            print_bytes(name);
            print("\n");
        }
    }
}

fn cmdline() {
    print("cmdline: ");
    pvh::cmdline(|b| print_bytes(&[b]));
    print("\n");
}

fn echo(args: &[u8]) {
    print_bytes(args);
    print("\n");
}

fn help(_: &[u8]) {
    for (_, _, text) in COMMANDS {
        print(text);
        print("\n");
    }
}

fn parse_dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then_some(())?;
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Steady progress the pause test can watch: one line per 10 PIT ticks at 100 Hz.
fn ticks(args: &[u8]) {
    let count = parse_dec(args).unwrap_or(u64::MAX);
    irq::start_timer(100);
    let mut next = irq::ticks() + 10;
    let mut printed = 0;
    while printed < count {
        if try_getc().is_some() {
            break;
        }
        if irq::ticks() >= next {
            print("tick ");
            print_dec(printed);
            print("\n");
            printed += 1;
            next += 10;
        }
        irq::wait();
    }
    irq::stop_timer();
    print("ticks done\n");
}

fn poweroff() {
    outb(ACPI_SLEEP_CONTROL, SLEEP_S5);
    print("poweroff: still running\n");
}

fn reset() {
    outb(I8042_COMMAND, 0xfe);
    print("reset: still running\n");
}

/// Reports a panic to the VMM (pvpanic bit 0) and stops.
pub fn panic() -> ! {
    outb(PVPANIC, 1);
    loop {
        irq::wait();
    }
}
