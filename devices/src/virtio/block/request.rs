//! Parsing a virtio-blk request out of a descriptor chain: a pure function
//! of guest memory and the chain's descriptors, so it can be fuzzed.
//!
//! The request is treated as two byte streams, as the spec asks ("the device
//! MUST NOT make assumptions about the particular arrangement of
//! descriptors"): the device-readable stream starts with the 16-byte
//! `virtio_blk_outhdr` (type, ioprio, sector) followed by the data of
//! OUT/DISCARD/WRITE_ZEROES; the device-writable stream holds the data of
//! IN/GET_ID and ends with the 1-byte status.

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES,
};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{GuestAddress, GuestMemory};

use super::disk::SECTOR_SIZE;
use crate::virtio::chain::{gather, split_at, total_len, ChainBuffers, ChainError, Segment};

/// Size of `virtio_blk_outhdr`.
pub const HEADER_LEN: u64 = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestType {
    In,
    Out,
    Flush,
    GetId,
    Discard,
    WriteZeroes,
    Unsupported(u32),
}

impl From<u32> for RequestType {
    fn from(t: u32) -> Self {
        match t {
            VIRTIO_BLK_T_IN => RequestType::In,
            VIRTIO_BLK_T_OUT => RequestType::Out,
            VIRTIO_BLK_T_FLUSH => RequestType::Flush,
            VIRTIO_BLK_T_GET_ID => RequestType::GetId,
            VIRTIO_BLK_T_DISCARD => RequestType::Discard,
            VIRTIO_BLK_T_WRITE_ZEROES => RequestType::WriteZeroes,
            other => RequestType::Unsupported(other),
        }
    }
}

/// A parsed request. `data` is device-writable for `In`/`GetId` and
/// device-readable for `Out`/`Discard`/`WriteZeroes`; empty otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub kind: RequestType,
    pub sector: u64,
    pub data: Vec<Segment>,
    /// Where the status byte goes.
    pub status: GuestAddress,
}

impl Request {
    pub fn data_len(&self) -> u64 {
        total_len(&self.data)
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("no device-writable byte for the status")]
    NoStatus,
    #[error("the request header is {0} bytes, 16 expected")]
    ShortHeader(u64),
    #[error("cannot read the request header: {0}")]
    Header(String),
    #[error("data length {0} is not a multiple of 512")]
    UnalignedLength(u64),
}

/// A request that could not be parsed; `status` says where to report the
/// failure when the chain had room for a status byte at all.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseFailure {
    pub status: Option<GuestAddress>,
    pub error: RequestError,
}

/// Parses the request in the descriptors of one chain.
pub fn parse_request<M, I>(mem: &M, descs: I) -> Result<Request, ParseFailure>
where
    M: GuestMemory + ?Sized,
    I: IntoIterator<Item = Descriptor>,
{
    let fail = |status, error| ParseFailure { status, error };
    let bufs = ChainBuffers::parse(mem, descs).map_err(|e| fail(None, e.into()))?;
    let writable_len = bufs.writable_len();
    if writable_len == 0 {
        return Err(fail(None, RequestError::NoStatus));
    }
    let (writable_data, status_seg) = split_at(&bufs.writable, writable_len - 1);
    let status = status_seg[0].addr;
    let with_status = |error| fail(Some(status), error);

    let (header_segs, readable_data) = split_at(&bufs.readable, HEADER_LEN);
    let header_len = total_len(&header_segs);
    if header_len < HEADER_LEN {
        return Err(with_status(RequestError::ShortHeader(header_len)));
    }
    let mut header = [0u8; HEADER_LEN as usize];
    gather(mem, &header_segs, &mut header)
        .map_err(|e| with_status(RequestError::Header(e.to_string())))?;
    let kind = RequestType::from(u32::from_le_bytes(header[0..4].try_into().unwrap()));
    let sector = u64::from_le_bytes(header[8..16].try_into().unwrap());

    let data = match kind {
        RequestType::In | RequestType::GetId => writable_data,
        RequestType::Out | RequestType::Discard | RequestType::WriteZeroes => readable_data,
        RequestType::Flush | RequestType::Unsupported(_) => Vec::new(),
    };
    if matches!(kind, RequestType::In | RequestType::Out) {
        let len = total_len(&data);
        if !len.is_multiple_of(SECTOR_SIZE) {
            return Err(with_status(RequestError::UnalignedLength(len)));
        }
    }
    Ok(Request {
        kind,
        sector,
        data,
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::test_utils::{guest_memory, TestQueue, F_WRITE};
    use vm_memory::Bytes;

    const HDR: u64 = 0x10_0000;
    const DATA: u64 = 0x20_0000;
    const STATUS: u64 = 0x30_0000;

    fn write_header(mem: &vm_memory::GuestMemoryMmap, at: u64, kind: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        mem.write_slice(&h, GuestAddress(at)).unwrap();
    }

    #[test]
    fn parses_a_three_descriptor_read() {
        let mem = guest_memory();
        write_header(&mem, HDR, VIRTIO_BLK_T_IN, 9);
        let mut tq = TestQueue::new(&mem, 16);
        tq.add_chain(&[(HDR, 16, 0), (DATA, 1024, F_WRITE), (STATUS, 1, F_WRITE)]);
        let req = parse_request(&mem, tq.pop(&mem)).unwrap();
        assert_eq!(req.kind, RequestType::In);
        assert_eq!(req.sector, 9);
        assert_eq!(req.data_len(), 1024);
        assert_eq!(req.status, GuestAddress(STATUS));
    }

    #[test]
    fn parses_header_data_and_status_sharing_descriptors() {
        let mem = guest_memory();
        // Header and write data in one readable buffer, status split off the
        // end of a writable one.
        write_header(&mem, HDR, VIRTIO_BLK_T_OUT, 3);
        let mut tq = TestQueue::new(&mem, 16);
        tq.add_chain(&[(HDR, 16 + 512, 0), (STATUS, 4, F_WRITE)]);
        let req = parse_request(&mem, tq.pop(&mem)).unwrap();
        assert_eq!(req.kind, RequestType::Out);
        assert_eq!(
            req.data,
            vec![Segment {
                addr: GuestAddress(HDR + 16),
                len: 512
            }]
        );
        assert_eq!(req.status, GuestAddress(STATUS + 3));
    }

    #[test]
    fn a_writable_header_is_a_short_header_with_a_status() {
        let mem = guest_memory();
        write_header(&mem, HDR, VIRTIO_BLK_T_IN, 0);
        let mut tq = TestQueue::new(&mem, 16);
        tq.add_chain(&[(HDR, 16, F_WRITE), (STATUS, 1, F_WRITE)]);
        let err = parse_request(&mem, tq.pop(&mem)).unwrap_err();
        assert_eq!(err.error, RequestError::ShortHeader(0));
        assert_eq!(err.status, Some(GuestAddress(STATUS)));
    }

    #[test]
    fn a_chain_without_writable_bytes_cannot_be_answered() {
        let mem = guest_memory();
        write_header(&mem, HDR, VIRTIO_BLK_T_FLUSH, 0);
        let mut tq = TestQueue::new(&mem, 16);
        tq.add_chain(&[(HDR, 16, 0), (STATUS, 1, 0)]);
        let err = parse_request(&mem, tq.pop(&mem)).unwrap_err();
        assert_eq!(err.error, RequestError::NoStatus);
        assert_eq!(err.status, None);
    }

    #[test]
    fn data_that_is_not_whole_sectors_is_rejected() {
        let mem = guest_memory();
        write_header(&mem, HDR, VIRTIO_BLK_T_IN, 0);
        let mut tq = TestQueue::new(&mem, 16);
        tq.add_chain(&[(HDR, 16, 0), (DATA, 100, F_WRITE), (STATUS, 1, F_WRITE)]);
        let err = parse_request(&mem, tq.pop(&mem)).unwrap_err();
        assert_eq!(err.error, RequestError::UnalignedLength(100));
        assert_eq!(err.status, Some(GuestAddress(STATUS)));
    }

    #[test]
    fn unknown_types_parse_as_unsupported() {
        let mem = guest_memory();
        write_header(&mem, HDR, 0x1234, 0);
        let mut tq = TestQueue::new(&mem, 16);
        tq.add_chain(&[(HDR, 16, 0), (STATUS, 1, F_WRITE)]);
        let req = parse_request(&mem, tq.pop(&mem)).unwrap();
        assert_eq!(req.kind, RequestType::Unsupported(0x1234));
        assert!(req.data.is_empty());
    }

    #[test]
    fn chain_errors_carry_no_status() {
        let mem = guest_memory();
        let mut tq = TestQueue::new(&mem, 16);
        tq.add_chain(&[(HDR, 16, 0), (u64::MAX - 1, 1, F_WRITE)]);
        let err = parse_request(&mem, tq.pop(&mem)).unwrap_err();
        assert!(matches!(
            err.error,
            RequestError::Chain(ChainError::OutOfMemory { .. })
        ));
        assert_eq!(err.status, None);
    }
}
