//! Compiles `guest/main.rs` (a `no_std` ring-0 program) into a PVH ELF with the host `rustc`.
//!
//! Only the host target is installed, so the guest is built for x86_64-unknown-linux-gnu with
//! no start files, no libc and our own linker script; its 32-bit PVH entry is assembly inside
//! `guest/boot.rs`.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let guest = manifest.join("guest");
    let elf = out.join("virga-tiny.elf");
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());

    println!("cargo:rerun-if-changed=guest");
    let status = Command::new(rustc)
        .arg(guest.join("main.rs"))
        .args([
            "--edition",
            "2024",
            "--crate-type",
            "bin",
            "--crate-name",
            "virga_tiny",
        ])
        .args([
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
            "-C",
            "relocation-model=static",
        ])
        .args([
            "-C",
            "debuginfo=0",
            "-C",
            "codegen-units=1",
            "-C",
            "force-frame-pointers=no",
        ])
        // Integer code only: an emulating KVM may not know SSE instructions (rustc warns that
        // -sse2 changes the float ABI; the guest has no floats).
        .args([
            "-C",
            "target-feature=-avx,-avx2,-sse3,-ssse3,-sse4.1,-sse4.2,-popcnt,-sse,-sse2",
        ])
        .args([
            "-C",
            "link-arg=-nostartfiles",
            "-C",
            "link-arg=-nostdlib",
            "-C",
            "link-arg=-static",
        ])
        .args([
            "-C",
            "link-arg=-no-pie",
            "-C",
            "link-arg=-Wl,--build-id=none",
        ])
        .args(["-C", "link-arg=-Wl,-z,noexecstack", "-C", "link-arg=-Wl,-n"])
        .arg("-C")
        .arg(format!("link-arg=-T{}", guest.join("link.ld").display()))
        .arg("-o")
        .arg(&elf)
        .status()
        .expect("running rustc for the tiny guest");
    assert!(status.success(), "building the tiny guest failed");
    println!("cargo:rustc-env=VIRGA_TINY_GUEST={}", elf.display());
}
