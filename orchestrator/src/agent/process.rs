//! VMM processes: started detached (own session, no pipes back to the daemon) so they outlive
//! it, recognised again from their pid file and `/proc`, watched through pidfds, and reaped by
//! the agent that started them, which records how they ended.

use super::instance::{ExitRecord, InstanceDir, write_atomic};
use locks::Unpoisoned;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Written into `vmm.log` before each VMM start, so a fault shows only the last run's lines.
pub const RUN_SEPARATOR: &str = "--- virga agent: starting virga-vmm";

/// A pid and the kernel's start time of that process (clock ticks since boot): together they
/// name one process even after the pid is reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PidRecord {
    /// Process id.
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`.
    pub start_time: u64,
}

impl PidRecord {
    /// Reads `dir`'s pid file.
    pub fn load(dir: &InstanceDir) -> Option<Self> {
        let text = std::fs::read_to_string(dir.pid_file()).ok()?;
        let mut parts = text.split_whitespace();
        let pid = parts.next()?.parse().ok()?;
        let start_time = parts.next()?.parse().ok()?;
        Some(Self { pid, start_time })
    }

    fn save(&self, dir: &InstanceDir) -> io::Result<()> {
        write_atomic(
            &dir.pid_file(),
            format!("{} {}\n", self.pid, self.start_time).as_bytes(),
            false,
        )
    }
}

/// State letter and start time from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself hold spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `rest` starts at field 3 (state); the start time is field 22.
    let start_time = fields.nth(22 - 4)?.parse().ok()?;
    Some((state, start_time))
}

/// Whether `rec` is a live (not zombie) `virga-vmm` running `vmm_json`.
pub fn is_instance_vmm(rec: PidRecord, vmm_json: &Path) -> bool {
    match proc_stat(rec.pid) {
        Some((state, start)) if start == rec.start_time && state != 'Z' && state != 'X' => {}
        _ => return false,
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", rec.pid)) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let is_vmm = args
        .first()
        .and_then(|a| a.rsplit(|&b| b == b'/').next())
        .is_some_and(|name| name == b"virga-vmm");
    let config = vmm_json.as_os_str().as_encoded_bytes();
    is_vmm
        && args
            .windows(2)
            .any(|w| w[0] == b"--config" && w[1] == config)
}

/// The running VMM of the instance in `dir`, if there is one.
pub fn running_vmm(dir: &InstanceDir) -> Option<PidRecord> {
    let rec = PidRecord::load(dir)?;
    is_instance_vmm(rec, &dir.vmm_config()).then_some(rec)
}

/// A process file descriptor: signals and waits that cannot hit a reused pid.
pub struct Pidfd(OwnedFd);

impl Pidfd {
    /// Opens a pidfd for `rec`, checking afterwards that it is still the instance's VMM (a
    /// pidfd names the process it was opened on, so the check holds for its lifetime).
    pub fn open(rec: PidRecord, vmm_json: &Path) -> io::Result<Option<Self>> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, rec.pid as libc::pid_t, 0) };
        if fd < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::ESRCH) => Ok(None),
                _ => Err(err),
            };
        }
        // SAFETY: the syscall returned a fresh descriptor that nothing else owns.
        let fd = Self(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        Ok(is_instance_vmm(rec, vmm_json).then_some(fd))
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        // SAFETY: the descriptor is a valid pidfd; no siginfo is passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        match r {
            0 => Ok(()),
            _ => match io::Error::last_os_error() {
                e if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Waits up to `timeout` for the process to end; true when it has.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let mut pfd = libc::pollfd {
                fd: self.0.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd for the duration of the call.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r > 0 {
                return true;
            }
            let interrupted =
                r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted;
            if !interrupted && Instant::now() >= deadline {
                return false;
            }
        }
    }
}

/// Exit records of the VMMs this agent started (and reaps), per instance.
#[derive(Default)]
pub struct Children {
    exits: Mutex<HashMap<Uuid, (u32, Option<ExitRecord>)>>,
    changed: Condvar,
}

impl Children {
    /// How the VMM `pid` of instance `id` ended, if this agent started it: waits up to `wait`
    /// for the reaper when the process has ended but is not recorded yet. `None` when the VMM
    /// is not this agent's child or has not ended.
    pub fn exit_of(&self, id: Uuid, pid: u32, wait: Duration) -> Option<ExitRecord> {
        let deadline = Instant::now() + wait;
        let mut exits = self.exits.lock().unpoisoned();
        loop {
            match exits.get(&id) {
                Some((p, Some(exit))) if *p == pid => return Some(*exit),
                Some((p, None)) if *p == pid => {}
                _ => return None,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            exits = self.changed.wait_timeout(exits, left).unpoisoned().0;
        }
    }

    /// Drops what is known of instance `id` (it was destroyed).
    pub fn forget(&self, id: Uuid) {
        let mut exits = self.exits.lock().unpoisoned();
        exits.remove(&id);
    }

    fn started(&self, id: Uuid, pid: u32) {
        let mut exits = self.exits.lock().unpoisoned();
        exits.insert(id, (pid, None));
    }

    fn ended(&self, id: Uuid, exit: ExitRecord) {
        let mut exits = self.exits.lock().unpoisoned();
        if let Some(entry) = exits.get_mut(&id)
            && entry.0 == exit.pid
        {
            entry.1 = Some(exit);
        }
        self.changed.notify_all();
    }
}

/// Starts `virga-vmm --config <dir>/vmm.json` detached: its own session, stdin and stdout on
/// /dev/null, stderr appended to `vmm.log`. Writes the pid file and starts the reaper thread,
/// which records the exit in `exit.json` and in `children`, then calls `on_exit`.
pub fn launch(
    bin: &Path,
    id: Uuid,
    dir: &InstanceDir,
    children: &Arc<Children>,
    on_exit: impl FnOnce(Uuid) + Send + 'static,
) -> io::Result<PidRecord> {
    let mut log = File::options()
        .create(true)
        .append(true)
        .open(dir.vmm_log())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    writeln!(log, "{RUN_SEPARATOR} at {} (unix time)", now.as_secs())?;
    let mut cmd = Command::new(bin);
    cmd.arg("--config")
        .arg(dir.vmm_config())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent; the child
    // gets its own session so the daemon's terminal and process group signals miss it.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // Before the VMM runs: it may write its own exit status at once.
    match std::fs::remove_file(dir.vmm_exit_file()) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let start_time = match proc_stat(pid) {
        Some((_, t)) => t,
        None => {
            // Gone already (it exited at once); it is still our child: reap it below.
            0
        }
    };
    let rec = PidRecord { pid, start_time };
    let _ = std::fs::remove_file(dir.exit_file());
    children.started(id, pid);
    let saved = rec.save(dir);
    let dir = dir.clone();
    let kids = children.clone();
    let reaper = std::thread::Builder::new()
        .name(format!("reap-{pid}"))
        .stack_size(64 * 1024)
        .spawn(move || {
            let exit = wait_exit(pid);
            // The zombie keeps the pid until it is reaped: record first, then reap, so nobody
            // sees the process gone without its exit status on disk.
            if let Err(e) = exit.save(&dir) {
                tracing::warn!(%id, pid, "cannot record the VMM's exit: {e}");
            }
            kids.ended(id, exit);
            let _ = child.wait();
            tracing::info!(%id, pid, exit = %exit.describe(), "VMM ended");
            on_exit(id);
        });
    if let Err(e) = reaper {
        tracing::error!(%id, pid, "cannot start the reaper thread: {e}");
    }
    saved?;
    Ok(rec)
}

/// Waits for child `pid` to end without reaping it, and says how it ended.
fn wait_exit(pid: u32) -> ExitRecord {
    loop {
        // SAFETY: siginfo_t is plain data; zeroed is a valid value for waitid to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid writes only into `info`.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 {
            // SAFETY: waitid succeeded for an exited child, so the SIGCHLD fields are valid.
            let status = unsafe { info.si_status() };
            return match info.si_code {
                libc::CLD_EXITED => ExitRecord {
                    pid,
                    code: Some(status),
                    signal: None,
                },
                _ => ExitRecord {
                    pid,
                    code: None,
                    signal: Some(status),
                },
            };
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return ExitRecord {
                pid,
                code: None,
                signal: None,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_reads_this_process() {
        let (state, start) = proc_stat(std::process::id()).unwrap();
        assert!(state == 'R' || state == 'S', "{state}");
        assert!(start > 0);
        assert_eq!(proc_stat(u32::MAX), None);
    }

    #[test]
    fn another_program_is_not_an_instance_vmm() {
        let me = PidRecord {
            pid: std::process::id(),
            start_time: proc_stat(std::process::id()).unwrap().1,
        };
        assert!(!is_instance_vmm(me, Path::new("/x/vmm.json")));
    }
}
