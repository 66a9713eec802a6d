//! Identity-mapped page tables for entering the 64-bit Linux boot protocol.
//!
//! One PML4 entry -> one PDPT with four entries -> four page directories of 512
//! 2 MiB pages each: virtual == physical for `[0, 4 GiB)`, which covers the kernel,
//! zero page, command line and initramfs (all below 4 GiB). Written once, 16 KiB + 8 KiB.

use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use crate::layout::{PDE_START, PDPTE_START, PML4_START};

/// Present + writable.
const PTE_PRESENT_RW: u64 = 0x3;
/// Present + writable + page size (2 MiB leaf in a PD).
const PDE_LARGE_PAGE: u64 = 0x83;
/// Number of page directories (each maps 1 GiB).
pub const NUM_PDS: u64 = 4;
/// Highest address (exclusive) mapped by the boot page tables.
pub const IDENTITY_MAPPED_END: u64 = NUM_PDS << 30;

/// Why the boot page tables could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PagingError {
    #[error("cannot write the boot {table} at guest address {addr:#x}: {source}")]
    Write {
        table: &'static str,
        addr: u64,
        source: GuestMemoryError,
    },
}

fn write_table(
    mem: &GuestMemoryMmap,
    table: &'static str,
    addr: u64,
    entries: &[u64],
) -> Result<(), PagingError> {
    let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
    mem.write_slice(&bytes, GuestAddress(addr))
        .map_err(|source| PagingError::Write {
            table,
            addr,
            source,
        })
}

/// Writes the identity page tables and returns the CR3 value (the PML4 address).
pub fn setup_identity_page_tables(mem: &GuestMemoryMmap) -> Result<u64, PagingError> {
    write_table(mem, "PML4", PML4_START, &[PDPTE_START | PTE_PRESENT_RW])?;
    let pdpt: Vec<u64> = (0..NUM_PDS)
        .map(|i| (PDE_START + i * 0x1000) | PTE_PRESENT_RW)
        .collect();
    write_table(mem, "PDPT", PDPTE_START, &pdpt)?;
    let pds: Vec<u64> = (0..NUM_PDS * 512)
        .map(|i| (i << 21) | PDE_LARGE_PAGE)
        .collect();
    write_table(mem, "page directories", PDE_START, &pds)?;
    Ok(PML4_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
    }

    /// Walks the tables in guest memory like the MMU does for a 2 MiB mapping.
    fn translate(m: &GuestMemoryMmap, cr3: u64, va: u64) -> Option<u64> {
        let read = |addr: u64| m.read_obj::<u64>(GuestAddress(addr)).unwrap();
        let pml4e = read(cr3 + ((va >> 39) & 0x1ff) * 8);
        if pml4e & 1 == 0 {
            return None;
        }
        let pdpte = read((pml4e & !0xfff) + ((va >> 30) & 0x1ff) * 8);
        if pdpte & 1 == 0 {
            return None;
        }
        let pde = read((pdpte & !0xfff) + ((va >> 21) & 0x1ff) * 8);
        if pde & 1 == 0 || pde & 0x80 == 0 {
            return None;
        }
        Some((pde & !0x1f_ffff & 0x000f_ffff_ffff_ffff) | (va & 0x1f_ffff))
    }

    #[test]
    fn first_4gib_is_identity_mapped_with_2mib_pages() {
        let m = mem();
        let cr3 = setup_identity_page_tables(&m).unwrap();
        assert_eq!(cr3, PML4_START);
        for va in [
            0,
            0x1234,
            2 << 20,
            (2 << 20) + 0x5678,
            1 << 30,
            0xE000_0000,
            0xFFFF_FFFF,
        ] {
            assert_eq!(translate(&m, cr3, va), Some(va), "va {va:#x}");
        }
        assert_eq!(
            translate(&m, cr3, 0xE000_0000 + (1 << 28)),
            Some(0xF000_0000)
        );
    }

    #[test]
    fn entries_have_expected_bits() {
        let m = mem();
        setup_identity_page_tables(&m).unwrap();
        let read = |addr: u64| m.read_obj::<u64>(GuestAddress(addr)).unwrap();
        assert_eq!(read(PML4_START), PDPTE_START | 3);
        assert_eq!(read(PML4_START + 8), 0, "only one PML4 entry");
        assert_eq!(read(PDPTE_START + 3 * 8), (PDE_START + 0x3000) | 3);
        assert_eq!(read(PDPTE_START + 4 * 8), 0, "nothing above 4 GiB");
        assert_eq!(read(PDE_START + 8), (2 << 20) | 0x83);
    }

    #[test]
    fn nothing_above_4gib_is_mapped() {
        let m = mem();
        let cr3 = setup_identity_page_tables(&m).unwrap();
        assert_eq!(translate(&m, cr3, IDENTITY_MAPPED_END), None);
    }

    #[test]
    fn tables_outside_guest_memory_report_which_one() {
        let tiny = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0xA000)]).unwrap();
        let err = setup_identity_page_tables(&tiny).unwrap_err();
        assert!(err.to_string().contains("PDPT"), "{err}");
    }
}
