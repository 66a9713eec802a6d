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
use crate::virtio::counters::{block as counters, Counters};
use crate::virtio::device::VirtioInterrupt;
use crate::virtio::queue::DeviceQueue;
use crate::virtio::worker::{BackendHandler, EventHandler};

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
    counters: Arc<Counters>,
}

impl RequestExecutor {
    pub fn new(disk: DiskImage, id: [u8; ID_LEN], limits: DiscardLimits) -> Self {
        RequestExecutor {
            disk,
            id,
            limits,
            negotiated: Negotiated::default(),
            scratch: None,
            counters: Arc::new(Counters::new(counters::NAMES)),
        }
    }

    /// The counters this executor bumps (`vm.counters`).
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
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
            RequestType::In => {
                let (status, written) = self.read(mem, req);
                if status == VIRTIO_BLK_S_OK {
                    self.counters.add(counters::READ_OPS, 1);
                    self.counters.add(counters::READ_BYTES, u64::from(written));
                }
                (status, written)
            }
            RequestType::Out => {
                let status = self.write(mem, req);
                if status == VIRTIO_BLK_S_OK {
                    self.counters.add(counters::WRITE_OPS, 1);
                    self.counters.add(counters::WRITE_BYTES, req.data_len());
                }
                (status, 0)
            }
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

impl BackendHandler for BlockHandler {
    type Backend = RequestExecutor;

    fn into_backend(self) -> RequestExecutor {
        self.executor
    }

    /// Requests complete before the worker looks at anything else: none is ever held.
    fn queue_positions(&self) -> Vec<crate::virtio::QueuePosition> {
        self.queues.iter().map(|q| q.position(0)).collect()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::test_utils::{guest_memory, TestQueue, F_WRITE};
    use std::os::unix::fs::FileExt;
    use virtio_bindings::virtio_blk::{VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT};
    use vmm_sys_util::tempfile::TempFile;

    const HDR: u64 = 0x10_0000;
    const STATUS: u64 = 0x18_0000;
    const DATA: u64 = 0x20_0000;

    fn executor(image_len: usize) -> (TempFile, RequestExecutor) {
        let tmp = TempFile::new().unwrap();
        tmp.as_file()
            .write_all_at(&vec![0u8; image_len], 0)
            .unwrap();
        let disk = DiskImage::open(tmp.as_path(), false, false).unwrap();
        let mut ex = RequestExecutor::new(
            disk,
            *b"0123456789abcdefghij",
            DiscardLimits {
                max_sectors: 16,
                max_segments: 2,
            },
        );
        ex.set_negotiated(Negotiated {
            discard: true,
            write_zeroes: true,
        });
        (tmp, ex)
    }

    fn header(mem: &GuestMemoryMmap, kind: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        mem.write_slice(&h, GuestAddress(HDR)).unwrap();
    }

    fn status(mem: &GuestMemoryMmap) -> u32 {
        u32::from(mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap())
    }

    #[test]
    fn requests_larger_than_one_chunk_are_split() {
        let len = 2 * MAX_IO_CHUNK + 4096;
        let (tmp, mut ex) = executor(len + 8192);
        let mem = guest_memory();
        let pattern: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        mem.write_slice(&pattern, GuestAddress(DATA)).unwrap();
        header(&mem, VIRTIO_BLK_T_OUT, 8);
        let mut tq = TestQueue::new(&mem, 8);
        tq.add_chain(&[(HDR, 16, 0), (DATA, len as u32, 0), (STATUS, 1, F_WRITE)]);
        assert_eq!(ex.handle_chain(&mem, tq.pop(&mem)), 1);
        assert_eq!(status(&mem), VIRTIO_BLK_S_OK);
        let mut on_disk = vec![0u8; len];
        tmp.as_file().read_exact_at(&mut on_disk, 4096).unwrap();
        assert!(on_disk == pattern);

        mem.write_slice(&vec![0u8; len], GuestAddress(DATA))
            .unwrap();
        header(&mem, VIRTIO_BLK_T_IN, 8);
        tq.add_chain(&[
            (HDR, 16, 0),
            (DATA, len as u32, F_WRITE),
            (STATUS, 1, F_WRITE),
        ]);
        assert_eq!(ex.handle_chain(&mem, tq.pop(&mem)), len as u32 + 1);
        let l = len as u64;
        assert_eq!(
            ex.counters().read(),
            [
                ("read_bytes", l),
                ("write_bytes", l),
                ("read_ops", 1),
                ("write_ops", 1)
            ]
        );
        let mut back = vec![0u8; len];
        mem.read_slice(&mut back, GuestAddress(DATA)).unwrap();
        assert!(back == pattern);
    }

    #[test]
    fn discard_limits_are_enforced_before_any_io() {
        let (_tmp, mut ex) = executor(64 * 512);
        let mem = guest_memory();
        let seg = |sector: u64, n: u32| {
            let mut s = [0u8; 16];
            s[0..8].copy_from_slice(&sector.to_le_bytes());
            s[8..12].copy_from_slice(&n.to_le_bytes());
            s
        };
        let mut tq = TestQueue::new(&mem, 8);
        header(&mem, VIRTIO_BLK_T_DISCARD, 0);
        let cases: [(&[[u8; 16]], u32); 3] = [
            // Three segments, two allowed.
            (&[seg(0, 1), seg(1, 1), seg(2, 1)], VIRTIO_BLK_S_IOERR),
            // More sectors than max_sectors.
            (&[seg(0, 17)], VIRTIO_BLK_S_IOERR),
            // The second segment runs past the end.
            (&[seg(0, 1), seg(63, 2)], VIRTIO_BLK_S_IOERR),
        ];
        for (segs, expected) in cases {
            let bytes: Vec<u8> = segs.iter().flatten().copied().collect();
            mem.write_slice(&bytes, GuestAddress(DATA)).unwrap();
            let len = bytes.len() as u32;
            tq.add_chain(&[(HDR, 16, 0), (DATA, len, 0), (STATUS, 1, F_WRITE)]);
            assert_eq!(ex.handle_chain(&mem, tq.pop(&mem)), 1);
            assert_eq!(status(&mem), expected);
        }
        // A partial segment is an error too.
        tq.add_chain(&[(HDR, 16, 0), (DATA, 15, 0), (STATUS, 1, F_WRITE)]);
        ex.handle_chain(&mem, tq.pop(&mem));
        assert_eq!(status(&mem), VIRTIO_BLK_S_IOERR);
    }

    #[test]
    fn a_short_get_id_buffer_gets_a_truncated_id() {
        let (_tmp, mut ex) = executor(4096);
        let mem = guest_memory();
        header(&mem, virtio_bindings::virtio_blk::VIRTIO_BLK_T_GET_ID, 0);
        let mut tq = TestQueue::new(&mem, 8);
        tq.add_chain(&[(HDR, 16, 0), (DATA, 4, F_WRITE), (STATUS, 1, F_WRITE)]);
        assert_eq!(ex.handle_chain(&mem, tq.pop(&mem)), 5);
        let mut id = [0u8; 4];
        mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
        assert_eq!(&id, b"0123");
    }
}
