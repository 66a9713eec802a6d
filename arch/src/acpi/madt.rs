//! The Multiple APIC Description Table (ACPI 6.5 section 5.2.12): one enabled local
//! APIC per vCPU (processor UID = APIC ID = vCPU index), the IOAPIC (ID = number of
//! vCPUs, GSI base 0), the ISA IRQ 0 -> GSI 2 override of the PC timer wiring, and NMI
//! on LINT1 of every local APIC. Same topology as the MP table.

use acpi_tables::madt::{EnabledStatus, IoApic, ProcessorLocalApic};
use acpi_tables::sdt::Sdt;

use super::{to_bytes, OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use crate::layout::{IOAPIC_START, LAPIC_START};

/// MADT revision of ACPI 6.3 and later.
const MADT_REVISION: u8 = 5;
/// Header plus the local APIC address and flags.
const MADT_HEADER_LEN: u32 = 44;
/// No dual 8259: a hardware-reduced guest does not use the legacy PIC.
const MADT_FLAGS: u32 = 0;

const TYPE_INTERRUPT_OVERRIDE: u8 = 2;
const TYPE_LOCAL_APIC_NMI: u8 = 4;
/// MPS INTI flags: active high (bits 0-1 = 01), edge triggered (bits 2-3 = 01).
pub(super) const INTI_EDGE_HIGH: u16 = 0b0101;
/// MPS INTI flags: conforms to the bus.
const INTI_CONFORMS: u16 = 0;
/// "All processors" in a local APIC NMI entry.
const ALL_PROCESSORS: u8 = 0xff;
/// The PC's PIT output (ISA IRQ 0) is wired to IOAPIC pin 2.
const TIMER_IRQ: u8 = 0;
const TIMER_GSI: u32 = 2;
/// Local APIC input the NMI arrives on.
const NMI_LINT: u8 = 1;

/// An interrupt source override for ISA IRQ `source`.
fn interrupt_override(source: u8, gsi: u32, flags: u16) -> [u8; 10] {
    let mut e = [0u8; 10];
    e[0] = TYPE_INTERRUPT_OVERRIDE;
    e[1] = 10;
    e[2] = 0; // bus: ISA
    e[3] = source;
    e[4..8].copy_from_slice(&gsi.to_le_bytes());
    e[8..10].copy_from_slice(&flags.to_le_bytes());
    e
}

/// A local APIC NMI entry for processor `uid` (0xff: all) on input `lint`.
fn local_apic_nmi(uid: u8, flags: u16, lint: u8) -> [u8; 6] {
    let f = flags.to_le_bytes();
    [TYPE_LOCAL_APIC_NMI, 6, uid, f[0], f[1], lint]
}

/// The MADT for `num_vcpus` (1..=254, checked by the caller) vCPUs.
pub(super) fn build(num_vcpus: u32) -> Vec<u8> {
    // The caller checked num_vcpus <= 254, so every ID fits in a byte.
    let ioapic_id = num_vcpus.min(u32::from(u8::MAX)) as u8;
    let mut entries = Vec::with_capacity(8 * num_vcpus as usize + 28);
    for id in 0..ioapic_id {
        entries.extend(to_bytes(&ProcessorLocalApic::new(
            id,
            id,
            EnabledStatus::Enabled,
        )));
    }
    entries.extend(to_bytes(&IoApic::new(ioapic_id, IOAPIC_START as u32, 0)));
    entries.extend(interrupt_override(TIMER_IRQ, TIMER_GSI, INTI_EDGE_HIGH));
    entries.extend(local_apic_nmi(ALL_PROCESSORS, INTI_CONFORMS, NMI_LINT));

    let mut madt = Sdt::new(
        *b"APIC",
        MADT_HEADER_LEN,
        MADT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    madt.write_u32(36, LAPIC_START as u32);
    madt.write_u32(40, MADT_FLAGS);
    madt.append_slice(&entries);
    madt.as_slice().to_vec()
}

#[cfg(test)]
pub(crate) mod parse {
    use crate::acpi::test_util::u32_at;

    /// One MADT interrupt controller structure.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Entry {
        LocalApic {
            uid: u8,
            apic_id: u8,
            flags: u32,
        },
        IoApic {
            id: u8,
            addr: u32,
            gsi_base: u32,
        },
        Override {
            bus: u8,
            source: u8,
            gsi: u32,
            flags: u16,
        },
        Nmi {
            uid: u8,
            flags: u16,
            lint: u8,
        },
        Other {
            kind: u8,
            len: u8,
        },
    }

    /// Walks the structures after the 44-byte header, checking each length.
    pub fn entries(t: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut off = 44;
        while off < t.len() {
            let (kind, len) = (t[off], t[off + 1]);
            assert!(
                len >= 2 && off + usize::from(len) <= t.len(),
                "entry at {off}"
            );
            let e = &t[off..off + usize::from(len)];
            let u16_at = |o: usize| u16::from_le_bytes([e[o], e[o + 1]]);
            out.push(match (kind, len) {
                (0, 8) => Entry::LocalApic {
                    uid: e[2],
                    apic_id: e[3],
                    flags: u32_at(e, 4),
                },
                (1, 12) => Entry::IoApic {
                    id: e[2],
                    addr: u32_at(e, 4),
                    gsi_base: u32_at(e, 8),
                },
                (2, 10) => Entry::Override {
                    bus: e[2],
                    source: e[3],
                    gsi: u32_at(e, 4),
                    flags: u16_at(8),
                },
                (4, 6) => Entry::Nmi {
                    uid: e[2],
                    flags: u16_at(3),
                    lint: e[5],
                },
                _ => Entry::Other { kind, len },
            });
            off += usize::from(len);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::parse::{entries, Entry};
    use super::*;
    use crate::acpi::test_util::{assert_header, u32_at};

    #[test]
    fn madt_header_has_the_lapic_address_and_no_pcat_flag() {
        let m = build(1);
        assert_header(&m, b"APIC", 5);
        assert_eq!(u32_at(&m, 36), 0xFEE0_0000);
        assert_eq!(u32_at(&m, 40), 0);
    }

    #[test]
    fn one_enabled_local_apic_per_vcpu_then_ioapic_override_and_nmi() {
        for n in [1u32, 2, 5, 254] {
            let m = build(n);
            assert_header(&m, b"APIC", 5);
            let e = entries(&m);
            assert_eq!(e.len(), n as usize + 3, "{n} vCPUs");
            for (i, entry) in e.iter().take(n as usize).enumerate() {
                let id = i as u8;
                assert_eq!(
                    *entry,
                    Entry::LocalApic {
                        uid: id,
                        apic_id: id,
                        flags: 1
                    }
                );
            }
            let tail = &e[n as usize..];
            assert_eq!(
                tail[0],
                Entry::IoApic {
                    id: n as u8,
                    addr: 0xFEC0_0000,
                    gsi_base: 0
                }
            );
            assert_eq!(
                tail[1],
                Entry::Override {
                    bus: 0,
                    source: 0,
                    gsi: 2,
                    flags: 0b0101
                }
            );
            assert_eq!(
                tail[2],
                Entry::Nmi {
                    uid: 0xff,
                    flags: 0,
                    lint: 1
                }
            );
        }
    }

    #[test]
    fn entry_encoders_match_the_spec_layouts() {
        assert_eq!(
            interrupt_override(9, 9, 0b1111),
            [2, 10, 0, 9, 9, 0, 0, 0, 0x0f, 0]
        );
        assert_eq!(local_apic_nmi(3, 0x0105, 1), [4, 6, 3, 0x05, 0x01, 1]);
    }
}
