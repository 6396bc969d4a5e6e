//! What the vCPU, control and main threads share: the run state, why the guest stopped, and
//! how to kick vCPUs out of KVM_RUN (a signal whose handler sets `immediate_exit`).

use locks::Unpoisoned;
use std::cell::Cell;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use vmm_contract::{RunState, StopReason};

struct Inner {
    state: RunState,
    stop: Option<StopReason>,
    /// A `kill` survives a guest reset: the next boot must not start.
    killed: bool,
    parked: usize,
    vcpus: Vec<libc::pthread_t>,
}

/// Shared between threads for the life of one boot.
pub struct Shared {
    inner: Mutex<Inner>,
    changed: Condvar,
}

/// Real-time signal used to kick vCPU threads.
pub fn kick_signal() -> i32 {
    libc::SIGRTMIN()
}

thread_local! {
    static KVM_RUN: Cell<*mut kvm_bindings::kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

/// Tells the kick handler where this vCPU thread's `kvm_run` is.
pub fn set_thread_kvm_run(run: *mut kvm_bindings::kvm_run) {
    KVM_RUN.with(|c| c.set(run));
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // A const-initialised thread local without destructor: reading it is a plain TLS load,
    // safe in a signal handler.
    let run = KVM_RUN.with(|c| c.get());
    if !run.is_null() {
        // SAFETY: `run` points at this thread's mmap'ed kvm_run, alive while the vCPU is;
        // setting immediate_exit makes the current or next KVM_RUN return EINTR, so a kick
        // that lands just before KVM_RUN is not lost.
        unsafe { (*run).immediate_exit = 1 };
    }
}

/// Installs the kick handler (once per process).
pub fn install_kick_handler() -> std::io::Result<()> {
    vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick)
        .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}

impl Shared {
    /// A fresh boot, not yet running.
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(Inner {
                state: RunState::Starting,
                stop: None,
                killed: false,
                parked: 0,
                vcpus: Vec::new(),
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unpoisoned()
    }

    /// The current state.
    pub fn state(&self) -> RunState {
        self.lock().state
    }

    /// Records the vCPU threads to kick and marks the guest running.
    pub fn started(&self, vcpus: Vec<libc::pthread_t>) {
        let mut g = self.lock();
        g.vcpus = vcpus;
        if g.stop.is_none() {
            g.state = RunState::Running;
        }
        self.changed.notify_all();
    }

    fn kick_all(g: &Inner) {
        for &t in &g.vcpus {
            // SAFETY: the threads are joined only after `forget_vcpus`, which takes this same
            // lock, so every handle here names a live (or finished but unjoined) thread.
            unsafe { libc::pthread_kill(t, kick_signal()) };
        }
    }

    /// Asks the guest to stop; the first reason wins.
    pub fn request_stop(&self, reason: StopReason) {
        let mut g = self.lock();
        g.killed |= reason == StopReason::Killed;
        if g.stop.is_none() {
            tracing::debug!(?reason, "guest stopping");
            g.stop = Some(reason);
        }
        g.state = RunState::Stopping;
        Self::kick_all(&g);
        self.changed.notify_all();
    }

    /// Waits until a stop is requested; returns the reason.
    pub fn wait_for_stop(&self) -> StopReason {
        let mut g = self.lock();
        loop {
            if let Some(r) = g.stop.clone() {
                return r;
            }
            g = self.changed.wait(g).unpoisoned();
        }
    }

    /// Starts over after a guest reset: no stop reason, not yet running.
    pub fn begin_boot(&self) {
        let mut g = self.lock();
        g.stop = g.killed.then_some(StopReason::Killed);
        g.state = if g.killed {
            RunState::Stopping
        } else {
            RunState::Starting
        };
        g.parked = 0;
    }

    /// Drops the thread handles before they are joined.
    pub fn forget_vcpus(&self) {
        self.lock().vcpus.clear();
    }

    /// Parks every vCPU outside KVM_RUN; returns once they all are.
    pub fn pause(&self, timeout: Duration) -> Result<(), String> {
        let mut g = self.lock();
        match g.state {
            RunState::Running => {}
            RunState::Paused => return Ok(()),
            s => return Err(format!("cannot pause a guest that is {s:?}").to_lowercase()),
        }
        g.state = RunState::Paused;
        Self::kick_all(&g);
        let deadline = Instant::now() + timeout;
        while g.parked < g.vcpus.len() && g.stop.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("vCPUs did not stop in time".into());
            }
            g = self.changed.wait_timeout(g, left).unpoisoned().0;
        }
        Ok(())
    }

    /// Lets paused vCPUs run again.
    pub fn resume(&self) -> Result<(), String> {
        let mut g = self.lock();
        match g.state {
            RunState::Paused => {
                g.state = RunState::Running;
                self.changed.notify_all();
                Ok(())
            }
            RunState::Running => Ok(()),
            s => Err(format!("cannot resume a guest that is {s:?}").to_lowercase()),
        }
    }

    /// Called by a vCPU between runs: blocks while paused; false when the guest is stopping.
    pub fn vcpu_may_run(&self) -> bool {
        let mut g = self.lock();
        loop {
            if g.stop.is_some() {
                return false;
            }
            if g.state != RunState::Paused {
                return true;
            }
            g.parked += 1;
            self.changed.notify_all();
            g = self.changed.wait(g).unpoisoned();
            g.parked -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn first_stop_reason_wins_and_maps_to_status() {
        let s = Shared::new();
        s.request_stop(StopReason::Panic);
        s.request_stop(StopReason::PowerOff);
        assert_eq!(s.wait_for_stop(), StopReason::Panic);
        assert_eq!(s.wait_for_stop().exit_code(), 4);
        assert!(!s.vcpu_may_run());
    }

    #[test]
    fn a_kill_during_a_reset_is_not_forgotten() {
        let s = Shared::new();
        s.request_stop(StopReason::Reset);
        s.request_stop(StopReason::Killed);
        s.begin_boot();
        assert_eq!(s.wait_for_stop(), StopReason::Killed);
        let s = Shared::new();
        s.request_stop(StopReason::Reset);
        s.begin_boot();
        assert!(s.vcpu_may_run());
    }

    #[test]
    fn paused_vcpus_make_no_progress_until_resumed() {
        use std::os::unix::thread::JoinHandleExt;
        use std::sync::atomic::{AtomicU64, Ordering};
        install_kick_handler().unwrap();
        let s = Arc::new(Shared::new());
        let rounds = Arc::new(AtomicU64::new(0));
        // A "vCPU" without KVM: it checks the gate between rounds, as the real loop does.
        let (s2, r2) = (s.clone(), rounds.clone());
        let t = std::thread::spawn(move || {
            while s2.vcpu_may_run() {
                r2.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        s.started(vec![t.as_pthread_t()]);
        s.pause(Duration::from_secs(5)).unwrap();
        assert_eq!(s.state(), RunState::Paused);
        let before = rounds.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(rounds.load(Ordering::SeqCst), before);
        s.resume().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(rounds.load(Ordering::SeqCst) > before);
        s.request_stop(StopReason::Killed);
        s.forget_vcpus();
        t.join().unwrap();
        assert!(s.pause(Duration::from_secs(1)).is_err());
    }
}
