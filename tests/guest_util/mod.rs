//! Readers for the guest artifacts (newc cpio, ELF notes, debugfs output) and the cache lookup.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a file system entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink(String),
    CharDev(u32, u32),
    Other(u32),
}

/// One file of an archive or image: type, permission bits, owner, contents (regular files).
#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub data: Vec<u8>,
}

/// One ELF note.
#[derive(Debug)]
pub struct Note {
    pub name: String,
    pub kind: u32,
    pub desc: Vec<u8>,
}

/// `guest/current/<name>` resolved to the build it points at; `None` (after saying why) when
/// it is missing outside CI. Under `CI=true` a missing artifact fails the test.
pub fn require(name: &str) -> Option<PathBuf> {
    let cache = std::env::var_os("VIRGA_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/virga")));
    let link = cache.map(|c| c.join("guest/current").join(name));
    match link.as_deref().map(std::fs::canonicalize) {
        Some(Ok(path)) => Some(path),
        _ => {
            let msg = format!(
                "guest artifact {} is missing: scripts/setup.sh (guest/build.sh) builds it",
                link.map_or_else(|| name.to_string(), |l| l.display().to_string())
            );
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
            eprintln!("skipping: {msg}");
            None
        }
    }
}

/// A host tool by name, looked up in the sbin directories too (debugfs, e2fsck, dumpe2fs).
pub fn tool(name: &str) -> PathBuf {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Runs a tool and returns its standard output; a failure fails the test with its stderr.
pub fn run(tool: impl AsRef<OsStr>, args: &[&OsStr]) -> String {
    let tool = tool.as_ref();
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.to_string_lossy()));
    assert!(
        out.status.success(),
        "{} {:?} failed ({}): {}{}",
        tool.to_string_lossy(),
        args,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The decompressed bytes of a gzip file.
pub fn gunzip(path: &Path) -> Vec<u8> {
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .expect("gzip runs");
    assert!(
        out.status.success(),
        "gzip -dc {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn hex(field: &[u8], what: &str) -> Result<u32, String> {
    let s = std::str::from_utf8(field).map_err(|_| format!("{what}: not ASCII"))?;
    u32::from_str_radix(s, 16).map_err(|_| format!("{what}: bad hex {s:?}"))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Every entry of one or more concatenated newc archives (as the kernel reads them).
pub fn cpio_entries(mut b: &[u8]) -> Result<BTreeMap<String, Entry>, String> {
    let mut out = BTreeMap::new();
    loop {
        // Zero padding may sit between archives.
        while let [0, rest @ ..] = b {
            b = rest;
        }
        if b.is_empty() {
            return Ok(out);
        }
        if b.len() < 110 || &b[..6] != b"070701" {
            return Err(format!("bad newc header at {:?}", &b[..b.len().min(6)]));
        }
        let field = |i: usize| hex(&b[6 + 8 * i..14 + 8 * i], "newc field");
        let (mode, uid, gid) = (field(1)?, field(2)?, field(3)?);
        let (size, rmaj, rmin, namesize) = (
            field(6)? as usize,
            field(9)?,
            field(10)?,
            field(11)? as usize,
        );
        let name_end = 110 + namesize;
        let data_start = align4(name_end);
        let data_end = data_start + size;
        if namesize == 0 || b.len() < data_end {
            return Err("truncated newc entry".into());
        }
        let name = String::from_utf8_lossy(&b[110..name_end - 1]).into_owned();
        let data = b[data_start..data_end].to_vec();
        b = &b[align4(data_end).min(b.len())..];
        if name == "TRAILER!!!" {
            continue;
        }
        let kind = match mode & 0o170000 {
            0o100000 => Kind::File,
            0o040000 => Kind::Dir,
            0o120000 => Kind::Symlink(String::from_utf8_lossy(&data).into_owned()),
            0o020000 => Kind::CharDev(rmaj, rmin),
            t => Kind::Other(t),
        };
        out.insert(
            name,
            Entry {
                kind,
                mode: mode & 0o7777,
                uid,
                gid,
                data,
            },
        );
    }
}

/// The notes of a little-endian ELF64 file's PT_NOTE segments.
pub fn elf_notes(b: &[u8]) -> Result<Vec<Note>, String> {
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return Err("not a little-endian ELF64 file".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    let (phoff, phentsize, phnum) = (u64_at(32) as usize, u16_at(54), u16_at(56));
    if phoff + phentsize * phnum > b.len() || phentsize < 56 {
        return Err("program headers beyond the file".into());
    }
    let mut notes = Vec::new();
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(ph) != 4 {
            continue; // not PT_NOTE
        }
        let (start, size) = (u64_at(ph + 8) as usize, u64_at(ph + 32) as usize);
        let end = start
            .checked_add(size)
            .filter(|&e| e <= b.len())
            .ok_or("note beyond file")?;
        let mut o = start;
        while o + 12 <= end {
            let (namesz, descsz, kind) =
                (u32_at(o) as usize, u32_at(o + 4) as usize, u32_at(o + 8));
            let name_at = o + 12;
            let desc_at = name_at + align4(namesz);
            if desc_at + descsz > end {
                return Err("truncated note".into());
            }
            let name = String::from_utf8_lossy(&b[name_at..name_at + namesz]);
            notes.push(Note {
                name: name.trim_end_matches('\0').to_string(),
                kind,
                desc: b[desc_at..desc_at + descsz].to_vec(),
            });
            o = desc_at + align4(descsz);
        }
    }
    Ok(notes)
}

/// One path of an ext4 image, read through `debugfs` (no mount needed).
pub fn debugfs(img: &Path, path: &str) -> Entry {
    let stat = run(
        tool("debugfs"),
        &[
            "-R".as_ref(),
            format!("stat /{path}").as_ref(),
            img.as_os_str(),
        ],
    );
    let word_after = |key: &str| {
        stat.split_once(key)
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("debugfs stat /{path}: no {key:?} in {stat}"))
            .to_string()
    };
    let number = |key: &str, radix| {
        u32::from_str_radix(&word_after(key), radix)
            .unwrap_or_else(|_| panic!("debugfs stat /{path}: bad {key:?} in {stat}"))
    };
    let (mode, uid, gid) = (
        number("Mode:", 8),
        number("User:", 10),
        number("Group:", 10),
    );
    let mut data = Vec::new();
    let kind = match word_after("Type:").as_str() {
        "regular" => {
            let out = Command::new(tool("debugfs"))
                .args([
                    "-R".as_ref(),
                    format!("cat /{path}").as_ref(),
                    img.as_os_str(),
                ])
                .output()
                .expect("debugfs runs");
            data = out.stdout;
            Kind::File
        }
        "directory" => Kind::Dir,
        "symlink" => {
            let dest = stat
                .split_once("Fast link dest: \"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .unwrap_or_else(|| panic!("debugfs stat /{path}: no link target in {stat}"));
            Kind::Symlink(dest.0.to_string())
        }
        other => panic!("debugfs stat /{path}: unexpected type {other}"),
    };
    Entry {
        kind,
        mode,
        uid,
        gid,
        data,
    }
}
