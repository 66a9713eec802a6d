//! The Extended System Description Table (ACPI 6.5 section 5.2.8): 64-bit pointers to
//! every other table but the DSDT (which the FADT points at).

use acpi_tables::xsdt::XSDT;

use super::{to_bytes, OEM_ID, OEM_REVISION, OEM_TABLE_ID};

/// The XSDT listing the tables at `entries`, in order.
pub(super) fn build(entries: &[u64]) -> Vec<u8> {
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    for &addr in entries {
        xsdt.add_entry(addr);
    }
    to_bytes(&xsdt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::test_util::{assert_header, u64_at};

    #[test]
    fn xsdt_lists_each_entry_as_a_64_bit_address() {
        let entries = [0xe_0100, 0x1_0000_0000, 0xe_0300];
        let x = build(&entries);
        assert_header(&x, b"XSDT", 1);
        assert_eq!(x.len(), 36 + 8 * entries.len());
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(u64_at(&x, 36 + 8 * i), *e);
        }
    }

    #[test]
    fn empty_xsdt_is_a_valid_header() {
        let x = build(&[]);
        assert_header(&x, b"XSDT", 1);
        assert_eq!(x.len(), 36);
    }
}
