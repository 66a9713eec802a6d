//! The guest's E820 memory map, shared by the Linux zero page and the PVH memmap.

use crate::acpi::ACPI_TABLES_START;
use crate::layout::{
    MemoryLayout, EBDA_START, HIGH_RAM_START, HT_HOLE_END, HT_HOLE_START, KVM_IDENTITY_MAP_START,
    KVM_TSS_SIZE, KVM_TSS_START, LOW_RAM_END, PCI_ECAM_SIZE, PCI_ECAM_START, RAM_64BIT_START,
};
use crate::smbios::SMBIOS_END;

/// Usable RAM.
pub const E820_RAM: u32 = 1;
/// Reserved: the guest must not use it as RAM nor place devices there.
pub const E820_RESERVED: u32 = 2;

/// One memory map entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    /// [`E820_RAM`] or [`E820_RESERVED`].
    pub kind: u32,
}

/// The memory map for `layout`, sorted by address and non-overlapping:
///
/// * RAM `[0, 0x9fc00)`; reserved EBDA `[0x9fc00, 0xa0000)` (MP table);
///   `[0xa0000, 0xe0000)` is left out (legacy VGA/option ROM hole, not RAM);
/// * reserved ACPI and SMBIOS area `[0xe0000, 1 MiB)` (RSDP and tables, where the BIOS area
///   was; SMBIOS from 0xf0000);
/// * RAM `[1 MiB, ram_below_4g)`;
/// * reserved ECAM `[0xe000_0000, 0xf000_0000)` (Linux only trusts MCFG when it is);
/// * reserved KVM identity-map + TSS pages `[0xfffb_c000, 0xfffc_0000)`;
/// * RAM `[4 GiB, 4 GiB + ram_above_4g)` when there is any;
/// * for guests over 1011 GiB, reserved `[0xfd_0000_0000, 1 TiB)` (AMD's HyperTransport
///   range) and RAM `[1 TiB, 1 TiB + ram_above_1t)`.
pub fn e820_map(layout: &MemoryLayout) -> Vec<E820Entry> {
    let ram = |addr, end: u64| E820Entry {
        addr,
        size: end - addr,
        kind: E820_RAM,
    };
    let reserved = |addr, end: u64| E820Entry {
        addr,
        size: end - addr,
        kind: E820_RESERVED,
    };
    let mut map = vec![
        ram(0, EBDA_START),
        reserved(EBDA_START, LOW_RAM_END),
        reserved(ACPI_TABLES_START, SMBIOS_END),
        ram(HIGH_RAM_START, layout.ram_below_4g),
        reserved(PCI_ECAM_START, PCI_ECAM_START + PCI_ECAM_SIZE),
        reserved(KVM_IDENTITY_MAP_START, KVM_TSS_START + KVM_TSS_SIZE),
    ];
    if layout.ram_above_4g > 0 {
        map.push(ram(RAM_64BIT_START, RAM_64BIT_START + layout.ram_above_4g));
    }
    if layout.ram_above_1t > 0 {
        // RAM goes on past AMD's HyperTransport range, which is marked reserved.
        map.push(reserved(HT_HOLE_START, HT_HOLE_END));
        map.push(ram(HT_HOLE_END, HT_HOLE_END + layout.ram_above_1t));
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn assert_sorted_disjoint(map: &[E820Entry]) {
        for pair in map.windows(2) {
            assert!(
                pair[0].addr + pair[0].size <= pair[1].addr,
                "{:x?} overlaps or precedes {:x?}",
                pair[0],
                pair[1]
            );
        }
    }

    #[test]
    fn small_guest_map_has_low_ram_ebda_acpi_high_ram_and_reserved_holes() {
        let layout = MemoryLayout::new(128 * MIB, 40).unwrap();
        let map = e820_map(&layout);
        assert_eq!(
            map,
            vec![
                E820Entry {
                    addr: 0,
                    size: 0x9fc00,
                    kind: E820_RAM
                },
                E820Entry {
                    addr: 0x9fc00,
                    size: 0x400,
                    kind: E820_RESERVED
                },
                E820Entry {
                    addr: 0xE_0000,
                    size: 0x2_0000,
                    kind: E820_RESERVED
                },
                E820Entry {
                    addr: 0x10_0000,
                    size: 127 * MIB,
                    kind: E820_RAM
                },
                E820Entry {
                    addr: 0xE000_0000,
                    size: 0x1000_0000,
                    kind: E820_RESERVED
                },
                E820Entry {
                    addr: 0xFFFB_C000,
                    size: 0x4000,
                    kind: E820_RESERVED
                },
            ]
        );
        assert_sorted_disjoint(&map);
    }

    #[test]
    fn large_guest_map_ends_with_ram_above_4g() {
        let layout = MemoryLayout::new(8 * GIB, 40).unwrap();
        let map = e820_map(&layout);
        assert_sorted_disjoint(&map);
        let last = map.last().unwrap();
        assert_eq!(
            *last,
            E820Entry {
                addr: 4 * GIB,
                size: 5 * GIB,
                kind: E820_RAM
            }
        );
        let ram: u64 = map
            .iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| e.size)
            .sum();
        // Everything but the legacy hole [0x9fc00, 1 MiB) is RAM.
        assert_eq!(ram, 8 * GIB - (HIGH_RAM_START - EBDA_START));
    }

    #[test]
    fn a_guest_past_1011_gib_has_the_hypertransport_range_reserved_and_ram_above_1_tib() {
        let l = MemoryLayout::new(1100 << 30, 48).unwrap();
        let map = e820_map(&l);
        assert_sorted_disjoint(&map);
        let ht = map.iter().find(|e| e.addr == HT_HOLE_START).unwrap();
        assert_eq!(
            (ht.size, ht.kind),
            (HT_HOLE_END - HT_HOLE_START, E820_RESERVED)
        );
        let last = map.last().unwrap();
        assert_eq!(
            (last.addr, last.size, last.kind),
            (HT_HOLE_END, 89 << 30, E820_RAM)
        );
        let ram: u64 = map
            .iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| e.size)
            .sum();
        // All RAM but the legacy hole [0x9fc00, 1 MiB).
        assert_eq!(ram, (1100 << 30) - (HIGH_RAM_START - EBDA_START));
    }

    #[test]
    fn ram_entries_never_cover_the_32bit_hole() {
        let layout = MemoryLayout::new(16 * GIB, 40).unwrap();
        for e in e820_map(&layout).iter().filter(|e| e.kind == E820_RAM) {
            let end = e.addr + e.size;
            assert!(end <= 0xC000_0000 || e.addr >= RAM_64BIT_START, "{e:x?}");
        }
    }
}
