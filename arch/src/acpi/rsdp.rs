//! The Root System Description Pointer (ACPI 6.5 section 5.2.5), revision 2: it points
//! at the XSDT only (the 32-bit RSDT address is 0).

use acpi_tables::rsdp::Rsdp;

use super::{to_bytes, OEM_ID};

/// Size of a revision 2 RSDP.
pub(super) const RSDP_LEN: usize = 36;

/// The RSDP pointing at the XSDT at `xsdt_addr`, both checksums set.
pub(super) fn build(xsdt_addr: u64) -> Vec<u8> {
    to_bytes(&Rsdp::new(OEM_ID, xsdt_addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::test_util::{sum, u32_at, u64_at};

    #[test]
    fn rsdp_v2_has_signature_both_checksums_and_the_xsdt_address() {
        let r = build(0x1234_5678_9abc);
        assert_eq!(r.len(), RSDP_LEN);
        assert_eq!(&r[..8], b"RSD PTR ");
        assert_eq!(&r[9..15], b"RUSTVM", "OEM ID");
        assert_eq!(r[15], 2, "revision");
        assert_eq!(
            sum(&r[..20]),
            0,
            "ACPI 1.0 checksum over the first 20 bytes"
        );
        assert_eq!(sum(&r), 0, "extended checksum over all 36 bytes");
        assert_eq!(u32_at(&r, 16), 0, "no RSDT");
        assert_eq!(u32_at(&r, 20), 36, "length");
        assert_eq!(u64_at(&r, 24), 0x1234_5678_9abc, "XSDT address");
        assert_eq!(&r[33..], &[0, 0, 0], "reserved");
    }

    #[test]
    fn checksums_follow_the_address() {
        for addr in [0, 0xe_0040, u64::MAX] {
            let r = build(addr);
            assert_eq!((sum(&r[..20]), sum(&r)), (0, 0), "{addr:#x}");
        }
    }
}
