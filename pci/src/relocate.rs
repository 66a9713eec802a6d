//! Applying BAR moves. A config write returns [`BarReprogram`]s; the
//! [`crate::PciBus`] hands each to the VMM's [`BarRelocator`] right after
//! the write (with the device unlocked). [`BusBarRelocator`] is a ready-made
//! relocator over the VMM's port I/O and MMIO [`devices::Bus`]es.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use devices::{Bus, BusError};
use log::debug;

use crate::address::PciAddress;
use crate::bar::BarReprogram;
use crate::bar_region::PciBarRegion;
use crate::device::PciDevice;

/// One BAR of one function that changed where it decodes.
pub struct BarMove<'a> {
    pub address: PciAddress,
    pub device: &'a Arc<Mutex<dyn PciDevice>>,
    pub reprogram: BarReprogram,
}

#[derive(Debug, thiserror::Error)]
pub enum RelocationError {
    #[error("BAR {index} of {device} at {addr:#x}+{size:#x} overlaps reserved memory {start:#x}+{len:#x}")]
    Reserved {
        device: PciAddress,
        index: usize,
        addr: u64,
        size: u64,
        start: u64,
        len: u64,
    },
    #[error("BAR {index} of {device} cannot go on the bus: {source}")]
    Bus {
        device: PciAddress,
        index: usize,
        #[source]
        source: BusError,
    },
    #[error("BAR relocation failed: {0}")]
    Other(String),
}

/// What the VMM implements to follow BAR moves: remove the BAR's bus range
/// at `old_addr` (when `Some`), insert one at `new_addr` (when `Some`).
///
/// An error leaves the BAR unmapped from the VMM's point of view; the bus
/// logs it and the guest sees no response at the new address, which is
/// what it may expect after programming a conflicting address.
pub trait BarRelocator: Send + Sync {
    fn move_bar(&self, mv: &BarMove<'_>) -> Result<(), RelocationError>;
}

/// Whether `[a, a + a_len)` and `[b, b + b_len)` share an address; empty
/// ranges overlap nothing.
pub fn overlaps(a: u64, a_len: u64, b: u64, b_len: u64) -> bool {
    let (a, a_len, b, b_len) = (
        u128::from(a),
        u128::from(a_len),
        u128::from(b),
        u128::from(b_len),
    );
    a_len != 0 && b_len != 0 && a < b + b_len && b < a + a_len
}

/// A [`BarRelocator`] that keeps each decoded BAR on the right
/// [`devices::Bus`] as a [`PciBarRegion`], refusing MMIO addresses that
/// overlap the reserved ranges (guest RAM and the like). Overlaps with other
/// bus devices (including other BARs) are refused by the bus itself.
///
/// It remembers what it inserted, so a remove never takes away another
/// device's range, even after an insert failed.
pub struct BusBarRelocator {
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    reserved_mmio: Vec<(u64, u64)>,
    mapped: Mutex<HashMap<(PciAddress, usize), (bool, u64)>>,
}

impl BusBarRelocator {
    pub fn new(pio: Arc<Bus>, mmio: Arc<Bus>) -> Self {
        Self {
            pio,
            mmio,
            reserved_mmio: Vec::new(),
            mapped: Mutex::new(HashMap::new()),
        }
    }

    /// MMIO ranges `(start, len)` no BAR may decode over, such as guest RAM.
    pub fn with_reserved_mmio(mut self, ranges: Vec<(u64, u64)>) -> Self {
        self.reserved_mmio = ranges;
        self
    }

    fn mapped(&self) -> MutexGuard<'_, HashMap<(PciAddress, usize), (bool, u64)>> {
        self.mapped.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bus(&self, io: bool) -> &Bus {
        if io {
            &self.pio
        } else {
            &self.mmio
        }
    }

    /// Where BAR `index` of `address` is on a bus now: `(is_io, base)`.
    pub fn mapping(&self, address: PciAddress, index: usize) -> Option<(bool, u64)> {
        self.mapped().get(&(address, index)).copied()
    }

    fn check_reserved(&self, mv: &BarMove<'_>, addr: u64) -> Result<(), RelocationError> {
        let r = &mv.reprogram;
        if r.kind.is_io() {
            return Ok(());
        }
        let hit = self
            .reserved_mmio
            .iter()
            .find(|(start, len)| overlaps(addr, r.size, *start, *len));
        match hit {
            Some(&(start, len)) => Err(RelocationError::Reserved {
                device: mv.address,
                index: r.index,
                addr,
                size: r.size,
                start,
                len,
            }),
            None => Ok(()),
        }
    }
}

impl BarRelocator for BusBarRelocator {
    fn move_bar(&self, mv: &BarMove<'_>) -> Result<(), RelocationError> {
        let r = &mv.reprogram;
        let key = (mv.address, r.index);
        let mut mapped = self.mapped();
        if let Some((io, base)) = mapped.remove(&key) {
            if r.old_addr != Some(base) {
                debug!(
                    "pci: BAR {} of {} was mapped at {base:#x}, not {:?}",
                    r.index, mv.address, r.old_addr
                );
            }
            self.bus(io).remove(base);
        }
        let Some(addr) = r.new_addr else {
            return Ok(());
        };
        self.check_reserved(mv, addr)?;
        let region = Arc::new(Mutex::new(PciBarRegion::new(mv.device.clone(), r.index)));
        let io = r.kind.is_io();
        self.bus(io)
            .insert(region, addr, r.size)
            .map_err(|source| RelocationError::Bus {
                device: mv.address,
                index: r.index,
                source,
            })?;
        mapped.insert(key, (io, addr));
        Ok(())
    }
}

/// A [`BarRelocator`] that records every move (and can be told to fail);
/// for tests here and in other crates.
#[derive(Debug, Default)]
pub struct RecordingRelocator {
    moves: Mutex<Vec<(PciAddress, BarReprogram)>>,
    fail: std::sync::atomic::AtomicBool,
}

impl RecordingRelocator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every move so far, oldest first, forgetting them.
    pub fn take_moves(&self) -> Vec<(PciAddress, BarReprogram)> {
        std::mem::take(&mut self.moves.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Make later moves fail (they are still recorded).
    pub fn set_failing(&self, fail: bool) {
        self.fail.store(fail, std::sync::atomic::Ordering::SeqCst);
    }
}

impl BarRelocator for RecordingRelocator {
    fn move_bar(&self, mv: &BarMove<'_>) -> Result<(), RelocationError> {
        let mut moves = self.moves.lock().unwrap_or_else(|p| p.into_inner());
        moves.push((mv.address, mv.reprogram));
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(RelocationError::Other("told to fail".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "relocate_tests.rs"]
mod tests;
