//! Fixed guest-physical addresses and the guest memory map.
//!
//! Low memory (below 1 MiB) holds everything the VMM writes for the boot CPU:
//!
//! | range                 | contents                                            |
//! |-----------------------|-----------------------------------------------------|
//! | `0x0500..0x0540`      | boot GDT (8 descriptors)                            |
//! | `0x0540..0x0548`      | boot IDT (empty: any exception triple-faults)       |
//! | `0x6000..0x6038`      | PVH `hvm_start_info`                                |
//! | `0x6040..0x6060`      | PVH module list (the initramfs)                     |
//! | `0x7000..0x8000`      | Linux zero page (`boot_params`)                     |
//! | `0x8000..0x8ff0`      | boot stack (64-bit Linux entry), grows down         |
//! | `0x9000..0xf000`      | identity page tables: PML4, PDPT, four PDs          |
//! | `0xf000..0x10000`     | PVH memory map                                      |
//! | `0x20000..0x30000`    | kernel command line                                 |
//! | `0x9fc00..`           | MP table (EBDA, reserved in the E820 map)           |
//!
//! Above that: the kernel from 1 MiB, the initramfs at the top of low RAM, the 32-bit
//! MMIO hole `[3 GiB, 4 GiB)` (PCI MMIO, ECAM, IOAPIC, LAPIC, the KVM TSS pages) and
//! RAM above 4 GiB followed by the 64-bit MMIO window.

use vm_memory::GuestAddress;

// usize <-> u64 conversions below are lossless only on 64-bit hosts.
const _: () = assert!(usize::BITS == 64);

/// Kernel load floor (1 MiB): nothing the kernel brings may land below this.
pub const HIGH_RAM_START: u64 = 0x10_0000;
/// RAM below 4 GiB ends here at most; `[3 GiB, 4 GiB)` is the 32-bit MMIO hole.
pub const MEM_32BIT_GAP_START: u64 = 0xC000_0000;
/// First address above the 32-bit hole.
pub const RAM_64BIT_START: u64 = 0x1_0000_0000;
/// AMD hosts reserve `[0xfd_0000_0000, 1 TiB)` (HyperTransport): their IOMMU cannot map it,
/// so guest RAM (DMA-mapped at IOVA = GPA for passthrough) and the 64-bit PCI window stay out
/// of it on every host, and RAM past it continues at 1 TiB, as QEMU lays it out.
pub const HT_HOLE_START: u64 = 0xfd_0000_0000;
/// One past the HyperTransport range (1 TiB).
pub const HT_HOLE_END: u64 = 0x100_0000_0000;
/// PCI Express enhanced configuration space (ECAM): 256 buses, 1 MiB each.
pub const PCI_ECAM_START: u64 = 0xE000_0000;
/// Size of the ECAM window.
pub const PCI_ECAM_SIZE: u64 = 0x1000_0000;
/// The IOAPIC's MMIO page.
pub const IOAPIC_START: u64 = 0xFEC0_0000;
/// The local APIC's MMIO page.
pub const LAPIC_START: u64 = 0xFEE0_0000;
/// Where KVM puts its three real-mode TSS pages (`KVM_SET_TSS_ADDR`).
pub const KVM_TSS_START: u64 = 0xFFFB_D000;
/// Size of the KVM TSS area (three pages).
pub const KVM_TSS_SIZE: u64 = 0x3000;
/// KVM's identity-map page (`KVM_SET_IDENTITY_MAP_ADDR`), just below the TSS pages.
pub const KVM_IDENTITY_MAP_START: u64 = 0xFFFB_C000;
/// Size of the identity-map page.
pub const KVM_IDENTITY_MAP_SIZE: u64 = 0x1000;

/// Boot GDT.
pub const BOOT_GDT_START: u64 = 0x500;
/// Maximum number of descriptors in the boot GDT.
pub const BOOT_GDT_MAX_ENTRIES: usize = 8;
/// Boot IDT (one zero 8-byte entry).
pub const BOOT_IDT_START: u64 = 0x540;
/// PVH `hvm_start_info`, whose address the kernel finds in EBX.
pub const PVH_INFO_START: u64 = 0x6000;
/// PVH module list (`hvm_modlist_entry` array).
pub const PVH_MODLIST_START: u64 = 0x6040;
/// Linux zero page (`struct boot_params`), whose address the kernel finds in RSI.
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer for the 64-bit Linux entry.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Page map level 4.
pub const PML4_START: u64 = 0x9000;
/// Page directory pointer table.
pub const PDPTE_START: u64 = 0xA000;
/// First of four page directories (2 MiB pages, 1 GiB each).
pub const PDE_START: u64 = 0xB000;
/// PVH memory map (`hvm_memmap_table_entry` array).
pub const PVH_MEMMAP_START: u64 = 0xF000;
/// Room for the PVH memory map.
pub const PVH_MEMMAP_MAX_SIZE: u64 = 0x1000;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x2_0000;
/// Room for the command line, terminating NUL included.
pub const CMDLINE_MAX_SIZE: u64 = 0x1_0000;
/// Extended BIOS data area: where the MP table lives (reserved in the E820 map).
pub const EBDA_START: u64 = 0x9_FC00;
/// The MP floating pointer sits at the start of the EBDA.
pub const MPTABLE_START: u64 = EBDA_START;
/// End of conventional ("640K") memory.
pub const LOW_RAM_END: u64 = 0xA_0000;

/// Smallest guest RAM accepted: room for the boot tables below 1 MiB, a small kernel
/// from 1 MiB and an initramfs. Anything smaller cannot boot a Linux guest anyway.
pub const MIN_RAM_SIZE: u64 = 8 << 20;
/// Smallest 64-bit MMIO window that must fit above RAM.
pub const MIN_MMIO64_SIZE: u64 = 1 << 30;
/// Alignment of the 64-bit MMIO window start.
pub const MMIO64_ALIGN: u64 = 1 << 30;
/// Guest physical address bits assumed when the host does not say.
pub const DEFAULT_PHYS_BITS: u8 = 36;
/// Most guest physical address bits used: 4-level EPT/NPT maps at most 2^48.
pub const MAX_PHYS_BITS: u8 = 48;
/// Guest pages: RAM sizes must be a multiple of this.
pub const PAGE_SIZE: u64 = 0x1000;

/// Why a memory layout cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("guest RAM size is 0; give the VM some memory (at least {} MiB)", MIN_RAM_SIZE >> 20)]
    ZeroRam,
    #[error(
        "guest RAM of {size:#x} bytes is below the minimum of {} MiB",
        MIN_RAM_SIZE >> 20
    )]
    RamTooSmall { size: u64 },
    #[error("guest RAM size {size:#x} is not a multiple of the 4 KiB page size")]
    RamNotPageAligned { size: u64 },
    #[error("physical address width of {bits} bits is outside the supported 32..=52")]
    InvalidPhysBits { bits: u8 },
    #[error(
        "guest RAM of {ram_size:#x} bytes plus a {min_mmio64:#x}-byte 64-bit PCI window needs \
         addresses up to {needed_end:#x}, beyond the {phys_bits}-bit guest physical address space"
    )]
    AddressSpaceTooSmall {
        ram_size: u64,
        min_mmio64: u64,
        needed_end: u128,
        phys_bits: u8,
    },
}

/// Where RAM and the MMIO windows sit in guest-physical space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLayout {
    /// Total guest RAM in bytes.
    pub ram_size: u64,
    /// RAM mapped at `[0, ram_below_4g)`.
    pub ram_below_4g: u64,
    /// RAM mapped at `[4 GiB, 4 GiB + ram_above_4g)`, at most up to [`HT_HOLE_START`].
    pub ram_above_4g: u64,
    /// RAM mapped at `[1 TiB, 1 TiB + ram_above_1t)`: what did not fit below the
    /// HyperTransport range (guests over 1011 GiB).
    pub ram_above_1t: u64,
    /// 32-bit MMIO window `(start, len)`: from the end of low RAM up to the ECAM.
    pub mmio32: (u64, u64),
    /// 64-bit MMIO window `(start, len)`: 1 GiB-aligned above RAM, up to `2^phys_bits`,
    /// never across the HyperTransport range (the larger side of it).
    pub mmio64: (u64, u64),
    /// Guest physical address width.
    pub phys_bits: u8,
}

impl MemoryLayout {
    /// Lays out `ram_size` bytes of RAM around the 32-bit hole for a guest with
    /// `phys_bits` physical address bits.
    ///
    /// Errors when `ram_size` is 0, below [`MIN_RAM_SIZE`] (8 MiB) or not page aligned,
    /// when `phys_bits` is not in 32..=52, or when RAM plus a [`MIN_MMIO64_SIZE`] 64-bit
    /// window does not fit below `2^phys_bits`.
    pub fn new(ram_size: u64, phys_bits: u8) -> Result<Self, LayoutError> {
        if ram_size == 0 {
            return Err(LayoutError::ZeroRam);
        }
        if ram_size < MIN_RAM_SIZE {
            return Err(LayoutError::RamTooSmall { size: ram_size });
        }
        if !ram_size.is_multiple_of(PAGE_SIZE) {
            return Err(LayoutError::RamNotPageAligned { size: ram_size });
        }
        if !(32..=52).contains(&phys_bits) {
            return Err(LayoutError::InvalidPhysBits { bits: phys_bits });
        }
        let ram_below_4g = ram_size.min(MEM_32BIT_GAP_START);
        let high = ram_size - ram_below_4g;
        let ram_above_4g = high.min(HT_HOLE_START - RAM_64BIT_START);
        let ram_above_1t = high - ram_above_4g;
        // u128 so that absurd sizes report an error instead of overflowing.
        let ram_end = if ram_above_1t > 0 {
            u128::from(HT_HOLE_END) + u128::from(ram_above_1t)
        } else {
            u128::from(RAM_64BIT_START) + u128::from(ram_above_4g)
        };
        let align = u128::from(MMIO64_ALIGN);
        let mut mmio64_start = ram_end.div_ceil(align) * align;
        let top = 1u128 << phys_bits;
        // The window may not cross the HyperTransport range: it takes the larger side.
        let (hole, hole_end) = (u128::from(HT_HOLE_START), u128::from(HT_HOLE_END));
        let mut mmio64_end = top;
        if mmio64_start < hole_end && top > hole {
            let below = hole.saturating_sub(mmio64_start);
            let above = top.saturating_sub(hole_end);
            if above > below {
                mmio64_start = hole_end;
            } else {
                mmio64_end = hole;
            }
        }
        let needed_end = mmio64_start + u128::from(MIN_MMIO64_SIZE);
        if needed_end > mmio64_end {
            return Err(LayoutError::AddressSpaceTooSmall {
                ram_size,
                min_mmio64: MIN_MMIO64_SIZE,
                needed_end,
                phys_bits,
            });
        }
        // Both fit in u64: top <= 2^52.
        let mmio64 = (mmio64_start as u64, (mmio64_end - mmio64_start) as u64);
        let mmio32 = (ram_below_4g, PCI_ECAM_START - ram_below_4g);
        Ok(MemoryLayout {
            ram_size,
            ram_below_4g,
            ram_above_4g,
            ram_above_1t,
            mmio32,
            mmio64,
            phys_bits,
        })
    }

    /// The `(GuestAddress, size)` RAM ranges to mmap: `[0, below_4g)` and, when there
    /// is more RAM, `[4 GiB, 4 GiB + above_4g)`.
    pub fn ram_ranges(&self) -> Vec<(GuestAddress, usize)> {
        let mut ranges = vec![(GuestAddress(0), self.ram_below_4g as usize)];
        if self.ram_above_4g > 0 {
            ranges.push((GuestAddress(RAM_64BIT_START), self.ram_above_4g as usize));
        }
        if self.ram_above_1t > 0 {
            ranges.push((GuestAddress(HT_HOLE_END), self.ram_above_1t as usize));
        }
        ranges
    }

    /// One past the last guest-physical RAM address.
    pub fn ram_end(&self) -> u64 {
        if self.ram_above_1t > 0 {
            HT_HOLE_END + self.ram_above_1t
        } else if self.ram_above_4g == 0 {
            self.ram_below_4g
        } else {
            RAM_64BIT_START + self.ram_above_4g
        }
    }
}

/// A PCI expander host bridge: a second root complex on segment 0 whose devices the guest
/// places in a NUMA node (its `_PXM`): buses, and its own slices of the MMIO windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expander {
    /// Guest NUMA node.
    pub node: u32,
    /// Its root bus and last bus.
    pub bus: u8,
    pub last_bus: u8,
    pub mmio32: (u64, u64),
    pub mmio64: (u64, u64),
}

/// The most expander host bridges (16 buses each above bus 0x80).
pub const MAX_EXPANDERS: usize = 8;
/// Buses of the main host bridge when there are expanders.
pub const EXPANDER_FIRST_BUS: u8 = 0x80;

impl MemoryLayout {
    /// Gives one expander host bridge per entry of `nodes` (at most [`MAX_EXPANDERS`]) its
    /// buses and MMIO windows, taken from this layout's: each gets up to 64 MiB from the top
    /// of the 32-bit window and an equal share of the 64-bit one (the main bridge keeps the
    /// first share). Returns the main bridge's layout (smaller windows) and the expanders.
    pub fn split_for_expanders(&self, nodes: &[u32]) -> (MemoryLayout, Vec<Expander>) {
        if nodes.is_empty() {
            return (*self, Vec::new());
        }
        let k = nodes.len().min(MAX_EXPANDERS) as u64;
        const MIB: u64 = 1 << 20;
        let each32 = (64 * MIB).min(self.mmio32.1 / (k + 1) / MIB * MIB);
        let part64 = (self.mmio64.1 / (k + 1)) & !(MMIO64_ALIGN - 1);
        let mut main = *self;
        main.mmio32.1 -= each32 * k;
        main.mmio64.1 = part64;
        let top32 = self.mmio32.0 + self.mmio32.1;
        let list = nodes
            .iter()
            .take(MAX_EXPANDERS)
            .enumerate()
            .map(|(i, &node)| {
                let i = i as u64;
                let start64 = self.mmio64.0 + part64 * (i + 1);
                let len64 = if i + 1 == k {
                    self.mmio64.0 + self.mmio64.1 - start64
                } else {
                    part64
                };
                Expander {
                    node,
                    bus: EXPANDER_FIRST_BUS + 0x10 * i as u8,
                    last_bus: EXPANDER_FIRST_BUS + 0x10 * i as u8 + 0x0f,
                    mmio32: (top32 - each32 * (i + 1), each32),
                    mmio64: (start64, len64),
                }
            })
            .collect();
        (main, list)
    }
}

/// Host physical address bits from CPUID 0x80000008 EAX[7:0], clamped to
/// `[DEFAULT_PHYS_BITS, MAX_PHYS_BITS]` (36..=48): the guest is told at most 48 bits
/// because 4-level EPT/NPT cannot map guest-physical addresses above 2^48.
pub fn host_phys_bits() -> u8 {
    use core::arch::x86_64::__cpuid;
    // CPUID is a safe intrinsic on x86_64 (always present, no side effects).
    let max_ext = __cpuid(0x8000_0000).eax;
    let bits = if max_ext >= 0x8000_0008 {
        let eax = __cpuid(0x8000_0008).eax;
        (eax & 0xff) as u8
    } else {
        DEFAULT_PHYS_BITS
    };
    clamp_phys_bits(bits)
}

/// Clamps a reported physical address width to what this VMM tells a guest.
pub fn clamp_phys_bits(bits: u8) -> u8 {
    bits.clamp(DEFAULT_PHYS_BITS, MAX_PHYS_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn small_guest_has_all_ram_below_4g_and_mmio32_up_to_ecam() {
        let l = MemoryLayout::new(128 * MIB, 40).unwrap();
        assert_eq!(l.ram_below_4g, 128 * MIB);
        assert_eq!(l.ram_above_4g, 0);
        assert_eq!(l.mmio32, (128 * MIB, PCI_ECAM_START - 128 * MIB));
        // 40 bits: the window stops at the HyperTransport range (the larger side).
        assert_eq!(l.mmio64, (4 * GIB, HT_HOLE_START - 4 * GIB));
        assert_eq!(
            l.ram_ranges(),
            vec![(GuestAddress(0), (128 * MIB) as usize)]
        );
        assert_eq!(l.ram_end(), 128 * MIB);
        // 48 bits: the side above 1 TiB is larger.
        let l = MemoryLayout::new(128 * MIB, 48).unwrap();
        assert_eq!(l.mmio64, (HT_HOLE_END, (1 << 48) - HT_HOLE_END));
        // 39 bits: the range is beyond the address space and changes nothing.
        let l = MemoryLayout::new(128 * MIB, 39).unwrap();
        assert_eq!(l.mmio64, (4 * GIB, (1 << 39) - 4 * GIB));
    }

    #[test]
    fn ram_past_1011_gib_continues_above_1_tib_around_the_hypertransport_range() {
        let l = MemoryLayout::new(1100 * GIB, 48).unwrap();
        assert_eq!(l.ram_below_4g, 3 * GIB);
        assert_eq!(l.ram_above_4g, HT_HOLE_START - 4 * GIB);
        assert_eq!(
            l.ram_above_1t,
            1100 * GIB - 3 * GIB - (HT_HOLE_START - 4 * GIB)
        );
        assert_eq!(l.ram_above_1t, 89 * GIB);
        assert_eq!(
            l.ram_ranges(),
            vec![
                (GuestAddress(0), (3 * GIB) as usize),
                (GuestAddress(4 * GIB), (HT_HOLE_START - 4 * GIB) as usize),
                (GuestAddress(HT_HOLE_END), (89 * GIB) as usize),
            ]
        );
        assert_eq!(l.ram_end(), HT_HOLE_END + 89 * GIB);
        assert_eq!(l.mmio64.0, HT_HOLE_END + 89 * GIB);
        assert_eq!(l.mmio64.0 + l.mmio64.1, 1 << 48);
        // No RAM range and no window touches the range.
        for (a, len) in l.ram_ranges() {
            assert!(a.0 + len as u64 <= HT_HOLE_START || a.0 >= HT_HOLE_END);
        }
        // 1011 GiB exactly still fits below it.
        let l = MemoryLayout::new(1011 * GIB, 48).unwrap();
        assert_eq!(l.ram_above_1t, 0);
        assert_eq!(l.ram_end(), HT_HOLE_START);
        assert_eq!(l.mmio64.0, HT_HOLE_END);
        // 2 TiB with 8 GPUs' 128 GiB BARs: room above RAM in a 46-bit space.
        let l = MemoryLayout::new(2048 * GIB, 46).unwrap();
        assert!(l.mmio64.1 >= 8 * 128 * GIB);
        // A guest past 1 TiB needs more than 40 address bits.
        assert!(matches!(
            MemoryLayout::new(1100 * GIB, 40),
            Err(LayoutError::AddressSpaceTooSmall { .. })
        ));
    }

    #[test]
    fn three_gib_fills_low_ram_exactly() {
        let l = MemoryLayout::new(3 * GIB, 39).unwrap();
        assert_eq!(l.ram_below_4g, MEM_32BIT_GAP_START);
        assert_eq!(l.ram_above_4g, 0);
        assert_eq!(
            l.mmio32,
            (MEM_32BIT_GAP_START, PCI_ECAM_START - MEM_32BIT_GAP_START)
        );
        assert_eq!(l.ram_ranges().len(), 1);
        assert_eq!(l.mmio64.0, 4 * GIB);
    }

    #[test]
    fn four_gib_splits_around_the_hole() {
        let l = MemoryLayout::new(4 * GIB, 39).unwrap();
        assert_eq!(l.ram_below_4g, 3 * GIB);
        assert_eq!(l.ram_above_4g, GIB);
        assert_eq!(
            l.ram_ranges(),
            vec![
                (GuestAddress(0), (3 * GIB) as usize),
                (GuestAddress(4 * GIB), GIB as usize)
            ]
        );
        assert_eq!(l.mmio64, (5 * GIB, (1 << 39) - 5 * GIB));
        assert_eq!(l.ram_end(), 5 * GIB);
    }

    #[test]
    fn thirty_two_gib_puts_mmio64_aligned_above_high_ram() {
        let l = MemoryLayout::new(32 * GIB, 46).unwrap();
        assert_eq!(l.ram_above_4g, 29 * GIB);
        let ram_end = 4 * GIB + 29 * GIB;
        assert!(l.mmio64.0 >= ram_end);
        assert_eq!(l.mmio64.0 % MMIO64_ALIGN, 0);
        assert_eq!(l.mmio64.0 + l.mmio64.1, 1 << 46);
    }

    #[test]
    fn unaligned_high_ram_end_rounds_mmio64_up_to_1gib() {
        let l = MemoryLayout::new(3 * GIB + 2 * MIB, 40).unwrap();
        assert_eq!(l.ram_above_4g, 2 * MIB);
        assert_eq!(l.mmio64.0, 5 * GIB);
    }

    #[test]
    fn rejects_zero_tiny_unaligned_ram() {
        assert_eq!(MemoryLayout::new(0, 40), Err(LayoutError::ZeroRam));
        assert_eq!(
            MemoryLayout::new(4 * MIB, 40),
            Err(LayoutError::RamTooSmall { size: 4 * MIB })
        );
        assert_eq!(
            MemoryLayout::new(128 * MIB + 1, 40),
            Err(LayoutError::RamNotPageAligned {
                size: 128 * MIB + 1
            })
        );
    }

    #[test]
    fn rejects_bad_phys_bits() {
        assert_eq!(
            MemoryLayout::new(128 * MIB, 31),
            Err(LayoutError::InvalidPhysBits { bits: 31 })
        );
        assert_eq!(
            MemoryLayout::new(128 * MIB, 53),
            Err(LayoutError::InvalidPhysBits { bits: 53 })
        );
    }

    #[test]
    fn rejects_ram_that_does_not_fit_the_address_space() {
        // 64 GiB of RAM cannot fit in a 36-bit (64 GiB) space with the hole and a window.
        let err = MemoryLayout::new(64 * GIB, 36).unwrap_err();
        assert!(matches!(
            err,
            LayoutError::AddressSpaceTooSmall { phys_bits: 36, .. }
        ));
        assert!(err.to_string().contains("36-bit"));
        // Absurd sizes error instead of overflowing.
        assert!(MemoryLayout::new(!(PAGE_SIZE - 1), 52).is_err());
    }

    #[test]
    fn host_phys_bits_is_clamped() {
        let bits = host_phys_bits();
        assert!((DEFAULT_PHYS_BITS..=MAX_PHYS_BITS).contains(&bits));
        assert_eq!(clamp_phys_bits(52), 48);
        assert_eq!(clamp_phys_bits(0), 36);
        assert_eq!(clamp_phys_bits(40), 40);
    }

    #[test]
    fn expanders_take_disjoint_slices_of_the_windows_and_their_own_buses() {
        let l = MemoryLayout::new(4 * GIB, 40).unwrap();
        let (main, ex) = l.split_for_expanders(&[1, 0]);
        assert_eq!(ex.len(), 2);
        assert_eq!((ex[0].node, ex[0].bus, ex[0].last_bus), (1, 0x80, 0x8f));
        assert_eq!((ex[1].bus, ex[1].last_bus), (0x90, 0x9f));
        // 32-bit: 64 MiB each from the top, the main bridge keeps the rest.
        assert_eq!(ex[0].mmio32, (PCI_ECAM_START - 64 * MIB, 64 * MIB));
        assert_eq!(ex[1].mmio32, (PCI_ECAM_START - 128 * MIB, 64 * MIB));
        assert_eq!(main.mmio32.0 + main.mmio32.1, PCI_ECAM_START - 128 * MIB);
        // 64-bit: three GiB-aligned shares, in order, covering the window.
        assert_eq!(main.mmio64.0, l.mmio64.0);
        assert_eq!(main.mmio64.0 + main.mmio64.1, ex[0].mmio64.0);
        assert_eq!(ex[0].mmio64.0 + ex[0].mmio64.1, ex[1].mmio64.0);
        assert_eq!(ex[1].mmio64.0 + ex[1].mmio64.1, l.mmio64.0 + l.mmio64.1);
        assert_eq!(ex[0].mmio64.0 % GIB, 0);
        // None: nothing changes.
        assert_eq!(l.split_for_expanders(&[]), (l, vec![]));
    }
}
