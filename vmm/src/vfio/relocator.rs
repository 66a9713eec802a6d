//! The PCI segment's [`BarRelocator`]: every BAR goes on the port I/O or MMIO bus (through
//! [`BusBarRelocator`], which also refuses addresses over RAM and the interrupt controllers),
//! and BARs with directly mapped areas also move their memory slots ([`BarMapper`]).

use std::sync::Arc;

use pci::{BarMove, BarRelocator, BusBarRelocator, RelocationError};

use super::bar_map::BarMapper;

pub struct SegmentRelocator {
    bus: BusBarRelocator,
    direct: Option<Arc<BarMapper>>,
}

impl SegmentRelocator {
    pub fn new(bus: BusBarRelocator, direct: Option<Arc<BarMapper>>) -> Self {
        SegmentRelocator { bus, direct }
    }
}

impl BarRelocator for SegmentRelocator {
    fn move_bar(&self, mv: &BarMove<'_>) -> Result<(), RelocationError> {
        let result = self.bus.move_bar(mv);
        if let Some(direct) = &self.direct {
            let r = &mv.reprogram;
            if direct.has(mv.address, r.index) {
                // A BAR the bus refused (over RAM, or over another BAR) gets no slots either.
                let base = if result.is_ok() { r.new_addr } else { None };
                direct.move_bar(mv.address, r.index, base);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SlotAllocator;
    use crate::vfio::bar_map::DirectArea;
    use devices::Bus;
    use hypervisor::fake::FakeHypervisor;
    use hypervisor::Hypervisor;
    use pci::vfio::HostMapping;
    use pci::{BarKind, BarReprogram, PciAddress, PciDevice};
    use std::sync::Mutex;

    struct NoDevice;
    impl PciDevice for NoDevice {
        fn read_config_register(&mut self, _: usize) -> u32 {
            0
        }
        fn write_config_register(&mut self, _: usize, _: u64, _: &[u8]) -> pci::ConfigWriteResult {
            Default::default()
        }
        fn read_bar(&mut self, _: usize, _: u64, _: &mut [u8]) {}
        fn write_bar(&mut self, _: usize, _: u64, _: &[u8]) {}
        fn bars(&self) -> Vec<pci::BarInfo> {
            Vec::new()
        }
    }

    #[test]
    fn bus_and_slots_move_together_and_a_refused_address_gets_no_slot() {
        let hv = FakeHypervisor::new();
        let vm = hv.create_vm().unwrap();
        let mmio = Arc::new(Bus::new());
        let bus = BusBarRelocator::new(Arc::new(Bus::new()), mmio.clone())
            .with_reserved_mmio(vec![(0, 0x8000_0000)]);
        let mapper = Arc::new(BarMapper::new(vm, Arc::new(SlotAllocator::new(1))));
        let dev = PciAddress::new(0, 1, 0);
        mapper.register(
            dev,
            0,
            vec![DirectArea {
                offset: 0,
                mapping: HostMapping::anonymous(0x1000).unwrap(),
            }],
        );
        let reloc = SegmentRelocator::new(bus, Some(mapper.clone()));
        let device: Arc<Mutex<dyn PciDevice>> = Arc::new(Mutex::new(NoDevice));
        let mv = |old, new| BarMove {
            address: dev,
            device: &device,
            reprogram: BarReprogram {
                index: 0,
                kind: BarKind::Mem32,
                old_addr: old,
                new_addr: new,
                size: 0x2000,
            },
        };
        reloc.move_bar(&mv(None, Some(0xc000_0000))).unwrap();
        assert_eq!(mapper.slots_of(dev, 0)[0].guest_phys_addr, 0xc000_0000);
        let mut b = [0u8; 4];
        assert!(
            mmio.read(0xc000_1000, &mut b),
            "the rest of the BAR is on the bus"
        );
        // Moved onto RAM: refused, and the old slot is gone.
        assert!(reloc
            .move_bar(&mv(Some(0xc000_0000), Some(0x1000_0000)))
            .is_err());
        assert!(mapper.slots_of(dev, 0).is_empty());
        assert!(!mmio.read(0xc000_1000, &mut b));
        // A BAR without direct areas only goes on the bus.
        let r = SegmentRelocator::new(
            BusBarRelocator::new(Arc::new(Bus::new()), Arc::new(Bus::new())),
            None,
        );
        r.move_bar(&mv(None, Some(0xd000_0000))).unwrap();
    }
}
