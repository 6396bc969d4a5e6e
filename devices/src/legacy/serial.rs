//! COM1: vm-superio's 16550 plus an input queue, so that a long line typed on the console
//! waits for the guest to drain the 64-byte FIFO instead of being cut.

use crate::Interrupt;
use crate::bus::BusDevice;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;
use vm_superio::serial::NoEvents;
use vm_superio::{Serial as Uart, Trigger};

/// Input bytes held back while the FIFO is full; beyond this, input is dropped.
const PENDING_MAX: usize = 64 * 1024;
const DATA_OFFSET: u8 = 0;

/// Output sink of the serial port.
pub type SerialOut = Box<dyn Write + Send>;

struct Irq(Arc<dyn Interrupt>);

impl Trigger for Irq {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.trigger()
    }
}

/// A 16550 UART.
pub struct Serial {
    uart: Option<Uart<Irq, NoEvents, SerialOut>>,
    irq: Arc<dyn Interrupt>,
    pending: VecDeque<u8>,
}

impl Serial {
    /// A UART raising `irq` and writing guest output to `out`.
    pub fn new(irq: Arc<dyn Interrupt>, out: SerialOut) -> Self {
        Self {
            uart: Some(Uart::new(Irq(irq.clone()), out)),
            irq,
            pending: VecDeque::new(),
        }
    }

    /// Back to power-on state (guest reset), keeping the output and queued input.
    pub fn reset(&mut self) {
        if let Some(old) = self.uart.take() {
            self.uart = Some(Uart::new(Irq(self.irq.clone()), old.into_writer()));
        }
    }

    /// Queues bytes for the guest; returns how many were dropped because too much is pending.
    pub fn queue_input(&mut self, bytes: &[u8]) -> usize {
        let room = PENDING_MAX.saturating_sub(self.pending.len());
        let take = bytes.len().min(room);
        self.pending.extend(&bytes[..take]);
        self.fill_fifo();
        bytes.len() - take
    }

    fn fill_fifo(&mut self) {
        let Some(uart) = self.uart.as_mut() else {
            return;
        };
        while !self.pending.is_empty() && uart.fifo_capacity() > 0 {
            let (front, _) = self.pending.as_slices();
            match uart.enqueue_raw_bytes(front) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) => {
                    tracing::debug!("serial input: {e:?}");
                    break;
                }
            }
        }
    }
}

impl BusDevice for Serial {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let Some(uart) = self.uart.as_mut() else {
            return;
        };
        let value = uart.read(offset as u8);
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = value;
        }
        if offset as u8 == DATA_OFFSET {
            self.fill_fifo();
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let (Some(uart), Some(&value)) = (self.uart.as_mut(), data.first()) else {
            return;
        };
        if let Err(e) = uart.write(offset as u8, value) {
            // The guest must not stop because nobody reads its console.
            tracing::trace!("serial output: {e:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct NoIrq;
    impl Interrupt for NoIrq {
        fn trigger(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn read(s: &mut Serial, offset: u64) -> u8 {
        let mut b = [0u8];
        s.read(offset, &mut b);
        b[0]
    }

    #[test]
    fn output_reaches_the_sink() {
        let sink = Sink::default();
        let mut s = Serial::new(Arc::new(NoIrq), Box::new(sink.clone()));
        for b in b"hi\n" {
            s.write(0, &[*b]);
        }
        assert_eq!(*sink.0.lock().unwrap(), b"hi\n");
    }

    #[test]
    fn long_input_waits_for_the_fifo_to_drain() {
        let mut s = Serial::new(Arc::new(NoIrq), Box::new(std::io::sink()));
        let line: Vec<u8> = (0..200u8).collect();
        assert_eq!(s.queue_input(&line), 0);
        let mut got = Vec::new();
        while read(&mut s, 5) & 1 != 0 {
            got.push(read(&mut s, 0));
        }
        assert_eq!(got, line);
    }

    #[test]
    fn pending_input_is_bounded() {
        let mut s = Serial::new(Arc::new(NoIrq), Box::new(std::io::sink()));
        let big = vec![b'x'; PENDING_MAX + 100];
        assert_eq!(s.queue_input(&big), 100);
    }
}
