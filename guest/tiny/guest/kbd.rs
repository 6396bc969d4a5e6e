//! The i8042 keyboard as the VMM's `shutdown` uses it: Ctrl-Alt-Del arrives as scan code
//! set 2 make codes (Ctrl 0x14, Alt 0x11, Del 0xe0 0x71); break codes start with 0xf0.

use crate::io::{I8042_COMMAND, I8042_DATA, inb};

const STATUS_OUTPUT_FULL: u8 = 0x01;

/// Tracks the modifier keys held down.
#[derive(Default)]
pub struct Keyboard {
    ctrl: bool,
    alt: bool,
    extended: bool,
    release: bool,
}

impl Keyboard {
    /// Reads every pending scan code; returns true once Ctrl-Alt-Del was pressed.
    pub fn poll(&mut self) -> bool {
        let mut cad = false;
        while inb(I8042_COMMAND) & STATUS_OUTPUT_FULL != 0 {
            cad |= self.feed(inb(I8042_DATA));
        }
        cad
    }

    fn feed(&mut self, code: u8) -> bool {
        match code {
            0xe0 => self.extended = true,
            0xf0 => self.release = true,
            _ => {
                let down = !self.release;
                let extended = self.extended;
                self.release = false;
                self.extended = false;
                match (extended, code) {
                    (_, 0x14) => self.ctrl = down,
                    (_, 0x11) => self.alt = down,
                    (true, 0x71) => return down && self.ctrl && self.alt,
                    _ => {}
                }
            }
        }
        false
    }
}
