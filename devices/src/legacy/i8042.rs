//! An i8042 PS/2 controller with just enough behaviour for a guest's keyboard driver to probe
//! it, for the CPU reset command (0xfe), and for injecting Ctrl-Alt-Del (as Firecracker's
//! `SendCtrlAltDel` does), which is how the VMM asks a guest to shut down.

use super::{GuestRequest, RequestSink};
use crate::Interrupt;
use crate::bus::BusDevice;
use std::collections::VecDeque;
use std::sync::Arc;

const OFFSET_DATA: u64 = 0;
const OFFSET_COMMAND: u64 = 4;

const STATUS_OUT_FULL: u8 = 0x01;
const STATUS_SYSTEM: u8 = 0x04;
const STATUS_LAST_WAS_COMMAND: u8 = 0x08;
const STATUS_NOT_INHIBITED: u8 = 0x10;

const CTR_KBD_INT: u8 = 0x01;
const CTR_POST_OK: u8 = 0x04;

const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_KBD_TEST: u8 = 0xab;
const CMD_READ_OUTP: u8 = 0xd0;
const CMD_WRITE_OUTP: u8 = 0xd1;
const CMD_WRITE_KBD_OUT: u8 = 0xd2;
const CMD_RESET_CPU: u8 = 0xfe;

const KBD_ACK: u8 = 0xfa;
const KBD_RESET: u8 = 0xff;
const KBD_IDENTIFY: u8 = 0xf2;
const KBD_SELF_TEST_OK: u8 = 0xaa;

/// Scan code set 2 make codes: Ctrl, Alt, Del (extended).
const CTRL_ALT_DEL: [u8; 4] = [0x14, 0x11, 0xe0, 0x71];
const BUFFER_MAX: usize = 16;

/// Errors from the i8042.
#[derive(Debug, thiserror::Error)]
pub enum I8042Error {
    /// The guest has not read earlier key presses.
    #[error("i8042 output buffer full: the guest is not reading its keyboard")]
    BufferFull,
    /// Raising IRQ 1 failed.
    #[error("raising the i8042 interrupt: {0}")]
    Interrupt(#[source] std::io::Error),
}

/// The i8042 controller and its keyboard.
pub struct I8042 {
    control: u8,
    output_port: u8,
    status: u8,
    pending_command: Option<u8>,
    buffer: VecDeque<u8>,
    irq: Arc<dyn Interrupt>,
    sink: RequestSink,
}

impl I8042 {
    /// A controller raising `irq` for key presses and reporting resets to `sink`.
    pub fn new(irq: Arc<dyn Interrupt>, sink: RequestSink) -> Self {
        Self {
            control: CTR_KBD_INT | CTR_POST_OK,
            output_port: 0x01,
            status: STATUS_SYSTEM | STATUS_NOT_INHIBITED,
            pending_command: None,
            buffer: VecDeque::new(),
            irq,
            sink,
        }
    }

    /// Presses Ctrl-Alt-Del.
    pub fn send_ctrl_alt_del(&mut self) -> Result<(), I8042Error> {
        if self.buffer.len() + CTRL_ALT_DEL.len() > BUFFER_MAX {
            return Err(I8042Error::BufferFull);
        }
        for b in CTRL_ALT_DEL {
            self.push(b)?;
        }
        Ok(())
    }

    fn push(&mut self, b: u8) -> Result<(), I8042Error> {
        if self.buffer.len() >= BUFFER_MAX {
            return Err(I8042Error::BufferFull);
        }
        self.buffer.push_back(b);
        self.raise()
    }

    fn raise(&self) -> Result<(), I8042Error> {
        if self.control & CTR_KBD_INT != 0 {
            self.irq.trigger().map_err(I8042Error::Interrupt)?;
        }
        Ok(())
    }

    fn reply(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if let Err(e) = self.push(b) {
                tracing::debug!("i8042: {e}");
            }
        }
    }

    fn command(&mut self, cmd: u8) {
        match cmd {
            CMD_READ_CTR => self.reply(&[self.control]),
            CMD_WRITE_CTR | CMD_WRITE_OUTP | CMD_WRITE_KBD_OUT => self.pending_command = Some(cmd),
            CMD_SELF_TEST => self.reply(&[0x55]),
            CMD_KBD_TEST => self.reply(&[0x00]),
            CMD_READ_OUTP => self.reply(&[self.output_port]),
            CMD_RESET_CPU => (self.sink)(GuestRequest::Reset),
            // Enable/disable keyboard or aux, and the rest: nothing to model.
            _ => tracing::trace!(cmd, "i8042 command ignored"),
        }
    }

    fn data(&mut self, value: u8) {
        match self.pending_command.take() {
            Some(CMD_WRITE_CTR) => self.control = value,
            Some(CMD_WRITE_OUTP) => self.output_port = value,
            Some(CMD_WRITE_KBD_OUT) => self.reply(&[value]),
            // A byte for the keyboard itself.
            _ => match value {
                KBD_RESET => self.reply(&[KBD_ACK, KBD_SELF_TEST_OK]),
                KBD_IDENTIFY => self.reply(&[KBD_ACK, 0xab, 0x83]),
                _ => self.reply(&[KBD_ACK]),
            },
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset {
            OFFSET_DATA => {
                let b = self.buffer.pop_front().unwrap_or(0);
                if !self.buffer.is_empty()
                    && let Err(e) = self.raise()
                {
                    tracing::debug!("i8042: {e}");
                }
                b
            }
            OFFSET_COMMAND => {
                let full = if self.buffer.is_empty() {
                    0
                } else {
                    STATUS_OUT_FULL
                };
                self.status | full
            }
            _ => 0,
        };
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = value;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        match offset {
            OFFSET_COMMAND => {
                self.status |= STATUS_LAST_WAS_COMMAND;
                self.command(value);
            }
            OFFSET_DATA => {
                self.status &= !STATUS_LAST_WAS_COMMAND;
                self.data(value);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl Interrupt for Count {
        fn trigger(&self) -> std::io::Result<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn device() -> (I8042, Arc<Count>, Arc<Mutex<Vec<GuestRequest>>>) {
        let irq = Arc::new(Count::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let dev = I8042::new(irq.clone(), Arc::new(move |r| s.lock().unwrap().push(r)));
        (dev, irq, seen)
    }

    fn read(dev: &mut I8042, offset: u64) -> u8 {
        let mut b = [0u8];
        dev.read(offset, &mut b);
        b[0]
    }

    #[test]
    fn reset_command_reports_reset() {
        let (mut dev, _, seen) = device();
        dev.write(OFFSET_COMMAND, &[CMD_RESET_CPU]);
        assert_eq!(*seen.lock().unwrap(), vec![GuestRequest::Reset]);
    }

    #[test]
    fn ctrl_alt_del_is_readable_with_interrupts() {
        let (mut dev, irq, _) = device();
        dev.send_ctrl_alt_del().unwrap();
        assert!(irq.0.load(Ordering::SeqCst) >= 4);
        let mut got = Vec::new();
        while read(&mut dev, OFFSET_COMMAND) & STATUS_OUT_FULL != 0 {
            got.push(read(&mut dev, OFFSET_DATA));
        }
        assert_eq!(got, CTRL_ALT_DEL);
        for _ in 0..BUFFER_MAX / 4 {
            dev.send_ctrl_alt_del().unwrap();
        }
        assert!(matches!(
            dev.send_ctrl_alt_del(),
            Err(I8042Error::BufferFull)
        ));
    }

    #[test]
    fn probe_sequence_answers() {
        let (mut dev, _, _) = device();
        dev.write(OFFSET_COMMAND, &[CMD_SELF_TEST]);
        assert_eq!(read(&mut dev, OFFSET_DATA), 0x55);
        dev.write(OFFSET_COMMAND, &[CMD_WRITE_CTR]);
        dev.write(OFFSET_DATA, &[0x45]);
        dev.write(OFFSET_COMMAND, &[CMD_READ_CTR]);
        assert_eq!(read(&mut dev, OFFSET_DATA), 0x45);
        dev.write(OFFSET_DATA, &[KBD_RESET]);
        assert_eq!(read(&mut dev, OFFSET_DATA), KBD_ACK);
        assert_eq!(read(&mut dev, OFFSET_DATA), KBD_SELF_TEST_OK);
    }
}
