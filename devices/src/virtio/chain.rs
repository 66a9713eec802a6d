//! A descriptor chain checked and flattened into device-readable and
//! device-writable segment lists, plus scatter/gather helpers over them.
//!
//! # What virtio-queue 0.18 already guards, and what this adds
//!
//! `virtio_queue::DescriptorChain` iteration stops (returns `None`) when
//! * more descriptors than the queue size were followed (a looping chain),
//! * a `next` index is out of the descriptor table,
//! * the descriptor table entry cannot be read from guest memory,
//! * an indirect table is nested, misaligned or longer than 65535 entries,
//! * the chain's total length would overflow `u32`.
//!
//! It does **not** tell the caller it stopped early, and it does not check
//! that the buffers a descriptor points to lie in guest memory, nor the
//! readable-before-writable rule. [`ChainBuffers::parse`] adds these:
//! an early stop shows up as a last descriptor that still has `NEXT` set
//! ([`ChainError::Truncated`]), every buffer is checked against guest
//! memory ([`ChainError::OutOfMemory`]), and a readable descriptor after a
//! writable one is [`ChainError::ReadableAfterWritable`].
//!
//! `Queue`'s own checks (ring placement, `avail.idx` running more than the
//! queue size ahead, used-ring head index range) are covered in
//! [`queue`](super::queue).

use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryError, Permissions};

/// One guest buffer: `len` bytes at `addr`, known to lie in guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub addr: GuestAddress,
    pub len: u32,
}

/// Why a chain is unusable as a whole (the device drops it).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("the descriptor chain is empty or its head cannot be read")]
    Empty,
    #[error(
        "the descriptor chain is truncated (a loop, a bad next index or an unreadable descriptor)"
    )]
    Truncated,
    #[error("a descriptor buffer at {addr:#x} (+{len:#x}) lies outside guest memory")]
    OutOfMemory { addr: u64, len: u32 },
    #[error("a device-readable descriptor follows a device-writable one")]
    ReadableAfterWritable,
}

/// The buffers of a chain, readable ones first as the spec requires.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainBuffers {
    pub readable: Vec<Segment>,
    pub writable: Vec<Segment>,
}

impl ChainBuffers {
    /// Checks and flattens the descriptors of one chain (a
    /// `DescriptorChain`, or any iterator of descriptors, e.g. from a
    /// fuzzer). Zero-length descriptors are skipped.
    pub fn parse<M, I>(mem: &M, descs: I) -> Result<Self, ChainError>
    where
        M: GuestMemory + ?Sized,
        I: IntoIterator<Item = Descriptor>,
    {
        let mut bufs = ChainBuffers::default();
        let mut last = None;
        for desc in descs {
            last = Some(desc);
            if desc.len() == 0 {
                continue;
            }
            let access = if desc.is_write_only() {
                Permissions::Write
            } else {
                Permissions::Read
            };
            if !mem.check_range(desc.addr(), desc.len() as usize, access) {
                return Err(ChainError::OutOfMemory {
                    addr: desc.addr().0,
                    len: desc.len(),
                });
            }
            let seg = Segment {
                addr: desc.addr(),
                len: desc.len(),
            };
            if desc.is_write_only() {
                bufs.writable.push(seg);
            } else if bufs.writable.is_empty() {
                bufs.readable.push(seg);
            } else {
                return Err(ChainError::ReadableAfterWritable);
            }
        }
        match last {
            None => Err(ChainError::Empty),
            Some(d) if d.has_next() => Err(ChainError::Truncated),
            Some(_) => Ok(bufs),
        }
    }

    /// Total bytes the device may read.
    pub fn readable_len(&self) -> u64 {
        total_len(&self.readable)
    }

    /// Total bytes the device may write.
    pub fn writable_len(&self) -> u64 {
        total_len(&self.writable)
    }
}

/// Sum of the segment lengths.
pub fn total_len(segs: &[Segment]) -> u64 {
    segs.iter().map(|s| u64::from(s.len)).sum()
}

/// Splits a segment stream at byte `at`: the first `at` bytes and the rest.
/// If the stream is shorter, the first part is all of it.
pub fn split_at(segs: &[Segment], at: u64) -> (Vec<Segment>, Vec<Segment>) {
    let mut head = Vec::new();
    let mut tail = Vec::new();
    let mut left = at;
    for seg in segs {
        let len = u64::from(seg.len);
        if left >= len {
            head.push(*seg);
            left -= len;
        } else if left == 0 {
            tail.push(*seg);
        } else {
            // left < len <= u32::MAX, so the casts are lossless.
            head.push(Segment {
                addr: seg.addr,
                len: left as u32,
            });
            tail.push(Segment {
                addr: GuestAddress(seg.addr.0 + left),
                len: seg.len - left as u32,
            });
            left = 0;
        }
    }
    (head, tail)
}

/// Fills `buf` from the start of the segment stream; returns the bytes read
/// (less than `buf.len()` when the stream is shorter).
pub fn gather<M: GuestMemory + ?Sized>(
    mem: &M,
    segs: &[Segment],
    buf: &mut [u8],
) -> Result<usize, GuestMemoryError> {
    let mut done = 0;
    for seg in segs {
        if done == buf.len() {
            break;
        }
        let n = (seg.len as usize).min(buf.len() - done);
        mem.read_slice(&mut buf[done..done + n], seg.addr)?;
        done += n;
    }
    Ok(done)
}

/// Copies `data` into the segment stream from its start; returns the bytes
/// written (less than `data.len()` when the stream is shorter).
pub fn scatter<M: GuestMemory + ?Sized>(
    mem: &M,
    segs: &[Segment],
    data: &[u8],
) -> Result<usize, GuestMemoryError> {
    let mut done = 0;
    for seg in segs {
        if done == data.len() {
            break;
        }
        let n = (seg.len as usize).min(data.len() - done);
        mem.write_slice(&data[done..done + n], seg.addr)?;
        done += n;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::test_utils::{guest_memory, TestQueue, F_WRITE, MEM_SIZE};

    fn seg(addr: u64, len: u32) -> Segment {
        Segment {
            addr: GuestAddress(addr),
            len,
        }
    }

    #[test]
    fn parse_splits_readable_and_writable() {
        let mem = guest_memory();
        let mut tq = TestQueue::new(&mem, 16);
        tq.add_chain(&[
            (0x10_0000, 16, 0),
            (0x10_1000, 512, F_WRITE),
            (0x10_2000, 1, F_WRITE),
        ]);
        let chain = tq.pop(&mem);
        let bufs = ChainBuffers::parse(&mem, chain).unwrap();
        assert_eq!(bufs.readable, vec![seg(0x10_0000, 16)]);
        assert_eq!(bufs.writable, vec![seg(0x10_1000, 512), seg(0x10_2000, 1)]);
        assert_eq!(bufs.readable_len(), 16);
        assert_eq!(bufs.writable_len(), 513);
    }

    #[test]
    fn parse_rejects_a_looping_chain_as_truncated() {
        let mem = guest_memory();
        let mut tq = TestQueue::new(&mem, 8);
        tq.add_chain(&[(0x10_0000, 16, 0), (0x10_1000, 16, 0)]);
        // Point the second descriptor back at the first one.
        tq.write_desc(1, 0x10_1000, 16, crate::virtio::test_utils::F_NEXT, 0);
        let chain = tq.pop(&mem);
        assert_eq!(ChainBuffers::parse(&mem, chain), Err(ChainError::Truncated));
    }

    #[test]
    fn parse_rejects_a_next_index_outside_the_table() {
        let mem = guest_memory();
        let mut tq = TestQueue::new(&mem, 8);
        tq.add_chain(&[(0x10_0000, 16, 0)]);
        tq.write_desc(0, 0x10_0000, 16, crate::virtio::test_utils::F_NEXT, 200);
        let chain = tq.pop(&mem);
        assert_eq!(ChainBuffers::parse(&mem, chain), Err(ChainError::Truncated));
    }

    #[test]
    fn parse_rejects_buffers_outside_guest_memory() {
        let mem = guest_memory();
        let mut tq = TestQueue::new(&mem, 8);
        tq.add_chain(&[(MEM_SIZE - 8, 16, 0)]);
        let chain = tq.pop(&mem);
        assert_eq!(
            ChainBuffers::parse(&mem, chain),
            Err(ChainError::OutOfMemory {
                addr: MEM_SIZE - 8,
                len: 16
            })
        );
        tq.add_chain(&[(u64::MAX - 4, 16, F_WRITE)]);
        let chain = tq.pop(&mem);
        assert!(matches!(
            ChainBuffers::parse(&mem, chain),
            Err(ChainError::OutOfMemory { .. })
        ));
    }

    #[test]
    fn parse_rejects_readable_after_writable() {
        let mem = guest_memory();
        let mut tq = TestQueue::new(&mem, 8);
        tq.add_chain(&[(0x10_0000, 16, F_WRITE), (0x10_1000, 16, 0)]);
        let chain = tq.pop(&mem);
        assert_eq!(
            ChainBuffers::parse(&mem, chain),
            Err(ChainError::ReadableAfterWritable)
        );
    }

    #[test]
    fn parse_of_an_out_of_range_head_is_empty() {
        let mem = guest_memory();
        let mut tq = TestQueue::new(&mem, 8);
        tq.publish(9);
        let chain = tq.pop(&mem);
        assert_eq!(ChainBuffers::parse(&mem, chain), Err(ChainError::Empty));
    }

    #[test]
    fn split_at_cuts_inside_a_segment() {
        let segs = [seg(0x1000, 10), seg(0x2000, 10)];
        let (h, t) = split_at(&segs, 14);
        assert_eq!(h, vec![seg(0x1000, 10), seg(0x2000, 4)]);
        assert_eq!(t, vec![seg(0x2004, 6)]);
        let (h, t) = split_at(&segs, 10);
        assert_eq!(h, vec![seg(0x1000, 10)]);
        assert_eq!(t, vec![seg(0x2000, 10)]);
        let (h, t) = split_at(&segs, 100);
        assert_eq!(total_len(&h), 20);
        assert!(t.is_empty());
    }

    #[test]
    fn scatter_and_gather_round_trip_across_segments() {
        let mem = guest_memory();
        let segs = [seg(0x10_0000, 3), seg(0x10_2000, 5)];
        assert_eq!(scatter(&mem, &segs, b"abcdefghij").unwrap(), 8);
        let mut buf = [0u8; 10];
        assert_eq!(gather(&mem, &segs, &mut buf).unwrap(), 8);
        assert_eq!(&buf[..8], b"abcdefgh");
    }
}
