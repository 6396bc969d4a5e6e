//! The tiny ring-0 test guest: a PVH ELF that runs in 64-bit ring 0, reports what the VMM gave
//! it and answers commands on COM1. Built by `../build.rs`; see `console.rs` for the commands.
//!
//! Layout, so that device drivers can be added later: `boot.rs` (entry, page tables, interrupt
//! stubs), `io.rs` (ports), `serial.rs`, `kbd.rs`, `irq.rs`, `pvh.rs` (start info), `cpus.rs`
//! (MADT / MP table), `console.rs` (command table), `mem.rs` (memcpy and friends), `virtio/` (polling
//! virtio-mmio drivers).

#![no_std]
#![no_main]

mod boot;
mod configdrive;
mod console;
mod cpus;
mod io;
mod irq;
mod iso9660;
mod kbd;
mod mem;
mod pvh;
mod serial;
mod virtio;

/// Boot-progress code for "ready", as Firecracker's boot timer uses it.
const PROGRESS_READY: u8 = 123;
/// A command-line word that makes the guest skip the ready mark, as a stock image that knows
/// nothing of port 0x3f0 would (`tiny_guest::NO_READY_MARK`).
pub const NO_READY_MARK: &[u8] = b"noreadymark";

/// Entered from `boot.rs` in 64-bit mode with the PVH start info address.
#[unsafe(no_mangle)]
pub extern "C" fn tiny_main(start_info: u32) -> ! {
    io::progress(2);
    let pvh_ok = pvh::init(start_info);
    let mark = !pvh::cmdline_has_word(NO_READY_MARK);
    if mark {
        io::progress(PROGRESS_READY);
    }
    serial::print("VIRGA-TINY READY\n");
    if !mark {
        serial::print("ready mark skipped (noreadymark)\n");
    }
    if !pvh_ok {
        serial::print("warning: no valid PVH start info\n");
    }
    pvh::report_memory();
    cpus::report();
    irq::init();
    serial::enable_rx_interrupt();
    configdrive::run(&[]);
    console::run()
}

/// An unexpected CPU exception (entered from `exception_stubs` in boot.rs).
#[unsafe(no_mangle)]
pub extern "C" fn tiny_exception(vector: u64, frame0: u64, frame1: u64) -> ! {
    serial::print("tiny: unexpected exception ");
    serial::print_dec(vector);
    serial::print(" frame ");
    serial::print_hex(frame0);
    serial::print(" ");
    serial::print_hex(frame1);
    serial::print("\n");
    console::panic()
}

#[panic_handler]
fn on_panic(_: &core::panic::PanicInfo) -> ! {
    serial::print("tiny: rust panic\n");
    console::panic()
}

/// The host target's `libcore` is built with unwind tables that name this symbol; with
/// `panic=abort` nothing ever calls it.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}
