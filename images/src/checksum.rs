//! Streaming md5 and sha512, as the image service reports both (`checksum`, `os_hash_value`).
//! [`Hasher`] computes both on the caller's thread; [`ParallelHasher`] gives each digest its own
//! thread (uploads are CPU-bound on hashing otherwise).

mod parallel;

pub use parallel::{HashError, ParallelHasher};

use md5::{Digest, Md5};
use sha2::Sha512;
use std::io::{self, Read};

/// Digests being computed over a stream.
#[derive(Clone, Default)]
pub struct Hasher {
    md5: Md5,
    sha512: Sha512,
    size: u64,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// The final digests of a stream, lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// Bytes hashed.
    pub size: u64,
    /// md5, 32 hex digits.
    pub md5: String,
    /// sha512, 128 hex digits.
    pub sha512: String,
}

impl Hasher {
    /// Starts empty digests.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes of the stream.
    pub fn update(&mut self, chunk: &[u8]) {
        self.md5.update(chunk);
        self.sha512.update(chunk);
        self.size += chunk.len() as u64;
    }

    /// Bytes fed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Ends the stream.
    pub fn finish(self) -> Digests {
        Digests {
            size: self.size,
            md5: hex(&self.md5.finalize()),
            sha512: hex(&self.sha512.finalize()),
        }
    }
}

/// Hashes everything `reader` yields.
pub fn digest_reader(mut reader: impl Read) -> io::Result<Digests> {
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(hasher.finish()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        let d = digest_reader(&b"abc"[..]).unwrap();
        assert_eq!(d.size, 3);
        assert_eq!(d.md5, "900150983cd24fb0d6963f7d28e17f72");
        assert!(d.sha512.starts_with("ddaf35a193617abacc417349ae204131"));
        assert!(d.sha512.ends_with("a54ca49f"));
        assert_eq!(d.sha512.len(), 128);
    }

    #[test]
    fn chunking_does_not_change_the_digest() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let mut h = Hasher::new();
        for c in data.chunks(333) {
            h.update(c);
        }
        assert_eq!(h.finish(), digest_reader(&data[..]).unwrap());
    }
}
