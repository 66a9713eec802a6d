//! A PCI bus: up to 32 single-function devices by slot number, the host
//! bridge in slot 0, config accesses routed by address, and BAR moves
//! handed to the VMM's [`BarRelocator`].
//!
//! Lock order: the slot map's lock is never held while a device is locked
//! or while the relocator runs, and a device's lock is released before its
//! BAR moves are applied (the relocator may lock buses and the device).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use log::debug;

use crate::address::{PciAddress, PCI_MAX_DEVICE};
use crate::bar::BarReprogram;
use crate::configuration::{dword_access, ConfigWriteResult};
use crate::device::PciDevice;
use crate::host_bridge::PciHostBridge;
use crate::relocate::{BarMove, BarRelocator};
use crate::root_port::{PciRootPort, PcieLink};

/// The host bridge's slot.
pub const HOST_BRIDGE_SLOT: u8 = 0;

type SharedDevice = Arc<Mutex<dyn PciDevice>>;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PciBusError {
    #[error("PCI slot {0} is out of range (0..=31)")]
    InvalidSlot(u8),
    #[error("PCI slot {0} is already occupied")]
    SlotOccupied(u8),
    #[error("all 32 slots of PCI bus {0:02x} are occupied")]
    Full(u8),
    #[error("PCI slot {0} is empty")]
    EmptySlot(u8),
    #[error("no PCI bus number is left for another root port")]
    NoBusNumber,
}

/// An expander host bridge's root bus: its last bus and its root ports by slot.
type Expander = (u8, BTreeMap<u8, Port>);

/// A root port on this bus and the device behind it.
struct Port {
    port: Arc<Mutex<PciRootPort>>,
    device: SharedDevice,
}

impl Port {
    fn new(port: Arc<Mutex<PciRootPort>>, device: &SharedDevice) -> Self {
        Port {
            port,
            device: device.clone(),
        }
    }
}

/// Bus 0 of a PCI segment with its devices.
pub struct PciBus {
    segment: u16,
    number: u8,
    /// The segment's last bus number (its ECAM ends there): root ports' secondary buses
    /// are taken up to it.
    last_bus: u8,
    devices: RwLock<BTreeMap<u8, SharedDevice>>,
    /// Empty slots kept for devices that asked for them (`pci_device_id`): a device placed
    /// in "the lowest free slot" passes them over; [`PciBus::add_device_at`] and
    /// [`PciBus::add_root_port_at`] take them.
    reserved: RwLock<std::collections::BTreeSet<u8>>,
    /// Root ports by their slot here, each with its one device (bus N, device 0).
    ports: RwLock<BTreeMap<u8, Port>>,
    /// Expander host bridges' root buses (bus, last bus) and the root ports on each, by
    /// slot: devices there belong to the expander's NUMA node.
    expanders: RwLock<BTreeMap<u8, Expander>>,
    relocator: Arc<dyn BarRelocator>,
}

impl PciBus {
    /// A bus with a [`PciHostBridge`] in slot 0; BAR moves go to `relocator`.
    pub fn new(relocator: Arc<dyn BarRelocator>) -> Self {
        Self::on_segment(0, u8::MAX, relocator)
    }

    /// Bus 0 of PCI segment `segment`, whose buses end at `last_bus`; its devices' addresses
    /// carry the segment.
    pub fn on_segment(segment: u16, last_bus: u8, relocator: Arc<dyn BarRelocator>) -> Self {
        let bridge: SharedDevice = Arc::new(Mutex::new(PciHostBridge::new()));
        let devices = BTreeMap::from([(HOST_BRIDGE_SLOT, bridge)]);
        Self {
            segment,
            number: 0,
            last_bus,
            devices: RwLock::new(devices),
            reserved: RwLock::new(Default::default()),
            ports: RwLock::new(BTreeMap::new()),
            expanders: RwLock::new(BTreeMap::new()),
            relocator,
        }
    }

    /// Declares an expander host bridge's root buses `bus..=last_bus` (its ports come with
    /// [`PciBus::add_root_port_on`]).
    pub fn add_expander(&self, bus: u8, last_bus: u8) {
        self.expanders
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(bus)
            .or_insert((last_bus, BTreeMap::new()));
    }

    /// Puts `device` behind a new root port on expander root bus `root` (declared with
    /// [`PciBus::add_expander`]): the port in the root bus's lowest free slot, its secondary
    /// bus the next unused one of the expander's range. Returns both addresses.
    pub fn add_root_port_on(
        &self,
        root: u8,
        link: PcieLink,
        device: SharedDevice,
    ) -> Result<(PciAddress, PciAddress), PciBusError> {
        let used: Vec<u8> = self
            .expander_ports(root)
            .iter()
            .map(|(_, p, _)| p.lock().unwrap_or_else(|e| e.into_inner()).secondary_bus())
            .collect();
        let (slot, bus) = {
            let mut ex = self.expanders.write().unwrap_or_else(|p| p.into_inner());
            let (last, ports) = ex.get_mut(&root).ok_or(PciBusError::NoBusNumber)?;
            let slot = (0..=PCI_MAX_DEVICE)
                .find(|s| !ports.contains_key(s))
                .ok_or(PciBusError::Full(root))?;
            let bus = (root.saturating_add(1)..=*last)
                .find(|b| !used.contains(b))
                .ok_or(PciBusError::NoBusNumber)?;
            let port = Arc::new(Mutex::new(PciRootPort::on_bus(root, slot, bus, link)));
            ports.insert(slot, Port::new(port, &device));
            (slot, bus)
        };
        Ok((self.at(root, slot), self.behind_port(bus, &device)))
    }

    /// `bus:device.0` of this segment.
    fn at(&self, bus: u8, device: u8) -> PciAddress {
        PciAddress {
            segment: self.segment,
            ..PciAddress::new(bus, device, 0)
        }
    }

    /// The address of `device`, just put behind a port whose secondary bus is `bus`, with the
    /// BARs it already decodes handed to the relocator.
    fn behind_port(&self, bus: u8, device: &SharedDevice) -> PciAddress {
        let address = self.at(bus, 0);
        self.map_decoded_bars_at(address, device, true);
        address
    }

    /// The slot the next root port on expander root bus `root` will take.
    pub fn next_port_slot_on(&self, root: u8) -> Option<u8> {
        let ex = self.expanders.read().unwrap_or_else(|p| p.into_inner());
        let (_, ports) = ex.get(&root)?;
        (0..=PCI_MAX_DEVICE).find(|s| !ports.contains_key(s))
    }

    /// The ports on expander root bus `root`: (slot, port, device).
    fn expander_ports(&self, root: u8) -> Vec<(u8, Arc<Mutex<PciRootPort>>, SharedDevice)> {
        self.expanders
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&root)
            .map(|(_, ports)| {
                ports
                    .iter()
                    .map(|(s, p)| (*s, p.port.clone(), p.device.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The segment this bus is on.
    pub fn segment(&self) -> u16 {
        self.segment
    }

    /// Puts `device` behind a new PCI Express root port (with `link`) in the lowest empty
    /// slot; the port's secondary bus is the next unused bus number. Returns the port's
    /// address and the device's (secondary bus, device 0). BARs the device already decodes
    /// are handed to the relocator (a device behind a port normally starts with none: the
    /// guest assigns them within the port's windows).
    pub fn add_root_port(
        &self,
        link: PcieLink,
        device: SharedDevice,
    ) -> Result<(PciAddress, PciAddress), PciBusError> {
        self.add_root_port_at(None, link, device)
    }

    /// [`PciBus::add_root_port`] with the port in `slot` (empty or reserved), or in the lowest
    /// free one if `None`.
    pub fn add_root_port_at(
        &self,
        slot: Option<u8>,
        link: PcieLink,
        device: SharedDevice,
    ) -> Result<(PciAddress, PciAddress), PciBusError> {
        // Bus numbers in use, read with no map lock held.
        let used: Vec<u8> = self
            .port_list()
            .iter()
            .map(|(p, _)| p.lock().unwrap_or_else(|e| e.into_inner()).secondary_bus())
            .collect();
        let (slot, bus) = {
            let mut map = self.map_mut();
            let mut ports = self.ports.write().unwrap_or_else(|p| p.into_inner());
            let slot = self.slot_for(&map, slot)?;
            let bus = (1..=self.last_bus)
                .find(|b| !used.contains(b))
                .ok_or(PciBusError::NoBusNumber)?;
            let port = Arc::new(Mutex::new(PciRootPort::new(slot, bus, link)));
            self.unreserve(slot);
            map.insert(slot, port.clone());
            ports.insert(slot, Port::new(port, &device));
            (slot, bus)
        };
        Ok((self.address(slot), self.behind_port(bus, &device)))
    }

    fn map(&self) -> RwLockReadGuard<'_, BTreeMap<u8, SharedDevice>> {
        self.devices.read().unwrap_or_else(|p| p.into_inner())
    }

    fn map_mut(&self) -> RwLockWriteGuard<'_, BTreeMap<u8, SharedDevice>> {
        self.devices.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The address of function 0 in `slot`.
    pub fn address(&self, slot: u8) -> PciAddress {
        self.at(self.number, slot)
    }

    /// The lowest empty slot not reserved, if any.
    pub fn next_free_slot(&self) -> Option<u8> {
        self.lowest_free(&self.map())
    }

    fn lowest_free(&self, map: &BTreeMap<u8, SharedDevice>) -> Option<u8> {
        let reserved = self.reserved.read().unwrap_or_else(|p| p.into_inner());
        (0..=PCI_MAX_DEVICE).find(|slot| !map.contains_key(slot) && !reserved.contains(slot))
    }

    /// `slot` if it is in range and empty, else the lowest free one if `None`.
    fn slot_for(
        &self,
        map: &BTreeMap<u8, SharedDevice>,
        slot: Option<u8>,
    ) -> Result<u8, PciBusError> {
        match slot {
            Some(s) if s > PCI_MAX_DEVICE => Err(PciBusError::InvalidSlot(s)),
            Some(s) if map.contains_key(&s) => Err(PciBusError::SlotOccupied(s)),
            Some(s) => Ok(s),
            None => self.lowest_free(map).ok_or(PciBusError::Full(self.number)),
        }
    }

    fn unreserve(&self, slot: u8) {
        self.reserved
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&slot);
    }

    /// Keeps the empty `slot` for a device that will ask for it by number: devices placed in
    /// the lowest free slot meanwhile pass it over.
    pub fn reserve_slot(&self, slot: u8) -> Result<(), PciBusError> {
        let map = self.map();
        let mut reserved = self.reserved.write().unwrap_or_else(|p| p.into_inner());
        if slot > PCI_MAX_DEVICE {
            return Err(PciBusError::InvalidSlot(slot));
        }
        if map.contains_key(&slot) || !reserved.insert(slot) {
            return Err(PciBusError::SlotOccupied(slot));
        }
        Ok(())
    }

    /// Adds `device` in the lowest empty slot not reserved; BARs it already decodes are
    /// handed to the relocator.
    pub fn add_device(&self, device: SharedDevice) -> Result<PciAddress, PciBusError> {
        let slot = {
            let mut map = self.map_mut();
            let slot = self.slot_for(&map, None)?;
            map.insert(slot, device.clone());
            slot
        };
        self.map_decoded_bars(slot, &device, true);
        Ok(self.address(slot))
    }

    /// Adds `device` in `slot`, which must be empty (it may be reserved for it).
    pub fn add_device_at(&self, slot: u8, device: SharedDevice) -> Result<PciAddress, PciBusError> {
        {
            let mut map = self.map_mut();
            let slot = self.slot_for(&map, Some(slot))?;
            self.unreserve(slot);
            map.insert(slot, device.clone());
        }
        self.map_decoded_bars(slot, &device, true);
        Ok(self.address(slot))
    }

    /// Removes the device in `slot`; BARs it decodes are unmapped through
    /// the relocator first. The VMM frees its BAR allocations.
    pub fn remove_device(&self, slot: u8) -> Result<SharedDevice, PciBusError> {
        let device = self
            .map_mut()
            .remove(&slot)
            .ok_or(PciBusError::EmptySlot(slot))?;
        self.map_decoded_bars(slot, &device, false);
        // A root port goes with the device behind it.
        let port = self
            .ports
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&slot);
        if let Some(p) = port {
            let bus = p
                .port
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .secondary_bus();
            self.map_decoded_bars_at(self.at(bus, 0), &p.device, false);
        }
        Ok(device)
    }

    /// The device in `slot`.
    pub fn device(&self, slot: u8) -> Option<SharedDevice> {
        self.map().get(&slot).cloned()
    }

    fn map_decoded_bars(&self, slot: u8, device: &SharedDevice, insert: bool) {
        self.map_decoded_bars_at(self.address(slot), device, insert)
    }

    fn map_decoded_bars_at(&self, address: PciAddress, device: &SharedDevice, insert: bool) {
        let bars = device.lock().unwrap_or_else(|p| p.into_inner()).bars();
        let moves = bars.iter().filter(|b| b.decoded).map(|b| BarReprogram {
            index: b.index,
            kind: b.kind,
            old_addr: (!insert).then_some(b.addr),
            new_addr: insert.then_some(b.addr),
            size: b.size,
        });
        for reprogram in moves {
            self.relocate(address, device, reprogram);
        }
    }

    fn relocate(&self, address: PciAddress, device: &SharedDevice, reprogram: BarReprogram) {
        let mv = BarMove {
            address,
            device,
            reprogram,
        };
        if let Err(e) = self.relocator.move_bar(&mv) {
            debug!(
                "pci: {e}; BAR {} of {} stays unmapped",
                reprogram.index, mv.address
            );
        }
    }

    /// The device a config access to `addr` reaches: this bus, function 0, or device 0 of
    /// a root port's secondary bus.
    fn target(&self, addr: PciAddress) -> Option<SharedDevice> {
        if addr.segment != self.segment || addr.function != 0 {
            return None;
        }
        if addr.bus == self.number {
            return self.device(addr.device);
        }
        // An expander's root bus: its root ports by slot.
        let roots: Vec<u8> = self
            .expanders
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        if roots.contains(&addr.bus) {
            return self
                .expander_ports(addr.bus)
                .into_iter()
                .find(|(s, _, _)| *s == addr.device)
                .map(|(_, p, _)| p as SharedDevice);
        }
        if addr.device != 0 {
            return None;
        }
        let expander_ports = roots
            .iter()
            .flat_map(|r| self.expander_ports(*r))
            .map(|(_, p, d)| (p, d));
        self.port_list()
            .into_iter()
            .chain(expander_ports)
            .find_map(|(port, device)| {
                let bus = port
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .secondary_bus();
                (bus == addr.bus).then_some(device)
            })
    }

    /// The root ports and their devices (the ports' map lock is not held while a port is
    /// locked).
    fn port_list(&self) -> Vec<(Arc<Mutex<PciRootPort>>, SharedDevice)> {
        self.ports
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|p| (p.port.clone(), p.device.clone()))
            .collect()
    }

    /// The device at `addr` (on this bus or behind one of its root ports).
    pub fn device_at(&self, addr: PciAddress) -> Option<SharedDevice> {
        self.target(addr)
    }

    /// Config register `reg` of `addr`; all-ones where no function answers.
    pub fn read_config(&self, addr: PciAddress, reg: usize) -> u32 {
        match self.target(addr) {
            Some(device) => device
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .read_config_register(reg),
            None => 0xffff_ffff,
        }
    }

    /// Bytes `offset..offset + data.len()` of register `reg` of `addr`; an
    /// access that does not fit in the dword reads all-ones.
    pub fn read_config_bytes(&self, addr: PciAddress, reg: usize, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if dword_access(offset, data).is_none() {
            debug!(
                "pci: dropped {}-byte config read at {offset} of {addr} register {reg:#x}",
                data.len()
            );
            return;
        }
        let value = self.read_config(addr, reg).to_le_bytes();
        let start = offset as usize;
        data.copy_from_slice(&value[start..start + data.len()]);
    }

    /// A config write to `addr`; BAR moves it causes are applied through the
    /// relocator before this returns, and also returned. Writes that do not
    /// fit in one dword are dropped.
    pub fn write_config(
        &self,
        addr: PciAddress,
        reg: usize,
        offset: u64,
        data: &[u8],
    ) -> ConfigWriteResult {
        if dword_access(offset, data).is_none() {
            debug!(
                "pci: dropped {}-byte config write at {offset} of {addr} register {reg:#x}",
                data.len()
            );
            return ConfigWriteResult::default();
        }
        let Some(device) = self.target(addr) else {
            debug!("pci: config write to {addr}, where no function answers");
            return ConfigWriteResult::default();
        };
        let result = device
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_config_register(reg, offset, data);
        for reprogram in &result.bar_moves {
            self.relocate(addr, &device, *reprogram);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bar::BarKind;
    use crate::configuration::COMMAND_MEMORY_SPACE;
    use crate::relocate::RecordingRelocator;
    use crate::test_util::TestDevice;

    fn bus() -> (PciBus, Arc<RecordingRelocator>) {
        let relocator = Arc::new(RecordingRelocator::new());
        (PciBus::new(relocator.clone()), relocator)
    }

    fn test_device() -> SharedDevice {
        Arc::new(Mutex::new(TestDevice::new()))
    }

    #[test]
    fn host_bridge_sits_in_slot_zero() {
        let (bus, _) = bus();
        assert_eq!(bus.read_config(PciAddress::new(0, 0, 0), 0), 0x0d57_8086);
        assert_eq!(bus.next_free_slot(), Some(1));
    }

    #[test]
    fn devices_fill_the_next_free_slot_or_a_chosen_one() {
        let (bus, _) = bus();
        assert_eq!(
            bus.add_device_at(3, test_device()),
            Ok(PciAddress::new(0, 3, 0))
        );
        assert_eq!(bus.add_device(test_device()), Ok(PciAddress::new(0, 1, 0)));
        assert_eq!(bus.add_device(test_device()), Ok(PciAddress::new(0, 2, 0)));
        assert_eq!(bus.add_device(test_device()), Ok(PciAddress::new(0, 4, 0)));
        assert_eq!(
            bus.add_device_at(3, test_device()),
            Err(PciBusError::SlotOccupied(3))
        );
        assert_eq!(
            bus.add_device_at(32, test_device()),
            Err(PciBusError::InvalidSlot(32))
        );
        while bus.next_free_slot().is_some() {
            bus.add_device(test_device()).unwrap();
        }
        assert_eq!(bus.add_device(test_device()), Err(PciBusError::Full(0)));
    }

    #[test]
    fn reserved_slots_are_passed_over_until_their_device_takes_them() {
        let (bus, _) = bus();
        bus.reserve_slot(1).unwrap();
        bus.reserve_slot(5).unwrap();
        assert_eq!(bus.reserve_slot(5), Err(PciBusError::SlotOccupied(5)));
        assert_eq!(bus.reserve_slot(0), Err(PciBusError::SlotOccupied(0)));
        assert_eq!(bus.reserve_slot(32), Err(PciBusError::InvalidSlot(32)));
        assert_eq!(bus.next_free_slot(), Some(2));
        assert_eq!(bus.add_device(test_device()), Ok(PciAddress::new(0, 2, 0)));
        // A root port placed by the bus passes them over too; one asked for a slot takes it.
        let (port, _) = bus
            .add_root_port(PcieLink::default(), test_device())
            .unwrap();
        assert_eq!(port.device, 3);
        let (port, behind) = bus
            .add_root_port_at(Some(5), PcieLink::default(), test_device())
            .unwrap();
        assert_eq!((port.device, behind.device), (5, 0));
        assert_eq!(
            bus.add_device_at(1, test_device()),
            Ok(PciAddress::new(0, 1, 0))
        );
        assert_eq!(bus.add_device(test_device()), Ok(PciAddress::new(0, 4, 0)));
        assert_eq!(bus.add_device(test_device()), Ok(PciAddress::new(0, 6, 0)));
        assert_eq!(
            bus.add_root_port_at(Some(6), PcieLink::default(), test_device()),
            Err(PciBusError::SlotOccupied(6))
        );
        // Once its device is gone, the slot is free for anyone.
        bus.remove_device(1).unwrap();
        assert_eq!(bus.next_free_slot(), Some(1));
    }

    #[test]
    fn absent_devices_functions_and_buses_read_all_ones() {
        let (bus, _) = bus();
        bus.add_device_at(1, test_device()).unwrap();
        assert_eq!(bus.read_config(PciAddress::new(0, 1, 0), 0), 0x1041_1af4);
        assert_eq!(bus.read_config(PciAddress::new(0, 2, 0), 0), 0xffff_ffff);
        assert_eq!(bus.read_config(PciAddress::new(0, 1, 1), 0), 0xffff_ffff);
        assert_eq!(bus.read_config(PciAddress::new(1, 1, 0), 0), 0xffff_ffff);
        let result = bus.write_config(PciAddress::new(0, 2, 0), 1, 0, &[7]);
        assert_eq!(result, ConfigWriteResult::default());
    }

    #[test]
    fn sub_dword_reads_extract_bytes_and_straddling_ones_read_all_ones() {
        let (bus, _) = bus();
        let bridge = PciAddress::new(0, 0, 0);
        let mut word = [0u8; 2];
        bus.read_config_bytes(bridge, 0, 2, &mut word);
        assert_eq!(u16::from_le_bytes(word), 0x0d57);
        let mut byte = [0u8; 1];
        bus.read_config_bytes(bridge, 0, 1, &mut byte);
        assert_eq!(byte, [0x80]);
        bus.read_config_bytes(bridge, 0, 3, &mut word);
        assert_eq!(word, [0xff; 2]);
        let mut wide = [0u8; 8];
        bus.read_config_bytes(bridge, 0, 0, &mut wide);
        assert_eq!(wide, [0xff; 8]);
        let result = bus.write_config(bridge, 15, 3, &[1, 2]);
        assert_eq!(result, ConfigWriteResult::default());
    }

    #[test]
    fn config_writes_apply_bar_moves_through_the_relocator() {
        let (bus, relocator) = bus();
        let addr = bus.add_device(test_device()).unwrap();
        assert!(relocator.take_moves().is_empty(), "nothing decoded yet");
        let command = COMMAND_MEMORY_SPACE.to_le_bytes();
        let result = bus.write_config(addr, 1, 0, &command);
        let moves = relocator.take_moves();
        assert_eq!(moves.len(), 2, "BAR 1 and BAR 2");
        assert_eq!(
            moves.iter().map(|m| m.1).collect::<Vec<_>>(),
            result.bar_moves
        );
        assert!(moves.iter().all(|(a, _)| *a == addr));
        assert_eq!(moves[1].1.kind, BarKind::Mem64);
        assert_eq!(moves[1].1.new_addr, Some(0x1_0000_0000));
    }

    #[test]
    fn relocator_failure_does_not_undo_the_config_write() {
        let (bus, relocator) = bus();
        let addr = bus.add_device(test_device()).unwrap();
        relocator.set_failing(true);
        let result = bus.write_config(addr, 1, 0, &COMMAND_MEMORY_SPACE.to_le_bytes());
        assert_eq!(result.bar_moves.len(), 2);
        assert_eq!(
            bus.read_config(addr, 1) & 0xffff,
            u32::from(COMMAND_MEMORY_SPACE)
        );
    }

    #[test]
    fn adding_and_removing_a_decoding_device_maps_and_unmaps_its_bars() {
        let (bus, relocator) = bus();
        let device = Arc::new(Mutex::new(TestDevice::new()));
        let command = COMMAND_MEMORY_SPACE.to_le_bytes();
        let _ = device
            .lock()
            .unwrap()
            .config
            .write_config_register(1, 0, &command);
        bus.add_device_at(5, device).unwrap();
        let added = relocator.take_moves();
        assert_eq!(added.len(), 2);
        assert!(added
            .iter()
            .all(|(_, r)| r.old_addr.is_none() && r.new_addr.is_some()));
        bus.remove_device(5).unwrap();
        let removed = relocator.take_moves();
        assert_eq!(removed.len(), 2);
        assert!(removed
            .iter()
            .all(|(_, r)| r.old_addr.is_some() && r.new_addr.is_none()));
        assert!(bus.device(5).is_none());
        assert_eq!(bus.remove_device(5).err(), Some(PciBusError::EmptySlot(5)));
    }

    #[test]
    fn a_device_behind_a_root_port_answers_on_the_ports_secondary_bus() {
        let (bus, _) = bus();
        bus.add_device(test_device()).unwrap();
        let (port, dev) = bus
            .add_root_port(PcieLink::default(), test_device())
            .unwrap();
        assert_eq!(port, PciAddress::new(0, 2, 0));
        assert_eq!(dev, PciAddress::new(1, 0, 0));
        assert_eq!(bus.read_config(port, 0), 0x000c_1b36);
        let vendor = bus.read_config(PciAddress::new(0, 1, 0), 0);
        assert_eq!(bus.read_config(dev, 0), vendor);
        // Only device 0 function 0 of the secondary bus, and no other bus.
        assert_eq!(bus.read_config(PciAddress::new(1, 1, 0), 0), 0xffff_ffff);
        assert_eq!(bus.read_config(PciAddress::new(1, 0, 1), 0), 0xffff_ffff);
        assert_eq!(bus.read_config(PciAddress::new(2, 0, 0), 0), 0xffff_ffff);
        // A second port takes the next bus.
        let (_, dev2) = bus
            .add_root_port(PcieLink::default(), test_device())
            .unwrap();
        assert_eq!(dev2, PciAddress::new(2, 0, 0));
        // The guest renumbers the first port's secondary bus: routing follows.
        let _ = bus.write_config(port, 0x18 / 4, 1, &[9]);
        assert_eq!(bus.read_config(PciAddress::new(9, 0, 0), 0), vendor);
        assert_eq!(bus.read_config(dev, 0), 0xffff_ffff);
        assert!(bus.device_at(PciAddress::new(9, 0, 0)).is_some());
        // Removing the port removes what is behind it.
        bus.remove_device(port.device).unwrap();
        assert_eq!(bus.read_config(PciAddress::new(9, 0, 0), 0), 0xffff_ffff);
    }

    #[test]
    fn a_further_segments_bus_carries_its_segment_and_its_buses_end_at_its_last() {
        let bus = PciBus::on_segment(2, 2, Arc::new(RecordingRelocator::new()));
        assert_eq!(bus.segment(), 2);
        let at = bus.add_device(test_device()).unwrap();
        assert_eq!(at.to_string(), "0002:00:01.0");
        let seg2 = |b, d| PciAddress {
            segment: 2,
            ..PciAddress::new(b, d, 0)
        };
        let vendor = bus.read_config(seg2(0, 1), 0);
        assert_ne!(vendor, 0xffff_ffff);
        // The same bus/device/function on another segment is not this one.
        assert_eq!(bus.read_config(PciAddress::new(0, 1, 0), 0), 0xffff_ffff);
        let (_, d1) = bus
            .add_root_port(PcieLink::default(), test_device())
            .unwrap();
        let (_, d2) = bus
            .add_root_port(PcieLink::default(), test_device())
            .unwrap();
        assert_eq!((d1, d2), (seg2(1, 0), seg2(2, 0)));
        assert_eq!(bus.read_config(d2, 0), vendor);
        // Bus 2 is the last: a third port has no bus number.
        assert_eq!(
            bus.add_root_port(PcieLink::default(), test_device()),
            Err(PciBusError::NoBusNumber)
        );
    }

    #[test]
    fn bar_moves_behind_a_root_port_carry_the_devices_own_address() {
        let (bus, relocator) = bus();
        let (_, dev) = bus
            .add_root_port(PcieLink::default(), test_device())
            .unwrap();
        relocator.take_moves();
        // The guest moves the test device's BAR 1 and turns memory decoding on.
        let _ = bus.write_config(dev, 5, 0, &0xd000_0000u32.to_le_bytes());
        let _ = bus.write_config(dev, 1, 0, &[COMMAND_MEMORY_SPACE as u8]);
        let moves = relocator.take_moves();
        assert!(!moves.is_empty(), "the BAR was mapped");
        assert!(moves.iter().all(|m| m.0 == dev), "{moves:?}");
    }

    #[test]
    fn an_expander_root_bus_holds_root_ports_whose_devices_sit_on_its_buses() {
        let (bus, _) = bus();
        bus.add_expander(0x80, 0x8f);
        let (port, dev) = bus
            .add_root_port_on(0x80, PcieLink::default(), test_device())
            .unwrap();
        assert_eq!(port, PciAddress::new(0x80, 0, 0));
        assert_eq!(dev, PciAddress::new(0x81, 0, 0));
        assert_eq!(bus.read_config(port, 0), 0x000c_1b36);
        // Primary 0x80, secondary and subordinate 0x81.
        assert_eq!(bus.read_config(port, 6) & 0xff_ffff, 0x81_8180);
        let vendor = bus.read_config(PciAddress::new(0, 0, 0), 0);
        assert_ne!(bus.read_config(dev, 0), 0xffff_ffff);
        assert_ne!(
            bus.read_config(dev, 0),
            vendor,
            "the device, not the host bridge"
        );
        let (_, dev2) = bus
            .add_root_port_on(0x80, PcieLink::default(), test_device())
            .unwrap();
        assert_eq!(dev2, PciAddress::new(0x82, 0, 0));
        assert_eq!(bus.read_config(PciAddress::new(0x80, 5, 0), 0), 0xffff_ffff);
        assert!(bus
            .add_root_port_on(0x90, PcieLink::default(), test_device())
            .is_err());
    }
}
