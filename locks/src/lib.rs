//! A poisoned lock (a thread panicked while holding it) is taken anyway, everywhere in Virga:
//! every value these locks guard stays consistent at each await point or statement boundary (a
//! counter, a map of per-instance locks, a device's registers), so the panic is reported where
//! it happened and the other threads go on. One helper instead of a closure at every call site.

use std::sync::{LockResult, PoisonError};

/// `lock()`, `read()`, `write()` and `Condvar::wait*` results, unpoisoned.
pub trait Unpoisoned<G> {
    /// The guard, whether or not another thread panicked holding the lock.
    fn unpoisoned(self) -> G;
}

impl<G> Unpoisoned<G> for LockResult<G> {
    fn unpoisoned(self) -> G {
        self.unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_poisoned_lock_still_gives_its_value() {
        let m = Arc::new(Mutex::new(7));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unpoisoned();
            panic!("holding the lock");
        })
        .join();
        assert!(m.is_poisoned());
        assert_eq!(*m.lock().unpoisoned(), 7);
    }
}
