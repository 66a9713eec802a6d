//! The PCI segments: segment 0's host bridge with config access through 0xcf8/0xcfc and its
//! ECAM, further segments' (`--platform num_pci_segments`) through their own ECAMs, BAR
//! allocation in each segment's windows, and MSI/MSI-X groups on KVM routes. A device's
//! [`PciAddress`] carries its segment: placing, adding and freeing go by it.

use std::sync::{Arc, Mutex};

use arch::layout::{MemoryLayout, IOAPIC_START, LAPIC_START, PCI_ECAM_START};
use arch::pci_segments::{
    PciSegmentLayout, MAX_PCI_SEGMENTS, SEGMENT_ECAM_SIZE, SEGMENT_ECAM_START,
};
use hypervisor::Vm;
use pci::{
    BarConfig, BarRequest, BusBarRelocator, PciAddress, PciAllocator, PciAllocatorConfig, PciBus,
    PciConfigIo, PciConfigMmio, PciDevice, PCI_CONFIG_IO_PORT, PCI_CONFIG_IO_PORT_LEN,
    PCI_ECAM_SIZE,
};

use crate::interrupts::{GsiRouter, KvmMsiGroup};
use crate::vcpu::exit::Buses;
use crate::vfio::{BarMapper, SegmentRelocator};

/// I/O ports handed to PCI I/O BARs (Linux's own floor for PCI I/O is 0x1000).
const PCI_IO_WINDOW: (u64, u64) = (0x1000, 0xf000);

#[derive(Debug, thiserror::Error)]
pub enum PciSetupError {
    #[error("placing PCI config access on a bus: {0}")]
    Bus(#[from] devices::BusError),
    #[error("PCI BAR windows: {0}")]
    Allocator(#[from] pci::AllocatorError),
    #[error("PCI bus: {0}")]
    PciBus(#[from] pci::PciBusError),
    #[error("no free PCI slot for another device (32 per bus)")]
    NoSlot,
    #[error("MSI vectors: {0}")]
    Msi(std::io::Error),
    #[error("PCI segment {0} does not exist in this VM (--platform num_pci_segments)")]
    NoSegment(u16),
    #[error("slot {slot} of PCI segment {segment} (pci_device_id) holds a device already")]
    SlotTaken { segment: u16, slot: u8 },
}

/// A PCI segment after 0: its bus and its windows.
struct Further {
    bus: Arc<PciBus>,
    allocator: Mutex<PciAllocator>,
}

/// Everything PCI the VMM keeps: segment 0 and the further segments.
pub struct PciSegments {
    /// Segment 0's bus.
    pub bus: Arc<PciBus>,
    allocator: Mutex<PciAllocator>,
    /// Segments 1.. in order.
    further: Vec<Further>,
    router: Arc<GsiRouter>,
    vm: Arc<dyn Vm>,
    /// Expander host bridges: guest NUMA node -> root bus.
    expanders: Mutex<Vec<(u32, u8)>>,
    /// What BAR relocators of further segments need: the addresses BARs may not take, and
    /// the mapper of passed-through BARs.
    reserved: Vec<(u64, u64)>,
    mapper: Option<Arc<BarMapper>>,
    phys_bits: u8,
}

impl PciSegments {
    /// The host bridge and both config access paths; no devices yet.
    pub fn new(
        vm: Arc<dyn Vm>,
        router: Arc<GsiRouter>,
        buses: &Buses,
        layout: &MemoryLayout,
    ) -> Result<Self, PciSetupError> {
        Self::with_bar_mapper(vm, router, buses, layout, None)
    }

    /// The same, with BAR areas of passed-through devices mapped straight into the guest by
    /// `mapper` (their memory slots follow BAR moves).
    pub fn with_bar_mapper(
        vm: Arc<dyn Vm>,
        router: Arc<GsiRouter>,
        buses: &Buses,
        layout: &MemoryLayout,
        mapper: Option<Arc<BarMapper>>,
    ) -> Result<Self, PciSetupError> {
        // BARs may never decode over guest RAM or the interrupt controllers.
        let mut reserved: Vec<(u64, u64)> = layout
            .ram_ranges()
            .iter()
            .map(|(a, len)| (a.0, *len as u64))
            .collect();
        reserved.push((IOAPIC_START, 0x1000));
        reserved.push((LAPIC_START, 0x1000));
        reserved.push((PCI_ECAM_START, PCI_ECAM_SIZE));
        reserved.push((
            SEGMENT_ECAM_START,
            SEGMENT_ECAM_SIZE * u64::from(MAX_PCI_SEGMENTS - 1),
        ));
        let relocator = BusBarRelocator::new(buses.pio.clone(), buses.mmio.clone())
            .with_reserved_mmio(reserved.clone());
        let bus = Arc::new(PciBus::new(Arc::new(SegmentRelocator::new(
            relocator,
            mapper.clone(),
        ))));
        buses.pio.insert(
            Arc::new(Mutex::new(PciConfigIo::new(bus.clone()))),
            PCI_CONFIG_IO_PORT,
            PCI_CONFIG_IO_PORT_LEN,
        )?;
        buses.mmio.insert(
            Arc::new(Mutex::new(PciConfigMmio::new(bus.clone()))),
            PCI_ECAM_START,
            PCI_ECAM_SIZE,
        )?;
        let allocator = PciAllocator::new(&PciAllocatorConfig {
            io: PCI_IO_WINDOW,
            mmio32: layout.mmio32,
            mmio64: layout.mmio64,
            host_phys_bits: Some(layout.phys_bits),
        })?;
        Ok(PciSegments {
            bus,
            allocator: Mutex::new(allocator),
            further: Vec::new(),
            router,
            vm,
            expanders: Mutex::new(Vec::new()),
            reserved,
            mapper,
            phys_bits: layout.phys_bits,
        })
    }

    /// Adds segments 1.. (in order, as `arch::pci_segments` laid them out): a bus each, its
    /// ECAM on the MMIO bus, its windows. No I/O window: their devices get memory BARs only.
    pub fn add_segments(
        &mut self,
        buses: &Buses,
        list: &[PciSegmentLayout],
    ) -> Result<(), PciSetupError> {
        for s in list {
            let relocator = BusBarRelocator::new(buses.pio.clone(), buses.mmio.clone())
                .with_reserved_mmio(self.reserved.clone());
            let bus = Arc::new(PciBus::on_segment(
                s.id,
                (arch::pci_segments::SEGMENT_BUSES - 1) as u8,
                Arc::new(SegmentRelocator::new(relocator, self.mapper.clone())),
            ));
            buses.mmio.insert(
                Arc::new(Mutex::new(PciConfigMmio::with_size(
                    bus.clone(),
                    SEGMENT_ECAM_SIZE,
                ))),
                s.ecam,
                SEGMENT_ECAM_SIZE,
            )?;
            let allocator = PciAllocator::new(&PciAllocatorConfig {
                io: (0, 0),
                mmio32: s.mmio32,
                mmio64: s.mmio64,
                host_phys_bits: Some(self.phys_bits),
            })?;
            self.further.push(Further {
                bus,
                allocator: Mutex::new(allocator),
            });
        }
        Ok(())
    }

    /// How many segments the VM has.
    pub fn segments(&self) -> u16 {
        1 + self.further.len() as u16
    }

    /// Segment `segment`'s bus and BAR allocator.
    fn of(&self, segment: u16) -> Result<(&Arc<PciBus>, &Mutex<PciAllocator>), PciSetupError> {
        match segment {
            0 => Ok((&self.bus, &self.allocator)),
            s => self
                .further
                .get(usize::from(s) - 1)
                .map(|f| (&f.bus, &f.allocator))
                .ok_or(PciSetupError::NoSegment(s)),
        }
    }

    /// Segment `segment`'s bus.
    pub fn bus_of(&self, segment: u16) -> Result<&Arc<PciBus>, PciSetupError> {
        self.of(segment).map(|(bus, _)| bus)
    }

    fn allocator_of(&self, segment: u16) -> Result<&Mutex<PciAllocator>, PciSetupError> {
        self.of(segment).map(|(_, allocator)| allocator)
    }

    /// Adds the expander host bridges (their root buses; the DSDT describes them).
    pub fn add_expanders(&self, list: &[arch::layout::Expander]) {
        let mut e = self.expanders.lock().unwrap_or_else(|e| e.into_inner());
        for x in list {
            self.bus.add_expander(x.bus, x.last_bus);
            e.push((x.node, x.bus));
        }
    }

    /// The root bus of the expander host bridge of guest NUMA node `node`.
    pub fn expander_bus(&self, node: u32) -> Option<u8> {
        let e = self.expanders.lock().unwrap_or_else(|e| e.into_inner());
        e.iter().find(|(n, _)| *n == node).map(|(_, b)| *b)
    }

    /// The address the next device on segment 0 will get.
    pub fn next_address(&self) -> Result<PciAddress, PciSetupError> {
        self.next_address_on(0)
    }

    /// The address the next device on segment `segment` will get.
    pub fn next_address_on(&self, segment: u16) -> Result<PciAddress, PciSetupError> {
        let bus = self.bus_of(segment)?;
        bus.next_free_slot()
            .map(|s| bus.address(s))
            .ok_or(PciSetupError::NoSlot)
    }

    /// Keep each (segment, slot) in `slots` (asked for with `pci_device_id`) for its device
    /// while the others are placed in the lowest free slots.
    pub fn reserve_slots(&self, slots: &[(u16, u8)]) -> Result<(), PciSetupError> {
        for &(segment, slot) in slots {
            self.bus_of(segment)?
                .reserve_slot(slot)
                .map_err(|_| PciSetupError::SlotTaken { segment, slot })?;
        }
        Ok(())
    }

    /// The address of a device going on segment `segment`: in `slot` if it asked for one
    /// (`pci_device_id`; it must be empty), else in the lowest free slot.
    pub fn address_on(&self, segment: u16, slot: Option<u8>) -> Result<PciAddress, PciSetupError> {
        let Some(slot) = slot else {
            return self.next_address_on(segment);
        };
        let bus = self.bus_of(segment)?;
        match bus.device(slot) {
            Some(_) => Err(PciSetupError::SlotTaken { segment, slot }),
            None => Ok(bus.address(slot)),
        }
    }

    /// Place `device`'s BARs in its segment's windows.
    pub fn allocate_bars(
        &self,
        device: PciAddress,
        bars: &[BarRequest],
    ) -> Result<Vec<BarConfig>, PciSetupError> {
        let mut a = self
            .allocator_of(device.segment)?
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Ok(a.allocate_device(device, bars)?)
    }

    /// Give back every BAR placement of the device at `device` (it left the bus).
    pub fn free_bars(&self, device: PciAddress) {
        if let Ok(a) = self.allocator_of(device.segment) {
            a.lock()
                .unwrap_or_else(|e| e.into_inner())
                .free_device(device);
        }
    }

    /// Take the device in `slot` of bus 0 of the segment of `address` off it.
    pub fn remove(&self, address: PciAddress) -> Result<(), PciSetupError> {
        self.bus_of(address.segment)?
            .remove_device(address.device)?;
        Ok(())
    }

    /// An MSI/MSI-X vector group for one device.
    pub fn msi_group(&self, vectors: u16) -> Result<Arc<KvmMsiGroup>, PciSetupError> {
        KvmMsiGroup::new(self.router.clone(), self.vm.clone(), vectors)
            .map(Arc::new)
            .map_err(PciSetupError::Msi)
    }

    /// Put `device` behind a new PCI Express root port in the next slot of bus 0 of
    /// `segment`, or on expander root bus `expander` (segment 0's); returns the port's address
    /// and the device's.
    pub fn add_behind_root_port(
        &self,
        (segment, slot): (u16, Option<u8>),
        expander: Option<u8>,
        link: pci::PcieLink,
        device: Arc<Mutex<dyn PciDevice>>,
    ) -> Result<(PciAddress, PciAddress), PciSetupError> {
        Ok(match expander {
            Some(root) => self.bus.add_root_port_on(root, link, device)?,
            None => self
                .bus_of(segment)?
                .add_root_port_at(slot, link, device)
                .map_err(|e| match (e, slot) {
                    (pci::PciBusError::SlotOccupied(_), Some(slot)) => {
                        PciSetupError::SlotTaken { segment, slot }
                    }
                    (e, _) => e.into(),
                })?,
        })
    }

    /// Put `device` at `address` (from `next_address_on`).
    pub fn add(
        &self,
        address: PciAddress,
        device: Arc<Mutex<dyn PciDevice>>,
    ) -> Result<(), PciSetupError> {
        self.bus_of(address.segment)?
            .add_device_at(address.device, device)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypervisor::fake::FakeHypervisor;
    use hypervisor::Hypervisor;

    #[test]
    fn host_bridge_answers_on_cf8_and_ecam_and_empty_slots_read_all_ones() {
        let hv = FakeHypervisor::new();
        let vm = hv.create_vm().unwrap();
        let buses = Buses::default();
        let layout = MemoryLayout::new(256 << 20, 40).unwrap();
        let seg =
            PciSegments::new(vm.clone(), Arc::new(GsiRouter::new(vm)), &buses, &layout).unwrap();
        // CONFIG_ADDRESS = enable | bus 0 dev 0 fn 0 reg 0; CONFIG_DATA = vendor/device.
        assert!(buses.pio.write(0xcf8, &0x8000_0000u32.to_le_bytes()));
        let mut id = [0u8; 4];
        assert!(buses.pio.read(0xcfc, &mut id));
        let id = u32::from_le_bytes(id);
        assert_ne!(id, 0xffff_ffff);
        let mut ecam = [0u8; 4];
        assert!(buses.mmio.read(PCI_ECAM_START, &mut ecam));
        assert_eq!(
            u32::from_le_bytes(ecam),
            id,
            "ECAM and CF8 see the same bridge"
        );
        // Device 3 is empty.
        assert!(buses.mmio.read(PCI_ECAM_START + (3 << 15), &mut ecam));
        assert_eq!(u32::from_le_bytes(ecam), 0xffff_ffff);
        assert_eq!(seg.next_address().unwrap().device, 1);
    }

    #[test]
    fn devices_that_ask_for_a_slot_get_it_and_the_others_pass_it_over() {
        let dir = std::env::temp_dir().join(format!("vmm-slots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.img"), dir.join("b.img"));
        for p in [&a, &b] {
            std::fs::write(p, vec![0u8; 4096]).unwrap();
        }
        let m = crate::cli::command()
            .try_get_matches_from([
                "vmm".to_string(),
                "--kernel".into(),
                "/k".into(),
                "--seccomp".into(),
                "false".into(),
                "--disk".into(),
                format!("path={},pci_device_id=2", a.display()),
                "--disk".into(),
                format!("path={}", b.display()),
                "--rng".into(),
                "src=/dev/urandom,pci_device_id=1".into(),
            ])
            .unwrap();
        let cfg = crate::cli::from_matches(&m).unwrap().vm;
        let hv = FakeHypervisor::new();
        let vm = hv.create_vm().unwrap();
        let buses = Buses::default();
        let layout = MemoryLayout::new(256 << 20, 40).unwrap();
        let pci = PciSegments::new(
            vm.clone(),
            Arc::new(GsiRouter::new(vm.clone())),
            &buses,
            &layout,
        )
        .unwrap();
        pci.reserve_slots(&cfg.pci_slots_asked()).unwrap();
        // Reserved slots are passed over by the next free address.
        assert_eq!(pci.next_address().unwrap().device, 3);
        let mem = vm_memory::GuestMemoryMmap::from_ranges(&[(vm_memory::GuestAddress(0), 1 << 20)])
            .unwrap();
        let virtio = crate::virtio_setup::setup(&cfg, &pci, vm, &mem).unwrap();
        let slots: Vec<u8> = virtio.addresses.iter().map(|a| a.device).collect();
        // Disks, then the rng: the first disk and the rng where they asked, the second disk in
        // the lowest slot left.
        assert_eq!(slots, [2, 3, 1]);
        // A slot that holds a device is refused by number, with the segment.
        let e = pci.address_on(0, Some(2)).unwrap_err().to_string();
        assert!(e.contains("slot 2 of PCI segment 0"), "{e}");
        assert_eq!(pci.address_on(0, Some(9)).unwrap().device, 9);
        assert_eq!(pci.address_on(0, None).unwrap().device, 4);
        assert!(matches!(
            pci.address_on(1, Some(2)),
            Err(PciSetupError::NoSegment(1))
        ));
        drop(virtio);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_256_gib_bar_fits_when_the_window_allows_and_is_refused_clearly_otherwise() {
        let hv = FakeHypervisor::new();
        let vm = hv.create_vm().unwrap();
        let buses = Buses::default();
        let req = [BarRequest {
            index: 2,
            size: 256 << 30,
            kind: pci::BarKind::Mem64,
            prefetchable: true,
        }];
        let big = MemoryLayout::new(4 << 30, 46).unwrap();
        let seg = PciSegments::new(
            vm.clone(),
            Arc::new(GsiRouter::new(vm.clone())),
            &buses,
            &big,
        )
        .unwrap();
        let bars = seg.allocate_bars(PciAddress::new(0, 1, 0), &req).unwrap();
        assert_eq!(bars[0].addr % (256 << 30), 0);
        let small = MemoryLayout::new(4 << 30, 38).unwrap();
        let buses = Buses::default();
        let seg =
            PciSegments::new(vm.clone(), Arc::new(GsiRouter::new(vm)), &buses, &small).unwrap();
        let err = seg
            .allocate_bars(PciAddress::new(0, 1, 0), &req)
            .unwrap_err()
            .to_string();
        assert!(err.contains("256 GiB"), "{err}");
        assert!(err.contains("physical address bits"), "{err}");
    }
}
