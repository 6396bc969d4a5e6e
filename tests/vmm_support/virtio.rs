//! Host-side helpers for the virtio tests: the tiny guest's block pattern, disk files,
//! `qemu-img`, a process's RSS.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

/// The word the tiny guest's `blkwrite` puts in every 8 bytes of sector `s` (guest/virtio/mod.rs).
pub fn sector_word(sector: u64, seed: u16) -> u64 {
    (sector << 16) | u64::from(seed)
}

/// `bytes` of the pattern for sectors `first..`.
pub fn pattern(first: u64, bytes: usize, seed: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes);
    for i in 0..bytes / 512 {
        let w = sector_word(first + i as u64, seed).to_le_bytes();
        for _ in 0..64 {
            v.extend_from_slice(&w);
        }
    }
    v
}

/// Sectors of `data` (starting at sector `first`) that are not the pattern of `seed`.
pub fn bad_sectors(data: &[u8], first: u64, seed: u16) -> usize {
    data.chunks(512)
        .enumerate()
        .filter(|(i, c)| *c != pattern(first + *i as u64, 512, seed).as_slice())
        .count()
}

/// Writes the pattern into `path` at sector `first`.
pub fn write_pattern(path: &Path, first: u64, bytes: usize, seed: u16) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(first * 512)).unwrap();
    f.write_all(&pattern(first, bytes, seed)).unwrap();
}

/// Reads `bytes` at sector `first` of a plain file.
pub fn read_at(path: &Path, first: u64, bytes: usize) -> Vec<u8> {
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(first * 512)).unwrap();
    let mut v = vec![0; bytes];
    f.read_exact(&mut v).unwrap();
    v
}

/// A sparse file of `mib` MiB.
pub fn sparse_file(path: &Path, mib: u64) {
    std::fs::File::create(path)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
}

/// Runs `qemu-img` with `args`; panics with its output when it fails.
pub fn qemu_img(args: &[&str]) -> String {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img (package qemu-utils) must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "qemu-img {args:?} failed:\n{text}");
    text
}

/// Resident set size of process `pid` in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}
