//! `virga-vmm`: see the `vmm` crate.
fn main() {
    std::process::exit(vmm::cli::main());
}
