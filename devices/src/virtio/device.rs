//! The contract between a virtio device backend and the transport that
//! exposes it to the guest (virtio-pci today, virtio-mmio possibly later).
//!
//! The transport owns everything the spec puts in the "common configuration"
//! (device status, feature selectors, queue addresses, MSI-X vectors) and
//! calls into the device only for what is device-specific:
//!
//! 1. [`VirtioDevice::device_type`], [`VirtioDevice::queue_max_sizes`] and
//!    [`VirtioDevice::features`] to fill the PCI IDs and the common config;
//! 2. [`VirtioDevice::ack_features`] with the full 64-bit driver feature word
//!    when the driver sets `FEATURES_OK`;
//! 3. [`VirtioDevice::read_config`] / [`VirtioDevice::write_config`] for the
//!    device-specific configuration window;
//! 4. [`VirtioDevice::activate`] when the driver sets `DRIVER_OK`, handing over
//!    the guest memory, the queues the driver enabled, one notification
//!    `EventFd` per queue (which the transport also registers as a KVM
//!    ioeventfd on the queue's notify address) and an interrupt handle;
//! 5. [`VirtioDevice::reset`] when the driver writes 0 to the status register.
//!
//! # What a transport must provide
//!
//! * One `virtio_queue::Queue::new(max)` per entry of `queue_max_sizes`,
//!   updated from the driver's common-config writes (`set_size`,
//!   `set_desc_table_address`/`avail`/`used`, `set_ready`). It need not
//!   touch `set_event_idx`: devices derive it from their acked features.
//! * One non-blocking `EventFd` per queue, registered as a KVM ioeventfd on
//!   that queue's notify address; a clone goes into [`ActivatedQueue`].
//! * A [`VirtioInterrupt`] mapping `Queue(i)` to the MSI-X vector the driver
//!   programmed for queue `i` and `Config` to the config vector (irqfds),
//!   dropping the interrupt for `VIRTIO_MSI_NO_VECTOR`; with INTx it sets
//!   the ISR bits (1 = queue, 2 = config) and pulses the line.
//! * Feature negotiation: the two 32-bit feature windows over
//!   [`VirtioDevice::features`], `ack_features` with the full word at
//!   `FEATURES_OK` (refusing `FEATURES_OK` without `VERSION_1`), and the
//!   config generation counter.
//! * `activate` at `DRIVER_OK` with the enabled queues only; on error it
//!   sets `DEVICE_NEEDS_RESET`. `reset` when the driver writes status 0,
//!   after which it resets its own `Queue`s; a `false` return means the
//!   device stays unusable (`NEEDS_RESET`).
//! * The device-config window, forwarded to `read_config`/`write_config`
//!   with offsets relative to its start.
//! * Optionally a [`WorkerInit`] hook (the VMM's per-device seccomp filter).
//!   `activate` spawns the worker from the calling thread, which therefore
//!   needs thread creation allowed (`clone3`/`clone`, `mmap`, `mprotect`,
//!   `munmap`, `madvise`, `set_robust_list`, `rseq`, `prctl`, `sigaltstack`)
//!   and hands its own filter down to the worker; calling `activate` from
//!   the VMM thread rather than a vCPU thread keeps the vCPU filter tight.
//!
//! # Threading
//!
//! `activate` spawns one worker thread per device (see
//! [`worker`](super::worker) for why one per device and not one per VM);
//! the vCPU threads only ever touch the device through this trait, whose
//! methods are short and never block on guest I/O. `reset` joins the worker,
//! so it waits for at most the request in flight.

use std::fmt;
use std::io;
use std::sync::Arc;

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// `VIRTIO_F_VERSION_1`: every device here is a modern (1.0+) device.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// `VIRTIO_F_RING_EVENT_IDX`: `used_event`/`avail_event` notification suppression.
pub const VIRTIO_F_RING_EVENT_IDX: u64 = 1 << 29;
/// `VIRTIO_F_RING_INDIRECT_DESC`: indirect descriptor tables (virtio-queue
/// follows them).
pub const VIRTIO_F_RING_INDIRECT_DESC: u64 = 1 << 28;

/// Which interrupt a device raises; the transport maps it to an MSI-X
/// vector (or to the INTx line plus the ISR status bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VirtioInterruptType {
    /// The device configuration space changed.
    Config,
    /// Buffers were added to the used ring of the queue with this index.
    Queue(u16),
}

/// How a device tells the guest about used buffers or config changes.
/// Implemented by the transport (MSI-X vector → irqfd); [`Interrupt`]
/// implementors are not enough because a virtio device needs to say *which*
/// interrupt it raises.
///
/// [`Interrupt`]: crate::Interrupt
pub trait VirtioInterrupt: Send + Sync {
    fn trigger(&self, kind: VirtioInterruptType) -> io::Result<()>;
}

/// One queue the driver enabled, as handed to [`VirtioDevice::activate`].
#[derive(Debug)]
pub struct ActivatedQueue {
    /// The queue's index in the device's queue list (the transport's
    /// `queue_select` value); devices use it to tell RX from TX and to
    /// raise [`VirtioInterruptType::Queue`].
    pub index: u16,
    /// The queue as configured by the driver (size, ring addresses, ready).
    /// The device enables `EVENT_IDX` on it itself when that was acked.
    pub queue: Queue,
    /// Written by the transport (through a KVM ioeventfd) whenever the
    /// driver notifies this queue. Should be non-blocking.
    pub notifier: EventFd,
}

/// Run first thing on a device's worker thread, with the thread's name
/// (`virtio-blk`, `virtio-net`, ...): the place to install the device
/// seccomp filter. An error fails [`VirtioDevice::activate`].
pub type WorkerInit = Arc<dyn Fn(&str) -> io::Result<()> + Send + Sync>;

/// Where a device stands in one of its queues: the next available entry it will take and
/// the next used entry it will write. A paused device reports them (with chains it took
/// but had not completed given back: they are taken again after a restore), and a queue
/// handed to [`VirtioDevice::activate`] at these positions carries on where it stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueuePosition {
    pub index: u16,
    pub next_avail: u16,
    pub next_used: u16,
}

/// What a device needs to start processing queues.
pub struct ActivateContext {
    /// The guest memory. `GuestMemoryMmap` clones share the mappings (its
    /// regions are `Arc`s), so the transport passes a clone.
    pub mem: GuestMemoryMmap,
    /// The queues the driver enabled, in any order; queues the driver left
    /// disabled are simply absent (e.g. a 2-vCPU guest uses 2 of 8 block
    /// queues).
    pub queues: Vec<ActivatedQueue>,
    /// Where the device signals used buffers and config changes.
    pub interrupt: Arc<dyn VirtioInterrupt>,
    /// Optional hook run on the worker thread before it serves the queues.
    /// Note that a thread inherits the seccomp filter of the thread that
    /// spawns it (the one calling `activate`), so a hook can only narrow it.
    pub worker_init: Option<WorkerInit>,
}

impl fmt::Debug for ActivateContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActivateContext")
            .field("queues", &self.queues)
            .finish_non_exhaustive()
    }
}

/// Why a device refused to activate. The transport should then set
/// `DEVICE_NEEDS_RESET` (or `FAILED`) in the device status.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("the device is already active")]
    AlreadyActive,
    #[error("queue {0} is required but the driver did not enable it")]
    MissingQueue(u16),
    #[error("queue {index} does not exist (the device has {count} queues)")]
    UnknownQueue { index: u16, count: usize },
    #[error("queue {0} was handed over twice")]
    DuplicateQueue(u16),
    #[error("queue {0} is not usable: not ready, bad size or rings outside guest memory")]
    InvalidQueue(u16),
    #[error("the driver did not accept the required feature {0}")]
    MissingFeature(&'static str),
    #[error("the device backend is gone (an earlier worker thread panicked)")]
    BackendLost,
    #[error("backend setup failed: {0}")]
    Backend(String),
    #[error("cannot start the device worker thread: {0}")]
    Worker(#[source] io::Error),
}

/// A virtio device backend, independent of the transport.
pub trait VirtioDevice: Send {
    /// The virtio device ID (`VIRTIO_ID_*`: 1 net, 2 block, 3 console, 4 rng).
    /// The device's I/O counters (`vm.counters`), if it keeps any.
    fn counters(&self) -> Option<std::sync::Arc<super::counters::Counters>> {
        None
    }

    fn device_type(&self) -> u32;

    /// The maximum size of each queue; the slice length is the number of
    /// queues the device exposes.
    fn queue_max_sizes(&self) -> &[u16];

    /// The features the device offers, including [`VIRTIO_F_VERSION_1`].
    fn features(&self) -> u64;

    /// The features the driver accepted (the full 64-bit word). Replaces any
    /// previous value; bits the device did not offer are dropped. Called
    /// before [`activate`](Self::activate).
    fn ack_features(&mut self, value: u64);

    /// Reads `data.len()` bytes of the device configuration space at
    /// `offset`; bytes past its end read as 0.
    fn read_config(&self, offset: u64, data: &mut [u8]);

    /// Writes the device configuration space; writes to read-only fields are
    /// ignored (and logged).
    fn write_config(&mut self, offset: u64, data: &[u8]);

    /// Starts processing the queues (the driver set `DRIVER_OK`).
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError>;

    /// Stops processing for a snapshot, keeping the acked features: the worker is joined
    /// and the device is ready to be activated again, with queues at the returned
    /// positions. `Ok(None)`: it was not active (nothing taken from any queue yet). A
    /// device that cannot save its place says so with an error.
    fn pause(&mut self) -> Result<Option<Vec<QueuePosition>>, ActivateError> {
        Err(ActivateError::Backend(format!(
            "virtio device type {} cannot be paused for a snapshot",
            self.device_type()
        )))
    }

    /// The device was just built from a snapshot and is about to be activated at the saved
    /// queue places, in a new process: what it had on the host side (open connections) is
    /// gone. A device that must tell the guest (vsock: a transport reset) does it here.
    fn restored(&mut self) {}

    /// Whether a restore must find this device's configuration space as it was saved (a
    /// disk's capacity). A vsock's guest CID may differ: a clone gets its own, and the
    /// transport reset it sends makes the guest read it again.
    fn config_fixed_across_restore(&self) -> bool {
        true
    }

    /// Stops processing: the worker thread is told to exit and joined, and the
    /// device returns to its pre-activation state with no features acked.
    /// Returns `false` when the device cannot be activated again (its backend
    /// was lost), in which case the transport should report `NEEDS_RESET`.
    fn reset(&mut self) -> bool;

    /// Grow the device's backing to `bytes` and tell the driver (a config-change interrupt
    /// when active). Only disks can (`vm.resize-disk`).
    fn resize(&mut self, _bytes: u64) -> Result<(), String> {
        Err("this device cannot be resized".into())
    }
}

/// `offered & value`, logging bits the driver set without them being offered.
pub(crate) fn ack_offered(name: &str, offered: u64, value: u64) -> u64 {
    let unknown = value & !offered;
    if unknown != 0 {
        log::warn!("{name}: driver acked unoffered features {unknown:#x}; ignored");
    }
    value & offered
}

/// Copies `config[offset..]` into `data`, zero-filling whatever lies past the
/// end of `config` (including an `offset` beyond it).
pub(crate) fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if start >= config.len() {
        return;
    }
    let n = data.len().min(config.len() - start);
    data[..n].copy_from_slice(&config[start..start + n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_config_bytes_copies_and_zero_fills() {
        let config = [1u8, 2, 3, 4];
        let mut data = [0xffu8; 3];
        read_config_bytes(&config, 2, &mut data);
        assert_eq!(data, [3, 4, 0]);
        read_config_bytes(&config, 100, &mut data);
        assert_eq!(data, [0, 0, 0]);
        read_config_bytes(&config, u64::MAX, &mut data);
        assert_eq!(data, [0, 0, 0]);
    }

    #[test]
    fn ack_offered_drops_unoffered_bits() {
        assert_eq!(ack_offered("t", 0b1010, 0b1111), 0b1010);
        assert_eq!(
            ack_offered("t", VIRTIO_F_VERSION_1, VIRTIO_F_VERSION_1),
            VIRTIO_F_VERSION_1
        );
    }
}
