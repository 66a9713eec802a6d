//! virtio-blk over a raw image file (or block device).
//!
//! Features offered: `VERSION_1`, `RING_EVENT_IDX`, `RING_INDIRECT_DESC`,
//! `FLUSH`, `SEG_MAX`, `BLK_SIZE` (512), `RO` for read-only disks, `MQ` with
//! more than one queue, `WRITE_ZEROES` on writable disks, and `DISCARD`
//! when the image's filesystem can punch holes.

mod disk;
mod handler;
pub mod request;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use log::warn;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_MQ,
    VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_WRITE_ZEROES,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;

pub use disk::{DiskError, DiskImage, DiskResizer, DIRECT_ALIGN, SECTOR_SIZE};
use handler::{BlockHandler, Negotiated, RequestExecutor};
pub use handler::{DiscardLimits, ID_LEN};

use super::device::{
    ack_offered, read_config_bytes, ActivateContext, ActivateError, VirtioDevice,
    VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_RING_INDIRECT_DESC, VIRTIO_F_VERSION_1,
};
use super::queue::take_queues;
use super::worker::{Lifecycle, Source};

/// Default number of request queues.
pub const DEFAULT_NUM_QUEUES: u16 = 1;
/// Default (maximum) queue size.
pub const DEFAULT_QUEUE_SIZE: u16 = 256;
/// Advertised DISCARD/WRITE_ZEROES limits.
pub const DISCARD_LIMITS: DiscardLimits = DiscardLimits {
    max_sectors: 1 << 22,
    max_segments: 32,
};

/// A `--disk` as the CLI parsed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskConfig {
    pub path: PathBuf,
    pub readonly: bool,
    /// Open with `O_DIRECT` (bypass the host page cache).
    pub direct: bool,
    pub num_queues: u16,
    pub queue_size: u16,
    /// Serial reported by GET_ID (at most 20 bytes are used); defaults to
    /// one derived from the image's device and inode numbers.
    pub id: Option<String>,
    /// The PCI segment the device goes on (0 unless the VM has more: `--platform
    /// num_pci_segments`).
    pub pci_segment: u16,
    /// The slot on the segment's bus 0 (`pci_device_id`, 1 to 31); `None`: the lowest free one.
    pub pci_device_id: Option<u8>,
}

impl DiskConfig {
    /// A read-write, cached disk with one queue of [`DEFAULT_QUEUE_SIZE`].
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DiskConfig {
            path: path.into(),
            readonly: false,
            direct: false,
            num_queues: DEFAULT_NUM_QUEUES,
            queue_size: DEFAULT_QUEUE_SIZE,
            id: None,
            pci_segment: 0,
            pci_device_id: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error("num_queues must be between 1 and 256, got {0}")]
    NumQueues(u16),
    #[error("queue_size must be a power of two between 2 and 32768, got {0}")]
    QueueSize(u16),
}

/// A virtio-blk device.
pub struct Block {
    queue_sizes: Vec<u16>,
    avail_features: u64,
    acked_features: u64,
    config: Vec<u8>,
    state: Lifecycle<BlockHandler>,
    /// The executor's counters: the same whether the worker holds it or not.
    counters: std::sync::Arc<crate::virtio::counters::Counters>,
    /// Grows the image the executor serves (`vm.resize-disk`).
    resizer: DiskResizer,
    /// Where a config change is announced while the device is active.
    irq: Option<std::sync::Arc<dyn super::device::VirtioInterrupt>>,
}

impl Block {
    /// Opens and locks the image; errors name the file.
    pub fn new(cfg: &DiskConfig) -> Result<Self, BlockError> {
        if cfg.num_queues == 0 || cfg.num_queues > 256 {
            return Err(BlockError::NumQueues(cfg.num_queues));
        }
        let qs = cfg.queue_size;
        if !(2..=32768).contains(&qs) || !qs.is_power_of_two() {
            return Err(BlockError::QueueSize(qs));
        }
        let disk = DiskImage::open(&cfg.path, cfg.readonly, cfg.direct)?;
        let id = serial(cfg.id.as_deref(), &disk);
        let mut features = VIRTIO_F_VERSION_1
            | VIRTIO_F_RING_EVENT_IDX
            | VIRTIO_F_RING_INDIRECT_DESC
            | bit(VIRTIO_BLK_F_FLUSH)
            | bit(VIRTIO_BLK_F_SEG_MAX)
            | bit(VIRTIO_BLK_F_BLK_SIZE);
        if cfg.readonly {
            features |= bit(VIRTIO_BLK_F_RO);
        } else {
            features |= bit(VIRTIO_BLK_F_WRITE_ZEROES);
            if disk.supports_punch_hole() {
                features |= bit(VIRTIO_BLK_F_DISCARD);
            }
        }
        if cfg.num_queues > 1 {
            features |= bit(VIRTIO_BLK_F_MQ);
        }
        let config = config_space(&ConfigFields {
            capacity: disk.size() / SECTOR_SIZE,
            seg_max: u32::from(qs) - 2,
            num_queues: cfg.num_queues,
            discard_alignment: 1,
            limits: DISCARD_LIMITS,
            may_unmap: disk.supports_punch_hole(),
        });
        let resizer = disk.resizer().map_err(|source| {
            BlockError::Disk(DiskError::Size {
                path: cfg.path.clone(),
                source,
            })
        })?;
        let executor = RequestExecutor::new(disk, id, DISCARD_LIMITS);
        Ok(Block {
            resizer,
            irq: None,
            queue_sizes: vec![qs; usize::from(cfg.num_queues)],
            avail_features: features,
            acked_features: 0,
            config,
            counters: executor.counters(),
            state: Lifecycle::Ready(executor),
        })
    }

    /// Capacity in 512-byte sectors, as in the config space.
    pub fn capacity(&self) -> u64 {
        u64::from_le_bytes(self.config[0..8].try_into().unwrap())
    }

    pub fn is_active(&self) -> bool {
        self.state.is_active()
    }
}

fn bit(b: u32) -> u64 {
    1 << b
}

/// The GET_ID answer: the configured id, or "<dev>-<ino>" of the image.
fn serial(id: Option<&str>, disk: &DiskImage) -> [u8; ID_LEN] {
    let text = match id {
        Some(id) => id.to_string(),
        None => match std::fs::metadata(disk.path()) {
            Ok(m) => format!("{:x}-{:x}", m.dev(), m.ino()),
            Err(_) => String::new(),
        },
    };
    let mut out = [0u8; ID_LEN];
    let n = text.len().min(ID_LEN);
    out[..n].copy_from_slice(&text.as_bytes()[..n]);
    out
}

struct ConfigFields {
    capacity: u64,
    seg_max: u32,
    num_queues: u16,
    discard_alignment: u32,
    limits: DiscardLimits,
    may_unmap: bool,
}

/// `struct virtio_blk_config` up to `write_zeroes_may_unmap` (60 bytes),
/// little-endian. Offsets are checked against the bindings in the tests.
fn config_space(f: &ConfigFields) -> Vec<u8> {
    let mut c = vec![0u8; 60];
    c[0..8].copy_from_slice(&f.capacity.to_le_bytes());
    c[12..16].copy_from_slice(&f.seg_max.to_le_bytes());
    c[20..24].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
    c[34..36].copy_from_slice(&f.num_queues.to_le_bytes());
    c[36..40].copy_from_slice(&f.limits.max_sectors.to_le_bytes());
    c[40..44].copy_from_slice(&f.limits.max_segments.to_le_bytes());
    c[44..48].copy_from_slice(&f.discard_alignment.to_le_bytes());
    c[48..52].copy_from_slice(&f.limits.max_sectors.to_le_bytes());
    c[52..56].copy_from_slice(&f.limits.max_segments.to_le_bytes());
    c[56] = u8::from(f.may_unmap);
    c
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
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
        self.acked_features = ack_offered("virtio-blk", self.avail_features, value);
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // Only `wce` is writable, and only with CONFIG_WCE, which is not offered.
        warn!(
            "virtio-blk: ignoring a {}-byte config write at {offset}",
            data.len()
        );
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let mut executor = self.state.take_backend()?;
        let required = [0];
        let acked = self.acked_features;
        let slots = match take_queues(ctx.queues, &self.queue_sizes, &required, &ctx.mem, acked) {
            Ok(slots) => slots,
            Err(e) => {
                self.state.restore(executor);
                return Err(e);
            }
        };
        executor.set_negotiated(Negotiated {
            discard: acked & bit(VIRTIO_BLK_F_DISCARD) != 0,
            write_zeroes: acked & bit(VIRTIO_BLK_F_WRITE_ZEROES) != 0,
        });
        let queues: Vec<_> = slots.into_iter().flatten().collect();
        let sources: Vec<Source> = queues
            .iter()
            .enumerate()
            .map(|(i, q)| Source::readable(q.notifier(), i as u64))
            .collect();
        self.irq = Some(ctx.interrupt.clone());
        let handler = BlockHandler {
            executor,
            mem: ctx.mem,
            queues,
            irq: ctx.interrupt,
        };
        self.state
            .start("virtio-blk", handler, &sources, ctx.worker_init)
    }

    fn pause(&mut self) -> Result<Option<Vec<crate::virtio::QueuePosition>>, ActivateError> {
        self.state.pause()
    }

    fn reset(&mut self) -> bool {
        self.acked_features = 0;
        self.irq = None;
        self.state.reset()
    }

    fn resize(&mut self, bytes: u64) -> Result<(), String> {
        self.resizer.grow(bytes)?;
        self.config[0..8].copy_from_slice(&(bytes / SECTOR_SIZE).to_le_bytes());
        if let Some(irq) = &self.irq {
            irq.trigger(super::device::VirtioInterruptType::Config)
                .map_err(|e| format!("the disk grew, but the guest was not told: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
