//! Parsing a virtio-blk request (virtio 1.2 section 5.2.6) out of a flattened descriptor chain.
//! Pure: no I/O, so it is unit-tested and fuzzed on its own.

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH,
    VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES,
    VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
};

use crate::virtio::Memory;
use crate::virtio::chain::{ChainError, Segments};

/// Bytes in a virtio-blk sector, whatever the block size.
pub const SECTOR_SIZE: u64 = 512;
/// Bytes in the request header (type, reserved, sector).
pub const HEADER_SIZE: u64 = 16;
/// Bytes in one discard / write-zeroes range.
pub const RANGE_SIZE: u64 = 16;
/// Bytes in the GET_ID answer.
pub const ID_BYTES: usize = virtio_bindings::virtio_blk::VIRTIO_BLK_ID_BYTES as usize;

/// What the driver asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    /// Read sectors into the guest.
    In,
    /// Write sectors from the guest.
    Out,
    /// Make completed writes durable.
    Flush,
    /// Return the serial.
    GetId,
    /// Deallocate ranges.
    Discard,
    /// Zero ranges.
    WriteZeroes,
}

/// A well-formed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The operation.
    pub kind: RequestType,
    /// First sector for In/Out.
    pub sector: u64,
    /// Bytes of data (In: writable bytes before the status byte; Out: readable bytes after the
    /// header; Discard/WriteZeroes: the range array; GetId: room for the serial).
    pub data_len: u64,
    /// Offset of the status byte in the writable part.
    pub status_offset: u64,
}

/// Per-request limits the device advertises in configuration space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentLimits {
    /// Most data descriptors in one request (SEG_MAX).
    pub seg_max: u32,
    /// Largest data descriptor (SIZE_MAX).
    pub size_max: u32,
    /// Most sectors in one discard range.
    pub max_discard_sectors: u32,
    /// Most ranges in one discard request.
    pub max_discard_seg: u32,
    /// Most sectors in one write-zeroes range.
    pub max_write_zeroes_sectors: u32,
    /// Most ranges in one write-zeroes request.
    pub max_write_zeroes_seg: u32,
}

impl Default for SegmentLimits {
    fn default() -> Self {
        Self {
            seg_max: 254,
            size_max: 1 << 20,
            max_discard_sectors: 1 << 22,
            max_discard_seg: 16,
            max_write_zeroes_sectors: 1 << 22,
            max_write_zeroes_seg: 16,
        }
    }
}

/// Everything a request is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Disk size in 512-byte sectors.
    pub capacity: u64,
    /// Writes, discards and write-zeroes refused.
    pub read_only: bool,
    /// The advertised per-request limits.
    pub segs: SegmentLimits,
}

/// Why a request fails. [`RequestError::status`] is what the guest sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The chain itself is malformed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// No device-writable byte for the status: the request cannot even be answered.
    #[error("request has no device-writable status byte")]
    NoStatus,
    /// Fewer than 16 readable bytes.
    #[error("request header is {0} bytes, 16 needed")]
    ShortHeader(u64),
    /// A request type the device does not implement.
    #[error("unsupported request type {0}")]
    Unsupported(u32),
    /// Data length not a multiple of 512.
    #[error("data length {0} is not a multiple of 512")]
    UnalignedLength(u64),
    /// Sectors past the end of the disk.
    #[error("sectors {sector}+{sectors} lie past the disk's {capacity} sectors")]
    OutOfRange {
        sector: u64,
        sectors: u64,
        capacity: u64,
    },
    /// A write, discard or write-zeroes to a read-only disk.
    #[error("write request to a read-only disk")]
    ReadOnly,
    /// More data descriptors than SEG_MAX, or one longer than SIZE_MAX.
    #[error("request has {segs} data segments (max {seg_max}) or one above {size_max} bytes")]
    TooManySegments {
        segs: usize,
        seg_max: u32,
        size_max: u32,
    },
    /// Discard/write-zeroes range array malformed or beyond the limits in config space.
    #[error("discard/write-zeroes ranges: {0}")]
    BadRanges(&'static str),
    /// A discard range with flags set, or write-zeroes with unknown flags.
    #[error("discard/write-zeroes range with unsupported flags {0:#x}")]
    BadRangeFlags(u32),
}

impl RequestError {
    /// The status byte for this failure.
    pub fn status(&self) -> u8 {
        let s = match self {
            Self::Unsupported(_) | Self::BadRangeFlags(_) => VIRTIO_BLK_S_UNSUPP,
            _ => VIRTIO_BLK_S_IOERR,
        };
        s as u8
    }
}

/// One range of a discard or write-zeroes request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First sector.
    pub sector: u64,
    /// Sectors.
    pub num_sectors: u32,
    /// Write-zeroes: deallocate too.
    pub unmap: bool,
}

/// Reads and checks the header of `segs`.
pub fn parse(segs: &Segments, mem: &Memory, limits: &Limits) -> Result<Request, RequestError> {
    if segs.writable_len() == 0 {
        return Err(RequestError::NoStatus);
    }
    let status_offset = segs.writable_len() - 1;
    if segs.readable_len() < HEADER_SIZE {
        return Err(RequestError::ShortHeader(segs.readable_len()));
    }
    let mut hdr = [0u8; HEADER_SIZE as usize];
    segs.read_at(mem, 0, &mut hdr)?;
    let ty = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
    let mut sector_bytes = [0u8; 8];
    sector_bytes.copy_from_slice(&hdr[8..16]);
    let sector = u64::from_le_bytes(sector_bytes);
    let in_len = status_offset;
    let out_len = segs.readable_len() - HEADER_SIZE;
    let (kind, data_len) = match ty {
        VIRTIO_BLK_T_IN => (RequestType::In, in_len),
        VIRTIO_BLK_T_OUT => (RequestType::Out, out_len),
        VIRTIO_BLK_T_FLUSH => (RequestType::Flush, 0),
        VIRTIO_BLK_T_GET_ID => (RequestType::GetId, in_len),
        VIRTIO_BLK_T_DISCARD => (RequestType::Discard, out_len),
        VIRTIO_BLK_T_WRITE_ZEROES => (RequestType::WriteZeroes, out_len),
        other => return Err(RequestError::Unsupported(other)),
    };
    let req = Request {
        kind,
        sector,
        data_len,
        status_offset,
    };
    match kind {
        RequestType::In | RequestType::Out => {
            if kind == RequestType::Out && limits.read_only {
                return Err(RequestError::ReadOnly);
            }
            check_segments(segs, kind, limits)?;
            if data_len % SECTOR_SIZE != 0 {
                return Err(RequestError::UnalignedLength(data_len));
            }
            check_range(sector, data_len / SECTOR_SIZE, limits.capacity)?;
        }
        RequestType::Discard | RequestType::WriteZeroes => {
            if limits.read_only {
                return Err(RequestError::ReadOnly);
            }
            let max_seg = if kind == RequestType::Discard {
                limits.segs.max_discard_seg
            } else {
                limits.segs.max_write_zeroes_seg
            };
            if data_len == 0 || data_len % RANGE_SIZE != 0 {
                return Err(RequestError::BadRanges(
                    "length not a non-zero multiple of 16",
                ));
            }
            if data_len / RANGE_SIZE > u64::from(max_seg) {
                return Err(RequestError::BadRanges(
                    "more ranges than the device allows",
                ));
            }
        }
        RequestType::Flush | RequestType::GetId => {}
    }
    Ok(req)
}

/// Reads range `i` of a discard / write-zeroes request and checks it.
pub fn range(
    segs: &Segments,
    mem: &Memory,
    req: &Request,
    i: u64,
    limits: &Limits,
) -> Result<Range, RequestError> {
    let mut raw = [0u8; RANGE_SIZE as usize];
    segs.read_at(mem, HEADER_SIZE + i * RANGE_SIZE, &mut raw)?;
    let mut s = [0u8; 8];
    s.copy_from_slice(&raw[..8]);
    let sector = u64::from_le_bytes(s);
    let num_sectors = u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]);
    let flags = u32::from_le_bytes([raw[12], raw[13], raw[14], raw[15]]);
    let (max_sectors, allowed_flags) = match req.kind {
        RequestType::Discard => (limits.segs.max_discard_sectors, 0),
        _ => (
            limits.segs.max_write_zeroes_sectors,
            VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
        ),
    };
    if flags & !allowed_flags != 0 {
        return Err(RequestError::BadRangeFlags(flags));
    }
    if num_sectors > max_sectors {
        return Err(RequestError::BadRanges(
            "range longer than the device allows",
        ));
    }
    check_range(sector, u64::from(num_sectors), limits.capacity)?;
    Ok(Range {
        sector,
        num_sectors,
        unmap: flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0,
    })
}

fn check_range(sector: u64, sectors: u64, capacity: u64) -> Result<(), RequestError> {
    match sector.checked_add(sectors) {
        Some(end) if end <= capacity => Ok(()),
        _ => Err(RequestError::OutOfRange {
            sector,
            sectors,
            capacity,
        }),
    }
}

/// SEG_MAX counts data descriptors only; the header and status may share or have their own.
fn check_segments(segs: &Segments, kind: RequestType, limits: &Limits) -> Result<(), RequestError> {
    let data = if kind == RequestType::In {
        segs.writable()
    } else {
        segs.readable()
    };
    let too_long = data
        .iter()
        .any(|s| u64::from(s.len) > u64::from(limits.segs.size_max) + HEADER_SIZE);
    // Header or status may be folded into a data descriptor; allow one extra for each.
    if data.len() > limits.segs.seg_max as usize + 1 || too_long {
        return Err(RequestError::TooManySegments {
            segs: data.len(),
            seg_max: limits.segs.seg_max,
            size_max: limits.segs.size_max,
        });
    }
    Ok(())
}
