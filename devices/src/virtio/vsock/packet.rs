//! virtio-vsock packets (virtio 1.2 section 5.10.6): the 44-byte little-endian header every
//! packet starts with, parsed from and written to guest descriptor chains. A transmit chain
//! from the guest is checked whole before anything acts on it: a header shorter than 44 bytes,
//! a `len` beyond what the chain holds or beyond [`MAX_PAYLOAD`], an unknown type or op is a
//! [`PacketError`] (the device drops the chain, or resets the stream it names).

/// Bytes of `struct virtio_vsock_hdr`.
pub const HDR_LEN: usize = 44;
/// The largest payload one packet carries (Linux sends at most 64 KiB per packet).
pub const MAX_PAYLOAD: u32 = 64 * 1024;

/// `VIRTIO_VSOCK_TYPE_STREAM`, the only type this device speaks.
pub const TYPE_STREAM: u16 = 1;

/// The host's CID, as the guest addresses it.
pub const HOST_CID: u64 = 2;

/// Packet operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Op {
    Request = 1,
    Response = 2,
    Rst = 3,
    Shutdown = 4,
    Rw = 5,
    CreditUpdate = 6,
    CreditRequest = 7,
}

impl Op {
    fn from_u16(v: u16) -> Option<Op> {
        Some(match v {
            1 => Op::Request,
            2 => Op::Response,
            3 => Op::Rst,
            4 => Op::Shutdown,
            5 => Op::Rw,
            6 => Op::CreditUpdate,
            7 => Op::CreditRequest,
            _ => return None,
        })
    }
}

/// `VIRTIO_VSOCK_SHUTDOWN_RCV`: the sender will receive no more data.
pub const SHUTDOWN_RCV: u32 = 1;
/// `VIRTIO_VSOCK_SHUTDOWN_SEND`: the sender will send no more data.
pub const SHUTDOWN_SEND: u32 = 2;

/// A packet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    pub len: u32,
    pub kind: u16,
    pub op: Op,
    pub flags: u32,
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("a packet header needs {HDR_LEN} bytes, the chain holds {0}")]
    Short(usize),
    #[error("unknown packet op {0}")]
    UnknownOp(u16),
    #[error("packet type {0} is not a stream")]
    NotStream(u16),
    #[error("the header says {len} payload bytes, the chain holds {have}")]
    Truncated { len: u32, have: usize },
    #[error("a {0}-byte payload is more than a packet carries ({MAX_PAYLOAD})")]
    TooLong(u32),
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl Header {
    /// A header for the host's side of a stream (`src` the host, `dst` the guest).
    #[allow(clippy::too_many_arguments)]
    pub fn to_guest(
        guest_cid: u64,
        host_port: u32,
        guest_port: u32,
        op: Op,
        len: u32,
        flags: u32,
        buf_alloc: u32,
        fwd_cnt: u32,
    ) -> Header {
        Header {
            src_cid: HOST_CID,
            dst_cid: guest_cid,
            src_port: host_port,
            dst_port: guest_port,
            len,
            kind: TYPE_STREAM,
            op,
            flags,
            buf_alloc,
            fwd_cnt,
        }
    }

    /// Parse the header at the start of `bytes` (the payload, if any, follows it there).
    /// Only the header's own fields are checked here; see [`Header::check_payload`].
    pub fn parse(bytes: &[u8]) -> Result<Header, PacketError> {
        if bytes.len() < HDR_LEN {
            return Err(PacketError::Short(bytes.len()));
        }
        let op = u16_at(bytes, 30);
        Ok(Header {
            src_cid: u64_at(bytes, 0),
            dst_cid: u64_at(bytes, 8),
            src_port: u32_at(bytes, 16),
            dst_port: u32_at(bytes, 20),
            len: u32_at(bytes, 24),
            kind: u16_at(bytes, 28),
            op: Op::from_u16(op).ok_or(PacketError::UnknownOp(op))?,
            flags: u32_at(bytes, 32),
            buf_alloc: u32_at(bytes, 36),
            fwd_cnt: u32_at(bytes, 40),
        })
    }

    /// The payload length is sane and the chain (`available` bytes after the header) holds it.
    pub fn check_payload(&self, available: usize) -> Result<(), PacketError> {
        if self.len > MAX_PAYLOAD {
            return Err(PacketError::TooLong(self.len));
        }
        if self.len as usize > available {
            return Err(PacketError::Truncated {
                len: self.len,
                have: available,
            });
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.kind.to_le_bytes());
        b[30..32].copy_from_slice(&(self.op as u16).to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }
}

/// Parse a whole transmit packet (header, then payload) from `bytes`: the fuzz target's entry.
pub fn parse_packet(bytes: &[u8]) -> Result<(Header, &[u8]), PacketError> {
    let h = Header::parse(bytes)?;
    h.check_payload(bytes.len() - HDR_LEN)?;
    if h.kind != TYPE_STREAM {
        return Err(PacketError::NotStream(h.kind));
    }
    Ok((h, &bytes[HDR_LEN..HDR_LEN + h.len as usize]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header::to_guest(3, 1024, 5000, Op::Rw, 5, 0, 262144, 77)
    }

    #[test]
    fn a_header_round_trips_through_its_bytes() {
        let h = sample();
        let b = h.to_bytes();
        assert_eq!(Header::parse(&b).unwrap(), h);
        // The layout of struct virtio_vsock_hdr: dst_cid at 8, op at 30, fwd_cnt at 40.
        assert_eq!(b[8], 3);
        assert_eq!(u16_at(&b, 30), 5);
        assert_eq!(u32_at(&b, 40), 77);
    }

    #[test]
    fn hostile_headers_are_refused_by_what_is_wrong() {
        let mut b = sample().to_bytes().to_vec();
        assert_eq!(Header::parse(&b[..43]), Err(PacketError::Short(43)));
        b[30] = 9;
        assert_eq!(Header::parse(&b), Err(PacketError::UnknownOp(9)));
        let mut p = sample().to_bytes().to_vec();
        p.extend_from_slice(b"abc");
        assert_eq!(
            parse_packet(&p),
            Err(PacketError::Truncated { len: 5, have: 3 })
        );
        p.extend_from_slice(b"de!");
        let (h, payload) = parse_packet(&p).unwrap();
        assert_eq!((h.len, payload), (5, &b"abcde"[..]));
        let mut long = sample();
        long.len = MAX_PAYLOAD + 1;
        assert_eq!(
            long.check_payload(usize::MAX),
            Err(PacketError::TooLong(MAX_PAYLOAD + 1))
        );
        let mut dgram = sample();
        dgram.kind = 3;
        dgram.len = 0;
        assert_eq!(
            parse_packet(&dgram.to_bytes()),
            Err(PacketError::NotStream(3))
        );
    }

    #[test]
    fn every_short_or_random_input_parses_or_errs_without_panicking() {
        let mut x: u64 = 0x243f_6a88_85a3_08d3;
        for n in 0..2000 {
            let len = n % 120;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = parse_packet(&bytes);
        }
    }
}
