//! Block back-end throughput: sequential 1 MiB and 4 KiB, random 4 KiB, reads and writes, on
//! qcow2 and raw through our back ends and on the bare file; then `qemu-img bench` on the same
//! files. Data stays in the page cache, so this measures the back ends, not the disk.
//!
//! The machine is shared, so wall-clock rates swing with other load: each figure is the best of
//! several round-robin runs, and CPU time per request (user + system, from getrusage) is shown
//! beside it as the steadier measure. For qemu-img, the CPU time of a one-request run (start-up,
//! opening the image) is subtracted.
//!
//! Run: `cargo bench --bench images` (VIRGA_BENCH_MIB sets the disk size, default 512).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use disk::create::{Qcow2Options, create_qcow2, create_raw};
use disk::{BlockBackend, OpenOptions, open_disk};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
/// Repetitions of each case; the best one counts.
const REPS: usize = 5;
/// Requests per 4 KiB run.
const OPS_4K: u64 = 100_000;

/// One target under test.
enum Target {
    Bare(File),
    Backend(Box<dyn BlockBackend>),
}

impl Target {
    fn read(&self, buf: &mut [u8], off: u64) {
        match self {
            Target::Bare(f) => f.read_exact_at(buf, off).expect("bare read"),
            Target::Backend(d) => d.read_at(buf, off).expect("read"),
        }
    }
    fn write(&self, buf: &[u8], off: u64) {
        match self {
            Target::Bare(f) => f.write_all_at(buf, off).expect("bare write"),
            Target::Backend(d) => d.write_at(buf, off).expect("write"),
        }
    }
    /// Writes dirty data back so background writeback does not skew the next timed run.
    fn settle(&self) {
        match self {
            Target::Bare(f) => f.sync_data().expect("sync"),
            Target::Backend(d) => d.flush().expect("flush"),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Pattern {
    Seq,
    Random,
}

#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    size: usize,
    pattern: Pattern,
    write: bool,
    ops: u64,
}

/// Wall time and CPU time of one run.
#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
}

impl Sample {
    const WORST: Sample = Sample {
        wall: Duration::MAX,
        cpu: Duration::MAX,
    };
    fn best(self, other: Sample) -> Sample {
        Sample {
            wall: self.wall.min(other.wall),
            cpu: self.cpu.min(other.cpu),
        }
    }
}

fn cpu_time(who: libc::c_int) -> Duration {
    // SAFETY: getrusage fills the zeroed struct we pass and reads nothing else.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn run(t: &Target, disk: u64, c: Case) -> Sample {
    // Page-aligned, as guest memory is.
    let mut backing = vec![0x5au8; c.size + 4096];
    let skew = backing.as_ptr().align_offset(4096);
    let buf = &mut backing[skew..skew + c.size];
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    let slots = disk / c.size as u64;
    let (cpu0, start) = (cpu_time(libc::RUSAGE_SELF), Instant::now());
    for i in 0..c.ops {
        let off = if c.pattern == Pattern::Seq {
            (i % slots) * c.size as u64
        } else {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % slots) * c.size as u64
        };
        if c.write {
            buf[0] = i as u8;
            t.write(buf, off);
        } else {
            t.read(buf, off);
        }
    }
    Sample {
        wall: start.elapsed(),
        cpu: cpu_time(libc::RUSAGE_SELF) - cpu0,
    }
}

/// One `qemu-img bench` run: (wall time it reports, CPU time it used).
fn qemu_img_once(file: &Path, fmt: &str, c: Case, count: u64) -> Option<Sample> {
    let size = c.size.to_string();
    let mut cmd = Command::new("qemu-img");
    cmd.args([
        "bench",
        "-f",
        fmt,
        "-t",
        "writeback",
        "-i",
        "threads",
        "-d",
        "1",
    ]);
    cmd.args(["-s", &size, "-c", &count.to_string()]);
    if c.write {
        cmd.arg("-w");
    }
    let cpu0 = cpu_time(libc::RUSAGE_CHILDREN);
    let out = cmd.arg(file).output().ok()?;
    let cpu = cpu_time(libc::RUSAGE_CHILDREN) - cpu0;
    let text = String::from_utf8_lossy(&out.stdout);
    // "Run completed in 1.234 seconds."
    let secs: f64 = text
        .split("completed in ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(Sample {
        wall: Duration::from_secs_f64(secs),
        cpu,
    })
}

fn qemu_img_bench(file: &Path, fmt: &str, c: Case) -> Option<Sample> {
    let mut best = Sample::WORST;
    let mut fixed = Duration::MAX;
    for _ in 0..REPS {
        best = best.best(qemu_img_once(file, fmt, c, c.ops)?);
        fixed = fixed.min(qemu_img_once(file, fmt, c, 1)?.cpu);
    }
    Some(Sample {
        wall: best.wall,
        cpu: best.cpu.saturating_sub(fixed),
    })
}

fn show(c: Case, s: Option<Sample>) -> String {
    let Some(s) = s else { return "n/a".into() };
    let per_s = c.ops as f64 / s.wall.as_secs_f64();
    let rate = if c.size >= MIB as usize {
        format!("{:.0} MB/s", per_s * c.size as f64 / 1e6)
    } else {
        format!("{:.0}k IOPS", per_s / 1e3)
    };
    format!("{rate} {:.1}us", s.cpu.as_secs_f64() * 1e6 / c.ops as f64)
}

fn main() {
    // `cargo test --benches` runs bench targets without --bench: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let mib: u64 = std::env::var("VIRGA_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let disk = mib * MIB;
    let dir = tempfile::tempdir().expect("tempdir");
    let (qpath, rpath) = (dir.path().join("bench.qcow2"), dir.path().join("bench.raw"));
    create_qcow2(&qpath, disk, &Qcow2Options::default()).expect("create qcow2");
    create_raw(&rpath, disk).expect("create raw");
    let open = |p: &Path| open_disk(p, &OpenOptions::new()).expect("open");

    // The first write allocates every qcow2 cluster (and every raw extent): report it apart.
    let fill = Case {
        name: "fill",
        size: MIB as usize,
        pattern: Pattern::Seq,
        write: true,
        ops: mib,
    };
    let q = run(&Target::Backend(open(&qpath)), disk, fill);
    let r = run(&Target::Backend(open(&rpath)), disk, fill);
    println!(
        "first sequential 1 MiB write (allocating): qcow2 {}, raw {}",
        show(fill, Some(q)),
        show(fill, Some(r))
    );

    let bare = File::options()
        .read(true)
        .write(true)
        .open(&rpath)
        .expect("open bare");
    let targets = [
        Target::Bare(bare),
        Target::Backend(open(&rpath)),
        Target::Backend(open(&qpath)),
    ];
    let seq = |name, size, write, ops| Case {
        name,
        size,
        pattern: Pattern::Seq,
        write,
        ops,
    };
    let cases = [
        seq("seq read 1M", MIB as usize, false, 2 * mib),
        seq("seq write 1M", MIB as usize, true, 2 * mib),
        seq("seq read 4K", 4096, false, OPS_4K),
        seq("seq write 4K", 4096, true, OPS_4K),
        Case {
            name: "rand read 4K",
            size: 4096,
            pattern: Pattern::Random,
            write: false,
            ops: OPS_4K,
        },
        Case {
            name: "rand write 4K",
            size: 4096,
            pattern: Pattern::Random,
            write: true,
            ops: OPS_4K,
        },
    ];
    println!("\nrate (best wall-clock of {REPS}) and CPU time per request");
    println!(
        "{:<14} {:>22} {:>22} {:>22} {:>22} {:>22}",
        "case", "bare file", "raw", "qcow2", "qemu-img raw", "qemu-img qcow2"
    );
    for c in cases {
        // Round-robin repetitions: another process's burst costs one sample of one target.
        let mut best = [Sample::WORST; 3];
        for _ in 0..REPS {
            for (i, t) in targets.iter().enumerate() {
                targets.iter().for_each(Target::settle);
                best[i] = best[i].best(run(t, disk, c));
            }
        }
        // qemu-img bench has no random pattern.
        let (qr, qq) = if c.pattern == Pattern::Seq {
            (
                qemu_img_bench(&rpath, "raw", c),
                qemu_img_bench(&qpath, "qcow2", c),
            )
        } else {
            (None, None)
        };
        println!(
            "{:<14} {:>22} {:>22} {:>22} {:>22} {:>22}",
            c.name,
            show(c, Some(best[0])),
            show(c, Some(best[1])),
            show(c, Some(best[2])),
            show(c, qr),
            show(c, qq)
        );
    }
}
