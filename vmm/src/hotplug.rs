//! PCI hotplug of a running VM (`vm.add-disk`, `vm.add-net`, `vm.remove-device`), through ACPI:
//! the register device (`devices::pci_hotplug`) on the port bus, the Generic Event Device
//! interrupt that makes the guest look at it, and the DSDT's slots (`arch::acpi::hotplug`,
//! where the choice of ACPI over native PCIe hotplug is explained). A device is added by
//! putting it on the bus and announcing its slot; it is removed by asking the guest to eject
//! it and, once the guest's driver has let go and its `_EJ0` wrote the eject register, taking
//! it off the bus: BARs unmapped and freed, the device reset (its worker stopped, its
//! ioeventfds unregistered), its interrupts and files released with it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use devices::pci_hotplug::{PciHotplugState, PORT_LEN};
use devices::{EventFdInterrupt, Interrupt};
use hypervisor::Vm;

use crate::vcpu::exit::Buses;

/// The registers' first I/O port (reserved in the DSDT's motherboard resources; below the
/// PCI I/O window at 0x1000, beside the ACPI PM ports at 0x600).
pub const PORT: u16 = 0x610;
/// The IOAPIC input of the hotplug Generic Event Device (edge, active high).
pub const GSI: u32 = 6;
/// How long `vm.remove-device` waits for the guest to release a device.
pub const EJECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum HotplugError {
    #[error("the hotplug registers: {0}")]
    Bus(#[from] devices::BusError),
    #[error("the hotplug interrupt: {0}")]
    Interrupt(std::io::Error),
    #[error("the hotplug interrupt: {0}")]
    Irqfd(#[from] hypervisor::HypervisorError),
    #[error("this VM was started from the command line: devices cannot be added or removed")]
    Unavailable,
    #[error("no device '{0}' on the bus")]
    NotFound(String),
    #[error(
        "'{0}' sits behind a PCI Express root port, which has no hotplug slot: it stays until \
         the VM stops"
    )]
    BehindRootPort(String),
}

/// The VM's side of ACPI PCI hotplug.
pub struct PciHotplug {
    state: Arc<PciHotplugState>,
    ged: EventFdInterrupt,
}

impl PciHotplug {
    /// Puts the registers on the port bus and wires the GED interrupt.
    pub fn setup(vm: &dyn Vm, buses: &Buses) -> Result<Self, HotplugError> {
        let state = Arc::new(PciHotplugState::default());
        buses.pio.insert(
            Arc::new(Mutex::new(state.device())),
            u64::from(PORT),
            PORT_LEN,
        )?;
        let ged = EventFdInterrupt::new().map_err(HotplugError::Interrupt)?;
        vm.register_irqfd(ged.eventfd(), GSI)?;
        Ok(PciHotplug { state, ged })
    }

    /// The guest is told a device is at `address` (slot `address.device` of bus 0 of its
    /// segment).
    pub fn announce_add(&self, address: pci::PciAddress) -> Result<(), HotplugError> {
        self.state.announce_add(address.segment, address.device);
        self.ged.trigger().map_err(HotplugError::Interrupt)
    }

    /// The guest is asked to release the device at `address`; true once it ejected it,
    /// false when it did not within `timeout` (the request is then withdrawn).
    pub fn eject(&self, address: pci::PciAddress, timeout: Duration) -> Result<bool, HotplugError> {
        let (segment, slot) = (address.segment, address.device);
        self.state.request_remove(segment, slot);
        self.ged.trigger().map_err(HotplugError::Interrupt)?;
        Ok(self.state.wait_ejected(segment, slot, timeout))
    }
}

/// The DSDT's part: where the registers are and which GSI the GED has.
pub fn acpi_config() -> arch::PciHotplugConfig {
    arch::PciHotplugConfig {
        port: PORT,
        gsi: GSI,
    }
}

/// What a running VM keeps to add and remove devices.
pub struct Hotplug {
    pub controller: PciHotplug,
    pub pci: crate::pci_setup::PciSegments,
    pub seccomp: crate::seccomp::SeccompMode,
    /// The virtio activator (the boot's, or one started for the first hot-added device).
    pub activator: Option<Arc<crate::virtio_pci::activator::Activator>>,
    /// A device was added or removed since boot (a snapshot would not match the
    /// configuration's device order).
    pub changed: bool,
    /// The BAR mapper of the segment (passed-through BARs mapped into the guest).
    pub mapper: Option<Arc<crate::vfio::BarMapper>>,
}

impl Hotplug {
    /// Asks the guest to release the device at `address` and, once it has, takes it off the
    /// bus (its BARs unmapped) and gives its BAR placements back; `Ok(false)` when the guest
    /// did not within `timeout` (nothing changed). Stopping the device is the caller's.
    pub fn eject_and_unplug(
        &mut self,
        address: pci::PciAddress,
        timeout: Duration,
    ) -> Result<bool, HotplugError> {
        if !self.controller.eject(address, timeout)? {
            return Ok(false);
        }
        self.changed = true;
        if let Err(e) = self.pci.remove(address) {
            log::warn!("hot-unplug {address}: {e}");
        }
        self.pci.free_bars(address);
        Ok(true)
    }

    /// The activator for a hot-added virtio device, started if the VM had none.
    pub fn activator(&mut self) -> std::io::Result<Arc<crate::virtio_pci::activator::Activator>> {
        if let Some(a) = &self.activator {
            return Ok(a.clone());
        }
        let a = crate::virtio_pci::activator::Activator::start(self.seccomp)?;
        self.activator = Some(a.clone());
        Ok(a)
    }
}
