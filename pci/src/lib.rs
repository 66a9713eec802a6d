//! PCI for the VMM: configuration space with BARs and capabilities, MSI and
//! MSI-X, the host bridge and bus, the 0xcf8/0xcfc and ECAM config access
//! devices, BAR relocation, and BAR address allocation.
//!
//! Like the `devices` crate this knows nothing about KVM: interrupts leave
//! through [`MsiInterruptGroup`], BAR moves through [`BarRelocator`], and
//! guest accesses arrive through [`devices::BusDevice`]. Nothing here
//! panics on guest input; odd accesses are handled as hardware would
//! (ignored, or read as all-ones) and logged at debug level.
//!
//! How a VMM wires it up:
//! 1. Create a [`PciAllocator`] over the layout's windows, a
//!    [`BusBarRelocator`] over its PIO and MMIO buses (with guest RAM as
//!    reserved MMIO), and a [`PciBus`] with that relocator.
//! 2. Insert a [`PciConfigIo`] at [`PCI_CONFIG_IO_PORT`] on the PIO bus and
//!    a [`PciConfigMmio`] at the layout's ECAM base on the MMIO bus.
//! 3. Per device: allocate its BARs, build its [`PciConfiguration`] with
//!    them, add it to the bus. BARs go onto the buses when the guest
//!    enables decoding, and follow every move.

pub mod address;
pub mod allocator;
pub mod bar;
pub mod bar_region;
pub mod bus;
pub mod capability;
pub mod config_io;
pub mod configuration;
pub mod device;
pub mod ecam;
pub mod host_bridge;
pub mod interrupt;
pub mod msi;
pub mod msix;
pub mod msix_table;
pub mod relocate;
pub mod root_port;
pub mod vfio;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod integration_tests;
/// Test fixtures, also for the fuzz targets (feature `test-util`).
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;

pub use address::PciAddress;
pub use allocator::{
    format_size, AllocatorError, BarRequest, PciAllocator, PciAllocatorConfig, PciWindow,
};
pub use bar::{BarConfig, BarError, BarInfo, BarKind, BarReprogram, NUM_BARS, ROM_BAR_INDEX};
pub use bar_region::PciBarRegion;
pub use bus::{PciBus, PciBusError, HOST_BRIDGE_SLOT};
pub use capability::{CapabilityError, PciCapability, PciExtendedCapability};
pub use config_io::{PciConfigIo, PCI_CONFIG_IO_PORT, PCI_CONFIG_IO_PORT_LEN};
pub use configuration::{ConfigWriteResult, PciConfiguration, PciHeader};
pub use device::PciDevice;
pub use ecam::{PciConfigMmio, PCI_ECAM_SIZE};
pub use host_bridge::PciHostBridge;
pub use interrupt::{MsiEvent, MsiInterruptGroup, MsiMessage, RecordingMsiGroup};
pub use msi::{Msi, MsiCapability, MsiError, MsiState};
pub use msix::{Msix, MsixCapability, MsixError, MsixParams};
pub use msix_table::{MsixTable, MsixTableEntry};
pub use relocate::{
    overlaps, BarMove, BarRelocator, BusBarRelocator, RecordingRelocator, RelocationError,
};
pub use root_port::{PciRootPort, PcieLink};
