//! The MSI capability (64-bit address, optional per-vector masking, 1..=32
//! vectors through multiple-message enable) and its parsed state.
//!
//! Config space stays the single source of truth: the guest writes through
//! [`PciConfiguration`]'s masks, then [`Msi::handle_config_write`] re-reads
//! the capability and pushes what changed to the [`MsiInterruptGroup`].

use std::io;
use std::sync::Arc;

use log::{debug, warn};

use crate::capability::{CapabilityError, PciCapability, PCI_CAP_ID_MSI};
use crate::configuration::PciConfiguration;
use crate::interrupt::{MsiInterruptGroup, MsiMessage};

/// Message control: MSI enable.
pub const MSI_CTRL_ENABLE: u16 = 1 << 0;
/// Message control: 64-bit address capable.
pub const MSI_CTRL_64BIT: u16 = 1 << 7;
/// Message control: per-vector masking capable.
pub const MSI_CTRL_PER_VECTOR_MASK: u16 = 1 << 8;
const MSI_CTRL_MMC_SHIFT: u16 = 1;
const MSI_CTRL_MME_SHIFT: u16 = 4;
/// Writable message control bits: enable and multiple message enable.
const MSI_CTRL_WRITABLE: u16 = MSI_CTRL_ENABLE | 0b111 << MSI_CTRL_MME_SHIFT;

/// Most vectors an MSI function can have.
pub const MSI_MAX_VECTORS: u8 = 32;

// Byte offsets inside the capability.
const CONTROL: usize = 0x02;
const ADDRESS_LO: usize = 0x04;
const ADDRESS_HI: usize = 0x08;
const DATA: usize = 0x0c;
const MASK: usize = 0x10;
const PENDING: usize = 0x14;
/// Capability length with per-vector masking (through the pending bits).
const LEN_WITH_MASK: usize = 0x18;
/// Capability length without (through the message data).
const LEN_WITHOUT_MASK: usize = 0x0e;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MsiError {
    #[error("MSI vector count {0} is not a power of two in 1..=32")]
    InvalidVectorCount(u8),
    #[error("cannot add the MSI capability: {0}")]
    Capability(#[from] CapabilityError),
}

/// The MSI capability's layout, for [`PciConfiguration::add_capability`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiCapability {
    vectors_log2: u8,
    per_vector_mask: bool,
}

impl MsiCapability {
    /// `vectors`: how many the function can use (1, 2, 4, .. 32).
    pub fn new(vectors: u8, per_vector_mask: bool) -> Result<Self, MsiError> {
        if !vectors.is_power_of_two() || vectors > MSI_MAX_VECTORS {
            return Err(MsiError::InvalidVectorCount(vectors));
        }
        Ok(Self {
            vectors_log2: vectors.trailing_zeros() as u8,
            per_vector_mask,
        })
    }

    fn len(&self) -> usize {
        if self.per_vector_mask {
            LEN_WITH_MASK
        } else {
            LEN_WITHOUT_MASK
        }
    }

    fn vector_bits(&self) -> u32 {
        (((1u64 << (1 << self.vectors_log2)) - 1) & 0xffff_ffff) as u32
    }
}

impl PciCapability for MsiCapability {
    fn id(&self) -> u8 {
        PCI_CAP_ID_MSI
    }

    fn bytes(&self) -> Vec<u8> {
        let mut control = MSI_CTRL_64BIT | u16::from(self.vectors_log2) << MSI_CTRL_MMC_SHIFT;
        if self.per_vector_mask {
            control |= MSI_CTRL_PER_VECTOR_MASK;
        }
        let mut body = vec![0; self.len() - 2];
        body[..2].copy_from_slice(&control.to_le_bytes());
        body
    }

    fn writable_bits(&self) -> Vec<u8> {
        let mut mask = vec![0; self.len() - 2];
        let at = |offset: usize| offset - 2;
        mask[at(CONTROL)..at(CONTROL) + 2].copy_from_slice(&MSI_CTRL_WRITABLE.to_le_bytes());
        mask[at(ADDRESS_LO)..at(ADDRESS_LO) + 4].copy_from_slice(&0xffff_fffcu32.to_le_bytes());
        mask[at(ADDRESS_HI)..at(ADDRESS_HI) + 4].fill(0xff);
        mask[at(DATA)..at(DATA) + 2].fill(0xff);
        if self.per_vector_mask {
            let bits = self.vector_bits().to_le_bytes();
            mask[at(MASK)..at(MASK) + 4].copy_from_slice(&bits);
        }
        mask
    }
}

/// MSI as the guest has programmed it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsiState {
    pub enabled: bool,
    /// Vectors in use: multiple-message enable, capped at what is capable.
    pub vectors: u8,
    pub address: u64,
    pub data: u16,
    /// Per-vector mask bits (0 without per-vector masking).
    pub mask: u32,
}

impl MsiState {
    /// Vector `v` writes the data with its low bits replaced by `v`.
    pub fn message(&self, vector: u8) -> MsiMessage {
        let low = u16::from(self.vectors.max(1)) - 1;
        let data = (self.data & !low) | (u16::from(vector) & low);
        MsiMessage {
            address: self.address,
            data: u32::from(data),
        }
    }

    pub fn masked(&self, vector: u8) -> bool {
        vector < 32 && self.mask & (1 << vector) != 0
    }
}

/// A function's MSI capability: where it sits and what it last pushed to
/// the interrupt group.
pub struct Msi {
    offset: usize,
    cap: MsiCapability,
    state: MsiState,
    group: Arc<dyn MsiInterruptGroup>,
}

impl Msi {
    /// Adds an MSI capability with `vectors` vectors to `config`.
    pub fn new(
        config: &mut PciConfiguration,
        vectors: u8,
        per_vector_mask: bool,
        group: Arc<dyn MsiInterruptGroup>,
    ) -> Result<Self, MsiError> {
        let cap = MsiCapability::new(vectors, per_vector_mask)?;
        let offset = config.add_capability(&cap)?;
        Ok(Self {
            offset,
            cap,
            state: MsiState::default(),
            group,
        })
    }

    /// Byte offset of the capability in config space.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Whether register `reg` holds part of the capability.
    pub fn contains(&self, reg: usize) -> bool {
        (self.offset / 4..(self.offset + self.cap.len()).div_ceil(4)).contains(&reg)
    }

    /// The state last pushed to the interrupt group.
    pub fn state(&self) -> MsiState {
        self.state
    }

    /// Whether `vector` fired while masked and waits to be delivered.
    pub fn is_pending(&self, config: &PciConfiguration, vector: u8) -> bool {
        self.cap.per_vector_mask
            && vector < 32
            && config.read_u32(self.offset + PENDING) & (1 << vector) != 0
    }

    fn read_state(&self, config: &PciConfiguration) -> MsiState {
        let at = |field: usize| self.offset + field;
        let control = config.read_u16(at(CONTROL));
        let mme = ((control >> MSI_CTRL_MME_SHIFT) & 0b111) as u8;
        let vectors = 1u8 << mme.min(self.cap.vectors_log2);
        let address = u64::from(config.read_u32(at(ADDRESS_LO)))
            | u64::from(config.read_u32(at(ADDRESS_HI))) << 32;
        let mask = if self.cap.per_vector_mask {
            config.read_u32(at(MASK))
        } else {
            0
        };
        MsiState {
            enabled: control & MSI_CTRL_ENABLE != 0,
            vectors,
            address,
            data: config.read_u16(at(DATA)),
            mask,
        }
    }

    /// Call after a guest write to register `reg`: re-reads the capability
    /// and pushes changes to the interrupt group; true when MSI changed.
    pub fn handle_config_write(&mut self, config: &mut PciConfiguration, reg: usize) -> bool {
        if !self.contains(reg) {
            return false;
        }
        let (old, new) = (self.state, self.read_state(config));
        if old == new {
            return false;
        }
        self.state = new;
        if new.enabled {
            for v in 0..new.vectors {
                let (msg, masked) = (new.message(v), new.masked(v));
                let stale = !old.enabled
                    || v >= old.vectors
                    || old.message(v) != msg
                    || old.masked(v) != masked;
                if stale {
                    log_err("update", self.group.update(v.into(), msg, masked));
                }
            }
            if old.enabled {
                for v in new.vectors..old.vectors {
                    log_err("update", self.group.update(v.into(), old.message(v), true));
                }
            } else {
                log_err("enable", self.group.enable());
            }
            self.deliver_pending(config);
        } else if old.enabled {
            log_err("disable", self.group.disable());
            self.set_pending_bits(config, 0);
        }
        true
    }

    fn set_pending_bits(&self, config: &mut PciConfiguration, bits: u32) {
        if self.cap.per_vector_mask {
            config.set_u32(self.offset + PENDING, bits);
        }
    }

    fn deliver_pending(&mut self, config: &mut PciConfiguration) {
        if !self.cap.per_vector_mask {
            return;
        }
        let pending = config.read_u32(self.offset + PENDING);
        let deliverable = pending & !self.state.mask & self.cap.vector_bits();
        let live = (((1u64 << self.state.vectors) - 1) & 0xffff_ffff) as u32;
        let deliverable = deliverable & live;
        for v in (0..32u16).filter(|v| deliverable & (1 << v) != 0) {
            log_err("trigger", self.group.trigger(v));
        }
        self.set_pending_bits(config, pending & !deliverable);
    }

    /// Raises `vector`: delivered when enabled and unmasked, remembered in
    /// the pending bits while masked, dropped while MSI is disabled.
    pub fn trigger(&mut self, config: &mut PciConfiguration, vector: u8) -> io::Result<()> {
        if !self.state.enabled || vector >= self.state.vectors {
            debug!(
                "msi: dropped vector {vector} (enabled {}, {} vectors)",
                self.state.enabled, self.state.vectors
            );
            return Ok(());
        }
        if self.state.masked(vector) {
            let pending = config.read_u32(self.offset + PENDING);
            self.set_pending_bits(config, pending | 1 << vector);
            return Ok(());
        }
        self.group.trigger(vector.into())
    }
}

fn log_err(what: &str, result: io::Result<()>) {
    if let Err(e) = result {
        warn!("msi: interrupt group {what} failed: {e}");
    }
}

#[cfg(test)]
#[path = "msi_tests.rs"]
mod tests;
