//! A device's I/O counters (`vm.counters`): a fixed set of named totals, bumped by the device's
//! worker thread and read by the VMM's control loop at any time, without a lock.

use std::sync::atomic::{AtomicU64, Ordering};

/// Named monotonic totals (bytes, operations, frames).
#[derive(Debug)]
pub struct Counters {
    names: &'static [&'static str],
    values: Box<[AtomicU64]>,
}

impl Counters {
    pub fn new(names: &'static [&'static str]) -> Self {
        Counters {
            names,
            values: names.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Add `n` to the counter at `index` (an index into the names given to [`Counters::new`]).
    pub fn add(&self, index: usize, n: u64) {
        if let Some(v) = self.values.get(index) {
            v.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Every counter's name and value now.
    pub fn read(&self) -> Vec<(&'static str, u64)> {
        self.names
            .iter()
            .zip(self.values.iter())
            .map(|(&n, v)| (n, v.load(Ordering::Relaxed)))
            .collect()
    }
}

/// virtio-blk: what Cloud Hypervisor reports for a disk.
pub mod block {
    pub const NAMES: &[&str] = &["read_bytes", "write_bytes", "read_ops", "write_ops"];
    pub const READ_BYTES: usize = 0;
    pub const WRITE_BYTES: usize = 1;
    pub const READ_OPS: usize = 2;
    pub const WRITE_OPS: usize = 3;
}

/// virtio-net: what Cloud Hypervisor reports for a NIC (Ethernet frames, without the virtio
/// header).
pub mod net {
    pub const NAMES: &[&str] = &["rx_bytes", "rx_frames", "tx_bytes", "tx_frames"];
    pub const RX_BYTES: usize = 0;
    pub const RX_FRAMES: usize = 1;
    pub const TX_BYTES: usize = 2;
    pub const TX_FRAMES: usize = 3;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_by_index_and_read_by_name() {
        let c = Counters::new(block::NAMES);
        c.add(block::READ_BYTES, 4096);
        c.add(block::READ_OPS, 1);
        c.add(block::READ_BYTES, 512);
        c.add(99, 1); // out of range: ignored
        assert_eq!(
            c.read(),
            [
                ("read_bytes", 4608),
                ("write_bytes", 0),
                ("read_ops", 1),
                ("write_ops", 0)
            ]
        );
    }
}
