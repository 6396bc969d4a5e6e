//! The tiny ring-0 test guest. `build.rs` compiles `guest/` into a PVH ELF; this crate only
//! tells tests and benches where it is.
