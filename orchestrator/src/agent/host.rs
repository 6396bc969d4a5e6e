//! This host's name and capacity, read from the kernel.

use crate::compute::driver::HostInfo;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Name and capacity; `name` overrides the kernel's host name; disk is the file system
/// holding `instances_dir`.
pub fn host_info(name: Option<&str>, instances_dir: &Path) -> HostInfo {
    let hostname = name.map(str::to_owned).unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "localhost".to_owned())
    });
    // SAFETY: sysconf only reads system configuration.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    HostInfo {
        hostname,
        vcpus: u32::try_from(cpus).unwrap_or(1).max(1),
        memory_mib: mem_total_mib().unwrap_or(0),
        disk_gb: disk_gb(instances_dir).unwrap_or(0),
    }
}

fn mem_total_mib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn disk_gb(dir: &Path) -> Option<u64> {
    let path = CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain data; zeroed is a valid value for the call to fill.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` outlives the call.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_blocks as u64).saturating_mul(st.f_frsize as u64) >> 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_read_from_the_host() {
        let h = host_info(None, Path::new("/"));
        assert!(!h.hostname.is_empty());
        assert!(h.vcpus >= 1 && h.memory_mib > 0 && h.disk_gb > 0, "{h:?}");
        assert_eq!(host_info(Some("cn1"), Path::new("/")).hostname, "cn1");
    }
}
