//! virtio-net over a TAP interface.
//!
//! Features offered: `VERSION_1` (required: the 12-byte header is assumed),
//! `RING_EVENT_IDX`, `RING_INDIRECT_DESC`, `MAC`, `CSUM`, `GUEST_CSUM`,
//! `GUEST_TSO4/6`, `GUEST_ECN`, `HOST_TSO4/6`, `HOST_ECN`, `MRG_RXBUF`, and
//! `MQ` + `CTRL_VQ` with more than one queue pair. The guest-receive
//! offloads the driver accepts are passed to the tap with `TUNSETOFFLOAD`
//! at activation.

#[cfg(test)]
mod fake_tap;
mod handler;
mod mac;
mod rxtx;
pub mod tap;

use std::net::Ipv4Addr;

use log::warn;
use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use virtio_bindings::virtio_net::*;

pub use mac::{MacAddr, MacParseError};
pub use rxtx::MAX_FRAME_LEN;
pub use tap::{configure_interface, Tap, TapDevice, TapError, VNET_HDR_LEN};

use self::handler::{NetHandler, TAP_TOKEN_BASE};
use self::rxtx::QueuePair;
use super::device::{
    ack_offered, read_config_bytes, ActivateContext, ActivateError, VirtioDevice,
    VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_RING_INDIRECT_DESC, VIRTIO_F_VERSION_1,
};
use super::queue::take_queues;
use super::worker::{Lifecycle, Source};
use vmm_sys_util::epoll::EventSet;

/// Default number of queues (one RX/TX pair).
pub const DEFAULT_NUM_QUEUES: u16 = 2;
/// Default (maximum) queue size.
pub const DEFAULT_QUEUE_SIZE: u16 = 256;
/// Most queue pairs accepted.
pub const MAX_QUEUE_PAIRS: u16 = 16;

/// A `--net` as the CLI parsed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// Tap to create or attach to; a kernel-named `vmtapN` when `None`.
    pub tap: Option<String>,
    /// Host-side address (and netmask) to give the tap.
    pub ip: Option<Ipv4Addr>,
    pub mask: Option<Ipv4Addr>,
    /// The guest's MAC; a random locally administered one when `None`.
    pub mac: Option<MacAddr>,
    /// RX + TX queues (even, at least 2); a control queue is added when
    /// there is more than one pair.
    pub num_queues: u16,
    pub queue_size: u16,
    /// The device's id in the VMM's API (`vm.info`, `vm.remove-device`); generated when `None`.
    pub id: Option<String>,
    /// Taps opened by the caller (one per queue pair), passed over the API socket
    /// (`vm.add-net` with SCM_RIGHTS, as Kata does): used instead of `tap`, `ip` and `mask`.
    pub tap_fds: TapFds,
    /// The PCI segment the device goes on (0 unless the VM has more: `--platform
    /// num_pci_segments`).
    pub pci_segment: u16,
    /// The slot on the segment's bus 0 (`pci_device_id`, 1 to 31); `None`: the lowest free one.
    pub pci_device_id: Option<u8>,
}

/// Tap fds handed in by a client; every device built from them gets duplicates, so a VM that
/// reboots gets its NIC back. Equal when they are the same handed-in set.
#[derive(Clone, Debug, Default)]
pub struct TapFds(pub Option<std::sync::Arc<Vec<std::os::fd::OwnedFd>>>);

impl PartialEq for TapFds {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for TapFds {}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            tap: None,
            ip: None,
            mask: None,
            mac: None,
            num_queues: DEFAULT_NUM_QUEUES,
            queue_size: DEFAULT_QUEUE_SIZE,
            id: None,
            tap_fds: TapFds::default(),
            pci_segment: 0,
            pci_device_id: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Tap(#[from] TapError),
    #[error("num_queues must be even and between 2 and {max}, got {0}", max = 2 * MAX_QUEUE_PAIRS)]
    NumQueues(u16),
    #[error("queue_size must be a power of two between 2 and 32768, got {0}")]
    QueueSize(u16),
    #[error("{taps} taps given for {pairs} queue pairs")]
    TapCount { taps: usize, pairs: usize },
}

/// A virtio-net device.
pub struct Net {
    mac: MacAddr,
    tap_name: Option<String>,
    queue_sizes: Vec<u16>,
    pairs: u16,
    avail_features: u64,
    acked_features: u64,
    state: Lifecycle<NetHandler>,
    /// Frames and bytes through every queue pair (`vm.counters`).
    counters: std::sync::Arc<crate::virtio::counters::Counters>,
}

fn bit(b: u32) -> u64 {
    1 << b
}

/// Guest-receive offloads and the `TUN_F_*` flag each one needs.
const GUEST_OFFLOADS: [(u32, u32); 4] = [
    (VIRTIO_NET_F_GUEST_CSUM, libc::TUN_F_CSUM),
    (VIRTIO_NET_F_GUEST_TSO4, libc::TUN_F_TSO4),
    (VIRTIO_NET_F_GUEST_TSO6, libc::TUN_F_TSO6),
    (VIRTIO_NET_F_GUEST_ECN, libc::TUN_F_TSO_ECN),
];

/// The `TUNSETOFFLOAD` flags matching the acked features.
pub fn tap_offload_flags(acked: u64) -> u32 {
    GUEST_OFFLOADS
        .iter()
        .filter(|(feature, _)| acked & bit(*feature) != 0)
        .fold(0, |flags, (_, tun)| flags | tun)
}

/// A handed-in tap's name, for the log (its fd gives it).
fn tap_name_of(tap: Option<&dyn Tap>) -> Option<String> {
    tap.and_then(|t| tap::name_of_fd(t.as_raw_fd()).ok())
}

impl Net {
    /// Opens (creating if needed) the tap, gives it `ip`/`mask` and brings it
    /// up.
    pub fn new(cfg: &NetConfig) -> Result<Self, NetError> {
        let pairs = check_queues(cfg.num_queues, cfg.queue_size)?;
        if let Some(fds) = &cfg.tap_fds.0 {
            let mut taps: Vec<Box<dyn Tap>> = Vec::with_capacity(fds.len());
            for fd in fds.iter() {
                taps.push(Box::new(TapDevice::from_fd(fd)?));
            }
            let name = tap_name_of(taps.first().map(|t| t.as_ref()));
            let mut net = Self::with_taps(cfg, taps)?;
            net.tap_name = name;
            return Ok(net);
        }
        let taps = TapDevice::open(cfg.tap.as_deref(), usize::from(pairs))?;
        let name = taps[0].name().to_string();
        if cfg.ip.is_some() || cfg.mask.is_some() {
            configure_interface(&name, cfg.ip, cfg.mask)?;
        } else if let Err(e) = configure_interface(&name, None, None) {
            // An existing tap may be managed (and brought up) by someone else.
            warn!("virtio-net: cannot bring {name} up: {e}");
        }
        let taps = taps
            .into_iter()
            .map(|t| Box::new(t) as Box<dyn Tap>)
            .collect();
        let mut net = Self::with_taps(cfg, taps)?;
        net.tap_name = Some(name);
        Ok(net)
    }

    /// A device over taps opened elsewhere (one per queue pair): passed-in
    /// fds, or a fake in tests. `cfg.tap`, `ip` and `mask` are ignored.
    pub fn with_taps(cfg: &NetConfig, taps: Vec<Box<dyn Tap>>) -> Result<Self, NetError> {
        let pairs = check_queues(cfg.num_queues, cfg.queue_size)?;
        if taps.len() != usize::from(pairs) {
            return Err(NetError::TapCount {
                taps: taps.len(),
                pairs: usize::from(pairs),
            });
        }
        let mut features = VIRTIO_F_VERSION_1
            | VIRTIO_F_RING_EVENT_IDX
            | VIRTIO_F_RING_INDIRECT_DESC
            | [
                VIRTIO_NET_F_MAC,
                VIRTIO_NET_F_CSUM,
                VIRTIO_NET_F_GUEST_CSUM,
                VIRTIO_NET_F_GUEST_TSO4,
                VIRTIO_NET_F_GUEST_TSO6,
                VIRTIO_NET_F_GUEST_ECN,
                VIRTIO_NET_F_HOST_TSO4,
                VIRTIO_NET_F_HOST_TSO6,
                VIRTIO_NET_F_HOST_ECN,
                VIRTIO_NET_F_MRG_RXBUF,
            ]
            .iter()
            .fold(0, |f, b| f | bit(*b));
        let mut num_queues = 2 * usize::from(pairs);
        if pairs > 1 {
            features |= bit(VIRTIO_NET_F_MQ) | bit(VIRTIO_NET_F_CTRL_VQ);
            num_queues += 1;
        }
        Ok(Net {
            mac: cfg.mac.unwrap_or_else(MacAddr::random_local),
            tap_name: None,
            queue_sizes: vec![cfg.queue_size; num_queues],
            pairs,
            avail_features: features,
            acked_features: 0,
            state: Lifecycle::Ready(taps),
            counters: std::sync::Arc::new(crate::virtio::counters::Counters::new(
                crate::virtio::counters::net::NAMES,
            )),
        })
    }

    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// The host interface name, when this device opened the tap itself.
    pub fn tap_name(&self) -> Option<&str> {
        self.tap_name.as_deref()
    }

    pub fn is_active(&self) -> bool {
        self.state.is_active()
    }

    /// `struct virtio_net_config`: mac, status, max_virtqueue_pairs, mtu.
    fn config_space(&self) -> [u8; 12] {
        let mut c = [0u8; 12];
        c[0..6].copy_from_slice(&self.mac.0);
        c[8..10].copy_from_slice(&self.pairs.to_le_bytes());
        c
    }
}

/// Validates the queue settings; returns the number of queue pairs.
fn check_queues(num_queues: u16, queue_size: u16) -> Result<u16, NetError> {
    if num_queues < 2 || !num_queues.is_multiple_of(2) || num_queues > 2 * MAX_QUEUE_PAIRS {
        return Err(NetError::NumQueues(num_queues));
    }
    if !(2..=32768).contains(&queue_size) || !queue_size.is_power_of_two() {
        return Err(NetError::QueueSize(queue_size));
    }
    Ok(num_queues / 2)
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn counters(&self) -> Option<std::sync::Arc<crate::virtio::counters::Counters>> {
        Some(self.counters.clone())
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn features(&self) -> u64 {
        self.avail_features
    }

    fn ack_features(&mut self, value: u64) {
        self.acked_features = ack_offered("virtio-net", self.avail_features, value);
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config_space(), offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // The config space is read-only for a VERSION_1 driver.
        warn!(
            "virtio-net: ignoring a {}-byte config write at {offset}",
            data.len()
        );
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let acked = self.acked_features;
        if acked & VIRTIO_F_VERSION_1 == 0 {
            return Err(ActivateError::MissingFeature("VIRTIO_F_VERSION_1"));
        }
        let mut taps = self.state.take_backend()?;
        let offload = tap_offload_flags(acked);
        for tap in taps.iter_mut() {
            if let Err(e) = tap.set_offload(offload) {
                self.state.restore(taps);
                return Err(ActivateError::Backend(format!("TUNSETOFFLOAD: {e}")));
            }
        }
        let mut slots = match take_queues(ctx.queues, &self.queue_sizes, &[0, 1], &ctx.mem, acked) {
            Ok(slots) => slots,
            Err(e) => {
                self.state.restore(taps);
                return Err(e);
            }
        };
        let ctrl = if self.pairs > 1 {
            slots.pop().flatten()
        } else {
            None
        };
        let mut sources = Vec::new();
        let mut pairs = Vec::new();
        for (i, tap) in taps.into_iter().enumerate() {
            let (rx, tx) = (slots[2 * i].take(), slots[2 * i + 1].take());
            for q in rx.iter().chain(tx.iter()) {
                sources.push(Source::readable(q.notifier(), u64::from(q.index)));
            }
            sources.push(Source {
                fd: tap.as_raw_fd(),
                token: TAP_TOKEN_BASE + i as u64,
                events: EventSet::IN | EventSet::EDGE_TRIGGERED,
            });
            pairs.push(QueuePair::new(rx, tx, tap).with_counters(self.counters.clone()));
        }
        if let Some(q) = &ctrl {
            sources.push(Source::readable(q.notifier(), u64::from(q.index)));
        }
        let handler = NetHandler {
            pairs,
            ctrl,
            mem: ctx.mem,
            irq: ctx.interrupt,
            mrg_rxbuf: acked & bit(VIRTIO_NET_F_MRG_RXBUF) != 0,
            max_pairs: self.pairs,
        };
        self.state
            .start("virtio-net", handler, &sources, ctx.worker_init)
    }

    fn pause(&mut self) -> Result<Option<Vec<crate::virtio::QueuePosition>>, ActivateError> {
        self.state.pause()
    }

    fn reset(&mut self) -> bool {
        self.acked_features = 0;
        self.state.reset()
    }
}

#[cfg(test)]
mod tests;
