//! What every Linux boot in the tests and benches shares: the guest artifacts that
//! `guest/build.sh` (run by `scripts/setup.sh`) leaves in `~/.cache/virga/guest/current/`.

#![allow(dead_code)] // each test and bench uses its own part

use std::path::PathBuf;

/// `${VIRGA_CACHE:-~/.cache/virga}/guest/current`.
pub fn artifacts_dir() -> Option<PathBuf> {
    let base = std::env::var_os("VIRGA_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/virga")))?;
    Some(base.join("guest/current"))
}

/// The artifacts directory when every file in `needed` is there. When one is missing: a
/// failure under `CI=true` (set-up must have built them), else `SKIPPED` on stderr and `None`.
pub fn artifacts(needed: &[&str]) -> Option<PathBuf> {
    let dir = artifacts_dir()?;
    if needed.iter().all(|f| dir.join(f).exists()) {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "guest artifacts missing in {} (scripts/setup.sh builds them)",
        dir.display()
    );
    eprintln!(
        "SKIPPED: guest artifacts missing in {} (run scripts/setup.sh)",
        dir.display()
    );
    None
}
