//! PCI segments after segment 0 (Cloud Hypervisor's `num_pci_segments`): each is a root
//! complex of its own — a host bridge with `_SEG` N, buses numbered from 0, its own ECAM
//! (an MCFG entry) and its own slices of the MMIO windows — so the guest sees its devices as
//! `000N:00:xx.0`.
//!
//! Segment 0 keeps the main ECAM ([`PCI_ECAM_START`], 256 buses) and config ports 0xcf8;
//! the others are reached through their ECAM alone (Linux uses MMCONFIG for every segment
//! but 0). Their ECAMs follow segment 0's, [`SEGMENT_BUSES`] buses each, below the IOAPIC:
//!
//! ```text
//! 0xe000_0000  segment 0 ECAM (256 MiB)
//! 0xf000_0000  segment 1 ECAM (8 MiB: buses 0..=7), segment 2 at 0xf080_0000, ...
//! 0xf780_0000  end of segment 15's
//! ```

use crate::layout::{MemoryLayout, IOAPIC_START, MMIO64_ALIGN, PCI_ECAM_SIZE, PCI_ECAM_START};

/// Most PCI segments a VM may have (Cloud Hypervisor's limit).
pub const MAX_PCI_SEGMENTS: u16 = 16;
/// Buses a segment after 0 has: bus 0 and up to seven root ports' secondary buses.
pub const SEGMENT_BUSES: u16 = 8;
/// Bytes of ECAM per segment after 0 (1 MiB per bus).
pub const SEGMENT_ECAM_SIZE: u64 = (SEGMENT_BUSES as u64) << 20;
/// Segment 1's ECAM; segment N's is `SEGMENT_ECAM_SIZE * (N - 1)` above.
pub const SEGMENT_ECAM_START: u64 = PCI_ECAM_START + PCI_ECAM_SIZE;

const _: () =
    assert!(SEGMENT_ECAM_START + SEGMENT_ECAM_SIZE * (MAX_PCI_SEGMENTS as u64 - 1) <= IOAPIC_START);

/// The 32-bit windows are cut at this granularity.
const MMIO32_ALIGN: u64 = 1 << 20;

/// One PCI segment after segment 0, as the guest's tables describe it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciSegmentLayout {
    /// Segment number (1..[`MAX_PCI_SEGMENTS`]).
    pub id: u16,
    /// Guest-physical address of its ECAM (bus 0).
    pub ecam: u64,
    /// Buses `0..=last_bus` are described (MCFG and `_CRS`); at most `SEGMENT_BUSES - 1`.
    pub last_bus: u8,
    /// Its 32-bit and 64-bit MMIO windows `(start, len)` (a length of 0: none).
    pub mmio32: (u64, u64),
    pub mmio64: (u64, u64),
    /// Guest NUMA node (`_PXM`), when the segment is put in one.
    pub node: Option<u32>,
}

/// The ECAM base of segment `id` (>= 1).
pub fn segment_ecam(id: u16) -> u64 {
    SEGMENT_ECAM_START + SEGMENT_ECAM_SIZE * u64::from(id.saturating_sub(1))
}

/// Boundaries of `(start, len)` cut in proportion to `weights`, each aligned down to `align`
/// (the first starts at `start`, the last ends at `start + len`).
fn cut(window: (u64, u64), weights: &[u32], align: u64) -> Vec<(u64, u64)> {
    let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    let (start, len) = window;
    let mut acc = 0u128;
    let mut bounds = vec![start];
    for &w in &weights[..weights.len() - 1] {
        acc += u128::from(w);
        let at = start + (u128::from(len) * acc / total) as u64;
        let at = (at / align * align).max(*bounds.last().unwrap_or(&start));
        bounds.push(at);
    }
    bounds.push(start + len);
    bounds.windows(2).map(|b| (b[0], b[1] - b[0])).collect()
}

impl MemoryLayout {
    /// Shares this layout's MMIO windows between segments `0..weights.len()` in proportion to
    /// their `(mmio32, mmio64)` weights (each at least 1; Cloud Hypervisor's aperture
    /// weights), in segment order. Returns segment 0's layout (its windows the first share)
    /// and the other segments, with every bus and no node.
    pub fn split_for_segments(
        &self,
        weights: &[(u32, u32)],
    ) -> (MemoryLayout, Vec<PciSegmentLayout>) {
        if weights.len() < 2 {
            return (*self, Vec::new());
        }
        let w32: Vec<u32> = weights.iter().map(|w| w.0.max(1)).collect();
        let w64: Vec<u32> = weights.iter().map(|w| w.1.max(1)).collect();
        let m32 = cut(self.mmio32, &w32, MMIO32_ALIGN);
        let m64 = cut(self.mmio64, &w64, MMIO64_ALIGN);
        let mut main = *self;
        main.mmio32 = m32[0];
        main.mmio64 = m64[0];
        let rest = (1..weights.len())
            .map(|i| PciSegmentLayout {
                id: i as u16,
                ecam: segment_ecam(i as u16),
                last_bus: (SEGMENT_BUSES - 1) as u8,
                mmio32: m32[i],
                mmio64: m64[i],
                node: None,
            })
            .collect();
        (main, rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn segments_share_the_windows_by_weight_in_order_and_cover_them() {
        let l = MemoryLayout::new(4 * GIB, 40).unwrap();
        let (main, segs) = l.split_for_segments(&[(1, 1), (1, 1)]);
        assert_eq!(segs.len(), 1);
        let s = segs[0];
        assert_eq!(
            (s.id, s.ecam, s.last_bus, s.node),
            (1, 0xf000_0000, 7, None)
        );
        // 512 MiB of 32-bit window: 256 each; segment 0 keeps the lower half.
        assert_eq!(main.mmio32, (l.mmio32.0, 256 * MIB));
        assert_eq!(s.mmio32, (l.mmio32.0 + 256 * MIB, 256 * MIB));
        assert_eq!(main.mmio64.0, l.mmio64.0);
        assert_eq!(main.mmio64.0 + main.mmio64.1, s.mmio64.0);
        assert_eq!(s.mmio64.0 % GIB, 0);
        assert_eq!(s.mmio64.0 + s.mmio64.1, l.mmio64.0 + l.mmio64.1);
        // Everything else is the same layout.
        assert_eq!((main.ram_size, main.phys_bits), (l.ram_size, l.phys_bits));

        // Weights 3:1 on the 64-bit window, 1:3 on the 32-bit one.
        let (main, segs) = l.split_for_segments(&[(1, 3), (3, 1)]);
        assert_eq!(main.mmio32.1, 128 * MIB);
        assert_eq!(segs[0].mmio32.1, 384 * MIB);
        assert!(main.mmio64.1 > 2 * segs[0].mmio64.1, "{main:?} {segs:?}");

        // 16 segments: ECAMs one after another, below the IOAPIC, windows disjoint.
        let (main, segs) = l.split_for_segments(&[(1, 1); 16]);
        assert_eq!(segs.len(), 15);
        assert_eq!(segs[14].ecam, 0xf000_0000 + 14 * 8 * MIB);
        let mut prev = main;
        for s in &segs {
            assert_eq!(prev.mmio32.0 + prev.mmio32.1, s.mmio32.0);
            assert_eq!(s.mmio32.0 % MIB, 0);
            assert!(s.mmio32.1 >= 32 * MIB);
            prev.mmio32 = s.mmio32;
        }
        assert_eq!(prev.mmio32.0 + prev.mmio32.1, PCI_ECAM_START);
        // One segment: nothing is cut.
        assert_eq!(l.split_for_segments(&[(1, 1)]), (l, vec![]));
    }

    #[test]
    fn a_weight_of_zero_counts_as_one() {
        let l = MemoryLayout::new(4 * GIB, 40).unwrap();
        assert_eq!(
            l.split_for_segments(&[(0, 0), (1, 1)]),
            l.split_for_segments(&[(1, 1), (1, 1)])
        );
    }
}
