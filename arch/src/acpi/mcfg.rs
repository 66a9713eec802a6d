//! The PCI Express memory-mapped configuration table (PCI Firmware Specification 3.2,
//! section 4.1.2): one ECAM window for segment 0, buses `0..=last_bus` (the last one the VM
//! uses: see [`AcpiConfig::pci_buses`](super::AcpiConfig::pci_buses)), then one per further
//! PCI segment.

use acpi_tables::mcfg::MCFG;

use super::{to_bytes, OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use crate::layout::PCI_ECAM_START;
use crate::pci_segments::PciSegmentLayout;

/// The MCFG with segment 0's ECAM at [`PCI_ECAM_START`], buses `0..=last_bus`, and each of
/// `segments`' at its own base.
pub(super) fn build(last_bus: u8, segments: &[PciSegmentLayout]) -> Vec<u8> {
    let mut mcfg = MCFG::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    mcfg.add_ecam(PCI_ECAM_START, 0, 0, last_bus);
    for s in segments {
        mcfg.add_ecam(s.ecam, s.id, 0, s.last_bus);
    }
    to_bytes(&mcfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::test_util::{assert_header, u16_at, u64_at};

    #[test]
    fn mcfg_has_one_ecam_entry_for_segment_0_up_to_the_last_bus() {
        let m = build(2, &[]);
        assert_header(&m, b"MCFG", 1);
        // Header, 8 reserved bytes, one 16-byte allocation structure.
        assert_eq!(m.len(), 36 + 8 + 16);
        assert_eq!(u64_at(&m, 36), 0, "reserved");
        assert_eq!(u64_at(&m, 44), 0xE000_0000, "ECAM base");
        assert_eq!(u16_at(&m, 52), 0, "segment");
        assert_eq!(
            (m[54], m[55]),
            (0, 2),
            "bus range: bus 0 and two root ports'"
        );
        assert_eq!(build(0, &[])[55], 0, "no root port: bus 0 alone");
    }

    #[test]
    fn each_further_segment_has_its_own_entry() {
        let seg = |id, last_bus| PciSegmentLayout {
            id,
            ecam: crate::pci_segments::segment_ecam(id),
            last_bus,
            mmio32: (0, 0),
            mmio64: (0, 0),
            node: None,
        };
        let m = build(0, &[seg(1, 0), seg(2, 3)]);
        assert_eq!(m.len(), 36 + 8 + 3 * 16);
        assert_eq!(
            u32::from_le_bytes(m[4..8].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(u64_at(&m, 60), 0xF000_0000, "segment 1's ECAM");
        assert_eq!((u16_at(&m, 68), m[70], m[71]), (1, 0, 0));
        assert_eq!(u64_at(&m, 76), 0xF080_0000, "segment 2's ECAM");
        assert_eq!((u16_at(&m, 84), m[86], m[87]), (2, 0, 3));
    }
}
