//! The device/event thread: one epoll loop (event-manager) over serial input and the virtio
//! devices (their queue eventfds, which KVM signals as ioeventfds, and taps).

use crate::legacy_devices::{SerialInput, SocketOut};
use devices::legacy::Serial;
use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use locks::Unpoisoned;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use vmm_sys_util::epoll::EventSet;

/// What the event thread serves.
pub type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// Starts the event thread for `input` and `devices` (no thread when there is nothing to
/// watch).
pub fn spawn(
    input: SerialInput,
    serial: Arc<Mutex<Serial>>,
    devices: Vec<Subscriber>,
) -> std::io::Result<()> {
    let serial_sub: Option<Subscriber> = match input {
        SerialInput::None => None,
        SerialInput::Stdin if !stdin_pollable() => None,
        SerialInput::Stdin => Some(Arc::new(Mutex::new(StdinInput { serial }))),
        SerialInput::Socket(listener, out) => Some(Arc::new(Mutex::new(SocketInput {
            listener,
            out,
            client: None,
            serial,
        }))),
    };
    if serial_sub.is_none() && devices.is_empty() {
        return Ok(());
    }
    let mut em: EventManager<Subscriber> = EventManager::new().map_err(std::io::Error::other)?;
    for sub in serial_sub.into_iter().chain(devices) {
        em.add_subscriber(sub);
    }
    std::thread::Builder::new()
        .name("virga-events".into())
        .spawn(move || {
            loop {
                if let Err(e) = em.run() {
                    tracing::warn!("event loop: {e:?}");
                    return;
                }
            }
        })?;
    Ok(())
}

/// Whether epoll can watch stdin: not a regular file, not /dev/null (as under CI or a bench).
fn stdin_pollable() -> bool {
    // SAFETY: `stat` is plain old data, for which all-zero bytes are a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes only into `st`; fd 0 may be closed, which fstat reports.
    if unsafe { libc::fstat(0, &mut st) } != 0 {
        return false;
    }
    let kind = st.st_mode & libc::S_IFMT;
    let dev_null = kind == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3);
    kind != libc::S_IFREG && kind != libc::S_IFDIR && !dev_null
}

fn feed(serial: &Mutex<Serial>, bytes: &[u8]) {
    let dropped = serial.lock().unpoisoned().queue_input(bytes);
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "serial input dropped: the guest is not reading its console"
        );
    }
}

struct StdinInput {
    serial: Arc<Mutex<Serial>>,
}

impl MutEventSubscriber for StdinInput {
    fn init(&mut self, ops: &mut EventOps) {
        // epoll refuses regular files and /dev/null: then there is simply no console input.
        if let Err(e) = ops.add(Events::new(&std::io::stdin(), EventSet::IN)) {
            tracing::debug!("stdin not watched: {e:?}");
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let mut buf = [0u8; 4096];
        let n = if events.event_set().contains(EventSet::IN) {
            std::io::stdin().lock().read(&mut buf).unwrap_or(0)
        } else {
            0
        };
        if n == 0 {
            // EOF or hang-up: stop watching, or epoll would report it forever.
            let _ = ops.remove(Events::empty(&std::io::stdin()));
            return;
        }
        feed(&self.serial, &buf[..n]);
    }
}

struct SocketInput {
    listener: UnixListener,
    out: SocketOut,
    client: Option<UnixStream>,
    serial: Arc<Mutex<Serial>>,
}

impl SocketInput {
    fn drop_client(&mut self, ops: &mut EventOps) {
        if let Some(c) = self.client.take() {
            let _ = ops.remove(Events::empty(&c));
        }
        *self.out.0.lock().unpoisoned() = None;
    }
}

impl MutEventSubscriber for SocketInput {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.listener, EventSet::IN)) {
            tracing::warn!("serial socket not watched: {e:?}");
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if events.fd() == self.listener.as_raw_fd() {
            let Ok((stream, _)) = self.listener.accept() else {
                return;
            };
            // The newest client takes the console over.
            self.drop_client(ops);
            let copy = stream
                .try_clone()
                .and_then(|c| c.set_nonblocking(true).map(|_| c));
            match (copy, ops.add(Events::new(&stream, EventSet::IN))) {
                (Ok(out), Ok(())) => {
                    *self.out.0.lock().unpoisoned() = Some(out);
                    self.client = Some(stream);
                }
                (a, b) => {
                    tracing::warn!("serial socket client refused: {:?} {:?}", a.err(), b.err())
                }
            }
            return;
        }
        let mut buf = [0u8; 4096];
        let n = match self.client.as_mut() {
            Some(c) if events.event_set().contains(EventSet::IN) => c.read(&mut buf).unwrap_or(0),
            _ => 0,
        };
        if n == 0 {
            self.drop_client(ops);
            return;
        }
        feed(&self.serial, &buf[..n]);
    }
}
