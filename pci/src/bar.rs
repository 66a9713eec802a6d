//! Base address registers: declaring them, the sizing protocol (the guest
//! writes all-ones and reads back the size mask with the type bits), and
//! tracking where each BAR decodes so a config write can report moves.

use crate::configuration::{PciConfiguration, COMMAND_IO_SPACE, COMMAND_MEMORY_SPACE};

/// Standard BARs in a type-0 header.
pub const NUM_BARS: usize = 6;
/// The index [`crate::PciDevice::read_bar`] and friends use for the
/// expansion ROM BAR at 0x30.
pub const ROM_BAR_INDEX: usize = 6;
/// BAR slots tracked per function: BARs 0..=5 and the expansion ROM.
pub const NUM_BAR_SLOTS: usize = 7;

/// Register index of BAR 0.
pub const BAR0_REG: usize = 4;
/// Register index of the expansion ROM BAR.
pub const ROM_BAR_REG: usize = 12;

const IO_ADDR_MASK: u32 = 0xffff_fffc;
const MEM_ADDR_MASK: u32 = 0xffff_fff0;
const ROM_ADDR_MASK: u32 = 0xffff_f800;
const ROM_ENABLE: u32 = 1;
const BAR_IO_SPACE: u32 = 1;
const BAR_MEM_64: u32 = 0b10 << 1;
const BAR_PREFETCHABLE: u32 = 1 << 3;

/// Smallest memory BAR the sizing protocol can express.
pub const MIN_MEM_BAR_SIZE: u64 = 16;
/// Smallest I/O BAR.
pub const MIN_IO_BAR_SIZE: u64 = 4;
/// Smallest expansion ROM.
pub const MIN_ROM_SIZE: u64 = 2048;
/// Largest BAR that a 32-bit register (I/O, 32-bit memory, ROM) can size.
pub const MAX_32BIT_BAR_SIZE: u64 = 1 << 31;
/// Largest 64-bit BAR.
pub const MAX_64BIT_BAR_SIZE: u64 = 1 << 63;

/// Address space and width of a BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BarKind {
    /// I/O ports.
    Io,
    /// Memory below 4 GiB, one register.
    Mem32,
    /// Memory anywhere, two registers (this index and the next).
    Mem64,
}

impl BarKind {
    /// Whether accesses go to the port I/O bus rather than the MMIO bus.
    pub fn is_io(self) -> bool {
        self == BarKind::Io
    }
}

/// A BAR to declare with [`PciConfiguration::add_bar`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarConfig {
    /// 0..=5; a 64-bit BAR also takes `index + 1`.
    pub index: usize,
    /// A power of two: at least 16 for memory, 4 for I/O.
    pub size: u64,
    pub kind: BarKind,
    /// Memory BARs only.
    pub prefetchable: bool,
    /// Initial address, aligned to `size`.
    pub addr: u64,
}

/// A BAR as the guest has programmed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarInfo {
    /// 0..=5, or [`ROM_BAR_INDEX`] for the expansion ROM (kind `Mem32`).
    pub index: usize,
    pub kind: BarKind,
    pub prefetchable: bool,
    pub addr: u64,
    pub size: u64,
    /// Whether the function currently responds at `addr` (command register
    /// and, for the ROM, its enable bit).
    pub decoded: bool,
}

/// A change of where a BAR decodes; see [`crate::ConfigWriteResult`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarReprogram {
    pub index: usize,
    pub kind: BarKind,
    /// Where it decoded before the write; `None` when it did not.
    pub old_addr: Option<u64>,
    /// Where it decodes now; `None` when it no longer does.
    pub new_addr: Option<u64>,
    pub size: u64,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BarError {
    #[error("BAR index {0} is out of range (0..=5)")]
    InvalidIndex(usize),
    #[error("BAR {index} needs slot {slot}, which is already in use")]
    SlotInUse { index: usize, slot: usize },
    #[error("a 64-bit BAR cannot start at index 5: its upper half has no slot")]
    Mem64AtLastSlot,
    #[error("BAR {index} size {size:#x} is not a power of two")]
    SizeNotPowerOfTwo { index: usize, size: u64 },
    #[error("BAR {index} size {size:#x} is below the minimum {min:#x}")]
    SizeTooSmall { index: usize, size: u64, min: u64 },
    #[error("BAR {index} size {size:#x} is above the maximum {max:#x}")]
    SizeTooLarge { index: usize, size: u64, max: u64 },
    #[error("BAR {index} address {addr:#x} is not aligned to its size {size:#x}")]
    UnalignedAddress { index: usize, addr: u64, size: u64 },
    #[error("BAR {index} range {addr:#x}+{size:#x} is beyond what its register can hold")]
    AddressOutOfRange { index: usize, addr: u64, size: u64 },
    #[error("I/O BAR {0} cannot be prefetchable")]
    PrefetchableIo(usize),
}

/// What config space remembers about a declared BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BarMeta {
    pub(crate) size: u64,
    pub(crate) kind: BarKind,
    pub(crate) prefetchable: bool,
}

fn bar_reg(index: usize) -> usize {
    if index == ROM_BAR_INDEX {
        ROM_BAR_REG
    } else {
        BAR0_REG + index
    }
}

/// Checks size and address of a BAR of `kind` (`rom` for the expansion ROM).
fn validate(index: usize, kind: BarKind, size: u64, addr: u64, rom: bool) -> Result<(), BarError> {
    let (min, max) = match (kind, rom) {
        (_, true) => (MIN_ROM_SIZE, MAX_32BIT_BAR_SIZE),
        (BarKind::Io, _) => (MIN_IO_BAR_SIZE, MAX_32BIT_BAR_SIZE),
        (BarKind::Mem32, _) => (MIN_MEM_BAR_SIZE, MAX_32BIT_BAR_SIZE),
        (BarKind::Mem64, _) => (MIN_MEM_BAR_SIZE, MAX_64BIT_BAR_SIZE),
    };
    if !size.is_power_of_two() {
        return Err(BarError::SizeNotPowerOfTwo { index, size });
    }
    if size < min {
        return Err(BarError::SizeTooSmall { index, size, min });
    }
    if size > max {
        return Err(BarError::SizeTooLarge { index, size, max });
    }
    if addr & (size - 1) != 0 {
        return Err(BarError::UnalignedAddress { index, addr, size });
    }
    let limit: u128 = if kind == BarKind::Mem64 {
        1 << 64
    } else {
        1 << 32
    };
    if u128::from(addr) + u128::from(size) > limit {
        return Err(BarError::AddressOutOfRange { index, addr, size });
    }
    Ok(())
}

impl PciConfiguration {
    /// Declares a BAR: its register gets the address and type bits, and its
    /// writable mask keeps the low (size) bits read-only so that writing
    /// all-ones reads back the size mask.
    pub fn add_bar(&mut self, bar: &BarConfig) -> Result<(), BarError> {
        let BarConfig {
            index,
            size,
            kind,
            prefetchable,
            addr,
        } = *bar;
        if index >= NUM_BARS {
            return Err(BarError::InvalidIndex(index));
        }
        if kind == BarKind::Mem64 && index == NUM_BARS - 1 {
            return Err(BarError::Mem64AtLastSlot);
        }
        let slots = if kind == BarKind::Mem64 { 2 } else { 1 };
        if let Some(slot) = (index..index + slots).find(|&s| self.bar_slot_used(s)) {
            return Err(BarError::SlotInUse { index, slot });
        }
        if kind == BarKind::Io && prefetchable {
            return Err(BarError::PrefetchableIo(index));
        }
        validate(index, kind, size, addr, false)?;

        let size_mask = !(size - 1);
        let reg = bar_reg(index);
        let prefetch_bit = if prefetchable { BAR_PREFETCHABLE } else { 0 };
        let (type_bits, addr_mask) = match kind {
            BarKind::Io => (BAR_IO_SPACE, IO_ADDR_MASK),
            BarKind::Mem32 => (prefetch_bit, MEM_ADDR_MASK),
            BarKind::Mem64 => (BAR_MEM_64 | prefetch_bit, MEM_ADDR_MASK),
        };
        self.set_register(reg, (addr as u32 & addr_mask) | type_bits);
        self.set_writable_bits(reg, size_mask as u32 & addr_mask);
        if kind == BarKind::Mem64 {
            self.set_register(reg + 1, (addr >> 32) as u32);
            self.set_writable_bits(reg + 1, (size_mask >> 32) as u32);
        }
        self.bars[index] = Some(BarMeta {
            size,
            kind,
            prefetchable,
        });
        Ok(())
    }

    /// Declares the expansion ROM BAR (at 0x30, index [`ROM_BAR_INDEX`]):
    /// at least 2 KiB, disabled until the guest sets its enable bit.
    pub fn add_rom_bar(&mut self, size: u64, addr: u64) -> Result<(), BarError> {
        if self.bars[ROM_BAR_INDEX].is_some() {
            return Err(BarError::SlotInUse {
                index: ROM_BAR_INDEX,
                slot: ROM_BAR_INDEX,
            });
        }
        validate(ROM_BAR_INDEX, BarKind::Mem32, size, addr, true)?;
        self.set_register(ROM_BAR_REG, addr as u32 & ROM_ADDR_MASK);
        let mask = (!(size - 1)) as u32 & ROM_ADDR_MASK;
        self.set_writable_bits(ROM_BAR_REG, mask | ROM_ENABLE);
        self.bars[ROM_BAR_INDEX] = Some(BarMeta {
            size,
            kind: BarKind::Mem32,
            prefetchable: false,
        });
        Ok(())
    }

    /// Whether slot `slot` holds a BAR or the upper half of a 64-bit BAR.
    fn bar_slot_used(&self, slot: usize) -> bool {
        let upper_half = slot > 0
            && slot < NUM_BARS
            && matches!(self.bars[slot - 1], Some(m) if m.kind == BarKind::Mem64);
        self.bars[slot].is_some() || upper_half
    }

    /// The address BAR `index` is programmed with (whether decoded or not).
    pub fn bar_addr(&self, index: usize) -> Option<u64> {
        let meta = self.bars.get(index).copied().flatten()?;
        let reg = bar_reg(index);
        let low = self.read_config_register(reg);
        Some(match (index, meta.kind) {
            (ROM_BAR_INDEX, _) => u64::from(low & ROM_ADDR_MASK),
            (_, BarKind::Io) => u64::from(low & IO_ADDR_MASK),
            (_, BarKind::Mem32) => u64::from(low & MEM_ADDR_MASK),
            (_, BarKind::Mem64) => {
                let high = u64::from(self.read_config_register(reg + 1));
                high << 32 | u64::from(low & MEM_ADDR_MASK)
            }
        })
    }

    /// The size of BAR `index`, if declared.
    pub fn bar_size(&self, index: usize) -> Option<u64> {
        Some(self.bars.get(index).copied().flatten()?.size)
    }

    /// Whether the function responds at BAR `index`'s address now.
    pub fn bar_decoded(&self, index: usize) -> bool {
        let Some(meta) = self.bars.get(index).copied().flatten() else {
            return false;
        };
        let command = self.command();
        if index == ROM_BAR_INDEX {
            let enabled = self.read_config_register(ROM_BAR_REG) & ROM_ENABLE != 0;
            return enabled && command & COMMAND_MEMORY_SPACE != 0;
        }
        let bit = if meta.kind.is_io() {
            COMMAND_IO_SPACE
        } else {
            COMMAND_MEMORY_SPACE
        };
        command & bit != 0
    }

    /// Every declared BAR (and the ROM) as currently programmed.
    pub fn bars(&self) -> Vec<BarInfo> {
        (0..NUM_BAR_SLOTS)
            .filter_map(|index| {
                let meta = self.bars[index]?;
                Some(BarInfo {
                    index,
                    kind: meta.kind,
                    prefetchable: meta.prefetchable,
                    addr: self.bar_addr(index)?,
                    size: meta.size,
                    decoded: self.bar_decoded(index),
                })
            })
            .collect()
    }

    /// Whether a write to `reg` can change where some BAR decodes.
    pub(crate) fn affects_bar_decoding(&self, reg: usize) -> bool {
        reg == crate::configuration::COMMAND_STATUS_REG
            || (BAR0_REG..BAR0_REG + NUM_BARS).contains(&reg)
            || reg == ROM_BAR_REG
    }

    /// Where each slot decodes now (`None`: not declared or not decoded).
    pub(crate) fn bar_decode_state(&self) -> [Option<u64>; NUM_BAR_SLOTS] {
        std::array::from_fn(|i| {
            if self.bar_decoded(i) {
                self.bar_addr(i)
            } else {
                None
            }
        })
    }

    /// The BARs whose decoded address differs from `before`.
    pub(crate) fn bar_moves_since(
        &self,
        before: &[Option<u64>; NUM_BAR_SLOTS],
    ) -> Vec<BarReprogram> {
        let after = self.bar_decode_state();
        (0..NUM_BAR_SLOTS)
            .filter(|&i| before[i] != after[i])
            .filter_map(|index| {
                let meta = self.bars[index]?;
                Some(BarReprogram {
                    index,
                    kind: meta.kind,
                    old_addr: before[index],
                    new_addr: after[index],
                    size: meta.size,
                })
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "bar_tests.rs"]
mod tests;
