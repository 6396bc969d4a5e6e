//! The tiny ring-0 test guest. `build.rs` compiles `guest/` into a PVH ELF; this crate only
//! tells tests and benches where it is.
//!
//! The guest prints [`MARKER`] on COM1 once it runs in 64-bit mode, then reports its memory
//! and vCPUs, runs the `;`-separated commands found on its command line, and answers commands
//! typed on COM1 (see `guest/console.rs` for the list).

/// Path of the built guest ELF (PVH entry).
pub const PATH: &str = env!("VIRGA_TINY_GUEST");

/// The line the guest prints when it is up.
pub const MARKER: &str = "VIRGA-TINY READY";

/// A kernel command-line word that makes the guest boot without writing its ready mark
/// (boot-progress 123 to port 0x3f0), as a stock image does; it still prints [`MARKER`], then
/// `ready mark skipped (noreadymark)`.
pub const NO_READY_MARK: &str = "noreadymark";
