//! The VM's virtio devices: built once per process from the config (drives, NICs, balloon,
//! rng, in that slot order), put on each (re)booted VM's MMIO bus with their ioeventfds and
//! irqfds, and served by the event thread. The control socket reaches them through here.

use crate::config::{DriveConfig, DriveFormat, NetConfig, VmConfig};
use crate::control::{BalloonInfo, DeviceCounters, GuestMemoryStats};
use devices::bus::{Bus, BusError};
use devices::virtio::balloon::{Balloon, BalloonConfig, MadviseReleaser};
use devices::virtio::block::{Block, BlockConfig};
use devices::virtio::mmio::{MMIO_WINDOW, MmioTransport};
use devices::virtio::net::{self, Net, Tap};
use devices::virtio::rng::Rng;
use devices::virtio::{Counters, EventFdInterrupt, VirtioDevice};
use disk::{BlockBackend, Format, OpenOptions};
use event_manager::MutEventSubscriber;
use kvm_ioctls::{IoEventAddress, VmFd};
use locks::Unpoisoned;
use std::collections::BTreeMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

/// Slot 0's registers (ARCHITECTURE.md: `0xd000_0000 + n * 0x1000`, GSI [`slot_gsi`]).
pub const MMIO_BASE: u64 = 0xd000_0000;
/// Slot 0's interrupt line.
pub const FIRST_IRQ: u32 = 5;

/// Slot `n`'s GSI: IOAPIC pins 5-23 in order, skipping the ACPI SCI's (9).
pub fn slot_gsi(n: usize) -> u32 {
    let gsi = FIRST_IRQ + n as u32;
    if gsi >= devices::legacy::ACPI_SCI_IRQ {
        gsi + 1
    } else {
        gsi
    }
}
/// Queue size of every device (the guest may pick a smaller one).
const QUEUE_SIZE: u16 = 256;
/// How long `balloon_stats` waits for the guest to send fresh statistics.
const STATS_WAIT: Duration = Duration::from_secs(1);

/// Errors building or wiring the virtio devices, or serving control requests for them.
#[derive(Debug, thiserror::Error)]
pub enum VirtioError {
    /// A drive's image could not be opened.
    #[error("drive {id}: {source}")]
    Disk { id: String, source: disk::OpenError },
    /// A drive's backing file lies outside its trusted directories (or is otherwise refused).
    #[error("drive {id}: {source} (backing_dirs: {dirs})")]
    Backing {
        id: String,
        source: Box<disk::OpenError>,
        /// The directories, listed.
        dirs: String,
    },
    /// A block device could not be built.
    #[error("drive {id}: {source}")]
    Block {
        id: String,
        source: devices::virtio::block::BlockError,
    },
    /// The tap could not be opened or checked.
    #[error("net {id}: {source}")]
    Tap { id: String, source: net::TapError },
    /// An inherited tap fd is not open.
    #[error("net {id}: tap_fd {fd} is not an open file descriptor")]
    TapFd { id: String, fd: i32 },
    /// A NIC could not be built.
    #[error("net {id}: {source}")]
    Net { id: String, source: net::NetError },
    /// The balloon could not be built or asked something.
    #[error("balloon: {0}")]
    Balloon(#[from] devices::virtio::balloon::BalloonError),
    /// The rng could not be built.
    #[error("rng: {0}")]
    Rng(#[from] devices::virtio::rng::RngError),
    /// A bad device option (from the config).
    #[error(transparent)]
    Config(#[from] crate::config::DeviceConfigError),
    /// An eventfd could not be created or duplicated.
    #[error("{what}: creating an eventfd: {source}")]
    EventFd {
        what: String,
        source: std::io::Error,
    },
    /// The transport refused the device (a bug in a device model).
    #[error("{id}: virtio-mmio transport: {source}")]
    Transport {
        id: String,
        source: devices::virtio::mmio::MmioError,
    },
    /// Two MMIO ranges overlap (a bug).
    #[error("placing virtio slot {slot}: {source}")]
    Bus { slot: usize, source: BusError },
    /// KVM refused an ioeventfd or irqfd.
    #[error("{id}: registering the {what} with KVM: {source}")]
    Kvm {
        id: String,
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    /// A control request names a device this VM does not have.
    #[error("{0}")]
    NoSuchDevice(String),
    /// A balloon target above the guest's memory.
    #[error("balloon target {target} MiB exceeds the guest's {memory} MiB")]
    BalloonTarget { target: u64, memory: u64 },
    /// `flush` failed on some drives (each named with its error; the others were flushed).
    #[error("flush failed: {}", .0.join("; "))]
    Flush(Vec<String>),
}

type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// One virtio-mmio slot.
struct Slot {
    id: String,
    kind: &'static str,
    device: Arc<Mutex<dyn VirtioDevice>>,
    subscriber: Subscriber,
    irq: EventFd,
    counters: Arc<Counters>,
}

/// One drive: its config, its device, and the back end the device serves now (the device
/// does not hand it out; `flush` needs it).
struct Drive {
    cfg: DriveConfig,
    blk: Arc<Mutex<Block>>,
    /// The image file and its back end.
    backend: Mutex<(PathBuf, Arc<dyn BlockBackend>)>,
}

/// Every virtio device of the VM.
pub struct VirtioDevices {
    slots: Vec<Slot>,
    drives: Vec<Drive>,
    balloon: Option<Arc<Mutex<Balloon>>>,
    memory_mib: u64,
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unpoisoned()
}

/// Opens a drive image: the configured format (or probed), qcow2 backing files followed only
/// into `backing_dirs` (a guest cannot write a qcow2 header, it sees only the virtual disk; the
/// limit is against a config or an image file that points somewhere it should not).
pub fn open_drive(
    path: &Path,
    format: Option<DriveFormat>,
    read_only: bool,
    backing_dirs: &[PathBuf],
) -> Result<Arc<dyn BlockBackend>, disk::OpenError> {
    let mut opts = OpenOptions::new().read_only(read_only);
    opts.trusted_backing_dirs = backing_dirs.to_vec();
    opts.format = format.map(|f| match f {
        DriveFormat::Raw => Format::Raw,
        DriveFormat::Qcow2 => Format::Qcow2,
    });
    Ok(Arc::from(disk::open_disk(path, &opts)?))
}

/// Opens `path` for drive `d` (its own image, or a `drive_update` one), naming the drive and,
/// for a refused backing file, the directories it may be in.
fn open(
    d: &DriveConfig,
    path: &Path,
    format: Option<DriveFormat>,
) -> Result<Arc<dyn BlockBackend>, VirtioError> {
    let dirs = d.trusted_backing_dirs(path);
    open_drive(path, format, d.read_only, &dirs).map_err(|source| match source {
        disk::OpenError::Backing { .. } => VirtioError::Backing {
            id: d.id.clone(),
            source: Box::new(source),
            dirs: if dirs.is_empty() {
                "none".to_owned()
            } else {
                dirs.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        },
        source => VirtioError::Disk {
            id: d.id.clone(),
            source,
        },
    })
}

/// The balloon's statistics in the control protocol's form (the same fields: the device's
/// type carries no serde, the protocol's no parsing).
fn wire_stats(s: devices::virtio::balloon::GuestMemoryStats) -> GuestMemoryStats {
    GuestMemoryStats {
        swap_in: s.swap_in,
        swap_out: s.swap_out,
        major_faults: s.major_faults,
        minor_faults: s.minor_faults,
        free_memory: s.free_memory,
        total_memory: s.total_memory,
        available_memory: s.available_memory,
        disk_caches: s.disk_caches,
        hugetlb_allocations: s.hugetlb_allocations,
        hugetlb_failures: s.hugetlb_failures,
    }
}

fn open_tap(n: &NetConfig) -> Result<Tap, VirtioError> {
    let tap_err = |source| VirtioError::Tap {
        id: n.id.clone(),
        source,
    };
    match (&n.tap, n.tap_fd) {
        (Some(name), _) => Tap::open(name).map_err(tap_err),
        (None, Some(fd)) => {
            // SAFETY: F_GETFD only queries the descriptor table.
            if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                return Err(VirtioError::TapFd {
                    id: n.id.clone(),
                    fd,
                });
            }
            // SAFETY: the fd is open (checked above) and the config hands it to this VMM for
            // this NIC: from here on the NIC owns it and closes it. (Two NICs given one fd is
            // refused by `config::devices::validate`.)
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            Tap::from_fd(owned).map_err(tap_err)
        }
        (None, None) => Err(crate::config::DeviceConfigError::TapChoice(n.id.clone()).into()),
    }
}

impl VirtioDevices {
    /// Builds the devices `cfg` asks for (opening images and taps).
    pub fn new(cfg: &VmConfig) -> Result<Self, VirtioError> {
        let mut this = Self {
            slots: Vec::new(),
            drives: Vec::new(),
            balloon: None,
            memory_mib: cfg.memory_mib,
        };
        for d in &cfg.drives {
            let backend = open(d, &d.path, d.format)?;
            let config = BlockConfig {
                serial: d.guest_serial(),
                read_only: d.read_only,
                ..BlockConfig::default()
            };
            let blk = Arc::new(Mutex::new(Block::new(backend.clone(), config).map_err(
                |source| VirtioError::Block {
                    id: d.id.clone(),
                    source,
                },
            )?));
            this.drives.push(Drive {
                cfg: d.clone(),
                blk: blk.clone(),
                backend: Mutex::new((d.path.clone(), backend)),
            });
            this.push(&d.id, "blk", blk)?;
        }
        for n in &cfg.nets {
            let tap = open_tap(n)?;
            let config = net::NetConfig {
                mac: n.parsed_mac()?.map(net::MacAddr),
                queue_size: QUEUE_SIZE,
            };
            let nic = Net::new(Box::new(tap), config).map_err(|source| VirtioError::Net {
                id: n.id.clone(),
                source,
            })?;
            tracing::info!(id = %n.id, mac = %nic.mac(), "virtio-net");
            this.push(&n.id, "net", Arc::new(Mutex::new(nic)))?;
        }
        if let Some(b) = cfg.balloon {
            let config = BalloonConfig {
                stats: true,
                deflate_on_oom: b.deflate_on_oom,
                free_page_reporting: b.free_page_reporting,
                queue_size: QUEUE_SIZE,
            };
            let balloon = Arc::new(Mutex::new(Balloon::new(config, Arc::new(MadviseReleaser))?));
            this.balloon = Some(balloon.clone());
            this.push("balloon0", "balloon", balloon)?;
        }
        if cfg.rng {
            this.push("rng0", "rng", Arc::new(Mutex::new(Rng::new(QUEUE_SIZE)?)))?;
        }
        Ok(this)
    }

    fn push<D>(
        &mut self,
        id: &str,
        kind: &'static str,
        dev: Arc<Mutex<D>>,
    ) -> Result<(), VirtioError>
    where
        D: VirtioDevice + MutEventSubscriber + 'static,
    {
        let irq = EventFd::new(EFD_NONBLOCK).map_err(|source| VirtioError::EventFd {
            what: id.to_owned(),
            source,
        })?;
        let counters = lock(&dev).counters();
        self.slots.push(Slot {
            id: id.to_owned(),
            kind,
            device: dev.clone(),
            subscriber: dev,
            irq,
            counters,
        });
        Ok(())
    }

    /// True when there are no devices.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Registers base and IRQ of each slot, in slot order.
    pub fn placements(&self) -> Vec<(u64, u32)> {
        (0..self.slots.len())
            .map(|n| (MMIO_BASE + n as u64 * MMIO_WINDOW, slot_gsi(n)))
            .collect()
    }

    /// The event-thread subscribers (one per device; their queue eventfds outlive VM resets).
    pub fn subscribers(&self) -> Vec<Subscriber> {
        self.slots.iter().map(|s| s.subscriber.clone()).collect()
    }

    /// Puts every device on `bus` for a freshly built VM: transports over its memory, queue
    /// notifications as ioeventfds, interrupts as irqfds. Devices are reset first (a guest
    /// reset must not leave them serving the old VM's memory).
    pub fn attach(
        &self,
        vm: &VmFd,
        mem: &GuestMemoryMmap,
        bus: &mut Bus,
    ) -> Result<(), VirtioError> {
        for (n, ((base, gsi), slot)) in self.placements().into_iter().zip(&self.slots).enumerate() {
            {
                let mut d = lock(&slot.device);
                if d.is_activated() {
                    d.reset();
                }
            }
            let evt = slot
                .irq
                .try_clone()
                .map_err(|source| VirtioError::EventFd {
                    what: slot.id.clone(),
                    source,
                })?;
            let transport = MmioTransport::new(
                mem.clone(),
                slot.device.clone(),
                Arc::new(EventFdInterrupt::new(evt)),
            )
            .map_err(|source| VirtioError::Transport {
                id: slot.id.clone(),
                source,
            })?;
            let kvm_err = |what| {
                let id = slot.id.clone();
                move |source| VirtioError::Kvm { id, what, source }
            };
            for (offset, datamatch, fd) in
                transport
                    .ioevents()
                    .map_err(|source| VirtioError::Transport {
                        id: slot.id.clone(),
                        source,
                    })?
            {
                vm.register_ioevent(&fd, &IoEventAddress::Mmio(base + offset), datamatch)
                    .map_err(kvm_err("ioeventfd"))?;
            }
            vm.register_irqfd(&slot.irq, gsi)
                .map_err(kvm_err("irqfd"))?;
            bus.insert(Arc::new(Mutex::new(transport)), base, MMIO_WINDOW)
                .map_err(|source| VirtioError::Bus { slot: n, source })?;
        }
        Ok(())
    }

    /// `counters`: every device's counters by id.
    pub fn counters(&self) -> BTreeMap<String, DeviceCounters> {
        self.slots
            .iter()
            .map(|s| {
                let c = s.counters.snapshot();
                let v = DeviceCounters {
                    kind: s.kind.to_owned(),
                    requests: c.requests,
                    bytes_to_guest: c.bytes_to_guest,
                    bytes_from_guest: c.bytes_from_guest,
                    errors: c.errors,
                };
                (s.id.clone(), v)
            })
            .collect()
    }

    fn balloon(&self) -> Result<&Arc<Mutex<Balloon>>, VirtioError> {
        self.balloon
            .as_ref()
            .ok_or_else(|| VirtioError::NoSuchDevice("this VM has no balloon".into()))
    }

    /// `balloon_set`: asks the guest to hold `target_mib`.
    pub fn balloon_set(&self, target_mib: u64) -> Result<(), VirtioError> {
        let b = self.balloon()?;
        if target_mib > self.memory_mib {
            return Err(VirtioError::BalloonTarget {
                target: target_mib,
                memory: self.memory_mib,
            });
        }
        // 256 pages of 4 KiB per MiB; memory_mib fits u32 pages for any host RAM we accept
        // below 16 TiB.
        let pages = u32::try_from(target_mib * 256).unwrap_or(u32::MAX);
        lock(b).set_target(pages);
        Ok(())
    }

    /// `balloon_stats`: asks for fresh statistics, waits up to a second, reports.
    pub fn balloon_stats(&self) -> Result<BalloonInfo, VirtioError> {
        let b = self.balloon()?;
        let before = lock(b).status().pages.stats_updates;
        let asked = lock(b).request_stats();
        if asked.is_ok() {
            let deadline = Instant::now() + STATS_WAIT;
            while lock(b).status().pages.stats_updates == before && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        } else if let Err(e) = &asked {
            tracing::debug!("balloon stats not requested: {e}");
        }
        let s = lock(b).status();
        Ok(BalloonInfo {
            target_mib: u64::from(s.target_pages) / 256,
            actual_pages: s.actual_pages.into(),
            inflated_pages: s.pages.inflated,
            reported_bytes: s.pages.reported_bytes,
            errors: s.pages.errors,
            stats: s.stats.map(wire_stats),
        })
    }

    /// `drive_update`: opens `path` (format probed, the drive's read-only flag kept) and swaps
    /// it in behind drive `id`.
    pub fn drive_update(&self, id: &str, path: &Path) -> Result<(), VirtioError> {
        let drive = self
            .drives
            .iter()
            .find(|d| d.cfg.id == id)
            .ok_or_else(|| VirtioError::NoSuchDevice(format!("no drive {id:?}")))?;
        let backend = open(&drive.cfg, path, None)?;
        // Device lock first, then ours (as in `flush_drives`): the two never disagree.
        let mut blk = lock(&drive.blk);
        blk.set_backend(backend.clone());
        *lock(&drive.backend) = (path.to_owned(), backend);
        Ok(())
    }

    /// `flush`: makes every writable drive durable (data and the format's cached metadata).
    /// Each drive's device lock is held meanwhile, so a request batch the event thread is
    /// serving finishes first and none starts until the flush is done. Every drive is tried;
    /// the failures are reported together, each naming its drive.
    pub fn flush_drives(&self) -> Result<(), VirtioError> {
        let mut failed = Vec::new();
        for d in &self.drives {
            let _serving = lock(&d.blk);
            let (path, backend) = lock(&d.backend).clone();
            if backend.read_only() {
                continue;
            }
            if let Err(e) = backend.flush() {
                tracing::warn!(drive = %d.cfg.id, "flush: {e}");
                failed.push(format!("drive {} ({}): {e}", d.cfg.id, path.display()));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(VirtioError::Flush(failed))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BalloonConfig as BalloonOpts, DriveConfig};

    fn config(dir: &Path) -> VmConfig {
        let disk = dir.join("d.raw");
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let mut c = VmConfig::new("/k".into());
        c.memory_mib = 64;
        c.drives = vec![DriveConfig {
            id: "root".into(),
            path: disk,
            format: None,
            read_only: false,
            serial: None,
            backing_dirs: None,
        }];
        c.balloon = Some(BalloonOpts::default());
        c.rng = true;
        c
    }

    #[test]
    fn slots_in_order_with_counters_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let v = VirtioDevices::new(&config(dir.path())).unwrap();
        assert_eq!(
            v.placements(),
            vec![(0xd000_0000, 5), (0xd000_1000, 6), (0xd000_2000, 7)]
        );
        let kinds: Vec<_> = v
            .counters()
            .into_iter()
            .map(|(id, c)| (id, c.kind))
            .collect();
        assert_eq!(
            kinds,
            [("balloon0", "balloon"), ("rng0", "rng"), ("root", "blk")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(v.subscribers().len(), 3);
    }

    #[test]
    fn control_requests_check_their_input() {
        let dir = tempfile::tempdir().unwrap();
        let v = VirtioDevices::new(&config(dir.path())).unwrap();
        assert!(matches!(
            v.balloon_set(65),
            Err(VirtioError::BalloonTarget {
                target: 65,
                memory: 64
            })
        ));
        v.balloon_set(16).unwrap();
        // Not started by a driver: the status comes back at once, without statistics.
        let b = v.balloon_stats().unwrap();
        assert_eq!((b.target_mib, b.actual_pages, b.stats), (16, 0, None));
        assert!(matches!(
            v.drive_update("nope", dir.path()),
            Err(VirtioError::NoSuchDevice(_))
        ));
        let e = v
            .drive_update("root", &dir.path().join("missing"))
            .unwrap_err();
        assert!(e.to_string().starts_with("drive root: "), "{e}");
        let other = dir.path().join("other.raw");
        std::fs::File::create(&other)
            .unwrap()
            .set_len(2 << 20)
            .unwrap();
        v.drive_update("root", &other).unwrap();
        v.flush_drives().unwrap();
    }

    #[test]
    fn a_missing_disk_names_the_drive() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        c.drives[0].path = dir.path().join("gone.qcow2");
        let e = VirtioDevices::new(&c).err().unwrap().to_string();
        assert!(
            e.starts_with("drive root: ") && e.contains("gone.qcow2"),
            "{e}"
        );
    }
}
