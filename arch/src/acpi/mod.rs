//! ACPI tables for a hardware-reduced x86_64 guest (ACPI 6.5).
//!
//! The guest finds the RSDP through the boot protocol (PVH `rsdp_paddr` or the zero
//! page's `acpi_rsdp_addr`) and, failing that, by scanning `[0xe0000, 0x100000)`,
//! where it lives. The tables follow it in the same reserved area:
//!
//! ```text
//! RSDP (rev 2) -> XSDT -> FADT (HW_REDUCED_ACPI) -> DSDT
//!                      -> MADT (local APICs, IOAPIC, ISA override, LINT1 NMI)
//!                      -> MCFG (ECAM)
//! ```
//!
//! There is no SCI, no PM1 or GPE block and no FACS: power-off goes through the FADT
//! sleep control register (`\_S5_` gives the sleep type) and reboot through the FADT
//! reset register, both decoded by the VMM's ACPI PM device at the ports in
//! [`PmPorts`]. Building and writing the tables costs a few microseconds and touches
//! only the pages they occupy.

mod dsdt;
pub use dsdt::pci_intx_gsi;
mod hotplug;
pub use hotplug::PciHotplugConfig;
mod fadt;
mod madt;
mod mcfg;
pub mod numa;
mod rsdp;
mod xsdt;

#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests;

use acpi_tables::Aml;
use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use crate::layout::MemoryLayout;

/// First byte of the ACPI area (reserved in the E820 map): the RSDP sits here, on the
/// 16-byte boundary the legacy RSDP scan of `[0xe0000, 0x100000)` looks at.
pub const ACPI_TABLES_START: u64 = 0xE_0000;
/// One past the last byte of the ACPI area: 64 KiB, the SMBIOS tables follow
/// ([`crate::smbios::SMBIOS_START`]).
pub const ACPI_TABLES_END: u64 = crate::smbios::SMBIOS_START;
/// Where the RSDP is written.
pub const RSDP_ADDR: u64 = ACPI_TABLES_START;
/// Most vCPUs described: xAPIC IDs are 8 bits, 0xff is broadcast and the IOAPIC takes
/// the ID after the last CPU.
pub const MAX_ACPI_CPUS: u32 = 254;
/// SLP_EN: bit 5 of the sleep control register.
pub const SLP_EN: u8 = 1 << 5;
/// SLP_TYP occupies bits 2..=4 of the sleep control register.
pub const SLP_TYP_SHIFT: u8 = 2;
/// SLP_TYP is a 3-bit field.
pub const SLP_TYP_MAX: u8 = 7;

/// OEM ID in every table header.
pub(crate) const OEM_ID: [u8; 6] = *b"RUSTVM";
/// OEM table ID in every table header (the FADT's must match the XSDT's).
pub(crate) const OEM_TABLE_ID: [u8; 8] = *b"RUSTVMM ";
pub(crate) const OEM_REVISION: u32 = 1;
/// Tables start on this alignment.
const TABLE_ALIGN: u64 = 16;

/// The I/O ports of the hardware-reduced sleep and reset registers (8 bits each) and
/// the values that the PM device decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmPorts {
    /// Sleep control register: SLP_TYP in bits 2..=4, SLP_EN in bit 5.
    pub sleep_control: u16,
    /// Sleep status register: WAK_STS in bit 7, write 1 to clear.
    pub sleep_status: u16,
    /// Reset register.
    pub reset: u16,
    /// What OSPM writes to `reset` to reset the system.
    pub reset_value: u8,
    /// SLP_TYP for S5 (soft off), published in `\_S5_`.
    pub s5_sleep_type: u8,
}

impl PmPorts {
    /// The byte OSPM writes to the sleep control register to enter S5.
    pub fn s5_sleep_control_value(&self) -> u8 {
        (self.s5_sleep_type << SLP_TYP_SHIFT) | SLP_EN
    }
}

/// A 16550 UART on the ISA bus, described in the DSDT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SerialPort {
    /// First of its eight I/O ports.
    pub port: u16,
    /// Its IOAPIC input (edge-triggered, active high).
    pub gsi: u32,
}

/// What the tables describe.
#[derive(Clone, Copy, Debug)]
pub struct AcpiConfig<'a> {
    pub num_vcpus: u32,
    pub layout: &'a MemoryLayout,
    pub pm: PmPorts,
    /// COM1 when the VM has one.
    pub serial: Option<SerialPort>,
    /// The GSI of the Generic Event Device that signals the ACPI power button (edge,
    /// active high); `None` leaves both devices out.
    pub power_button_gsi: Option<u32>,
    /// ACPI PCI hotplug (slots, the register device and its GED); `None` leaves it out.
    pub pci_hotplug: Option<PciHotplugConfig>,
    /// Buses the main host bridge has beyond bus 0 (its root ports' secondary buses,
    /// 1..=pci_buses). The MCFG and the bridge's `_CRS` end there: Linux probes every bus up
    /// to the MCFG's last one that it has not found (32 config reads each, every one a VM
    /// exit), so a VM without root ports describes bus 0 alone.
    pub pci_buses: u8,
    /// PCI segments after segment 0: a host bridge and an MCFG entry each.
    pub segments: &'a [crate::pci_segments::PciSegmentLayout],
    /// The guest NUMA node of segment 0's host bridge (`_PXM`), when it is put in one.
    pub segment0_node: Option<u32>,
}

/// Why the ACPI tables could not be built or written.
#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    #[error("the ACPI tables need at least one vCPU")]
    NoCpus,
    #[error("{num_vcpus} vCPUs cannot be described in the MADT (at most {MAX_ACPI_CPUS}: xAPIC IDs are 8 bits)")]
    TooManyCpus { num_vcpus: u32 },
    #[error("S5 sleep type {value} does not fit the 3-bit SLP_TYP field")]
    BadSleepType { value: u8 },
    #[error("the ACPI {register} register cannot be at I/O port 0 (address 0 means absent)")]
    ZeroPort { register: &'static str },
    #[error("the 32-bit PCI window {start:#x}+{len:#x} does not lie below 4 GiB")]
    Mmio32Window { start: u64, len: u64 },
    #[error(
        "the ACPI tables need {size:#x} bytes but only {max:#x} fit in [{ACPI_TABLES_START:#x}, \
         {ACPI_TABLES_END:#x})"
    )]
    TooLarge { size: u64, max: u64 },
    #[error("cannot write the ACPI tables at guest address {addr:#x}: {source}")]
    Write { addr: u64, source: GuestMemoryError },
}

fn validate(cfg: &AcpiConfig) -> Result<(), AcpiError> {
    match cfg.num_vcpus {
        0 => return Err(AcpiError::NoCpus),
        n if n > MAX_ACPI_CPUS => return Err(AcpiError::TooManyCpus { num_vcpus: n }),
        _ => {}
    }
    let pm = &cfg.pm;
    if pm.s5_sleep_type > SLP_TYP_MAX {
        return Err(AcpiError::BadSleepType {
            value: pm.s5_sleep_type,
        });
    }
    for (register, port) in [
        ("sleep control", pm.sleep_control),
        ("sleep status", pm.sleep_status),
        ("reset", pm.reset),
    ] {
        if port == 0 {
            return Err(AcpiError::ZeroPort { register });
        }
    }
    Ok(())
}

/// The serialized bytes of a table built with `acpi_tables`.
pub(crate) fn to_bytes(table: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    table.to_aml_bytes(&mut bytes);
    bytes
}

/// The ACPI area as it is assembled: the RSDP slot first, then each table aligned.
struct TableArea {
    bytes: Vec<u8>,
}

impl TableArea {
    fn new() -> Self {
        let mut bytes = Vec::with_capacity(0x2000);
        bytes.resize(rsdp::RSDP_LEN, 0);
        TableArea { bytes }
    }

    /// Appends `table` at the next aligned address and returns that guest address.
    fn push(&mut self, table: &[u8]) -> Result<u64, AcpiError> {
        let offset = (self.bytes.len() as u64).next_multiple_of(TABLE_ALIGN);
        let end = offset + table.len() as u64;
        let max = ACPI_TABLES_END - ACPI_TABLES_START;
        if end > max {
            return Err(AcpiError::TooLarge { size: end, max });
        }
        self.bytes.resize(offset as usize, 0);
        self.bytes.extend_from_slice(table);
        Ok(ACPI_TABLES_START + offset)
    }
}

/// The ACPI area, built and ready to be written to guest memory: building (the AML above
/// all) is the costly part and needs no guest memory, so it can be done on another thread.
#[derive(Clone, Debug)]
pub struct AcpiTables {
    bytes: Vec<u8>,
}

impl AcpiTables {
    /// Where the RSDP lands when the tables are written: what the kernel is told.
    pub const RSDP_ADDR: u64 = RSDP_ADDR;

    /// Writes the tables to `[ACPI_TABLES_START, ACPI_TABLES_END)` in `mem`; returns the
    /// RSDP's guest address.
    pub fn write(&self, mem: &GuestMemoryMmap) -> Result<u64, AcpiError> {
        mem.write_slice(&self.bytes, GuestAddress(ACPI_TABLES_START))
            .map_err(|source| AcpiError::Write {
                addr: ACPI_TABLES_START,
                source,
            })?;
        Ok(RSDP_ADDR)
    }
}

/// Builds the tables for `cfg`.
pub fn build_acpi_tables(cfg: &AcpiConfig) -> Result<AcpiTables, AcpiError> {
    build_acpi_tables_numa(cfg, &[], &[])
}

/// Builds the tables for `cfg`, with an SRAT and a SLIT describing `numa` when it has nodes,
/// and `expanders` as host bridges after the main one (whose windows in `cfg.layout` the
/// caller has already cut: [`crate::layout::MemoryLayout::split_for_expanders`]).
pub fn build_acpi_tables_numa(
    cfg: &AcpiConfig,
    numa: &[numa::NumaNode],
    expanders: &[crate::layout::Expander],
) -> Result<AcpiTables, AcpiError> {
    validate(cfg)?;
    let mut area = TableArea::new();
    let dsdt_addr = area.push(&dsdt::build_with(cfg, expanders)?)?;
    let fadt_addr = area.push(&fadt::build(dsdt_addr, &cfg.pm))?;
    let madt_addr = area.push(&madt::build(cfg.num_vcpus))?;
    let last_bus = expanders.last().map_or(cfg.pci_buses, |e| e.last_bus);
    let mcfg_addr = area.push(&mcfg::build(last_bus, cfg.segments))?;
    let mut entries = vec![fadt_addr, madt_addr, mcfg_addr];
    if !numa.is_empty() {
        entries.push(area.push(&numa::srat(numa))?);
        entries.push(area.push(&numa::slit(numa))?);
    }
    let xsdt_addr = area.push(&xsdt::build(&entries))?;
    area.bytes[..rsdp::RSDP_LEN].copy_from_slice(&rsdp::build(xsdt_addr));
    Ok(AcpiTables { bytes: area.bytes })
}

/// Builds the tables for `cfg` and writes them to `[ACPI_TABLES_START, ACPI_TABLES_END)`
/// in `mem`; returns the RSDP's guest address to hand to the kernel.
pub fn create_acpi_tables(mem: &GuestMemoryMmap, cfg: &AcpiConfig) -> Result<u64, AcpiError> {
    build_acpi_tables(cfg)?.write(mem)
}
