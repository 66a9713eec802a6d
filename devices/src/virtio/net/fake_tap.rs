//! An in-process [`Tap`] for tests: one end of a Unix datagram socket pair
//! (datagrams keep frame boundaries, like a tap); the test holds the other.

use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::tap::Tap;

pub struct FakeTap {
    sock: UnixDatagram,
    offload: Arc<AtomicU32>,
}

/// The host side of a [`FakeTap`].
pub struct Peer {
    pub sock: UnixDatagram,
    offload: Arc<AtomicU32>,
}

impl Peer {
    /// Sends a frame for the guest to receive.
    pub fn send(&self, frame: &[u8]) {
        self.sock.send(frame).unwrap();
    }

    /// The next frame the guest sent, if any.
    pub fn try_recv(&self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 70_000];
        match self.sock.recv(&mut buf) {
            Ok(n) => Some(buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) => panic!("{e}"),
        }
    }

    /// The last `TUNSETOFFLOAD` flags set (`u32::MAX` when never set).
    pub fn offload(&self) -> u32 {
        self.offload.load(Ordering::SeqCst)
    }
}

pub fn fake_tap() -> (FakeTap, Peer) {
    let (a, b) = UnixDatagram::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    let offload = Arc::new(AtomicU32::new(u32::MAX));
    (
        FakeTap {
            sock: a,
            offload: offload.clone(),
        },
        Peer { sock: b, offload },
    )
}

impl AsRawFd for FakeTap {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl Tap for FakeTap {
    fn read_frame(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.recv(buf)
    }

    fn write_frame(&mut self, frame: &[u8]) -> io::Result<usize> {
        self.sock.send(frame)
    }

    fn set_offload(&mut self, flags: u32) -> io::Result<()> {
        self.offload.store(flags, Ordering::SeqCst);
        Ok(())
    }
}
