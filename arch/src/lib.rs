//! x86_64 guest set-up for direct kernel boot: the guest memory layout and E820 map,
//! CPUID, kernel/initramfs/command-line loading (PVH ELF or bzImage), the MP table,
//! the ACPI tables, and the boot state of each vCPU.
//!
//! Nothing here touches guest memory beyond what it writes, so boot cost does not grow
//! with the guest's RAM size.

pub mod acpi;
pub mod boot;
pub mod cpuid;
pub mod e820;
pub mod gdt;
pub mod lapic;
pub mod layout;
pub mod mptable;
pub mod msrs;
pub mod paging;
pub mod pci_segments;
pub mod regs;
pub mod smbios;

pub use acpi::{
    build_acpi_tables, create_acpi_tables, AcpiConfig, AcpiError, AcpiTables, PciHotplugConfig,
    PmPorts, SerialPort,
};
pub use boot::{load_guest, load_guest_with_rsdp, BootError, BootProtocol, BootSetup, EntryPoint};
pub use cpuid::{build_cpuid, CpuidConfig};
pub use e820::{e820_map, E820Entry};
pub use layout::{host_phys_bits, LayoutError, MemoryLayout};
pub use regs::{configure_vcpu, RegsError};
