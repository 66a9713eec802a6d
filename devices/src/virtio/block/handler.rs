//! Executing parsed block requests against the image, and the worker-side
//! event handler that feeds them from the queues.
//!
//! Every request is bounds-checked as a whole before any I/O: the byte range
//! `sector * 512 .. + len` is computed with checked arithmetic and must lie
//! within the image, so a request past the end gets `IOERR` and the image is
//! never touched outside its bounds.

use std::sync::Arc;

use log::{debug, warn};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;

use super::disk::{AlignedBuf, DiskImage, MAX_IO_CHUNK, SECTOR_SIZE};
use super::request::{parse_request, ParseFailure, Request, RequestType};
use crate::virtio::chain::{gather, scatter, Segment};
use crate::virtio::device::VirtioInterrupt;
use crate::virtio::queue::DeviceQueue;
use crate::virtio::worker::EventHandler;

/// Bytes of a GET_ID answer.
pub const ID_LEN: usize = 20;
/// Size of one `virtio_blk_discard_write_zeroes` segment.
const DISCARD_SEG_LEN: usize = 16;
/// Chains handled per queue before the worker looks at other events.
const QUEUE_BUDGET: usize = 256;

/// Limits advertised in the config space for DISCARD/WRITE_ZEROES.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiscardLimits {
    pub max_sectors: u32,
    pub max_segments: u32,
}

/// What the driver negotiated that changes request handling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    pub discard: bool,
    pub write_zeroes: bool,
}

/// Runs requests against one image.
pub struct RequestExecutor {
    pub disk: DiskImage,
    id: [u8; ID_LEN],
    limits: DiscardLimits,
    negotiated: Negotiated,
    scratch: Option<AlignedBuf>,
}

impl RequestExecutor {
    pub fn new(disk: DiskImage, id: [u8; ID_LEN], limits: DiscardLimits) -> Self {
        RequestExecutor {
            disk,
            id,
            limits,
            negotiated: Negotiated::default(),
            scratch: None,
        }
    }

    pub fn set_negotiated(&mut self, negotiated: Negotiated) {
        self.negotiated = negotiated;
    }

    /// Handles the request in one chain and returns the used length (bytes
    /// written into the chain: data plus the status byte). Never panics on
    /// guest input; a chain with no room for a status is returned with 0.
    pub fn handle_chain<M, I>(&mut self, mem: &M, descs: I) -> u32
    where
        M: GuestMemory + ?Sized,
        I: IntoIterator<Item = Descriptor>,
    {
        let (status_addr, status, written) = match parse_request(mem, descs) {
            Ok(req) => {
                let (status, written) = self.execute(mem, &req);
                (req.status, status, written)
            }
            Err(ParseFailure {
                status: Some(addr),
                error,
            }) => {
                debug!("virtio-blk: bad request: {error}");
                (addr, VIRTIO_BLK_S_IOERR, 0)
            }
            Err(ParseFailure {
                status: None,
                error,
            }) => {
                warn!("virtio-blk: dropping malformed chain: {error}");
                return 0;
            }
        };
        match mem.write_obj(status as u8, status_addr) {
            Ok(()) => written + 1,
            Err(e) => {
                warn!("virtio-blk: cannot write the status byte: {e}");
                written
            }
        }
    }

    /// Returns the status and how many data bytes were written to the guest.
    fn execute<M: GuestMemory + ?Sized>(&mut self, mem: &M, req: &Request) -> (u32, u32) {
        let writes = matches!(
            req.kind,
            RequestType::Out | RequestType::Discard | RequestType::WriteZeroes
        );
        if writes && self.disk.readonly() {
            return (VIRTIO_BLK_S_IOERR, 0);
        }
        match req.kind {
            RequestType::In => self.read(mem, req),
            RequestType::Out => (self.write(mem, req), 0),
            RequestType::Flush => (status_of(self.disk.flush().is_ok()), 0),
            RequestType::GetId => self.get_id(mem, req),
            RequestType::Discard if self.negotiated.discard => (self.discard(mem, req, true), 0),
            RequestType::WriteZeroes if self.negotiated.write_zeroes => {
                (self.discard(mem, req, false), 0)
            }
            _ => (VIRTIO_BLK_S_UNSUPP, 0),
        }
    }

    /// The byte offset of a request, if all of it lies within the image.
    fn checked_offset(&self, sector: u64, len: u64) -> Option<u64> {
        let offset = sector.checked_mul(SECTOR_SIZE)?;
        self.disk.in_bounds(offset, len).then_some(offset)
    }

    fn read<M: GuestMemory + ?Sized>(&mut self, mem: &M, req: &Request) -> (u32, u32) {
        let Some(mut offset) = self.checked_offset(req.sector, req.data_len()) else {
            debug!(
                "virtio-blk: read beyond the disk end (sector {})",
                req.sector
            );
            return (VIRTIO_BLK_S_IOERR, 0);
        };
        let scratch = self
            .scratch
            .get_or_insert_with(|| AlignedBuf::new(MAX_IO_CHUNK));
        let mut written = 0u32;
        for seg in &req.data {
            for (addr, n) in chunks(seg) {
                let buf = &mut scratch.as_mut_slice()[..n];
                if self.disk.read_at(offset, buf).is_err() || mem.write_slice(buf, addr).is_err() {
                    return (VIRTIO_BLK_S_IOERR, written);
                }
                offset += n as u64;
                written += n as u32;
            }
        }
        (VIRTIO_BLK_S_OK, written)
    }

    fn write<M: GuestMemory + ?Sized>(&mut self, mem: &M, req: &Request) -> u32 {
        let Some(mut offset) = self.checked_offset(req.sector, req.data_len()) else {
            debug!(
                "virtio-blk: write beyond the disk end (sector {})",
                req.sector
            );
            return VIRTIO_BLK_S_IOERR;
        };
        let scratch = self
            .scratch
            .get_or_insert_with(|| AlignedBuf::new(MAX_IO_CHUNK));
        for seg in &req.data {
            for (addr, n) in chunks(seg) {
                let buf = &mut scratch.as_mut_slice()[..n];
                if mem.read_slice(buf, addr).is_err() || self.disk.write_at(offset, buf).is_err() {
                    return VIRTIO_BLK_S_IOERR;
                }
                offset += n as u64;
            }
        }
        VIRTIO_BLK_S_OK
    }

    fn get_id<M: GuestMemory + ?Sized>(&mut self, mem: &M, req: &Request) -> (u32, u32) {
        match scatter(mem, &req.data, &self.id) {
            Ok(n) => (VIRTIO_BLK_S_OK, n as u32),
            Err(_) => (VIRTIO_BLK_S_IOERR, 0),
        }
    }

    /// DISCARD (`discard`) or WRITE_ZEROES: all segments are validated
    /// before any of them is executed.
    fn discard<M: GuestMemory + ?Sized>(&mut self, mem: &M, req: &Request, discard: bool) -> u32 {
        let ranges = match self.discard_ranges(mem, &req.data, discard) {
            Ok(r) => r,
            Err(status) => return status,
        };
        for (offset, len, unmap) in ranges {
            let res = if discard {
                self.disk.discard(offset, len)
            } else {
                self.disk.write_zeroes(offset, len, unmap)
            };
            if let Err(e) = res {
                debug!("virtio-blk: discard/write-zeroes failed: {e}");
                return VIRTIO_BLK_S_IOERR;
            }
        }
        VIRTIO_BLK_S_OK
    }

    /// Parses the `virtio_blk_discard_write_zeroes` segments into
    /// `(offset, len, unmap)` byte ranges, or the status to fail with.
    fn discard_ranges<M: GuestMemory + ?Sized>(
        &self,
        mem: &M,
        data: &[Segment],
        discard: bool,
    ) -> Result<Vec<(u64, u64, bool)>, u32> {
        let len = crate::virtio::chain::total_len(data);
        let count = len / DISCARD_SEG_LEN as u64;
        if len == 0
            || !len.is_multiple_of(DISCARD_SEG_LEN as u64)
            || count > u64::from(self.limits.max_segments)
        {
            return Err(VIRTIO_BLK_S_IOERR);
        }
        let mut raw = vec![0u8; len as usize];
        gather(mem, data, &mut raw).map_err(|_| VIRTIO_BLK_S_IOERR)?;
        let mut ranges = Vec::with_capacity(count as usize);
        for seg in raw.chunks_exact(DISCARD_SEG_LEN) {
            let sector = u64::from_le_bytes(seg[0..8].try_into().unwrap());
            let sectors = u32::from_le_bytes(seg[8..12].try_into().unwrap());
            let flags = u32::from_le_bytes(seg[12..16].try_into().unwrap());
            let allowed = if discard {
                0
            } else {
                VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP
            };
            if flags & !allowed != 0 {
                return Err(VIRTIO_BLK_S_UNSUPP);
            }
            if sectors > self.limits.max_sectors {
                return Err(VIRTIO_BLK_S_IOERR);
            }
            let bytes = u64::from(sectors) * SECTOR_SIZE;
            let offset = self
                .checked_offset(sector, bytes)
                .ok_or(VIRTIO_BLK_S_IOERR)?;
            ranges.push((
                offset,
                bytes,
                flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0,
            ));
        }
        Ok(ranges)
    }
}

fn status_of(ok: bool) -> u32 {
    if ok {
        VIRTIO_BLK_S_OK
    } else {
        VIRTIO_BLK_S_IOERR
    }
}

/// A segment cut into pieces of at most [`MAX_IO_CHUNK`] bytes.
fn chunks(seg: &Segment) -> impl Iterator<Item = (GuestAddress, usize)> + '_ {
    let len = seg.len as usize;
    (0..len).step_by(MAX_IO_CHUNK).map(move |off| {
        (
            GuestAddress(seg.addr.0 + off as u64),
            MAX_IO_CHUNK.min(len - off),
        )
    })
}

/// The block worker's state: the executor and the queues it serves.
pub struct BlockHandler {
    pub executor: RequestExecutor,
    pub mem: GuestMemoryMmap,
    pub queues: Vec<DeviceQueue>,
    pub irq: Arc<dyn VirtioInterrupt>,
}

impl EventHandler for BlockHandler {
    fn handle_event(&mut self, token: u64, _events: EventSet) {
        let Some(queue) = usize::try_from(token)
            .ok()
            .and_then(|i| self.queues.get_mut(i))
        else {
            return;
        };
        queue.ack_notification();
        let mem = &self.mem;
        let executor = &mut self.executor;
        let done = queue.process(mem, QUEUE_BUDGET, |chain| executor.handle_chain(mem, chain));
        if done > 0 {
            queue.signal_used(mem, &self.irq);
        }
    }
}
