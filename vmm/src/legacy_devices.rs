//! The legacy devices on the port I/O bus, their interrupt lines (irqfds), and the serial
//! console's back end: stdout, a file, or a unix socket, with input from stdin or the socket.

use crate::config::SerialConfig;
use devices::Interrupt;
use devices::bus::{Bus, BusError, SharedDevice};
use devices::legacy::{self, AcpiPm, BootProgress, I8042, PvPanic, RequestSink, Serial};
use kvm_ioctls::VmFd;
use locks::Unpoisoned;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

/// Errors building the devices.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// An eventfd could not be created.
    #[error("creating an eventfd: {0}")]
    EventFd(std::io::Error),
    /// Two devices claim the same ports (a bug).
    #[error("placing a device: {0}")]
    Bus(#[from] BusError),
    /// The serial output file could not be opened.
    #[error("serial file {path}: {source}")]
    SerialFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The serial socket could not be created.
    #[error("serial socket {path}: {source}")]
    SerialSocket {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Registering an irqfd failed.
    #[error("registering the irqfd for GSI {gsi}: {source}")]
    Irqfd { gsi: u32, source: kvm_ioctls::Error },
}

/// An interrupt line backed by an eventfd that KVM listens to (irqfd).
pub struct IrqLine {
    evt: EventFd,
    gsi: u32,
}

impl IrqLine {
    fn new(gsi: u32) -> Result<Self, DeviceError> {
        Ok(Self {
            evt: EventFd::new(EFD_NONBLOCK).map_err(DeviceError::EventFd)?,
            gsi,
        })
    }
}

impl Interrupt for IrqLine {
    fn trigger(&self) -> std::io::Result<()> {
        self.evt.write(1)
    }
}

/// Output to a unix-socket client, if one is connected; dropped otherwise (a console).
#[derive(Clone, Default)]
pub struct SocketOut(pub Arc<Mutex<Option<UnixStream>>>);

impl Write for SocketOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut g = self.0.lock().unpoisoned();
        if let Some(s) = g.as_mut() {
            match s.write(buf) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => *g = None,
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where serial input comes from, for the event thread.
pub enum SerialInput {
    /// Standard input.
    Stdin,
    /// Clients of a listening socket; output goes to the latest one.
    Socket(UnixListener, SocketOut),
    /// No input.
    None,
}

/// The legacy devices, alive for the whole process (across guest resets).
pub struct Legacy {
    /// COM1.
    pub serial: Arc<Mutex<Serial>>,
    /// The i8042 (for Ctrl-Alt-Del).
    pub i8042: Arc<Mutex<I8042>>,
    /// Boot-progress marks.
    pub progress: BootProgress,
    /// The port I/O bus.
    pub pio: Arc<Bus>,
    irqs: Vec<Arc<IrqLine>>,
}

impl Legacy {
    /// Builds the devices; returns them and the serial input source for the event thread.
    pub fn new(
        serial: &SerialConfig,
        sink: RequestSink,
        start: Instant,
    ) -> Result<(Self, SerialInput), DeviceError> {
        let (out, input): (Box<dyn Write + Send>, SerialInput) = match serial {
            SerialConfig::Stdout => (Box::new(std::io::stdout()), SerialInput::Stdin),
            SerialConfig::None => (Box::new(std::io::sink()), SerialInput::None),
            SerialConfig::File(path) => {
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| DeviceError::SerialFile {
                        path: path.clone(),
                        source,
                    })?;
                (Box::new(f), SerialInput::None)
            }
            SerialConfig::Socket(path) => {
                let fail = |source| DeviceError::SerialSocket {
                    path: path.clone(),
                    source,
                };
                let listener = UnixListener::bind(path).map_err(fail)?;
                listener.set_nonblocking(true).map_err(fail)?;
                let out = SocketOut::default();
                (Box::new(out.clone()), SerialInput::Socket(listener, out))
            }
        };
        let com1_irq = Arc::new(IrqLine::new(legacy::COM1_IRQ)?);
        let kbd_irq = Arc::new(IrqLine::new(legacy::I8042_IRQ)?);
        let serial = Arc::new(Mutex::new(Serial::new(com1_irq.clone(), out)));
        let i8042 = Arc::new(Mutex::new(I8042::new(kbd_irq.clone(), sink.clone())));
        let progress = BootProgress::new(start);

        let mut pio = Bus::new();
        pio.insert(
            serial.clone(),
            legacy::COM1_BASE.into(),
            legacy::COM1_LEN.into(),
        )?;
        pio.insert(
            i8042.clone(),
            legacy::I8042_BASE.into(),
            legacy::I8042_LEN.into(),
        )?;
        pio.insert(
            shared(progress.clone()),
            legacy::BOOT_PROGRESS_PORT.into(),
            1,
        )?;
        pio.insert(
            shared(PvPanic::new(sink.clone())),
            legacy::PVPANIC_PORT.into(),
            1,
        )?;
        pio.insert(
            shared(AcpiPm::new(sink)),
            legacy::ACPI_PM_BASE.into(),
            legacy::acpi_pm::LEN,
        )?;
        let legacy = Self {
            serial,
            i8042,
            progress,
            pio: Arc::new(pio),
            irqs: vec![com1_irq, kbd_irq],
        };
        Ok((legacy, input))
    }

    /// Connects the interrupt lines to a (new) VM.
    pub fn register_irqs(&self, vm: &VmFd) -> Result<(), DeviceError> {
        for irq in &self.irqs {
            vm.register_irqfd(&irq.evt, irq.gsi)
                .map_err(|source| DeviceError::Irqfd {
                    gsi: irq.gsi,
                    source,
                })?;
        }
        Ok(())
    }

    /// Power-on state for a guest reset.
    pub fn reset(&self) {
        self.serial.lock().unpoisoned().reset();
    }
}

fn shared<D: devices::bus::BusDevice + 'static>(d: D) -> SharedDevice {
    Arc::new(Mutex::new(d))
}

/// Removes a socket file this process created.
pub fn remove_socket(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::debug!("removing {}: {e}", path.display());
    }
}
