//! COM1 (16550) by polling, plus small number formatting: no `core::fmt`, to keep the guest
//! tiny and its instruction mix simple for an emulating KVM.

use crate::io::{inb, outb, outsb};

const COM1: u16 = 0x3f8;
const LSR: u16 = COM1 + 5;
const IER: u16 = COM1 + 1;
const LSR_DATA_READY: u8 = 0x01;
const LSR_THR_EMPTY: u8 = 0x20;

/// Asks COM1 for an interrupt when a byte arrives (so the idle loop can `hlt`).
pub fn enable_rx_interrupt() {
    outb(IER, 0x01);
}

/// A 16550A's transmit FIFO: once THR reports empty, this many bytes may be written.
const TX_FIFO: usize = 16;

/// Writes one byte, waiting until the transmitter takes it.
pub fn putc(b: u8) {
    print_bytes(&[b]);
}

/// Writes a string.
pub fn print(s: &str) {
    print_bytes(s.as_bytes());
}

/// Writes raw bytes, a FIFO-full at a time as the 8250 driver does: one status read per 16
/// bytes, and the 16 bytes with one `rep outsb` (every port access instruction is a VM exit;
/// a string one carries all its bytes in a single exit).
pub fn print_bytes(s: &[u8]) {
    for chunk in s.chunks(TX_FIFO) {
        while inb(LSR) & LSR_THR_EMPTY == 0 {}
        outsb(COM1, chunk);
    }
}

/// Writes `n` in decimal.
pub fn print_dec(mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    print_bytes(&buf[i..]);
}

/// Writes `n` in hexadecimal with a `0x` prefix.
pub fn print_hex(n: u64) {
    print("0x");
    let mut started = false;
    for shift in (0..16).rev() {
        let d = ((n >> (shift * 4)) & 0xf) as u8;
        if d != 0 || started || shift == 0 {
            started = true;
            putc(if d < 10 { b'0' + d } else { b'a' + d - 10 });
        }
    }
}

/// Returns a received byte, if any.
pub fn try_getc() -> Option<u8> {
    (inb(LSR) & LSR_DATA_READY != 0).then(|| inb(COM1))
}
