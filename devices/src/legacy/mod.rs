//! Legacy PC devices: 16550 serial, i8042 (reset and Ctrl-Alt-Del), boot-progress port.
