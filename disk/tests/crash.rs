//! Crash consistency: a child process writes at random through our back end and is killed with
//! SIGKILL mid-stream. The image must still open, `qemu-img check` must find no corruption
//! (leaked clusters are allowed), and every write flushed before the kill must read back.
//!
//! The child is this test executable re-run on the ignored `crash_child` test, with the image
//! and seed in environment variables; it prints `flushed N` after each flush of the first N
//! operations returns.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{Rng, p, pattern, run};
use disk::create::{Qcow2Options, create_qcow2, create_raw};
use disk::{BlockBackend, Format, OpenOptions, open_disk};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

const DISK: u64 = 64 << 20;
const BLOCK: u64 = 4096;
const CLUSTER: u64 = 65536;
const MAX_BATCH: u64 = 32;
const SECTOR: usize = 512;

/// One operation of the random stream: what it does is a function of (seed, index) only.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// 4 KiB of `pattern(index + 1, offset)` at `offset`.
    Write { offset: u64 },
    /// A cluster made to read as zeroes, deallocated.
    Zero { offset: u64 },
}

struct Stream {
    rng: Rng,
    index: u64,
}

impl Stream {
    fn new(seed: u64) -> Self {
        Stream {
            rng: Rng(seed | 1),
            index: 0,
        }
    }
    /// The next operation and, after it, whether a flush follows.
    fn next(&mut self) -> (u64, Op, bool) {
        let i = self.index;
        self.index += 1;
        let op = if self.rng.below(20) == 0 {
            Op::Zero {
                offset: self.rng.below(DISK / CLUSTER) * CLUSTER,
            }
        } else {
            Op::Write {
                offset: self.rng.below(DISK / BLOCK) * BLOCK,
            }
        };
        let flush = self.rng.below(MAX_BATCH) == 0;
        (i, op, flush)
    }
}

#[test]
#[ignore = "child process of the crash tests; they run it"]
fn crash_child() {
    let path = std::env::var("VIRGA_CRASH_IMAGE").expect("run by the crash tests");
    let seed: u64 = std::env::var("VIRGA_CRASH_SEED").unwrap().parse().unwrap();
    let disk = open_disk(&path, &OpenOptions::new()).unwrap();
    let mut stream = Stream::new(seed);
    let mut out = std::io::stdout().lock();
    let mut since_flush = 0;
    loop {
        let (i, op, flush) = stream.next();
        match op {
            Op::Write { offset } => disk
                .write_at(&pattern(i + 1, offset, BLOCK as usize), offset)
                .unwrap(),
            Op::Zero { offset } => disk.write_zeroes(offset, CLUSTER, true).unwrap(),
        }
        since_flush += 1;
        if flush || since_flush == MAX_BATCH {
            disk.flush().unwrap();
            writeln!(out, "flushed {}", i + 1).unwrap();
            out.flush().unwrap();
            since_flush = 0;
        }
    }
}

/// Runs the child on `image` until it has flushed `flushes` times, kills it, and returns how
/// many operations were durable.
fn run_and_kill(image: &Path, seed: u64, flushes: usize) -> u64 {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("VIRGA_CRASH_IMAGE", image)
        .env("VIRGA_CRASH_SEED", seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut durable = 0;
    let mut seen = 0;
    while seen < flushes {
        let line = lines.next().expect("child exited early").unwrap();
        if let Some(n) = line.strip_prefix("flushed ") {
            durable = n.parse().unwrap();
            seen += 1;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Lines the child printed before it died still count: each follows a completed flush.
    for line in lines.map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("flushed ") {
            durable = n.parse().unwrap();
        }
    }
    durable
}

/// Checks every sector against the model: what the last durable operation left there, or what
/// any later (possibly partly persisted) operation wrote.
fn verify(disk: &dyn BlockBackend, seed: u64, durable: u64) {
    let blocks = (DISK / BLOCK) as usize;
    let mut committed: Vec<Option<u64>> = vec![None; blocks]; // None = zeroes
    let mut later: Vec<Vec<Option<u64>>> = vec![Vec::new(); blocks];
    let mut stream = Stream::new(seed);
    let mut apply = |i: u64, op: Op, durable_op: bool| {
        let (first, count, value) = match op {
            Op::Write { offset } => (offset / BLOCK, 1, Some(i)),
            Op::Zero { offset } => (offset / BLOCK, CLUSTER / BLOCK, None),
        };
        for b in first..first + count {
            if durable_op {
                committed[b as usize] = value;
            } else {
                later[b as usize].push(value);
            }
        }
    };
    // Past the last durable flush the child may have done up to one more batch.
    for _ in 0..durable + 2 * MAX_BATCH {
        let (i, op, _) = stream.next();
        apply(i, op, i < durable);
    }
    let content = |v: Option<u64>, offset: u64| match v {
        Some(i) => pattern(i + 1, offset, BLOCK as usize),
        None => vec![0u8; BLOCK as usize],
    };
    let mut buf = vec![0u8; BLOCK as usize];
    for b in 0..blocks {
        let offset = b as u64 * BLOCK;
        disk.read_at(&mut buf, offset).unwrap();
        let candidates: Vec<Vec<u8>> = std::iter::once(committed[b])
            .chain(later[b].iter().copied())
            .map(|v| content(v, offset))
            .collect();
        for (s, sector) in buf.chunks(SECTOR).enumerate() {
            let r = s * SECTOR..(s + 1) * SECTOR;
            assert!(
                candidates.iter().any(|c| c[r.clone()] == *sector),
                "block {b} sector {s}: neither the durable value ({:?}) nor a later write",
                committed[b]
            );
        }
    }
}

fn crash_round(format: Format, seed: u64, flushes: usize) {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk");
    match format {
        Format::Qcow2 => create_qcow2(&image, DISK, &Qcow2Options::default()).unwrap(),
        _ => create_raw(&image, DISK).unwrap(),
    }
    let durable = run_and_kill(&image, seed, flushes);
    assert!(durable > 0);
    if format == Format::Qcow2 {
        let out = run("qemu-img", &["check", "-f", "qcow2", p(&image)]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        // Exit status 0: clean; 3: leaked clusters only. 2 would be corruption.
        let code = out.status.code();
        assert!(
            matches!(code, Some(0) | Some(3)),
            "qemu-img check after the crash ({code:?}): {text}"
        );
        assert!(!text.contains("ERROR"), "{text}");
    }
    let disk = open_disk(&image, &OpenOptions::new().format(format))
        .expect("the image opens after the crash");
    verify(disk.as_ref(), seed, durable);
}

#[test]
fn qcow2_survives_kill_9_mid_write() {
    for (seed, flushes) in [(1, 40), (7, 5), (12345, 150)] {
        crash_round(Format::Qcow2, seed, flushes);
    }
}

#[test]
fn raw_survives_kill_9_mid_write() {
    crash_round(Format::Raw, 99, 60);
}
