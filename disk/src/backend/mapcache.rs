//! A few recently used guest-range mappings, kept in front of imago's lookup.
//!
//! imago answers "where does guest offset X live" through its L2 cache on every request, which
//! costs 0.3-0.4 us per 4 KiB request here (a third of a raw read). A guest reads and writes
//! mostly in runs, and one imago lookup returns the whole host-contiguous run within an L2 table
//! (up to 512 MiB with 64 KiB clusters), so remembering the last few runs answers nearly every
//! request without asking imago.
//!
//! How far a lookup looks ahead adapts: a miss right where the last remembered run ended is a
//! stream, and looks ahead twice as far as the last one did (from 1 MiB up to 64 MiB); any other
//! miss looks up only the request itself, as imago would, so random requests pay nothing for a
//! walk over L2 entries they will never use.
//!
//! Consistency: a mapping changes only when imago changes the metadata (a write that allocates
//! or copies clusters, write-zeroes, discard). Whoever does that calls [`MapCache::invalidate`]
//! (or [`MapCache::clear`]) afterwards, which drops the runs it overlaps and bumps a generation
//! number. A lookup records the generation before it asks imago and inserts its answer only if
//! no change finished in between ([`MapCache::insert`]), so a run read from metadata that was
//! being changed never enters the cache.

use locks::Unpoisoned;
use std::sync::{Mutex, MutexGuard};

/// Runs remembered; a guest with a few concurrent streams keeps each one's run.
const WAYS: usize = 4;
/// Lookahead of the first sequential miss.
const MIN_AHEAD: u64 = 1 << 20;
/// Longest lookahead.
const MAX_AHEAD: u64 = 64 << 20;

/// Where a run of guest bytes lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// In `file` (an index into the back end's files) at host offset `host`; `writable` when
    /// the guest may overwrite it in place (an allocated cluster of the top image that only it
    /// references).
    Data {
        file: usize,
        host: u64,
        writable: bool,
    },
    /// Reads as zeroes (unallocated, or zero clusters); writing needs imago.
    Zero,
}

/// A run of guest bytes `[start, end)` and where it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Extent {
    pub start: u64,
    pub end: u64,
    pub target: Target,
}

impl Extent {
    /// The part of this run from guest offset `at` (which it must contain): where it lives and
    /// how many bytes it covers.
    pub fn from(&self, at: u64) -> (Target, u64) {
        debug_assert!(self.start <= at && at < self.end);
        let target = match self.target {
            Target::Data {
                file,
                host,
                writable,
            } => Target::Data {
                file,
                host: host + (at - self.start),
                writable,
            },
            Target::Zero => Target::Zero,
        };
        (target, self.end - at)
    }

    fn contains(&self, at: u64) -> bool {
        self.start <= at && at < self.end
    }

    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start < end && start < self.end
    }
}

#[derive(Debug, Default)]
struct Slots {
    generation: u64,
    runs: [Option<Extent>; WAYS],
    /// The slot the next insert replaces (round robin).
    next: usize,
    /// Where the last inserted run ended, and how far its lookup looked ahead.
    stream_end: u64,
    stream_ahead: u64,
}

/// What a miss should ask imago for; pass it back to [`MapCache::insert`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Miss {
    generation: u64,
    /// How many bytes from the missed offset to look up.
    pub ahead: u64,
}

/// The cache; every method takes `&self` (one short mutex hold each).
#[derive(Debug, Default)]
pub(super) struct MapCache {
    slots: Mutex<Slots>,
}

impl MapCache {
    fn slots(&self) -> MutexGuard<'_, Slots> {
        // The data stays consistent whatever a panicking holder did: each method writes whole
        // values only.
        self.slots.lock().unpoisoned()
    }

    /// The remembered run holding guest offset `at`, from `at` on.
    pub fn lookup(&self, at: u64) -> Option<(Target, u64)> {
        let slots = self.slots();
        slots
            .runs
            .iter()
            .flatten()
            .find(|run| run.contains(at))
            .map(|run| run.from(at))
    }

    /// A request of `want` bytes at `at` found nothing: how far to look ahead (never less than
    /// `want`). Call it before asking imago.
    pub fn miss(&self, at: u64, want: u64) -> Miss {
        let slots = self.slots();
        let ahead = if at == slots.stream_end && at != 0 {
            (slots.stream_ahead * 2).clamp(MIN_AHEAD, MAX_AHEAD)
        } else {
            0
        };
        Miss {
            generation: slots.generation,
            ahead: ahead.max(want),
        }
    }

    /// Remembers `run`, which imago reported after [`MapCache::miss`] returned `miss`, unless
    /// the metadata changed since.
    pub fn insert(&self, miss: Miss, run: Extent) {
        let mut slots = self.slots();
        if slots.generation != miss.generation || run.start >= run.end {
            return;
        }
        slots.stream_end = run.end;
        slots.stream_ahead = miss.ahead;
        // Runs never overlap: an older run that does is stale or a duplicate.
        for slot in slots.runs.iter_mut() {
            if slot.is_some_and(|old| old.overlaps(run.start, run.end)) {
                *slot = None;
            }
        }
        let i = slots
            .runs
            .iter()
            .position(Option::is_none)
            .unwrap_or(slots.next);
        slots.runs[i] = Some(run);
        slots.next = (i + 1) % WAYS;
    }

    /// Call after the mapping of guest bytes `[start, start + len)` may have changed.
    pub fn invalidate(&self, start: u64, len: u64) {
        let end = start.saturating_add(len);
        let mut slots = self.slots();
        slots.generation += 1;
        for slot in slots.runs.iter_mut() {
            if slot.is_some_and(|run| run.overlaps(start, end)) {
                *slot = None;
            }
        }
    }

    /// Call after mappings anywhere may have changed.
    pub fn clear(&self) {
        let mut slots = self.slots();
        slots.generation += 1;
        slots.runs = [None; WAYS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(start: u64, end: u64, host: u64) -> Extent {
        Extent {
            start,
            end,
            target: Target::Data {
                file: 0,
                host,
                writable: true,
            },
        }
    }

    #[test]
    fn lookup_offsets_into_the_run() {
        let c = MapCache::default();
        c.insert(c.miss(0, 1), data(4096, 65536, 1 << 20));
        assert_eq!(c.lookup(4095), None);
        assert_eq!(c.lookup(65536), None);
        let (t, n) = c.lookup(8192).unwrap();
        assert_eq!(n, 65536 - 8192);
        assert_eq!(
            t,
            Target::Data {
                file: 0,
                host: (1 << 20) + 4096,
                writable: true
            }
        );
    }

    #[test]
    fn an_answer_from_before_a_change_is_not_remembered() {
        let c = MapCache::default();
        let g = c.miss(0, 4096);
        c.invalidate(0, 4096); // a write finished while the lookup ran
        c.insert(g, data(0, 65536, 0));
        assert_eq!(c.lookup(0), None);
        c.insert(c.miss(0, 1), data(0, 65536, 0));
        assert!(c.lookup(0).is_some());
    }

    #[test]
    fn lookahead_grows_along_a_stream_only() {
        let c = MapCache::default();
        // Random requests look up just themselves.
        assert_eq!(c.miss(12345, 4096).ahead, 4096);
        assert_eq!(c.miss(0, 4096).ahead, 4096);
        let mut at = 0;
        let mut aheads = vec![];
        for _ in 0..10 {
            let m = c.miss(at, 4096);
            aheads.push(m.ahead >> 20);
            // imago answers with the whole lookahead (one long host-contiguous run).
            c.insert(m, data(at, at + m.ahead, at));
            at += m.ahead;
        }
        assert_eq!(aheads, [0, 1, 2, 4, 8, 16, 32, 64, 64, 64]);
        // A request larger than the lookahead still gets all it asked for.
        assert_eq!(c.miss(at, 100 << 20).ahead, 100 << 20);
        // Elsewhere, back to the request size.
        assert_eq!(c.miss(at + 4096, 4096).ahead, 4096);
    }

    #[test]
    fn invalidate_drops_only_overlapping_runs() {
        let c = MapCache::default();
        c.insert(c.miss(0, 1), data(0, 100, 0));
        c.insert(c.miss(0, 1), data(100, 200, 1000));
        c.invalidate(150, 1);
        assert!(c.lookup(50).is_some());
        assert_eq!(c.lookup(100), None);
        c.invalidate(u64::MAX - 1, 10); // no overflow at the end of the range
        c.clear();
        assert_eq!(c.lookup(50), None);
    }

    #[test]
    fn oldest_run_is_replaced_and_overlaps_are_dropped() {
        let c = MapCache::default();
        for i in 0..WAYS as u64 + 1 {
            c.insert(c.miss(0, 1), data(i * 10, i * 10 + 10, i));
        }
        assert_eq!(c.lookup(0), None, "the first run made room");
        assert!(c.lookup(WAYS as u64 * 10).is_some());
        // A new run over an old one replaces it rather than shadowing it.
        c.insert(c.miss(0, 1), data(15, 25, 99));
        assert_eq!(c.lookup(10), None);
        assert_eq!(c.lookup(20).unwrap().1, 5);
        let zero = Extent {
            start: 1000,
            end: 2000,
            target: Target::Zero,
        };
        c.insert(c.miss(0, 1), zero);
        assert_eq!(c.lookup(1500), Some((Target::Zero, 500)));
        c.insert(c.miss(0, 1), data(5, 5, 0)); // empty runs are ignored
        assert_eq!(c.lookup(5), None);
    }
}
