//! One instance's directory on the host and the small record the agent keeps in it, so that a
//! restarted daemon knows everything a running or stopped instance needs.

use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Unix socket paths (`sun_path`) hold at most 107 bytes and a NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// The files of `<instances_dir>/<uuid>/`.
#[derive(Clone, Debug)]
pub struct InstanceDir {
    root: PathBuf,
}

impl InstanceDir {
    /// The directory of instance `id` under `instances_dir` (which should be absolute).
    pub fn new(instances_dir: &Path, id: Uuid) -> Self {
        Self {
            root: instances_dir.join(id.to_string()),
        }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }
    /// The agent's record ([`InstanceRecord`]).
    pub fn record(&self) -> PathBuf {
        self.root.join("instance.json")
    }
    /// The VMM's JSON config (`vmm_contract::config::VmConfig`).
    pub fn vmm_config(&self) -> PathBuf {
        self.root.join("vmm.json")
    }
    /// The guest's serial console (appended to across boots).
    pub fn console(&self) -> PathBuf {
        self.root.join("console.log")
    }
    /// The VMM's control socket.
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }
    /// `<pid> <start time>` of the running VMM.
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("vmm.pid")
    }
    /// The VMM's stderr (its error lines), appended to across runs.
    pub fn vmm_log(&self) -> PathBuf {
        self.root.join("vmm.log")
    }
    /// How the last VMM of this instance ended, when the agent saw it end.
    pub fn exit_file(&self) -> PathBuf {
        self.root.join("exit.json")
    }
    /// The exit status and reason the VMM writes just before it exits (its
    /// `exit_status_file`): how the end of a VMM this agent cannot wait for is known.
    pub fn vmm_exit_file(&self) -> PathBuf {
        self.root.join("vmm-exit.json")
    }
    /// The config drive image (ISO 9660, label `config-2`).
    pub fn config_drive(&self) -> PathBuf {
        self.root.join("config-drive.iso")
    }
}

/// What the agent remembers about an instance beyond the VMM config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// The instance.
    pub id: Uuid,
    /// The server's name.
    pub name: String,
    /// The image its root disk comes from.
    pub image_id: Uuid,
    /// The root disk overlay (in the base cache), if the image has a disk.
    pub root_disk: Option<PathBuf>,
    /// Set when the agent itself stops the VMM (stop, destroy, hard reboot): the VMM's end is
    /// then a shutdown whatever its exit status, not a crash.
    pub stop_requested: bool,
    /// Suspended (paused with the suspend flag; see docs/compute-agent.md).
    pub suspended: bool,
}

impl InstanceRecord {
    /// Reads the record of the instance in `dir`.
    pub fn load(dir: &InstanceDir) -> io::Result<Self> {
        let text = std::fs::read(dir.record())?;
        serde_json::from_slice(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", dir.record().display()),
            )
        })
    }

    /// Writes the record into `dir`, atomically and durably.
    pub fn save(&self, dir: &InstanceDir) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        write_atomic(&dir.record(), &json, true)
    }
}

/// How a VMM process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The VMM's pid (a record of an older run is not taken for the current one).
    pub pid: u32,
    /// Exit status, when it exited.
    pub code: Option<i32>,
    /// Signal, when one killed it.
    pub signal: Option<i32>,
}

impl ExitRecord {
    /// Whether this is a clean end: exit status 0 (guest power-off or the `kill` request).
    pub fn clean(&self) -> bool {
        self.code == Some(0)
    }

    /// The exit in words, with the meaning of the VMM's exit statuses (ARCHITECTURE.md).
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => {
                let meaning = vmm_contract::exit_status::meaning(code).unwrap_or("unknown status");
                format!("virga-vmm exited with status {code} ({meaning})")
            }
            (None, Some(sig)) => format!("virga-vmm was killed by signal {sig} ({})", signame(sig)),
            (None, None) => "virga-vmm ended, exit status unknown".to_owned(),
        }
    }

    /// Reads the record in `dir`, if there is one.
    pub fn load(dir: &InstanceDir) -> Option<Self> {
        let text = std::fs::read(dir.exit_file()).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Writes the record into `dir`, atomically.
    pub fn save(&self, dir: &InstanceDir) -> io::Result<()> {
        let json = serde_json::to_vec(self).map_err(io::Error::other)?;
        write_atomic(&dir.exit_file(), &json, false)
    }
}

fn signame(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGILL => "SIGILL",
        libc::SIGPIPE => "SIGPIPE",
        _ => "signal",
    }
}

/// Writes `bytes` to a temporary file beside `path` and renames it over `path`, so readers
/// see the old or the new content, never a part. `durable` also syncs the data first (files
/// a host needs after a power loss: the VMM config and the record); pid and exit files die
/// with the processes they describe and skip the sync (a few ms each on a busy disk).
pub fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_data()?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The last `max` lines of `text` (all of it when it has fewer).
pub fn last_lines(text: &str, max: usize) -> &str {
    let trimmed = text.trim_end_matches('\n');
    let start = trimmed
        .rmatch_indices('\n')
        .nth(max.saturating_sub(1))
        .map_or(0, |(i, _)| i + 1);
    if max == 0 { "" } else { &text[start..] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_counts_from_the_end() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("a\nb\nc", 2), "b\nc");
        assert_eq!(last_lines("a\nb\n", 5), "a\nb\n");
        assert_eq!(last_lines("a\nb\n", 0), "");
        assert_eq!(last_lines("", 3), "");
    }

    #[test]
    fn exit_descriptions_name_the_cause() {
        let e = |code, signal| ExitRecord {
            pid: 1,
            code,
            signal,
        };
        assert!(e(Some(0), None).clean());
        assert!(e(Some(4), None).describe().contains("guest panic"));
        assert!(e(None, Some(9)).describe().contains("SIGKILL"));
        assert!(!e(None, Some(9)).clean());
    }

    #[test]
    fn records_round_trip_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = InstanceDir::new(tmp.path(), Uuid::new_v4());
        std::fs::create_dir(dir.path()).unwrap();
        let rec = InstanceRecord {
            id: Uuid::new_v4(),
            name: "vm1".into(),
            image_id: Uuid::new_v4(),
            root_disk: None,
            stop_requested: false,
            suspended: true,
        };
        rec.save(&dir).unwrap();
        assert_eq!(InstanceRecord::load(&dir).unwrap(), rec);
        std::fs::write(dir.record(), b"{").unwrap();
        assert!(InstanceRecord::load(&dir).is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
    }
}
