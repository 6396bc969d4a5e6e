use super::*;
use crate::checksum::{Hasher, digest_reader};

const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";
const EMPTY_SHA512: &str = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce\
                            47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";
// Python's hashlib over `pattern(1 MiB + 1)`.
const PATTERN_MD5: &str = "8651bccc1ac93198ad21435ffd3bc46f";
const PATTERN_SHA512: &str = "326fdcc9286380ba250305d5b5818c37eb8369dfb9c08a203c850b9b73965b60\
                              7fdca89a9c78482c38f528264997cc248f5833682f6d31db8ac1bbb2dcfb1205";

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8 + 1).collect()
}

fn parallel(data: &[u8], chunk: usize) -> Digests {
    let mut h = ParallelHasher::new().unwrap();
    for c in data.chunks(chunk) {
        h.update(c).unwrap();
    }
    assert_eq!(h.size(), data.len() as u64);
    h.finish().unwrap()
}

#[test]
fn the_empty_stream_has_the_known_digests() {
    let d = ParallelHasher::new().unwrap().finish().unwrap();
    assert_eq!(
        (d.size, d.md5.as_str(), d.sha512.as_str()),
        (0, EMPTY_MD5, EMPTY_SHA512)
    );
    assert_eq!(d, digest_reader(&b""[..]).unwrap());
}

#[test]
fn a_block_and_a_byte_has_the_known_digests_however_chunked() {
    let data = pattern(BLOCK + 1);
    let reference = digest_reader(&data[..]).unwrap();
    assert_eq!(
        (reference.md5.as_str(), reference.sha512.as_str()),
        (PATTERN_MD5, PATTERN_SHA512)
    );
    for chunk in [data.len(), BLOCK, BLOCK - 1, 65536, 7919, 1] {
        assert_eq!(parallel(&data, chunk), reference, "chunks of {chunk}");
    }
}

#[test]
fn more_blocks_than_the_pool_match_the_single_thread_reference() {
    let data = pattern(POOL * 3 * BLOCK + 12345);
    let mut reference = Hasher::new();
    for c in data.chunks(100_003) {
        reference.update(c);
    }
    assert_eq!(parallel(&data, 100_003), reference.finish());
}

/// Dies on its first block, as a bug in a digest would.
struct Panicky;

impl Digester for Panicky {
    fn feed(&mut self, _: &[u8]) {
        panic!("injected hashing failure");
    }
    fn hex(self) -> String {
        String::new()
    }
}

#[test]
fn a_panicking_hash_thread_is_an_error_not_a_hang() {
    for panicky_first in [true, false] {
        let mut h = if panicky_first {
            ParallelHasher::start(("boom", Panicky), ("sha512", Sha512::new()))
        } else {
            ParallelHasher::start(("md5", Md5::new()), ("boom", Panicky))
        }
        .unwrap();
        let probe = h.threads_probe();
        let chunk = vec![5u8; 100_000];
        // Feeding may or may not notice the death (a send can race it); finishing must.
        let fed = (0..(POOL + 3) * BLOCK / chunk.len()).try_for_each(|_| h.update(&chunk));
        let err = match fed {
            Err(e) => {
                drop(h);
                e
            }
            Ok(()) => {
                let e = h.finish().unwrap_err();
                drop(h);
                e
            }
        };
        assert!(
            matches!(err, HashError::Worker { digest: "boom", ref why } if why.contains("injected")),
            "{err}"
        );
        assert!(
            probe.upgrade().is_none(),
            "no hashing thread outlives the error"
        );
    }
}

#[test]
fn dropping_half_way_stops_the_threads() {
    let mut h = ParallelHasher::new().unwrap();
    let data = pattern(BLOCK * (POOL + 1) + 17);
    h.update(&data).unwrap();
    let probe = h.threads_probe();
    assert!(probe.upgrade().is_some());
    drop(h);
    assert!(probe.upgrade().is_none(), "hashing threads joined on drop");
}
