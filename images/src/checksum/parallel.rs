//! md5 and sha512 on one thread each. The caller copies its chunks into fixed-size blocks; a full
//! block is shared (`Arc`) with both hashing threads and comes back to the caller's pool once
//! both are done with it. The pool has [`POOL`] blocks, so memory stays bounded however far the
//! slower digest lags: the caller waits for a block to come back instead of allocating more.

use super::{Digests, hex};
use md5::{Digest, Md5};
use sha2::Sha512;
use std::sync::Arc;
#[cfg(test)]
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, channel, sync_channel};
use std::thread::{self, JoinHandle};

/// Bytes per block handed to the hashing threads.
const BLOCK: usize = 1 << 20;
/// Blocks per hasher: one being filled, the others queued or being hashed.
const POOL: usize = 4;
/// How long the caller waits for a block before it checks whether a worker has ended.
const ENDED_WORKER_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Why parallel hashing failed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The hashing thread could not be started.
    #[error("starting the {digest} hashing thread: {source}")]
    Spawn {
        /// md5 or sha512.
        digest: &'static str,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// A hashing thread died (a panic), or was used after it ended.
    #[error("the {digest} hashing thread {why}")]
    Worker {
        /// md5 or sha512.
        digest: &'static str,
        /// What happened to it.
        why: String,
    },
}

type Block = Arc<Vec<u8>>;

/// One digest, fed on its own thread.
trait Digester: Send + 'static {
    fn feed(&mut self, data: &[u8]);
    fn hex(self) -> String;
}

impl<D: Digest + Send + 'static> Digester for D {
    fn feed(&mut self, data: &[u8]) {
        Digest::update(self, data);
    }
    fn hex(self) -> String {
        hex(&self.finalize())
    }
}

struct Worker {
    digest: &'static str,
    tx: Option<SyncSender<Block>>,
    /// `None` from the thread means it was cancelled.
    thread: Option<JoinHandle<Option<String>>>,
}

impl Worker {
    fn spawn(
        digest: &'static str,
        mut d: impl Digester,
        returns: Sender<Block>,
        cancel: Arc<AtomicBool>,
        alive: Arc<()>,
    ) -> Result<Self, HashError> {
        // Capacity POOL: at most POOL blocks exist, so a send never waits.
        let (tx, rx) = sync_channel::<Block>(POOL);
        let thread = thread::Builder::new()
            .name(format!("hash-{digest}"))
            .spawn(move || {
                let _alive = alive;
                for block in rx {
                    if cancel.load(Ordering::Relaxed) {
                        return None;
                    }
                    d.feed(&block);
                    // The owner may have gone meanwhile; then the block is simply freed.
                    let _ = returns.send(block);
                }
                Some(d.hex())
            })
            .map_err(|source| HashError::Spawn { digest, source })?;
        Ok(Worker {
            digest,
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Closes the thread's channel and waits for it to end.
    fn join(&mut self) -> Result<String, HashError> {
        self.tx = None;
        let why = match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Some(hex))) => return Ok(hex),
            Some(Ok(None)) => "was cancelled".to_owned(),
            Some(Err(panic)) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string payload".into());
                format!("panicked: {msg}")
            }
            None => "has already ended".to_owned(),
        };
        Err(HashError::Worker {
            digest: self.digest,
            why,
        })
    }
}

/// md5 and sha512 of a stream, each computed on its own thread.
pub struct ParallelHasher {
    workers: [Worker; 2],
    /// The block being filled; capacity 0 until the first byte after a dispatch.
    block: Vec<u8>,
    /// Blocks the workers are done with (each comes back once per worker).
    returned: Receiver<Block>,
    allocated: usize,
    size: u64,
    cancel: Arc<AtomicBool>,
    #[cfg(test)]
    alive: Weak<()>,
}

impl std::fmt::Debug for ParallelHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParallelHasher")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl ParallelHasher {
    /// Starts the md5 and sha512 threads.
    pub fn new() -> Result<Self, HashError> {
        Self::start(("md5", Md5::new()), ("sha512", Sha512::new()))
    }

    fn start(
        a: (&'static str, impl Digester),
        b: (&'static str, impl Digester),
    ) -> Result<Self, HashError> {
        let (returns, returned) = channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let alive = Arc::new(());
        let first = Worker::spawn(a.0, a.1, returns.clone(), cancel.clone(), alive.clone())?;
        let second = match Worker::spawn(b.0, b.1, returns, cancel.clone(), alive.clone()) {
            Ok(w) => w,
            Err(e) => {
                let mut first = first;
                cancel.store(true, Ordering::Relaxed);
                let _ = first.join();
                return Err(e);
            }
        };
        Ok(ParallelHasher {
            workers: [first, second],
            block: Vec::new(),
            returned,
            allocated: 0,
            size: 0,
            cancel,
            #[cfg(test)]
            alive: Arc::downgrade(&alive),
        })
    }

    /// Feeds the next bytes of the stream; waits only when both digests lag [`POOL`] blocks.
    pub fn update(&mut self, mut data: &[u8]) -> Result<(), HashError> {
        if let Some(i) = self.workers.iter().position(|w| w.tx.is_none()) {
            return Err(self.fail(i));
        }
        while !data.is_empty() {
            if self.block.capacity() == 0 {
                self.block = self.free_block()?;
            }
            let n = (BLOCK - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..n]);
            self.size += n as u64;
            data = &data[n..];
            if self.block.len() == BLOCK {
                self.dispatch()?;
            }
        }
        Ok(())
    }

    /// Bytes fed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Ends the stream and waits for both digests; the hasher takes no more data after this.
    pub fn finish(&mut self) -> Result<Digests, HashError> {
        if !self.block.is_empty() {
            self.dispatch()?;
        }
        let [md5, sha512] = &mut self.workers;
        Ok(Digests {
            size: self.size,
            md5: md5.join()?,
            sha512: sha512.join()?,
        })
    }

    /// Alive while any hashing thread still runs (tests check that none outlives its hasher).
    #[cfg(test)]
    pub(crate) fn threads_probe(&self) -> Weak<()> {
        self.alive.clone()
    }

    /// Hands the current block to both workers.
    fn dispatch(&mut self) -> Result<(), HashError> {
        let block = Arc::new(std::mem::take(&mut self.block));
        for i in 0..self.workers.len() {
            let sent = match &self.workers[i].tx {
                Some(tx) => tx.send(block.clone()).is_ok(),
                None => false,
            };
            if !sent {
                // Its receiver is gone: the thread ended; joining it tells why.
                return Err(self.fail(i));
            }
        }
        Ok(())
    }

    fn fail(&mut self, i: usize) -> HashError {
        match self.workers[i].join() {
            Err(e) => e,
            Ok(_) => HashError::Worker {
                digest: self.workers[i].digest,
                why: "stopped before the end of the stream".into(),
            },
        }
    }

    /// A new block while the pool is not full, else the next one both workers are done with.
    fn free_block(&mut self) -> Result<Vec<u8>, HashError> {
        if self.allocated < POOL {
            self.allocated += 1;
            return Ok(Vec::with_capacity(BLOCK));
        }
        loop {
            // Each worker holds a sender, so `recv` alone could wait forever: when one worker
            // returns a block the other still holds and that other then dies, nobody returns
            // it. A worker that ended before the stream did is therefore looked for whenever
            // no block comes back for a while.
            let block = match self.returned.recv_timeout(ENDED_WORKER_POLL) {
                Ok(block) => block,
                Err(RecvTimeoutError::Timeout) => {
                    let ended = self
                        .workers
                        .iter()
                        .position(|w| w.thread.as_ref().is_some_and(JoinHandle::is_finished));
                    match ended {
                        Some(i) => return Err(self.fail(i)),
                        None => continue,
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let i = self
                        .workers
                        .iter()
                        .position(|w| w.thread.is_some())
                        .unwrap_or(0);
                    return Err(self.fail(i));
                }
            };
            // The first worker to return a block finds the other still holding it.
            if let Ok(mut v) = Arc::try_unwrap(block) {
                v.clear();
                return Ok(v);
            }
        }
    }
}

impl Drop for ParallelHasher {
    fn drop(&mut self) {
        // Abandoned half way: stop hashing what is queued, and leave no thread behind.
        self.cancel.store(true, Ordering::Relaxed);
        for w in &mut self.workers {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests;
