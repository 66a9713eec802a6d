//! BAR address allocation over vm-allocator's [`AddressAllocator`]: a
//! 32-bit MMIO window, a 64-bit MMIO window and an I/O port range, every
//! BAR naturally aligned (to its size).
//!
//! Placement: I/O BARs in the I/O window, 32-bit memory BARs in the 32-bit
//! window, 64-bit memory BARs in the 64-bit window. In the 64-bit window
//! BARs of 1 GiB and more go bottom-up and smaller ones top-down, so small
//! BARs do not split the aligned blocks a GPU-class BAR needs.

use std::collections::BTreeMap;
use std::fmt;

use vm_allocator::{AddressAllocator, AllocPolicy, RangeInclusive};

use crate::address::PciAddress;
use crate::bar::{BarConfig, BarKind};

pub use crate::relocate::overlaps;

/// 64-bit BARs at least this big are placed bottom-up.
const LARGE_BAR: u64 = 1 << 30;

/// One of the allocator's address windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PciWindow {
    Io,
    Mmio32,
    Mmio64,
}

impl fmt::Display for PciWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PciWindow::Io => "I/O port window",
            PciWindow::Mmio32 => "32-bit MMIO window",
            PciWindow::Mmio64 => "64-bit MMIO window",
        })
    }
}

impl PciWindow {
    /// The window BARs of `kind` are allocated from.
    pub fn for_kind(kind: BarKind) -> Self {
        match kind {
            BarKind::Io => PciWindow::Io,
            BarKind::Mem32 => PciWindow::Mmio32,
            BarKind::Mem64 => PciWindow::Mmio64,
        }
    }
}

/// `size` in the largest binary unit that keeps it readable ("256 GiB").
pub fn format_size(size: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let exp = if size == 0 {
        0
    } else {
        (63 - size.leading_zeros()) / 10
    } as usize;
    let unit = 1u64 << (10 * exp);
    if size.is_multiple_of(unit) {
        format!("{} {}", size / unit, UNITS[exp])
    } else {
        format!("{:.1} {}", size as f64 / unit as f64, UNITS[exp])
    }
}

fn phys_bits_note(bits: &Option<u8>) -> String {
    match bits {
        Some(bits) => format!("; the host has {bits} physical address bits"),
        None => String::new(),
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocatorError {
    #[error("the {window} {base:#x}+{size:#x} is not a valid range")]
    InvalidWindow {
        window: PciWindow,
        base: u64,
        size: u64,
    },
    #[error(
        "BAR {index} of {device} needs {} but the {window} has only {} left (largest aligned free block {}){}",
        format_size(*.size), format_size(*.free), format_size(*.largest), phys_bits_note(.phys_bits)
    )]
    DoesNotFit {
        device: PciAddress,
        index: usize,
        size: u64,
        window: PciWindow,
        free: u64,
        largest: u64,
        phys_bits: Option<u8>,
    },
    #[error("BAR {index} of {device} size {size:#x} is not a power of two")]
    InvalidSize {
        device: PciAddress,
        index: usize,
        size: u64,
    },
    #[error("BAR {index} of {device} already has an allocation")]
    AlreadyAllocated { device: PciAddress, index: usize },
    #[error("BAR {index} of {device} has no allocation")]
    NotAllocated { device: PciAddress, index: usize },
}

/// The address ranges BARs are allocated from, as `(base, size)`; a size of
/// 0 leaves that window out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PciAllocatorConfig {
    pub io: (u64, u64),
    pub mmio32: (u64, u64),
    pub mmio64: (u64, u64),
    /// The host's physical address bits, quoted when a BAR does not fit.
    pub host_phys_bits: Option<u8>,
}

/// A BAR to place: what [`PciAllocator::allocate`] needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarRequest {
    pub index: usize,
    pub size: u64,
    pub kind: BarKind,
    pub prefetchable: bool,
}

struct Window {
    kind: PciWindow,
    allocator: Option<AddressAllocator>,
    base: u64,
    size: u64,
    /// `start -> (end inclusive, owner, BAR index)`.
    used: BTreeMap<u64, (u64, PciAddress, usize)>,
}

impl Window {
    fn new(kind: PciWindow, (base, size): (u64, u64)) -> Result<Self, AllocatorError> {
        let allocator = match size {
            0 => None,
            _ => Some(AddressAllocator::new(base, size).map_err(|_| {
                AllocatorError::InvalidWindow {
                    window: kind,
                    base,
                    size,
                }
            })?),
        };
        Ok(Self {
            kind,
            allocator,
            base,
            size,
            used: BTreeMap::new(),
        })
    }

    fn free_bytes(&self) -> u64 {
        let used: u64 = self.used.iter().map(|(s, (e, _, _))| e - s + 1).sum();
        self.size - used
    }

    /// Free gaps as `(start, end exclusive)` in u128 (the window may end at 2^64).
    fn gaps(&self) -> Vec<(u128, u128)> {
        let mut gaps = Vec::new();
        let mut cursor = u128::from(self.base);
        for (start, (end, _, _)) in &self.used {
            gaps.push((cursor, u128::from(*start)));
            cursor = u128::from(*end) + 1;
        }
        gaps.push((cursor, u128::from(self.base) + u128::from(self.size)));
        gaps
    }

    /// The largest naturally aligned power-of-two block that is free.
    fn largest_aligned_block(&self) -> u64 {
        let mut best = 0u128;
        for (start, end) in self.gaps() {
            for shift in (0..64).rev() {
                let block = 1u128 << shift;
                if block <= best {
                    break;
                }
                let aligned = start.div_ceil(block) * block;
                if aligned + block <= end {
                    best = block;
                    break;
                }
            }
        }
        best as u64
    }
}

/// Allocates BAR addresses and remembers which function owns each.
pub struct PciAllocator {
    windows: [Window; 3],
    phys_bits: Option<u8>,
}

impl PciAllocator {
    pub fn new(config: &PciAllocatorConfig) -> Result<Self, AllocatorError> {
        Ok(Self {
            windows: [
                Window::new(PciWindow::Io, config.io)?,
                Window::new(PciWindow::Mmio32, config.mmio32)?,
                Window::new(PciWindow::Mmio64, config.mmio64)?,
            ],
            phys_bits: config.host_phys_bits,
        })
    }

    fn window(&self, kind: PciWindow) -> &Window {
        &self.windows[kind as usize]
    }

    fn window_mut(&mut self, kind: PciWindow) -> &mut Window {
        &mut self.windows[kind as usize]
    }

    /// Free bytes left in `window`.
    pub fn free_space(&self, window: PciWindow) -> u64 {
        self.window(window).free_bytes()
    }

    /// The address of BAR `index` of `device`, if allocated.
    pub fn allocation(&self, device: PciAddress, index: usize) -> Option<(PciWindow, u64, u64)> {
        self.windows.iter().find_map(|w| {
            w.used
                .iter()
                .find(|(_, (_, owner, i))| *owner == device && *i == index)
                .map(|(start, (end, _, _))| (w.kind, *start, end - start + 1))
        })
    }

    /// Places BAR `req` of `device`, naturally aligned; returns its address.
    pub fn allocate(
        &mut self,
        device: PciAddress,
        req: &BarRequest,
    ) -> Result<u64, AllocatorError> {
        let (index, size) = (req.index, req.size);
        if !size.is_power_of_two() {
            return Err(AllocatorError::InvalidSize {
                device,
                index,
                size,
            });
        }
        if self.allocation(device, index).is_some() {
            return Err(AllocatorError::AlreadyAllocated { device, index });
        }
        let kind = PciWindow::for_kind(req.kind);
        let policy = if kind == PciWindow::Mmio64 && size < LARGE_BAR {
            AllocPolicy::LastMatch
        } else {
            AllocPolicy::FirstMatch
        };
        let phys_bits = self.phys_bits;
        let window = self.window_mut(kind);
        let range = window
            .allocator
            .as_mut()
            .and_then(|a| a.allocate(size, size, policy).ok())
            .ok_or_else(|| AllocatorError::DoesNotFit {
                device,
                index,
                size,
                window: kind,
                free: window.free_bytes(),
                largest: window.largest_aligned_block(),
                phys_bits,
            })?;
        window
            .used
            .insert(range.start(), (range.end(), device, index));
        Ok(range.start())
    }

    /// Places all of `device`'s BARs, largest first so big ones keep their
    /// alignment; on failure nothing stays allocated. Returns the BARs with
    /// their addresses, in the order given.
    pub fn allocate_device(
        &mut self,
        device: PciAddress,
        requests: &[BarRequest],
    ) -> Result<Vec<BarConfig>, AllocatorError> {
        let mut order: Vec<&BarRequest> = requests.iter().collect();
        order.sort_by_key(|r| std::cmp::Reverse(r.size));
        let mut placed = BTreeMap::new();
        for req in order {
            match self.allocate(device, req) {
                Ok(addr) => placed.insert(req.index, addr),
                Err(e) => {
                    for index in placed.keys() {
                        let _ = self.free(device, *index);
                    }
                    return Err(e);
                }
            };
        }
        Ok(requests
            .iter()
            .map(|r| BarConfig {
                index: r.index,
                size: r.size,
                kind: r.kind,
                prefetchable: r.prefetchable,
                addr: placed[&r.index],
            })
            .collect())
    }

    /// Releases BAR `index` of `device`.
    pub fn free(&mut self, device: PciAddress, index: usize) -> Result<(), AllocatorError> {
        let (kind, start, size) = self
            .allocation(device, index)
            .ok_or(AllocatorError::NotAllocated { device, index })?;
        let window = self.window_mut(kind);
        window.used.remove(&start);
        if let (Some(a), Ok(range)) = (
            window.allocator.as_mut(),
            RangeInclusive::new(start, start + (size - 1)),
        ) {
            let _ = a.free(&range);
        }
        Ok(())
    }

    /// Releases every BAR of `device` (on removal); returns how many.
    pub fn free_device(&mut self, device: PciAddress) -> usize {
        let owned: Vec<usize> = self
            .windows
            .iter()
            .flat_map(|w| w.used.values())
            .filter(|(_, owner, _)| *owner == device)
            .map(|(_, _, index)| *index)
            .collect();
        owned
            .iter()
            .filter(|index| self.free(device, **index).is_ok())
            .count()
    }
}

#[cfg(test)]
#[path = "allocator_tests.rs"]
mod tests;
