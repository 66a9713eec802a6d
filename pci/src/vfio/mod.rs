//! The PCI device model of a passed-through (VFIO) device, KVM-free: every VFIO call goes
//! through [`VfioDeviceOps`], which the VMM implements over a real VFIO device file and
//! [`FakeVfioDevice`] implements for tests.
//!
//! How the VMM uses it:
//! 1. [`VfioPciInfo::probe`] reads config space, capabilities and BAR sizes.
//! 2. The VMM allocates the BARs ([`VfioPciInfo::bars`]) and one interrupt group each for MSI
//!    and MSI-X (with the eventfd of every vector), then builds a [`VfioPciDevice`].
//! 3. It maps [`VfioPciDevice::mappable_areas`] straight into the guest (memory slots over
//!    mmapped VFIO regions) and puts the device on the PCI bus; everything else in the BARs is
//!    trapped and reaches the device model through [`crate::PciDevice::read_bar`].

mod bars;
pub mod caps;
pub mod deferred;
mod device;
pub mod fake;
mod interrupts;
pub mod layout;
mod ops;
mod probe;

pub use bars::{mappable_areas, PAGE_SIZE};
pub use device::{IntxResources, MappableArea, MsiResources, VfioPciDevice, VfioPciParams};
pub use fake::{FakeVfioCall, FakeVfioDevice};
pub use interrupts::{MsixRegion, VfioIntx, VfioIrqGroup};
pub use ops::{
    DeviceGate, HostMapping, OpenGate, RegionInfo, ResetDone, VfioDeviceOps, VfioIrqKind,
    VFIO_PCI_CONFIG_REGION, VFIO_PCI_ROM_REGION,
};
pub use probe::{VfioPciError, VfioPciInfo};
