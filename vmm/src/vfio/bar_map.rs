//! BAR areas of passed-through devices mapped straight into the guest: each area (an mmapped
//! part of a VFIO region) becomes a KVM memory slot at the BAR's guest address, and follows
//! the BAR when the guest moves it.
//!
//! With more than one device the areas are also DMA-mapped at their guest address, so devices
//! can reach each other's BARs (GPU peer-to-peer). That mapping is not made on every move:
//! pinning a large BAR walks it page by page (a 64 GiB BAR took 50-80 s in the nested lab,
//! and a guest toggles decoding several times while it enumerates). Moves only mark the
//! mapping stale; the `vfio` thread brings it up to date ([`BarMapper::sync_peer_dma`]) once
//! a guest driver has enabled bus mastering, so enumeration costs nothing.
//!
//! The whole BAR is also on the MMIO bus (see [`super::relocator`]): whatever is not a slot
//! (MSI-X pages, sub-page BARs, an area KVM refused) exits to the VMM and is forwarded, so a
//! failed slot costs speed, never correctness.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
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

type BarKey = (PciAddress, usize);

#[derive(Default)]
struct Bar {
    areas: Vec<DirectArea>,
    /// Slots in the hypervisor now.
    live: Vec<MemoryRegion>,
}

/// A peer-to-peer DMA mapping: IOVA, size, host address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PeerMap {
    iova: u64,
    size: u64,
    host: u64,
}

/// The directly mapped BAR areas of every passed-through device.
pub struct BarMapper {
    vm: Arc<dyn Vm>,
    slots: Arc<SlotAllocator>,
    bars: Mutex<HashMap<BarKey, Bar>>,
    /// Where to DMA-map BARs for peer-to-peer; `None` with a single device.
    peer: Mutex<Option<Arc<dyn DmaMapper>>>,
    /// A slot moved since the last [`BarMapper::sync_peer_dma`].
    peer_stale: AtomicBool,
    /// What is DMA-mapped now (touched by the sync, on the vfio thread, and by teardown and
    /// device removal).
    peer_maps: Mutex<HashMap<BarKey, Vec<PeerMap>>>,
    /// Set while a device is being removed: a peer-to-peer sync in progress (which can take
    /// long: a 64 GiB BAR is pinned chunk by chunk) stops at its next chunk and leaves the
    /// rest to a later sync, so the removal does not wait for it.
    removing: AtomicBool,
    /// Failed attempts per BAR area (by IOVA): a mapping that keeps failing is retried
    /// [`PEER_ATTEMPTS`] times, then given up with a warning until the BAR moves.
    peer_failures: Mutex<HashMap<u64, u32>>,
}

/// How many syncs try a peer-to-peer mapping that fails before it is given up.
pub const PEER_ATTEMPTS: u32 = 5;

impl BarMapper {
    pub fn new(vm: Arc<dyn Vm>, slots: Arc<SlotAllocator>) -> Self {
        BarMapper {
            vm,
            slots,
            bars: Mutex::new(HashMap::new()),
            peer: Mutex::new(None),
            peer_stale: AtomicBool::new(false),
            peer_maps: Mutex::new(HashMap::new()),
            removing: AtomicBool::new(false),
            peer_failures: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<BarKey, Bar>> {
        self.bars.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep BAR areas DMA-mapped at their guest address (several devices: P2P).
    pub fn enable_peer_dma(&self, dma: Arc<dyn DmaMapper>) {
        *self.peer.lock().unwrap_or_else(|e| e.into_inner()) = Some(dma);
        self.peer_stale.store(true, Ordering::Release);
    }

    fn peer(&self) -> Option<Arc<dyn DmaMapper>> {
        self.peer.lock().unwrap_or_else(|e| e.into_inner()).clone()
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
            .map(|b| b.live.clone())
            .unwrap_or_default()
    }

    fn remove_slots(&self, bar: &mut Bar) {
        for region in bar.live.drain(..) {
            match self.vm.remove_memory_region(region) {
                Ok(()) => self.slots.free(region.slot),
                Err(e) => log::warn!("vfio: removing BAR slot {}: {e}", region.slot),
            }
        }
    }

    fn add_slot(&self, area: &DirectArea, gpa: u64) -> Option<MemoryRegion> {
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
        // SAFETY: the mapping lives in this mapper until the slot is removed (teardown).
        if let Err(e) = unsafe { self.vm.set_memory_region(region) } {
            log::warn!(
                "vfio: BAR area at {gpa:#x} (+{:#x}) stays trapped: {e}",
                region.size
            );
            self.slots.free(slot);
            return None;
        }
        Some(region)
    }

    /// The BAR now decodes at `base` (`None`: not at all): move its slots there.
    pub fn move_bar(&self, device: PciAddress, bar: usize, base: Option<u64>) {
        let mut bars = self.lock();
        let Some(b) = bars.get_mut(&(device, bar)) else {
            return;
        };
        self.remove_slots(b);
        if let Some(base) = base {
            let mut live = Vec::with_capacity(b.areas.len());
            for area in &b.areas {
                if let Some(gpa) = base.checked_add(area.offset) {
                    live.extend(self.add_slot(area, gpa));
                }
            }
            b.live = live;
        }
        self.peer_stale.store(true, Ordering::Release);
    }

    /// Whether the peer-to-peer DMA mappings lag behind the slots.
    pub fn peer_dma_stale(&self) -> bool {
        self.peer_stale.load(Ordering::Acquire) && self.peer().is_some()
    }

    fn wanted_peer_maps(&self) -> HashMap<BarKey, Vec<PeerMap>> {
        self.lock()
            .iter()
            .map(|(key, b)| {
                let maps = b.live.iter().map(|r| PeerMap {
                    iova: r.guest_phys_addr,
                    size: r.size,
                    host: r.host_addr,
                });
                (*key, maps.collect())
            })
            .collect()
    }

    /// Brings the peer-to-peer DMA mappings in line with the slots: unmaps what moved away,
    /// maps what is new. Runs on the vfio thread; the BAR lock is not held while mapping.
    /// Large areas are mapped 256 MiB at a time and `stop` is asked between chunks (the VM is
    /// ending); what is mapped so far is remembered, so teardown unmaps it.
    pub fn sync_peer_dma(&self, stop: &dyn Fn() -> bool) {
        let Some(dma) = self.peer() else {
            return;
        };
        let stop = &|| stop() || self.removing.load(Ordering::Acquire);
        self.peer_stale.store(false, Ordering::Release);
        let wanted = self.wanted_peer_maps();
        let mut current = self.peer_maps.lock().unwrap_or_else(|e| e.into_inner());
        for (key, maps) in current.iter_mut() {
            let keep = wanted.get(key).cloned().unwrap_or_default();
            // A partial mapping of an area still wanted stays, to go on from.
            let kept = |m: &PeerMap| {
                keep.iter()
                    .any(|k| k.iova == m.iova && k.host == m.host && k.size >= m.size)
            };
            maps.retain(|m| kept(m) || !unmap_peer(dma.as_ref(), m));
        }
        let mut mapped = 0;
        let mut failures = self.peer_failures.lock().unwrap_or_else(|e| e.into_inner());
        for (key, maps) in wanted {
            let have = current.entry(key).or_default();
            let new: Vec<PeerMap> = maps.into_iter().filter(|m| !have.contains(m)).collect();
            for m in new {
                let tries = failures.get(&m.iova).copied().unwrap_or(0);
                if tries >= PEER_ATTEMPTS {
                    continue;
                }
                // A mapping an earlier sync left partial goes on from where it stopped.
                let partial = have
                    .iter()
                    .position(|p| p.iova == m.iova && p.host == m.host && p.size < m.size);
                let from = partial.map_or(0, |i| have[i].size);
                let done = from + map_peer(dma.as_ref(), &m, from, stop);
                mapped += done - from;
                match partial {
                    Some(i) => have[i].size = done,
                    None if done > 0 => have.push(PeerMap { size: done, ..m }),
                    None => {}
                }
                if done < m.size {
                    if stop() {
                        // Stopped: a later sync goes on.
                        self.peer_stale.store(true, Ordering::Release);
                        return;
                    }
                    let tries = tries + 1;
                    failures.insert(m.iova, tries);
                    if tries < PEER_ATTEMPTS {
                        self.peer_stale.store(true, Ordering::Release);
                    } else {
                        log::warn!(
                            "vfio: peer-to-peer DMA to the BAR at {:#x} given up after {tries} \
                             attempts ({} of {} mapped): devices DMA-ing there will fault",
                            m.iova,
                            pci::format_size(done),
                            pci::format_size(m.size)
                        );
                    }
                } else {
                    failures.remove(&m.iova);
                }
                if stop() {
                    return;
                }
            }
        }
        if mapped > 0 {
            log::info!(
                "vfio: peer-to-peer DMA: {} of BARs mapped at their guest addresses",
                pci::format_size(mapped)
            );
        }
    }

    /// Removes every DMA mapping and slot of `device`, and forgets its areas (teardown).
    pub fn remove_device(&self, device: PciAddress) {
        if let Some(dma) = self.peer() {
            self.removing.store(true, Ordering::Release);
            let mut current = self.peer_maps.lock().unwrap_or_else(|e| e.into_inner());
            self.removing.store(false, Ordering::Release);
            for (_, maps) in current.iter_mut().filter(|(k, _)| k.0 == device) {
                maps.retain(|m| !unmap_peer(dma.as_ref(), m));
            }
        }
        let mut bars = self.lock();
        let keys: Vec<_> = bars.keys().filter(|k| k.0 == device).copied().collect();
        for key in keys {
            if let Some(mut b) = bars.remove(&key) {
                self.remove_slots(&mut b);
            }
        }
    }
}

/// Peer-to-peer mappings are made this much at a time (type1 pins a BAR page by page on
/// kernels before huge-pfnmap support: a stop request waits for one chunk at most).
const PEER_CHUNK: u64 = 256 << 20;

/// Maps `m` from byte `from` chunk by chunk until done, failed or `stop`; returns the bytes
/// mapped by this call.
fn map_peer(dma: &dyn DmaMapper, m: &PeerMap, from: u64, stop: &dyn Fn() -> bool) -> u64 {
    let mut done = from;
    while done < m.size && !stop() {
        let len = PEER_CHUNK.min(m.size - done);
        let host = (m.host + done) as *mut u8;
        // SAFETY: the host mapping belongs to a registered area, which lives until teardown,
        // and teardown unmaps this DMA mapping first.
        if let Err(e) = unsafe { dma.map(m.iova + done, len, host) } {
            log::warn!("vfio: P2P DMA map of BAR at {:#x}: {e}", m.iova + done);
            break;
        }
        done += len;
    }
    done - from
}

/// Unmaps `m`; true when it is gone.
fn unmap_peer(dma: &dyn DmaMapper, m: &PeerMap) -> bool {
    match dma.unmap(m.iova, m.size) {
        Ok(()) => true,
        Err(e) => {
            log::debug!("vfio: P2P unmap of {:#x}: {e}", m.iova);
            false
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
        assert!(!m.peer_dma_stale(), "no peer DMA with one device");
    }

    #[test]
    fn large_peer_maps_go_in_chunks_and_stop_when_told() {
        let hv = FakeHypervisor::new();
        let vm = hv.create_vm().unwrap();
        let m = BarMapper::new(vm, Arc::new(SlotAllocator::new(1)));
        let dma = Arc::new(FakeDma::default());
        m.enable_peer_dma(dma.clone());
        let dev = PciAddress::new(0, 5, 0);
        m.register(dev, 2, vec![area(0, 4 << 30)]);
        m.move_bar(dev, 2, Some(64 << 30));
        let calls = std::sync::atomic::AtomicUsize::new(0);
        // Told to stop after two chunks: 512 MiB mapped, remembered, and still stale.
        m.sync_peer_dma(&|| calls.fetch_add(1, Ordering::SeqCst) >= 2);
        assert_eq!(dma.maps.lock().unwrap().len(), 2);
        assert!(m.peer_dma_stale());
        m.remove_device(dev);
        assert_eq!(*dma.unmaps.lock().unwrap(), vec![(64 << 30, 512 << 20)]);
    }

    #[test]
    fn peer_dma_follows_the_slots_only_when_synced() {
        let hv = FakeHypervisor::new();
        let vm = hv.create_vm().unwrap();
        let m = BarMapper::new(vm, Arc::new(SlotAllocator::new(1)));
        let dma = Arc::new(FakeDma::default());
        m.enable_peer_dma(dma.clone());
        let dev = PciAddress::new(0, 4, 0);
        m.register(dev, 2, vec![area(0, 0x10000)]);
        // Enumeration toggles decoding a few times: nothing is DMA-mapped meanwhile.
        for _ in 0..3 {
            m.move_bar(dev, 2, Some(0x40_0000_0000));
            m.move_bar(dev, 2, None);
        }
        m.move_bar(dev, 2, Some(0x40_0000_0000));
        assert!(dma.maps.lock().unwrap().is_empty());
        assert!(m.peer_dma_stale());
        m.sync_peer_dma(&|| false);
        assert!(!m.peer_dma_stale());
        assert_eq!(*dma.maps.lock().unwrap(), vec![(0x40_0000_0000, 0x10000)]);
        m.sync_peer_dma(&|| false); // nothing changed: nothing done
        assert_eq!(dma.maps.lock().unwrap().len(), 1);
        // A later move: the next sync unmaps the old IOVA and maps the new one.
        m.move_bar(dev, 2, Some(0x80_0000_0000));
        m.sync_peer_dma(&|| false);
        assert_eq!(*dma.unmaps.lock().unwrap(), vec![(0x40_0000_0000, 0x10000)]);
        assert_eq!(dma.maps.lock().unwrap()[1], (0x80_0000_0000, 0x10000));
        // Teardown removes the DMA mapping and the slot.
        m.remove_device(dev);
        assert!(!m.has(dev, 2));
        assert_eq!(dma.unmaps.lock().unwrap().len(), 2);
        let removed = hv
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::RemoveMemoryRegion(_)))
            .count();
        assert_eq!(removed, 5);
    }

    #[test]
    fn a_failing_peer_mapping_goes_on_from_where_it_stopped_and_is_given_up_after_a_few_tries() {
        let hv = FakeHypervisor::new();
        let vm = hv.create_vm().unwrap();
        let m = BarMapper::new(vm, Arc::new(SlotAllocator::new(1)));
        let bar = 0x40_0000_0000u64;
        // 1 GiB area: four 256 MiB chunks; the third fails every time.
        let dma = Arc::new(FakeDma {
            fail_at: Some(bar + 2 * PEER_CHUNK),
            ..Default::default()
        });
        m.enable_peer_dma(dma.clone());
        let dev = PciAddress::new(0, 4, 0);
        m.register(dev, 2, vec![area(0, 1 << 30)]);
        m.move_bar(dev, 2, Some(bar));
        for _ in 0..10 {
            if m.peer_dma_stale() {
                m.sync_peer_dma(&|| false);
            }
        }
        // The first two chunks were mapped once, never again from zero, and the failing one
        // was tried PEER_ATTEMPTS times in all, then given up (no longer stale).
        let maps = dma.maps.lock().unwrap().clone();
        assert_eq!(
            maps,
            vec![(bar, PEER_CHUNK), (bar + PEER_CHUNK, PEER_CHUNK)]
        );
        assert!(!m.peer_dma_stale());
        assert!(
            dma.unmaps.lock().unwrap().is_empty(),
            "the partial mapping stays"
        );
        assert_eq!(
            m.peer_failures.lock().unwrap().get(&bar).copied(),
            Some(PEER_ATTEMPTS)
        );
    }
}
