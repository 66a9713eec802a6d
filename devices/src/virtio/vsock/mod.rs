//! virtio-vsock (device ID 19) with Cloud Hypervisor's and Firecracker's hybrid vsock: guest
//! streams reach the host as unix socket connections (see [`muxer`]). Three queues: receive,
//! transmit and event (kept, never used: it carries transport resets for live migration).

pub mod credit;
pub mod muxer;
pub mod packet;
mod unix;

use std::io;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use log::warn;
use vmm_sys_util::epoll::EventSet;

use super::device::{
    ack_offered, read_config_bytes, ActivateContext, ActivateError, QueuePosition, VirtioDevice,
    VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_RING_INDIRECT_DESC, VIRTIO_F_VERSION_1,
};
use super::queue::take_queues;
use super::worker::{Lifecycle, Source};
use muxer::{VsockBackend, VsockHandler, EVENT_TOKEN, RX_TOKEN, SOCKETS_TOKEN, TX_TOKEN};

pub const VIRTIO_ID_VSOCK: u32 = 19;
const QUEUE_SIZE: u16 = 256;
const FEATURES: u64 = VIRTIO_F_VERSION_1 | VIRTIO_F_RING_EVENT_IDX | VIRTIO_F_RING_INDIRECT_DESC;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VsockConfig {
    /// The guest's context ID (3 or more: 0-2 are reserved, 2 is the host).
    pub cid: u64,
    /// The unix socket host clients connect to; guest connections to host port P go to
    /// `<socket>_P`.
    pub socket: PathBuf,
    /// The device id (`vm.info`), when given.
    pub id: Option<String>,
    /// The PCI segment the device goes on (0 unless the VM has more: `--platform
    /// num_pci_segments`).
    pub pci_segment: u16,
    /// The slot on the segment's bus 0 (`pci_device_id`, 1 to 31); `None`: the lowest free one.
    pub pci_device_id: Option<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    #[error(
        "cid {0}: a guest CID is 3 or more (0-2 are reserved; 2 is the host) and below 2^32-1"
    )]
    Cid(u64),
    #[error("cannot listen on {}: {source}", path.display())]
    Listen { path: PathBuf, source: io::Error },
}

/// A virtio-vsock device.
pub struct Vsock {
    cid: u64,
    queue_sizes: [u16; 3],
    acked_features: u64,
    state: Lifecycle<VsockHandler>,
}

impl Vsock {
    /// Checks the CID and listens on the socket. A socket file already there that nobody
    /// listens on any more (left by a VMM that is gone) is replaced; one something listens on
    /// is refused (another VM's: two VMs cannot share a socket), and so is any other file.
    pub fn new(cfg: &VsockConfig) -> Result<Self, VsockError> {
        if cfg.cid < 3 || cfg.cid >= u64::from(u32::MAX) {
            return Err(VsockError::Cid(cfg.cid));
        }
        let listen = |p: &PathBuf| -> io::Result<UnixListener> {
            let l = UnixListener::bind(p)?;
            unix::set_nonblocking(l.as_raw_fd())?;
            Ok(l)
        };
        let listener = match listen(&cfg.socket) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && is_stale_socket(&cfg.socket) => {
                let _ = std::fs::remove_file(&cfg.socket);
                listen(&cfg.socket)
            }
            other => other,
        }
        .map_err(|source| VsockError::Listen {
            path: cfg.socket.clone(),
            source,
        })?;
        Ok(Vsock {
            cid: cfg.cid,
            queue_sizes: [QUEUE_SIZE; 3],
            acked_features: 0,
            state: Lifecycle::Ready(VsockBackend {
                cid: cfg.cid,
                path: cfg.socket.clone(),
                listener,
                streams: None,
                reset_event: false,
            }),
        })
    }

    pub fn is_active(&self) -> bool {
        self.state.is_active()
    }
}

/// A unix socket file nobody listens on any more.
fn is_stale_socket(path: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    socket
        && matches!(
            std::os::unix::net::UnixStream::connect(path),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused
        )
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_VSOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn features(&self) -> u64 {
        FEATURES
    }

    fn ack_features(&mut self, value: u64) {
        self.acked_features = ack_offered("virtio-vsock", FEATURES, value);
    }

    /// `struct virtio_vsock_config { le64 guest_cid; }`.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.cid.to_le_bytes(), offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        warn!(
            "virtio-vsock: ignoring a {}-byte config write at {offset}",
            data.len()
        );
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let backend = self.state.take_backend()?;
        let acked = self.acked_features;
        let mut slots = match take_queues(ctx.queues, &self.queue_sizes, &[0, 1], &ctx.mem, acked) {
            Ok(slots) => slots,
            Err(e) => {
                self.state.restore(backend);
                return Err(e);
            }
        };
        let (Some(rx), Some(tx)) = (slots[0].take(), slots[1].take()) else {
            self.state.restore(backend);
            return Err(ActivateError::MissingQueue(0));
        };
        let event = slots[2].take();
        let mut sources = vec![
            Source::readable(rx.notifier(), RX_TOKEN),
            Source::readable(tx.notifier(), TX_TOKEN),
        ];
        if let Some(q) = &event {
            sources.push(Source::readable(q.notifier(), EVENT_TOKEN));
        }
        // The handler's epoll is created with it; its fd is the last source.
        let handler = match VsockHandler::new(backend, ctx.mem, rx, tx, event, ctx.interrupt) {
            Ok(h) => h,
            Err(b) => {
                let (backend, e) = *b;
                self.state.restore(backend);
                return Err(ActivateError::Backend(format!("vsock sockets: {e}")));
            }
        };
        sources.push(Source {
            fd: handler.sockets_fd(),
            token: SOCKETS_TOKEN,
            events: EventSet::IN,
        });
        self.state
            .start("virtio-vsock", handler, &sources, ctx.worker_init)
    }

    fn pause(&mut self) -> Result<Option<Vec<QueuePosition>>, ActivateError> {
        self.state.pause()
    }

    /// The guest's streams are gone with the VMM that had them: its driver is told with a
    /// transport reset event (and reads its CID again, which a clone may have changed).
    fn restored(&mut self) {
        if let Lifecycle::Ready(backend) = &mut self.state {
            backend.streams = None;
            backend.reset_event = true;
        }
    }

    fn config_fixed_across_restore(&self) -> bool {
        false
    }

    /// Every stream is closed (the driver starts over).
    fn reset(&mut self) -> bool {
        self.acked_features = 0;
        let ok = self.state.reset();
        if let Lifecycle::Ready(backend) = &mut self.state {
            backend.streams = None;
        }
        ok
    }
}

#[cfg(test)]
mod tests;
