//! Intel MultiProcessor Specification 1.4 tables, so that SMP works before ACPI.
//!
//! The MP floating pointer sits at [`MPTABLE_START`] (start of the EBDA, which Linux
//! scans) and the configuration table follows it: one processor entry per vCPU (APIC
//! ID = vCPU index, BSP flag on 0), one ISA bus, the IOAPIC (ID = number of vCPUs),
//! 24 I/O interrupt entries mapping ISA IRQ n to IOAPIC pin n, and the local
//! interrupt entries LINT0 = ExtINT, LINT1 = NMI.

use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use crate::layout::{IOAPIC_START, LAPIC_START, MPTABLE_START};

/// APIC IDs are 8 bits, 0xff is broadcast and the IOAPIC takes the ID after the last
/// CPU, so at most 254 vCPUs can be described.
pub const MAX_MP_CPUS: u32 = 254;
/// IOAPIC inputs described.
pub const NUM_IOAPIC_PINS: u8 = 24;

const FLOATING_POINTER_SIZE: usize = 16;
const CONFIG_HEADER_SIZE: usize = 44;
const PROCESSOR_ENTRY_SIZE: usize = 20;
const SMALL_ENTRY_SIZE: usize = 8;

const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;

const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;

const CPU_FLAG_ENABLED: u8 = 1;
const CPU_FLAG_BSP: u8 = 2;
/// Integrated local APIC version.
const APIC_VERSION: u8 = 0x14;
/// IOAPIC version of the 82093AA-compatible in-kernel IOAPIC.
const IOAPIC_VERSION: u8 = 0x11;
/// Family 6 signature and the FPU + APIC feature flags.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = 0x201;
const SPEC_REV_1_4: u8 = 4;
const OEM_ID: &[u8; 8] = b"RUSTVMM ";
const PRODUCT_ID: &[u8; 12] = b"VIRTUAL PC  ";

/// Why the MP table could not be written.
#[derive(Debug, thiserror::Error)]
pub enum MpTableError {
    #[error("the MP table needs at least one vCPU")]
    NoCpus,
    #[error(
        "{num_vcpus} vCPUs cannot be described by an MP table (at most {MAX_MP_CPUS}: \
         APIC IDs are 8 bits)"
    )]
    TooManyCpus { num_vcpus: u32 },
    #[error("cannot write the {size}-byte MP table at guest address {addr:#x}: {source}")]
    Write {
        addr: u64,
        size: usize,
        source: GuestMemoryError,
    },
}

/// Bytes needed for the whole MP table with `num_vcpus` processors.
pub fn mptable_size(num_vcpus: u32) -> usize {
    FLOATING_POINTER_SIZE + config_table_size(num_vcpus)
}

fn config_table_size(num_vcpus: u32) -> usize {
    CONFIG_HEADER_SIZE
        + PROCESSOR_ENTRY_SIZE * num_vcpus as usize
        + SMALL_ENTRY_SIZE * (1 + 1 + usize::from(NUM_IOAPIC_PINS) + 2)
}

/// The byte that makes `bytes` sum to zero.
fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |acc, b| acc.wrapping_add(*b))
        .wrapping_neg()
}

/// A local (type 4) or I/O (type 3) interrupt assignment entry.
fn interrupt_entry(kind: u8, int_type: u8, src_irq: u8, dst_apic: u8, dst_pin: u8) -> [u8; 8] {
    // kind, interrupt type, flags (u16: conforms to bus), source bus 0, source IRQ,
    // destination APIC ID, destination pin.
    [kind, int_type, 0, 0, 0, src_irq, dst_apic, dst_pin]
}

/// The configuration table entries, in the order the spec requires.
fn config_entries(num_vcpus: u8) -> Vec<u8> {
    let mut t = Vec::new();
    for cpu in 0..num_vcpus {
        let flags = CPU_FLAG_ENABLED | if cpu == 0 { CPU_FLAG_BSP } else { 0 };
        t.extend_from_slice(&[ENTRY_PROCESSOR, cpu, APIC_VERSION, flags]);
        t.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        t.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        t.extend_from_slice(&[0; 8]);
    }
    t.extend_from_slice(&[ENTRY_BUS, 0]);
    t.extend_from_slice(b"ISA   ");
    let ioapic_id = num_vcpus;
    t.extend_from_slice(&[ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, 1]);
    t.extend_from_slice(&(IOAPIC_START as u32).to_le_bytes());
    for irq in 0..NUM_IOAPIC_PINS {
        t.extend_from_slice(&interrupt_entry(
            ENTRY_IO_INTERRUPT,
            INT_TYPE_INT,
            irq,
            ioapic_id,
            irq,
        ));
    }
    t.extend_from_slice(&interrupt_entry(
        ENTRY_LOCAL_INTERRUPT,
        INT_TYPE_EXTINT,
        0,
        0,
        0,
    ));
    t.extend_from_slice(&interrupt_entry(
        ENTRY_LOCAL_INTERRUPT,
        INT_TYPE_NMI,
        0,
        0xff,
        1,
    ));
    t
}

/// Builds the floating pointer followed by the configuration table, as placed at `base`.
pub fn build_mptable(base: u64, num_vcpus: u32) -> Result<Vec<u8>, MpTableError> {
    if num_vcpus == 0 {
        return Err(MpTableError::NoCpus);
    }
    let cpus = u8::try_from(num_vcpus)
        .ok()
        .filter(|n| u32::from(*n) <= MAX_MP_CPUS)
        .ok_or(MpTableError::TooManyCpus { num_vcpus })?;
    let entries = config_entries(cpus);
    let entry_count = u16::from(cpus) + 1 + 1 + u16::from(NUM_IOAPIC_PINS) + 2;
    let config_len = CONFIG_HEADER_SIZE + entries.len();

    let mut cfg = Vec::with_capacity(config_len);
    cfg.extend_from_slice(b"PCMP");
    cfg.extend_from_slice(&(config_len as u16).to_le_bytes());
    cfg.extend_from_slice(&[SPEC_REV_1_4, 0]); // revision, checksum (patched below)
    cfg.extend_from_slice(OEM_ID);
    cfg.extend_from_slice(PRODUCT_ID);
    cfg.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    cfg.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    cfg.extend_from_slice(&entry_count.to_le_bytes());
    cfg.extend_from_slice(&(LAPIC_START as u32).to_le_bytes());
    cfg.extend_from_slice(&[0, 0, 0, 0]); // extended table length, checksum, reserved
    cfg.extend_from_slice(&entries);
    cfg[7] = checksum(&cfg);

    let config_addr = (base + FLOATING_POINTER_SIZE as u64) as u32;
    let mut table = Vec::with_capacity(FLOATING_POINTER_SIZE + config_len);
    table.extend_from_slice(b"_MP_");
    table.extend_from_slice(&config_addr.to_le_bytes());
    // Length in 16-byte units, revision, checksum (patched), feature bytes 1..=5 all 0:
    // a configuration table is present and the IMCR is absent (virtual wire mode).
    table.extend_from_slice(&[1, SPEC_REV_1_4, 0, 0, 0, 0, 0, 0]);
    table[10] = checksum(&table);
    table.extend_from_slice(&cfg);
    Ok(table)
}

/// Writes the MP table for `num_vcpus` vCPUs at [`MPTABLE_START`].
pub fn setup_mptable(mem: &GuestMemoryMmap, num_vcpus: u32) -> Result<(), MpTableError> {
    let table = build_mptable(MPTABLE_START, num_vcpus)?;
    mem.write_slice(&table, GuestAddress(MPTABLE_START))
        .map_err(|source| MpTableError::Write {
            addr: MPTABLE_START,
            size: table.len(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x20_0000)]).unwrap()
    }

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
    }

    fn read(m: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        m.read_slice(&mut buf, GuestAddress(addr)).unwrap();
        buf
    }

    #[test]
    fn checksums_verify_and_pointer_finds_the_config_table() {
        let m = mem();
        setup_mptable(&m, 4).unwrap();
        let mpf = read(&m, MPTABLE_START, 16);
        assert_eq!(&mpf[0..4], b"_MP_");
        assert_eq!(sum(&mpf), 0);
        assert_eq!((mpf[8], mpf[9]), (1, 4));
        let physptr = u32::from_le_bytes(mpf[4..8].try_into().unwrap()) as u64;
        let header = read(&m, physptr, 44);
        assert_eq!(&header[0..4], b"PCMP");
        let len = u16::from_le_bytes([header[4], header[5]]) as usize;
        assert_eq!(len, mptable_size(4) - 16);
        assert_eq!(sum(&read(&m, physptr, len)), 0);
        assert_eq!(
            u32::from_le_bytes(header[36..40].try_into().unwrap()),
            0xFEE0_0000
        );
    }

    #[test]
    fn one_processor_entry_per_vcpu_with_bsp_on_zero() {
        for n in [1u32, 2, 7, 254] {
            let t = build_mptable(MPTABLE_START, n).unwrap();
            let cfg = &t[16..];
            let count = u16::from_le_bytes([cfg[34], cfg[35]]) as usize;
            assert_eq!(count, n as usize + 28);
            let cpus: Vec<&[u8]> = cfg[44..44 + 20 * n as usize].chunks(20).collect();
            assert_eq!(cpus.len(), n as usize);
            for (i, e) in cpus.iter().enumerate() {
                assert_eq!(e[0], 0, "processor entry type");
                assert_eq!(e[1] as usize, i, "APIC ID");
                assert_eq!(e[3], if i == 0 { 3 } else { 1 });
            }
            assert_eq!(sum(&t[..16]), 0);
            assert_eq!(sum(cfg), 0);
        }
    }

    #[test]
    fn ioapic_and_interrupt_entries_are_identity_mapped() {
        let t = build_mptable(MPTABLE_START, 2).unwrap();
        let rest = &t[16 + 44 + 40..];
        assert_eq!(&rest[0..8], &[1, 0, b'I', b'S', b'A', b' ', b' ', b' ']);
        assert_eq!(
            &rest[8..12],
            &[2, 2, 0x11, 1],
            "IOAPIC id = num_vcpus, enabled"
        );
        assert_eq!(
            u32::from_le_bytes(rest[12..16].try_into().unwrap()),
            0xFEC0_0000
        );
        let ints: Vec<&[u8]> = rest[16..].chunks(8).collect();
        assert_eq!(ints.len(), 26);
        for (irq, e) in ints[..24].iter().enumerate() {
            assert_eq!(**e, [3, 0, 0, 0, 0, irq as u8, 2, irq as u8]);
        }
        assert_eq!(*ints[24], [4, 3, 0, 0, 0, 0, 0, 0], "LINT0 ExtINT");
        assert_eq!(*ints[25], [4, 1, 0, 0, 0, 0, 0xff, 1], "LINT1 NMI");
    }

    #[test]
    fn rejects_zero_and_too_many_cpus() {
        assert!(matches!(build_mptable(0, 0), Err(MpTableError::NoCpus)));
        for n in [255, 256, u32::MAX] {
            assert!(matches!(
                build_mptable(0, n),
                Err(MpTableError::TooManyCpus { num_vcpus }) if num_vcpus == n
            ));
        }
    }

    #[test]
    fn table_outside_memory_is_a_write_error() {
        let small = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x9_0000)]).unwrap();
        assert!(matches!(
            setup_mptable(&small, 1),
            Err(MpTableError::Write { .. })
        ));
    }
}
