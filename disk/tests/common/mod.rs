//! Helpers shared by the integration tests: the real qemu-img, deterministic data.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs a qemu tool and returns its output; panics with stderr when it fails to start.
pub fn run(tool: &str, args: &[&str]) -> Output {
    Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {tool} (install qemu-utils via scripts/setup.sh): {e}")
    })
}

/// Runs a qemu tool and asserts it succeeded.
pub fn ok(tool: &str, args: &[&str]) -> String {
    let out = run(tool, args);
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs qemu-img with whitespace-separated arguments (test paths hold no spaces).
pub fn qemu_img(args: &str) -> String {
    let args: Vec<&str> = args.split_whitespace().collect();
    ok("qemu-img", &args)
}

/// `qemu-img check` must find no corruption and no leak.
pub fn assert_check_clean(path: &Path) {
    let out = ok("qemu-img", &["check", "-f", "qcow2", p(path)]);
    assert!(
        out.contains("No errors were found"),
        "qemu-img check {}: {out}",
        path.display()
    );
}

/// `qemu-img compare` of a qcow2 against a raw reference must say they are identical.
pub fn assert_same(qcow2: &Path, raw: &Path) {
    let out = ok(
        "qemu-img",
        &["compare", "-f", "qcow2", "-F", "raw", p(qcow2), p(raw)],
    );
    assert!(out.contains("Images are identical"), "{out}");
}

/// Path as &str (test paths are UTF-8).
pub fn p(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// Deterministic, position-dependent bytes: each 8-byte word encodes its offset and a seed.
pub fn pattern(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut pos = offset;
    while v.len() < len {
        let word = (pos / 8).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed;
        let bytes = word.to_le_bytes();
        let skip = (pos % 8) as usize;
        let take = (8 - skip).min(len - v.len());
        v.extend_from_slice(&bytes[skip..skip + take]);
        pos += take as u64;
    }
    v
}

/// A small xorshift generator: reproducible random offsets without a dependency.
pub struct Rng(pub u64);

impl Rng {
    /// Next 64 random bits.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
