//! Interrupts, just enough to sleep with `hlt` instead of spinning on the serial port: an IDT,
//! the 8259 PIC (the VMM wires LAPIC LINT0 as ExtINT) and the PIT for `ticks`.

use crate::io::outb;
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

/// PIT interrupts counted by `irq_timer` (boot.rs).
#[unsafe(no_mangle)]
pub static TICKS: AtomicU64 = AtomicU64::new(0);

const PIC_VECTOR_BASE: u8 = 0x20;
const PIT_HZ: u32 = 1_193_182;
/// IRQ lines left unmasked when idle: 1 (i8042) and 4 (COM1); bit 2 is the cascade.
const IDLE_MASK: u8 = !((1 << 1) | (1 << 2) | (1 << 4));

#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

const EMPTY: Gate = Gate { offset_low: 0, selector: 0, ist: 0, attr: 0, offset_mid: 0, offset_high: 0, reserved: 0 };
const VECTORS: usize = 48;

#[repr(C, align(16))]
struct Idt([Gate; VECTORS]);

static mut IDT: Idt = Idt([EMPTY; VECTORS]);

unsafe extern "C" {
    fn irq_timer();
    fn irq_other();
    fn exception_stubs();
}

fn gate(handler: unsafe extern "C" fn()) -> Gate {
    gate_at(handler as usize as u64)
}

fn gate_at(a: u64) -> Gate {
    Gate {
        offset_low: a as u16,
        selector: 0x08,
        ist: 0,
        attr: 0x8e, // present, ring 0, 64-bit interrupt gate
        offset_mid: (a >> 16) as u16,
        offset_high: (a >> 32) as u32,
        reserved: 0,
    }
}

#[repr(C, packed)]
struct Pointer {
    limit: u16,
    base: u64,
}

fn load_idt(base: u64, limit: u16) {
    let p = Pointer { limit, base };
    // SAFETY: `p` describes either our static IDT or (for `triple_fault`) an empty one on
    // purpose; `lidt` only reads the 10-byte pointer.
    unsafe { asm!("lidt [{}]", in(reg) &p, options(readonly, nostack, preserves_flags)) }
}

/// Installs the IDT and programs the PIC; interrupts stay disabled until [`wait`].
pub fn init() {
    let idt = &raw mut IDT;
    for v in 0..VECTORS {
        let handler = match v {
            0x20 => gate(irq_timer),
            v if v >= 0x20 => gate(irq_other),
            _ => gate_at(exception_stubs as usize as u64 + 16 * v as u64),
        };
        // SAFETY: one vCPU, interrupts off: nothing else touches the IDT while it is built.
        unsafe { (*idt).0[v] = handler };
    }
    load_idt(idt as u64, (VECTORS * 16 - 1) as u16);

    // 8259 pair: ICW1 (edge, cascade, ICW4), ICW2 (vector base), ICW3 (wiring), ICW4 (8086).
    outb(0x20, 0x11);
    outb(0xa0, 0x11);
    outb(0x21, PIC_VECTOR_BASE);
    outb(0xa1, PIC_VECTOR_BASE + 8);
    outb(0x21, 0x04);
    outb(0xa1, 0x02);
    outb(0x21, 0x01);
    outb(0xa1, 0x01);
    outb(0x21, IDLE_MASK);
    outb(0xa1, 0xff);
}

/// Starts the PIT at `hz` interrupts per second and unmasks IRQ 0.
pub fn start_timer(hz: u32) {
    let divisor = (PIT_HZ / hz).clamp(1, 0xffff) as u16;
    outb(0x43, 0x34); // channel 0, lobyte/hibyte, rate generator
    outb(0x40, divisor as u8);
    outb(0x40, (divisor >> 8) as u8);
    outb(0x21, IDLE_MASK & !1);
}

/// Masks IRQ 0 again.
pub fn stop_timer() {
    outb(0x21, IDLE_MASK);
}

/// PIT ticks so far.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Sleeps until the next interrupt. `sti; hlt` is atomic: an interrupt raised after the
/// caller's last poll still wakes us.
pub fn wait() {
    // SAFETY: the IDT and PIC are set up by `init`; the handlers preserve every register.
    unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) }
}

/// Loads an empty IDT and raises an exception: #UD, then #GP and #DF cannot be delivered,
/// so the CPU shuts down (a triple fault).
pub fn triple_fault() -> ! {
    load_idt(0, 0);
    // SAFETY: deliberately faults; nothing after it runs.
    unsafe { asm!("ud2", options(noreturn, nomem, nostack)) }
}
