//! BAR areas of passed-through devices mapped straight into the guest: each area (an mmapped
//! part of a VFIO region) becomes a KVM memory slot at the BAR's guest address, and follows
//! the BAR when the guest moves it. With more than one device, the areas are also DMA-mapped
//! at their guest address so devices can reach each other's BARs (peer-to-peer).
//!
//! The whole BAR is also on the MMIO bus (see [`super::relocator`]): whatever is not a slot
//! (MSI-X pages, sub-page BARs, an area KVM refused) exits to the VMM and is forwarded, so a
//! failed slot costs speed, never correctness.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use hypervisor::{MemoryRegion, Vm};
use pci::vfio::HostMapping;
use pci::PciAddress;

use super::dma::DmaMapper;
use crate::memory::SlotAllocator;

/// One mapped part of a BAR: its offset in the BAR and the host mapping of it.
pub struct DirectArea {
    pub offset: u64,
    pub mapping: HostMapping,
}

#[derive(Default)]
struct Bar {
    areas: Vec<DirectArea>,
    /// Slots in the hypervisor now, and whether each is DMA-mapped too.
    live: Vec<(MemoryRegion, bool)>,
}

/// The directly mapped BAR areas of every passed-through device.
pub struct BarMapper {
    vm: Arc<dyn Vm>,
    slots: Arc<SlotAllocator>,
    /// Where to DMA-map BARs for peer-to-peer; `None` with a single device.
    peer_dma: Mutex<Option<Arc<dyn DmaMapper>>>,
    bars: Mutex<HashMap<(PciAddress, usize), Bar>>,
}

impl BarMapper {
    pub fn new(vm: Arc<dyn Vm>, slots: Arc<SlotAllocator>) -> Self {
        BarMapper {
            vm,
            slots,
            peer_dma: Mutex::new(None),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(PciAddress, usize), Bar>> {
        self.bars.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// DMA-map BAR areas at their guest address from now on (several devices: P2P).
    pub fn enable_peer_dma(&self, dma: Arc<dyn DmaMapper>) {
        *self.peer_dma.lock().unwrap_or_else(|e| e.into_inner()) = Some(dma);
    }

    fn peer_dma(&self) -> Option<Arc<dyn DmaMapper>> {
        self.peer_dma
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Areas of BAR `bar` of `device` to map while the BAR decodes.
    pub fn register(&self, device: PciAddress, bar: usize, areas: Vec<DirectArea>) {
        self.lock()
            .entry((device, bar))
            .or_default()
            .areas
            .extend(areas);
    }

    /// Whether BAR `bar` of `device` has areas here.
    pub fn has(&self, device: PciAddress, bar: usize) -> bool {
        self.lock().contains_key(&(device, bar))
    }

    /// The slots of BAR `bar` now (for tests and logs).
    pub fn slots_of(&self, device: PciAddress, bar: usize) -> Vec<MemoryRegion> {
        self.lock()
            .get(&(device, bar))
            .map(|b| b.live.iter().map(|l| l.0).collect())
            .unwrap_or_default()
    }

    fn unmap(&self, bar: &mut Bar, dma: Option<&Arc<dyn DmaMapper>>) {
        for (region, dma_mapped) in bar.live.drain(..) {
            if let (true, Some(d)) = (dma_mapped, dma) {
                if let Err(e) = d.unmap(region.guest_phys_addr, region.size) {
                    log::debug!("vfio: P2P unmap of {:#x}: {e}", region.guest_phys_addr);
                }
            }
            match self.vm.remove_memory_region(region) {
                Ok(()) => self.slots.free(region.slot),
                Err(e) => log::warn!("vfio: removing BAR slot {}: {e}", region.slot),
            }
        }
    }

    fn map_area(
        &self,
        area: &DirectArea,
        gpa: u64,
        dma: Option<&Arc<dyn DmaMapper>>,
    ) -> Option<(MemoryRegion, bool)> {
        let Some(slot) = self.slots.allocate() else {
            log::warn!("vfio: out of memory slots; BAR area at {gpa:#x} stays trapped");
            return None;
        };
        let region = MemoryRegion {
            slot,
            guest_phys_addr: gpa,
            size: area.mapping.len() as u64,
            host_addr: area.mapping.as_ptr() as u64,
            readonly: false,
        };
        // SAFETY: the mapping lives in this mapper until the slot is removed (unmap/clear).
        if let Err(e) = unsafe { self.vm.set_memory_region(region) } {
            log::warn!(
                "vfio: BAR area at {gpa:#x} (+{:#x}) stays trapped: {e}",
                region.size
            );
            self.slots.free(slot);
            return None;
        }
        // SAFETY: as above, the host mapping outlives the DMA mapping (unmapped first).
        let dma_mapped = dma.is_some_and(|d| {
            unsafe { d.map(gpa, region.size, area.mapping.as_ptr()) }
                .map_err(|e| log::warn!("vfio: P2P DMA map of BAR at {gpa:#x}: {e}"))
                .is_ok()
        });
        Some((region, dma_mapped))
    }

    /// The BAR now decodes at `base` (`None`: not at all): move its slots there.
    pub fn move_bar(&self, device: PciAddress, bar: usize, base: Option<u64>) {
        let dma = self.peer_dma();
        let mut bars = self.lock();
        let Some(b) = bars.get_mut(&(device, bar)) else {
            return;
        };
        self.unmap(b, dma.as_ref());
        let Some(base) = base else {
            return;
        };
        let mut live = Vec::with_capacity(b.areas.len());
        for area in &b.areas {
            if let Some(gpa) = base.checked_add(area.offset) {
                live.extend(self.map_area(area, gpa, dma.as_ref()));
            }
        }
        b.live = live;
    }

    /// Removes every slot and DMA mapping, and forgets the areas of `device` (teardown).
    pub fn remove_device(&self, device: PciAddress) {
        let dma = self.peer_dma();
        let mut bars = self.lock();
        let keys: Vec<_> = bars.keys().filter(|k| k.0 == device).copied().collect();
        for key in keys {
            if let Some(mut b) = bars.remove(&key) {
                self.unmap(&mut b, dma.as_ref());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfio::dma::tests::FakeDma;
    use hypervisor::fake::{Call, FakeHypervisor};
    use hypervisor::Hypervisor;

    fn area(offset: u64, len: usize) -> DirectArea {
        DirectArea {
            offset,
            mapping: HostMapping::anonymous(len).unwrap(),
        }
    }

    #[test]
    fn areas_become_slots_that_follow_the_bar() {
        let hv = FakeHypervisor::new();
        let vm = hv.create_vm().unwrap();
        let m = BarMapper::new(vm, Arc::new(SlotAllocator::new(2)));
        let dev = PciAddress::new(0, 3, 0);
        m.register(dev, 0, vec![area(0, 0x3000), area(0x4000, 0xc000)]);
        assert!(m.has(dev, 0) && !m.has(dev, 1));
        m.move_bar(dev, 0, Some(0xc000_0000));
        let slots = m.slots_of(dev, 0);
        let got: Vec<(u32, u64, u64)> = slots
            .iter()
            .map(|r| (r.slot, r.guest_phys_addr, r.size))
            .collect();
        assert_eq!(
            got,
            vec![(2, 0xc000_0000, 0x3000), (3, 0xc000_4000, 0xc000)]
        );
        // The guest moves the BAR: old slots go, new ones come (numbers reused).
        m.move_bar(dev, 0, Some(0xd000_0000));
        let calls = hv.calls();
        assert!(calls.contains(&Call::RemoveMemoryRegion(slots[0])));
        assert!(calls.contains(&Call::RemoveMemoryRegion(slots[1])));
        let moved: Vec<u64> = m
            .slots_of(dev, 0)
            .iter()
            .map(|r| r.guest_phys_addr)
            .collect();
        assert_eq!(moved, vec![0xd000_0000, 0xd000_4000]);
        // Decoding off: no slots.
        m.move_bar(dev, 0, None);
        assert!(m.slots_of(dev, 0).is_empty());
        m.move_bar(PciAddress::new(0, 9, 0), 0, Some(0)); // unknown BARs are ignored
    }

    #[test]
    fn peer_to_peer_dma_maps_follow_the_bar_and_teardown_removes_everything() {
        let hv = FakeHypervisor::new();
        let vm = hv.create_vm().unwrap();
        let m = BarMapper::new(vm, Arc::new(SlotAllocator::new(1)));
        let dma = Arc::new(FakeDma::default());
        m.enable_peer_dma(dma.clone());
        let dev = PciAddress::new(0, 4, 0);
        m.register(dev, 2, vec![area(0, 0x10000)]);
        m.move_bar(dev, 2, Some(0x40_0000_0000));
        m.move_bar(dev, 2, Some(0x80_0000_0000));
        assert_eq!(
            *dma.maps.lock().unwrap(),
            vec![(0x40_0000_0000, 0x10000), (0x80_0000_0000, 0x10000)]
        );
        assert_eq!(*dma.unmaps.lock().unwrap(), vec![(0x40_0000_0000, 0x10000)]);
        m.remove_device(dev);
        assert!(!m.has(dev, 2));
        assert_eq!(dma.unmaps.lock().unwrap().len(), 2);
        let removed = hv
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::RemoveMemoryRegion(_)))
            .count();
        assert_eq!(removed, 2);
    }
}
