//! virtio-net: any memory image (rx and tx rings, chains) and any frames from the back end
//! must be served without a panic.
#![no_main]

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use devices::virtio::net::{FrameIo, NetQueues};
use devices_fuzz::{IMAGE, interrupt, memory, queue};
use libfuzzer_sys::fuzz_target;

/// Fuzz double for a tap: frames come from the input, frames sent are checked and dropped.
struct Frames(VecDeque<Vec<u8>>);

impl AsRawFd for Frames {
    fn as_raw_fd(&self) -> RawFd {
        -1
    }
}

impl FrameIo for Frames {
    fn read_frame(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let f = self.0.pop_front().ok_or(std::io::ErrorKind::WouldBlock)?;
        // A tap truncates a frame longer than the read buffer.
        let n = f.len().min(buf.len());
        buf[..n].copy_from_slice(&f[..n]);
        Ok(n)
    }
    fn write_frame(&mut self, frame: &[u8]) -> std::io::Result<()> {
        assert!(frame.len() >= devices::virtio::net::VNET_HDR_LEN);
        assert!(frame.len() <= devices::virtio::net::MAX_FRAME_LEN);
        Ok(())
    }
    fn offloads_supported(&self) -> bool {
        false
    }
    fn set_offloads(&mut self, _: u32) -> std::io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    // Layout: flags, image length (u16), image, then frames.
    let [flags, l0, l1, rest @ ..] = data else { return };
    let (flags, image_len) = (*flags, usize::from(u16::from_le_bytes([*l0, *l1])));
    let (image, mut tail) = rest.split_at(rest.len().min(image_len).min(IMAGE));
    // After the image: frames, each preceded by a 2-byte length.
    let mut frames = VecDeque::new();
    while tail.len() >= 2 {
        let n = usize::from(u16::from_le_bytes([tail[0], tail[1]])).min(tail.len() - 2);
        frames.push_back(tail[2..2 + n].to_vec());
        tail = &tail[2 + n..];
    }
    let mut io = Frames(frames);
    let mem = memory(image);
    let (rx, tx) = (queue(0, flags & 2 != 0), queue(0x400, flags & 4 != 0));
    let mut q = NetQueues::new(rx, tx, mem, interrupt(), Arc::default(), flags & 1 != 0);
    let _ = q.process_tx(&mut io);
    let _ = q.process_rx(&mut io);
    let _ = q.process_rx(&mut io);
});
