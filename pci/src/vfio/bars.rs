//! The device's BARs as the guest sees them (sizes from VFIO, types from config space), and
//! which parts of each can be mapped straight into the guest.
//!
//! A part is mapped only when VFIO allows mmap there, it starts and ends on a page boundary,
//! and it does not hold the MSI-X table or PBA (those pages stay trapped so the table can be
//! emulated). Everything else — BARs smaller than a page (ivshmem's 256-byte BAR0), I/O BARs,
//! the ROM — is trapped and forwarded to VFIO by the device model.

use super::ops::{RegionInfo, VfioDeviceOps, VFIO_PCI_ROM_REGION};
use crate::allocator::BarRequest;
use crate::bar::{
    BarKind, MIN_IO_BAR_SIZE, MIN_MEM_BAR_SIZE, MIN_ROM_SIZE, NUM_BARS, ROM_BAR_INDEX,
};

/// The host page size mappings are made in.
pub const PAGE_SIZE: u64 = 4096;

const BAR_IO: u32 = 1;
const BAR_MEM64: u32 = 0b10 << 1;
const BAR_TYPE_MASK: u32 = 0b11 << 1;
const BAR_PREFETCH: u32 = 1 << 3;

fn dword(cfg: &[u8], off: usize) -> u32 {
    let b = |i: usize| u32::from(cfg.get(off + i).copied().unwrap_or(0));
    b(0) | b(1) << 8 | b(2) << 16 | b(3) << 24
}

/// A size the BAR registers can express: a power of two, at least the minimum for its kind.
fn bar_size(size: u64, min: u64) -> Option<u64> {
    if size == 0 {
        return None;
    }
    size.checked_next_power_of_two().map(|s| s.max(min))
}

/// The BARs (and ROM, as index 6, `Mem32`) the guest gets, from the device's config space
/// `cfg` and VFIO's region sizes. A 64-bit BAR's upper half is not listed.
pub fn discover(cfg: &[u8], ops: &dyn VfioDeviceOps) -> Vec<BarRequest> {
    let mut bars = Vec::new();
    let mut index = 0;
    while index < NUM_BARS {
        let reg = dword(cfg, 0x10 + 4 * index);
        let size = ops.region_info(index as u32).map_or(0, |r| r.size);
        let (kind, min, slots) = if reg & BAR_IO != 0 {
            (BarKind::Io, MIN_IO_BAR_SIZE, 1)
        } else if reg & BAR_TYPE_MASK == BAR_MEM64 && index + 1 < NUM_BARS {
            (BarKind::Mem64, MIN_MEM_BAR_SIZE, 2)
        } else {
            (BarKind::Mem32, MIN_MEM_BAR_SIZE, 1)
        };
        if let Some(size) = bar_size(size, min) {
            bars.push(BarRequest {
                index,
                size,
                kind,
                prefetchable: kind != BarKind::Io && reg & BAR_PREFETCH != 0,
            });
        }
        index += slots;
    }
    let rom = ops.region_info(VFIO_PCI_ROM_REGION).map_or(0, |r| r.size);
    if let Some(size) = bar_size(rom, MIN_ROM_SIZE) {
        bars.push(BarRequest {
            index: ROM_BAR_INDEX,
            size,
            kind: BarKind::Mem32,
            prefetchable: false,
        });
    }
    bars
}

fn align_down(v: u64) -> u64 {
    v & !(PAGE_SIZE - 1)
}

fn align_up(v: u64) -> u64 {
    v.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

/// Removes `[start, end)` from each of `areas`.
fn subtract(areas: Vec<(u64, u64)>, start: u64, end: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::with_capacity(areas.len() + 1);
    for (a, len) in areas {
        let b = a + len;
        if end <= a || b <= start {
            out.push((a, len));
            continue;
        }
        if a < start {
            out.push((a, start - a));
        }
        if end < b {
            out.push((end, b - end));
        }
    }
    out
}

/// The `(offset, size)` parts of a memory BAR of `region` that can be mapped into the guest:
/// VFIO's mmap-able areas, less the pages holding any of `trapped` (`(offset, len)` ranges
/// such as the MSI-X table and PBA), cut to whole pages.
pub fn mappable_areas(region: &RegionInfo, trapped: &[(u64, u64)]) -> Vec<(u64, u64)> {
    if !region.mmappable {
        return Vec::new();
    }
    let mut areas = region
        .sparse_areas
        .clone()
        .unwrap_or_else(|| vec![(0, region.size)]);
    areas.retain(|&(off, len)| len > 0 && off.checked_add(len).is_some_and(|e| e <= region.size));
    for &(off, len) in trapped.iter().filter(|t| t.1 > 0) {
        areas = subtract(areas, align_down(off), align_up(off.saturating_add(len)));
    }
    areas
        .into_iter()
        .filter_map(|(off, len)| {
            let (start, end) = (align_up(off), align_down(off + len));
            // Lazily: for a sub-page area inside one page `end` lies below `start`.
            (end > start).then(|| (start, end - start))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfio::fake::FakeVfioDevice;

    fn region(size: u64, sparse: Option<Vec<(u64, u64)>>) -> RegionInfo {
        RegionInfo {
            size,
            readable: true,
            writable: true,
            mmappable: true,
            sparse_areas: sparse,
        }
    }

    #[test]
    fn bars_take_sizes_from_vfio_and_types_from_config_space() {
        let mut cfg = vec![0u8; 256];
        cfg[0x10..0x14].copy_from_slice(&0xfe00_0000u32.to_le_bytes()); // mem32
        cfg[0x14..0x18].copy_from_slice(&0x0000_c001u32.to_le_bytes()); // io
        cfg[0x18..0x1c].copy_from_slice(&0x0000_000cu32.to_le_bytes()); // mem64 pref
        let dev = FakeVfioDevice::new(cfg)
            .with_region(0, region(0x100, None))
            .with_region(1, region(0x20, None))
            .with_region(2, region(256 << 30, None))
            .with_region(3, region(0, None))
            .with_region(VFIO_PCI_ROM_REGION, region(0x10000, None));
        let bars = discover(dev.config_snapshot().as_slice(), &dev);
        let got: Vec<(usize, BarKind, u64, bool)> = bars
            .iter()
            .map(|b| (b.index, b.kind, b.size, b.prefetchable))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, BarKind::Mem32, 0x100, false),
                (1, BarKind::Io, 0x20, false),
                (2, BarKind::Mem64, 256 << 30, true),
                (6, BarKind::Mem32, 0x10000, false),
            ]
        );
    }

    #[test]
    fn msix_pages_are_cut_out_and_sub_page_parts_dropped() {
        // A 64 KiB BAR with the MSI-X table at 0x3000 (32 vectors) and PBA at 0x3800.
        let r = region(0x10000, None);
        let areas = mappable_areas(&r, &[(0x3000, 0x200), (0x3800, 8)]);
        assert_eq!(areas, vec![(0, 0x3000), (0x4000, 0xc000)]);
        // Sparse areas from the kernel are honoured, and cut to pages.
        let sparse = region(0x10000, Some(vec![(0, 0x2800), (0x5000, 0x1000)]));
        assert_eq!(
            mappable_areas(&sparse, &[]),
            vec![(0, 0x2000), (0x5000, 0x1000)]
        );
        // ivshmem's BAR0: 256 bytes, never a memory slot.
        assert!(mappable_areas(&region(0x100, None), &[]).is_empty());
        // Not mmappable, or bogus sparse areas: nothing.
        let mut no_mmap = region(0x10000, None);
        no_mmap.mmappable = false;
        assert!(mappable_areas(&no_mmap, &[]).is_empty());
        let bogus = region(0x1000, Some(vec![(0x800, 0x1000), (u64::MAX, 2)]));
        assert!(mappable_areas(&bogus, &[]).is_empty());
        // A table at the very start of a one-page BAR leaves nothing.
        assert!(mappable_areas(&region(0x1000, None), &[(0, 0x10)]).is_empty());
    }

    #[test]
    fn a_sparse_area_inside_one_page_maps_nothing_without_underflow() {
        // Found by the vfio_config fuzz target: `end - start` was computed (and overflowed)
        // even when the area holds no whole page.
        let r = region(0x10000, Some(vec![(0x100, 0x100), (0x1010, 0xfe0)]));
        assert!(mappable_areas(&r, &[]).is_empty());
    }
}
