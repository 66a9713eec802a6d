//! virtio-fs (device ID 26) as a vhost-user frontend: the queues are served by a separate
//! backend process (`virtiofsd`) that the VMM talks to over a unix socket. The VMM keeps the
//! transport and the configuration space (`tag`, number of request queues) and hands the
//! backend what it needs to serve the rings itself: guest memory (shared file mappings, sent
//! as fds), each ring's addresses and place, the queue's notification eventfd (the KVM
//! ioeventfd, so a guest kick wakes the backend directly) and a "call" eventfd per queue that
//! the device worker turns into the queue's interrupt.
//!
//! * [`frontend`]: the vhost-user session (connect, feature negotiation, the activation and
//!   stop sequences);
//! * [`handler`]: the worker: interrupts from the backend, and when the backend goes away,
//!   every request the guest makes from then on answered with `ENOTCONN`, so its file
//!   operations fail instead of hanging and the VM stays up.
//!
//! Queues: 0 is the high-priority queue (FORGET, INTERRUPT), 1..=num_queues the request
//! queues.

#[cfg(any(test, feature = "fake-vhost-user"))]
pub mod fake;
pub mod frontend;
mod handler;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use log::warn;

use super::device::{
    read_config_bytes, ActivateContext, ActivateError, QueuePosition, VirtioDevice,
    VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_RING_INDIRECT_DESC, VIRTIO_F_VERSION_1,
};
use super::queue::take_queues;
use super::worker::{Lifecycle, Source};
use frontend::{Session, SessionError};
use handler::{FsBackend, FsHandler};

pub const VIRTIO_ID_FS: u32 = 26;
/// The tag's room in the configuration space (`struct virtio_fs_config`).
pub const TAG_LEN: usize = 36;
/// The most request queues a device may have (the vhost-user protocol numbers vrings in 8
/// bits; the high-priority queue takes one).
pub const MAX_REQUEST_QUEUES: u16 = 255;
/// Virtio features the frontend may pass on from the backend to the driver: the transport
/// here is split rings over virtio-pci with no IOMMU, no packed rings, no notification data.
const PASSABLE_FEATURES: u64 =
    VIRTIO_F_VERSION_1 | VIRTIO_F_RING_EVENT_IDX | VIRTIO_F_RING_INDIRECT_DESC;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsConfig {
    /// The name the guest mounts (`mount -t virtiofs TAG /mnt`), 1 to 36 bytes.
    pub tag: String,
    /// The vhost-user backend's socket (`virtiofsd --socket-path`).
    pub socket: PathBuf,
    /// Request queues (the guest may use one per vCPU); the high-priority queue comes on top.
    pub num_queues: u16,
    /// Each queue's size (a power of two up to 32768).
    pub queue_size: u16,
    /// The device id (`vm.info`), when given.
    pub id: Option<String>,
    /// The PCI segment the device goes on (0 unless the VM has more: `--platform
    /// num_pci_segments`).
    pub pci_segment: u16,
    /// The slot on the segment's bus 0 (`pci_device_id`, 1 to 31); `None`: the lowest free one.
    pub pci_device_id: Option<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("tag {0:?}: a tag is 1 to 36 bytes")]
    Tag(String),
    #[error("num_queues {0}: 1 to 255 request queues")]
    NumQueues(u16),
    #[error("queue_size {0}: a power of two from 2 to 32768")]
    QueueSize(u16),
    #[error("the vhost-user backend at {}: {source}", socket.display())]
    Backend {
        socket: PathBuf,
        source: SessionError,
    },
}

/// A virtio-fs device.
pub struct Fs {
    config: [u8; TAG_LEN + 4],
    queue_sizes: Vec<u16>,
    /// What the backend offers that the driver may have (`PASSABLE_FEATURES`).
    features: u64,
    acked_features: u64,
    state: Lifecycle<FsHandler>,
}

impl Fs {
    /// Checks the configuration and connects to the backend, which must be listening (as
    /// Cloud Hypervisor does: start `virtiofsd` first). The session is set up now (owner,
    /// features, protocol features, queue count) so that a backend that cannot serve this
    /// device is an error at once, not when the guest's driver starts it.
    pub fn new(cfg: &FsConfig) -> Result<Self, FsError> {
        if cfg.tag.is_empty() || cfg.tag.len() > TAG_LEN {
            return Err(FsError::Tag(cfg.tag.clone()));
        }
        if cfg.num_queues == 0 || cfg.num_queues > MAX_REQUEST_QUEUES {
            return Err(FsError::NumQueues(cfg.num_queues));
        }
        if cfg.queue_size < 2 || cfg.queue_size > 32768 || !cfg.queue_size.is_power_of_two() {
            return Err(FsError::QueueSize(cfg.queue_size));
        }
        let queues = usize::from(cfg.num_queues) + 1;
        let session = Session::connect(&cfg.socket, queues).map_err(|source| FsError::Backend {
            socket: cfg.socket.clone(),
            source,
        })?;
        let mut config = [0u8; TAG_LEN + 4];
        config[..cfg.tag.len()].copy_from_slice(cfg.tag.as_bytes());
        config[TAG_LEN..].copy_from_slice(&u32::from(cfg.num_queues).to_le_bytes());
        Ok(Fs {
            config,
            queue_sizes: vec![cfg.queue_size; queues],
            features: session.virtio_features() & PASSABLE_FEATURES,
            acked_features: 0,
            state: Lifecycle::Ready(FsBackend {
                session,
                tag: cfg.tag.clone(),
            }),
        })
    }

    pub fn is_active(&self) -> bool {
        self.state.is_active()
    }
}

impl VirtioDevice for Fs {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_FS
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn ack_features(&mut self, value: u64) {
        self.acked_features = super::device::ack_offered("virtio-fs", self.features, value);
    }

    /// `struct virtio_fs_config { u8 tag[36]; le32 num_request_queues; }`.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        warn!(
            "virtio-fs: ignoring a {}-byte config write at {offset} (the config is read-only)",
            data.len()
        );
    }

    /// Hands the rings to the backend, then starts the worker that relays its interrupts.
    /// The high-priority queue and the first request queue are required (Linux enables all).
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let mut backend = self.state.take_backend()?;
        let acked = self.acked_features;
        let slots = match take_queues(ctx.queues, &self.queue_sizes, &[0, 1], &ctx.mem, acked) {
            Ok(slots) => slots,
            Err(e) => {
                self.state.restore(backend);
                return Err(e);
            }
        };
        let queues: Vec<_> = slots.into_iter().flatten().collect();
        let calls = match backend.session.start(&ctx.mem, acked, &queues) {
            Ok(calls) => calls,
            Err(e) => {
                let msg = format!(
                    "virtio-fs {:?}: the vhost-user backend at {}: {e}",
                    backend.tag,
                    backend.session.path().display()
                );
                self.state.restore(backend);
                return Err(ActivateError::Backend(msg));
            }
        };
        let handler = match FsHandler::new(backend, ctx.mem, queues, calls, ctx.interrupt) {
            Ok(h) => h,
            Err(b) => {
                let (mut backend, e) = *b;
                backend.session.stop();
                self.state.restore(backend);
                return Err(ActivateError::Backend(format!("virtio-fs worker: {e}")));
            }
        };
        let sources: Vec<Source> = handler.sources();
        self.state
            .start("virtio-fs", handler, &sources, ctx.worker_init)
    }

    /// A vhost-user backend's state is its own (in-flight requests, open files): this VMM
    /// does not migrate it, so a VM with virtio-fs is not snapshotted (the VMM refuses it
    /// before pausing anything; this is the device's own refusal).
    fn pause(&mut self) -> Result<Option<Vec<QueuePosition>>, ActivateError> {
        Err(ActivateError::Backend(
            "virtio-fs: the vhost-user backend's state cannot be saved in a snapshot".into(),
        ))
    }

    /// The worker stops, then the backend is told to stop each ring (GET_VRING_BASE), and the
    /// device can be started again by the driver. A backend that is gone cannot be started
    /// again: `false` (the transport reports NEEDS_RESET when the driver tries).
    fn reset(&mut self) -> bool {
        let ok = self.state.reset();
        self.acked_features = 0;
        ok
    }
}
