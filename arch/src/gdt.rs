//! Boot GDT: descriptor encoding, decoding into [`Segment`]s, and writing it to the guest.
//!
//! The segments loaded into the boot CPU are decoded from the very descriptors written
//! to guest memory, so the two cannot disagree.

use hypervisor::{DescriptorTable, Segment};
use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use crate::layout::{BOOT_GDT_MAX_ENTRIES, BOOT_GDT_START, BOOT_IDT_START};

/// Why the boot GDT/IDT could not be written.
#[derive(Debug, thiserror::Error)]
pub enum GdtError {
    #[error("the boot GDT has {count} descriptors, more than the {max} reserved for it")]
    TooManyEntries { count: usize, max: usize },
    #[error("cannot write the boot GDT at guest address {addr:#x}: {source}")]
    WriteGdt { addr: u64, source: GuestMemoryError },
    #[error("cannot write the boot IDT at guest address {addr:#x}: {source}")]
    WriteIdt { addr: u64, source: GuestMemoryError },
}

/// Encodes a segment descriptor from its access/flags word, base and 20-bit limit.
///
/// `flags` holds descriptor bits 40..=55 shifted down by 40: type (4 bits), S, DPL (2),
/// P, limit[19:16] (ignored, taken from `limit`), AVL, L, D/B, G.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let base = base as u64;
    let limit = limit as u64;
    let flags = flags as u64;
    ((base & 0xff00_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0x0000_ffff)
        | ((limit & 0x000f_0000) << 32)
        | ((flags & 0xf0ff) << 40)
}

/// Flat 4 GiB 32-bit code, execute/read, accessed (type 0xb), D=1, G=1.
pub const CODE32: u64 = gdt_entry(0xc09b, 0, 0xfffff);
/// Flat 64-bit code, execute/read, accessed (type 0xb), L=1, G=1.
pub const CODE64: u64 = gdt_entry(0xa09b, 0, 0xfffff);
/// Flat 4 GiB data, read/write, accessed (type 3), B=1, G=1.
pub const DATA: u64 = gdt_entry(0xc093, 0, 0xfffff);
/// 32-bit busy TSS (type 0xb) at 0 with limit 0x67, as the PVH ABI asks for TR.
pub const TSS: u64 = gdt_entry(0x008b, 0, 0x67);

/// Decodes descriptor `index` of `table` into the hidden-register form loaded with
/// selector `index * 8` (byte-granular limit, as KVM expects).
pub fn segment_from_gdt(table: &[u64], index: usize) -> Segment {
    let entry = table.get(index).copied().unwrap_or(0);
    let bit = |n: u32| ((entry >> n) & 1) as u8;
    let base = ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000);
    let raw_limit = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
    let g = bit(55);
    let limit = if g == 1 {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    let present = bit(47);
    Segment {
        base,
        limit,
        selector: (index * 8) as u16,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 0x3) as u8,
        db: bit(54),
        s: bit(44),
        l: bit(53),
        g,
        avl: bit(52),
        unusable: u8::from(present == 0),
    }
}

/// Writes `table` at [`BOOT_GDT_START`] and a zero IDT entry at [`BOOT_IDT_START`];
/// returns the GDTR and IDTR to load.
pub fn write_gdt(
    mem: &GuestMemoryMmap,
    table: &[u64],
) -> Result<(DescriptorTable, DescriptorTable), GdtError> {
    if table.len() > BOOT_GDT_MAX_ENTRIES {
        return Err(GdtError::TooManyEntries {
            count: table.len(),
            max: BOOT_GDT_MAX_ENTRIES,
        });
    }
    let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_le_bytes()).collect();
    mem.write_slice(&bytes, GuestAddress(BOOT_GDT_START))
        .map_err(|source| GdtError::WriteGdt {
            addr: BOOT_GDT_START,
            source,
        })?;
    mem.write_obj(0u64, GuestAddress(BOOT_IDT_START))
        .map_err(|source| GdtError::WriteIdt {
            addr: BOOT_IDT_START,
            source,
        })?;
    let gdtr = DescriptorTable {
        base: BOOT_GDT_START,
        limit: (bytes.len() - 1) as u16,
    };
    let idtr = DescriptorTable {
        base: BOOT_IDT_START,
        limit: 7,
    };
    Ok((gdtr, idtr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
    }

    #[test]
    fn well_known_descriptors_encode_like_linux() {
        // Values from Linux's GDT_ENTRY_INIT for the boot GDT.
        assert_eq!(CODE32, 0x00cf_9b00_0000_ffff);
        assert_eq!(CODE64, 0x00af_9b00_0000_ffff);
        assert_eq!(DATA, 0x00cf_9300_0000_ffff);
        assert_eq!(TSS, 0x0000_8b00_0000_0067);
    }

    #[test]
    fn code32_decodes_to_flat_4g_protected_mode_segment() {
        let s = segment_from_gdt(&[0, CODE32], 1);
        assert_eq!(
            s,
            Segment {
                base: 0,
                limit: 0xffff_ffff,
                selector: 0x8,
                type_: 0xb,
                present: 1,
                dpl: 0,
                db: 1,
                s: 1,
                l: 0,
                g: 1,
                avl: 0,
                unusable: 0,
            }
        );
    }

    #[test]
    fn code64_data_and_tss_decode() {
        let table = [0, 0, CODE64, DATA, TSS];
        let cs = segment_from_gdt(&table, 2);
        assert_eq!((cs.selector, cs.l, cs.db, cs.type_), (0x10, 1, 0, 0xb));
        let ds = segment_from_gdt(&table, 3);
        assert_eq!(
            (ds.selector, ds.type_, ds.db, ds.limit),
            (0x18, 3, 1, 0xffff_ffff)
        );
        let tr = segment_from_gdt(&table, 4);
        assert_eq!(
            (tr.selector, tr.type_, tr.s, tr.limit, tr.present),
            (0x20, 0xb, 0, 0x67, 1)
        );
    }

    #[test]
    fn base_and_limit_bits_round_trip() {
        let e = gdt_entry(0x4093, 0x1234_5678, 0xabcde);
        let s = segment_from_gdt(&[e], 0);
        assert_eq!((s.base, s.limit, s.g, s.db), (0x1234_5678, 0xabcde, 0, 1));
    }

    #[test]
    fn null_and_missing_entries_are_unusable() {
        assert_eq!(segment_from_gdt(&[0], 0).unusable, 1);
        assert_eq!(segment_from_gdt(&[0], 5).unusable, 1);
    }

    #[test]
    fn write_gdt_puts_descriptors_and_idt_in_guest_memory() {
        let m = mem();
        m.write_obj(0xdead_beef_u64, GuestAddress(BOOT_IDT_START))
            .unwrap();
        let (gdtr, idtr) = write_gdt(&m, &[0, CODE32, DATA]).unwrap();
        assert_eq!(
            gdtr,
            DescriptorTable {
                base: BOOT_GDT_START,
                limit: 23
            }
        );
        assert_eq!(
            idtr,
            DescriptorTable {
                base: BOOT_IDT_START,
                limit: 7
            }
        );
        let read = |i: u64| {
            m.read_obj::<u64>(GuestAddress(BOOT_GDT_START + i * 8))
                .unwrap()
        };
        assert_eq!([read(0), read(1), read(2)], [0, CODE32, DATA]);
        assert_eq!(m.read_obj::<u64>(GuestAddress(BOOT_IDT_START)).unwrap(), 0);
    }

    #[test]
    fn write_gdt_rejects_oversized_table() {
        let err = write_gdt(&mem(), &[0; 9]).unwrap_err();
        assert!(matches!(err, GdtError::TooManyEntries { count: 9, max: 8 }));
    }
}
