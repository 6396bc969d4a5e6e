//! Disk images for the VMM and the orchestrator: raw and qcow2, overlays, the image store.

/// Errors from a block back end.
pub type BlockResult<T> = std::io::Result<T>;

/// What virtio-blk needs from a disk, whatever its format. Methods take `&self` so one back end
/// can be shared by the device thread and the control thread (e.g. to report counters).
pub trait BlockBackend: Send + Sync {
    /// Virtual size in bytes (what the guest sees).
    fn size(&self) -> u64;
    /// True when writes, discards and write-zeroes are refused.
    fn read_only(&self) -> bool;
    /// Fills `buf` from `offset`; reading past the end is an error.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> BlockResult<()>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> BlockResult<()>;
    /// Makes every completed write durable (fdatasync on the files behind it).
    fn flush(&self) -> BlockResult<()>;
    /// Deallocates a range where the format can; reads of it then return zeroes or old data.
    fn discard(&self, offset: u64, len: u64) -> BlockResult<()>;
    /// Makes a range read as zeroes, deallocating it when `unmap` is set and the format can.
    fn write_zeroes(&self, offset: u64, len: u64, unmap: bool) -> BlockResult<()>;
}
