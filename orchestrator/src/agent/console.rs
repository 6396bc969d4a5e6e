//! Reading the end of a console log without loading all of it: the log of a long-running
//! guest grows without bound, and `os-getConsoleOutput` wants only its tail.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// At most this much of the log is returned (the tail), whatever the line count asked.
pub const MAX_BYTES: u64 = 1 << 20;

/// The last `lines` lines of the log at `path` (all of it with `None`), at most [`MAX_BYTES`];
/// invalid UTF-8 is replaced. A log not written yet reads as empty.
pub fn tail(path: &Path, lines: Option<usize>) -> io::Result<String> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let want = lines.unwrap_or(usize::MAX);
    if want == 0 {
        return Ok(String::new());
    }
    // Read backwards in blocks until enough newlines (one more than lines, so the first line
    // is whole) or the size cap.
    const BLOCK: u64 = 64 * 1024;
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    while start > 0 && len - start < MAX_BYTES {
        let step = BLOCK.min(start).min(MAX_BYTES - (len - start));
        start -= step;
        let mut block = vec![0; step as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block)?;
        block.extend_from_slice(&buf);
        buf = block;
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if body.iter().filter(|&&b| b == b'\n').count() >= want {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let cut_partial = start > 0;
    let text = match (cut_partial, text.find('\n')) {
        // The first line was cut by the block boundary or the cap: drop its piece.
        (true, Some(i)) => &text[i + 1..],
        _ => &text[..],
    };
    Ok(super::instance::last_lines(text, want).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_of_a_big_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let text: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        assert_eq!(tail(&path, Some(2)).unwrap(), "line 19998\nline 19999\n");
        assert_eq!(tail(&path, Some(0)).unwrap(), "");
        let all = tail(&path, None).unwrap();
        assert_eq!(all, text, "under the cap the whole log comes back");
        let many = tail(&path, Some(15_000)).unwrap();
        assert!(many.starts_with("line 5000\n"), "{}", &many[..20]);
        assert_eq!(tail(&dir.path().join("none"), Some(3)).unwrap(), "");
    }

    #[test]
    fn the_cap_keeps_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let line = "x".repeat(99) + "\n";
        std::fs::write(&path, line.repeat(20_000)).unwrap();
        let out = tail(&path, None).unwrap();
        assert!(out.len() as u64 <= MAX_BYTES);
        assert!(out.starts_with('x') && out.lines().all(|l| l.len() == 99));
    }
}
