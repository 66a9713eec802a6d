//! A virtio-pci function's state for a snapshot: its PCI configuration registers (BARs,
//! command, capabilities with the MSI-X enable bits), MSI-X table and pending bits, the common
//! configuration the driver wrote (features, status, each queue's size, vector and rings) and
//! where the device stands in each queue. A restore writes the registers back through the
//! PCI bus (so the BARs land where the guest put them) and activates the device at the saved
//! places.

use serde::{Deserialize, Serialize};

use devices::virtio::QueuePosition;

/// Registers of the PCI configuration header and capabilities saved (the 256-byte space).
pub const CONFIG_REGS: usize = 64;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedQueue {
    pub size: u16,
    pub vector: u16,
    pub enabled: bool,
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
    /// Where the device stands in the ring (0 before it was activated).
    pub next_avail: u16,
    pub next_used: u16,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtioPciState {
    /// The virtio device ID (1 net, 2 block, 3 console, 4 rng).
    pub device_type: u32,
    /// PCI configuration registers 0..64.
    pub config: Vec<u32>,
    /// MSI-X table entries: address low, address high, data, vector control.
    pub msix_table: Vec<[u32; 4]>,
    pub msix_pba: Vec<u64>,
    pub device_feature_select: u32,
    pub driver_feature_select: u32,
    pub driver_features: u64,
    pub status: u8,
    pub config_vector: u16,
    pub queue_select: u16,
    pub queues: Vec<SavedQueue>,
    /// Activation failed: the device reads NEEDS_RESET until the driver resets it.
    pub broken: bool,
    /// The device configuration space as the driver saw it (a disk's capacity, a NIC's MAC):
    /// a restore onto a device that differs there is refused.
    pub device_config: Vec<u8>,
}

impl VirtioPciState {
    /// Each enabled queue's saved place, by queue index.
    pub fn positions(&self) -> Vec<QueuePosition> {
        self.queues
            .iter()
            .enumerate()
            .filter(|(_, q)| q.enabled)
            .map(|(i, q)| QueuePosition {
                index: i as u16,
                next_avail: q.next_avail,
                next_used: q.next_used,
            })
            .collect()
    }
}
