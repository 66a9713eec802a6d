//! Putting one VFIO device on the PCI segment: probe it, place its BARs, give it MSI/MSI-X
//! vector groups and its INTx line, mmap the BAR areas that can be mapped straight into the
//! guest, and add it to the bus. Works on any [`VfioDeviceOps`], so it is tested with the fake
//! device.

use std::sync::{Arc, Mutex};

use hypervisor::Vm;
use log::info;
use pci::vfio::{
    DeviceGate, IntxResources, MsiResources, VfioDeviceOps, VfioPciDevice, VfioPciError,
    VfioPciInfo, VfioPciParams,
};
use pci::{BarConfig, BarKind, PciAddress, PcieLink};
use vmm_sys_util::eventfd::EventFd;

use super::bar_map::{BarMapper, DirectArea};
use crate::interrupts::KvmMsiGroup;
use crate::pci_setup::{PciSegments, PciSetupError};

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("{name}: {source}")]
    Probe { name: String, source: VfioPciError },
    #[error("{name}: {source}")]
    Pci { name: String, source: PciSetupError },
    #[error("{name}: wiring INTx to GSI {gsi}: {source}")]
    Intx {
        name: String,
        gsi: u32,
        source: std::io::Error,
    },
    #[error("{name}: mapping BAR {bar} at +{offset:#x}: {source}")]
    Mmap {
        name: String,
        bar: usize,
        offset: u64,
        source: std::io::Error,
    },
    #[error(
        "{name}: root_port=on and numa_node are for devices the VM boots with; a hot-added \
         device goes in an ACPI hotplug slot on bus 0 (leave them out, or add the device to \
         vm.create)"
    )]
    HotRootPort { name: String },
}

/// A device on the bus.
pub struct Attached {
    pub address: PciAddress,
    pub model: Arc<Mutex<VfioPciDevice>>,
}

/// What the device needs from the VMM besides the PCI segment.
pub struct AttachParams<'a> {
    pub vm: &'a dyn Vm,
    pub mapper: &'a BarMapper,
    pub gate: Arc<dyn DeviceGate>,
    pub gpudirect_clique: Option<u8>,
    /// Behind a PCI Express root port of its own (None: 3D controllers only).
    pub root_port: Option<bool>,
    /// The host device's link, which the root port reports.
    pub link: PcieLink,
    /// The device is hot-added to a running VM (it cannot go behind a root port).
    pub hot: bool,
    /// Behind a root port on this expander host bridge's root bus (the device's guest NUMA
    /// node); implies a root port.
    pub expander: Option<u8>,
    /// The PCI segment the device goes on (0 with an expander).
    pub segment: u16,
    /// Its slot on the segment's bus 0 (`pci_device_id`; its root port's, behind one), else
    /// the lowest free one. Not with an expander.
    pub slot: Option<u8>,
}

/// PCI class 0x0302: 3D controller (NVIDIA's and AMD's data-centre GPUs).
const CLASS_3D_CONTROLLER: u32 = 0x0302;

/// Whether the device goes behind a root port: as asked, else 3D controllers at boot.
fn behind_root_port(
    name: &str,
    info: &VfioPciInfo,
    p: &AttachParams<'_>,
) -> Result<bool, AttachError> {
    let class = u32::from(info.config.get(0x0b).copied().unwrap_or(0)) << 8
        | u32::from(info.config.get(0x0a).copied().unwrap_or(0));
    match (p.root_port, p.hot) {
        (Some(true), true) => Err(AttachError::HotRootPort { name: name.into() }),
        _ if p.hot && p.expander.is_some() => Err(AttachError::HotRootPort { name: name.into() }),
        (Some(b), _) => Ok(b),
        (None, hot) => Ok(!hot && class == CLASS_3D_CONTROLLER),
    }
}

fn resources(
    pci: &PciSegments,
    vectors: Option<u16>,
) -> Result<Option<MsiResources>, PciSetupError> {
    let Some(vectors) = vectors else {
        return Ok(None);
    };
    let group: Arc<KvmMsiGroup> = pci.msi_group(vectors)?;
    let eventfds: Vec<EventFd> = (0..vectors).filter_map(|v| group.eventfd(v)).collect();
    Ok(Some(MsiResources { group, eventfds }))
}

/// The device's INTx pin (1..=4) as a level-triggered IOAPIC GSI routed by the DSDT's `_PRT`:
/// a KVM irqfd with a resample eventfd, so the guest's EOI lets VFIO unmask the line.
fn intx(vm: &dyn Vm, gsi: u32) -> std::io::Result<IntxResources> {
    let trigger = EventFd::new(libc::EFD_NONBLOCK)?;
    let resample = EventFd::new(libc::EFD_NONBLOCK)?;
    vm.register_irqfd_with_resample(&trigger, &resample, gsi)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(IntxResources { trigger, resample })
}

fn describe(bars: &[BarConfig]) -> String {
    bars.iter()
        .map(|b| {
            let kind = match (b.kind, b.prefetchable) {
                (BarKind::Io, _) => "io",
                (BarKind::Mem32, _) => "mem32",
                (BarKind::Mem64, true) => "mem64-pref",
                (BarKind::Mem64, false) => "mem64",
            };
            format!(
                "BAR{} {kind} {} @{:#x}",
                b.index,
                pci::format_size(b.size),
                b.addr
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// mmaps the model's mappable BAR areas and hands them to `mapper`.
fn map_areas(
    name: &str,
    ops: &dyn VfioDeviceOps,
    model: &VfioPciDevice,
    address: PciAddress,
    mapper: &BarMapper,
) -> Result<usize, AttachError> {
    let areas = model.mappable_areas();
    for area in &areas {
        let mapping = ops
            .mmap_region(area.bar as u32, area.offset, area.size)
            .map_err(|source| AttachError::Mmap {
                name: name.into(),
                bar: area.bar,
                offset: area.offset,
                source,
            })?;
        let direct = DirectArea {
            offset: area.offset,
            mapping,
        };
        mapper.register(address, area.bar, vec![direct]);
    }
    Ok(areas.len())
}

/// Probes `ops` and puts the device on `pci`; its mappable BAR areas go to `p.mapper`.
pub fn attach(
    name: &str,
    ops: Arc<dyn VfioDeviceOps>,
    pci: &PciSegments,
    p: AttachParams<'_>,
) -> Result<Attached, AttachError> {
    let probe_err = |source| AttachError::Probe {
        name: name.into(),
        source,
    };
    let pci_err = |source| AttachError::Pci {
        name: name.into(),
        source,
    };
    let info = VfioPciInfo::probe(ops.as_ref()).map_err(probe_err)?;
    let asked = behind_root_port(name, &info, &p)?;
    let port = p.expander.is_some() || asked;
    // Bus 0's next slot (or the expander root bus's): the device's, or its root port's (the
    // device is then device 0 of the port's secondary bus, and its INTx swizzles to the
    // port's slot).
    let address = match p.expander {
        Some(root) => PciAddress::new(
            root,
            pci.bus
                .next_port_slot_on(root)
                .ok_or_else(|| pci_err(PciSetupError::NoSlot))?,
            0,
        ),
        None => pci.address_on(p.segment, p.slot).map_err(pci_err)?,
    };
    let bars = if port {
        // Unassigned: the guest sizes the port's windows and places them.
        info.bars
            .iter()
            .map(|b| BarConfig {
                index: b.index,
                size: b.size,
                kind: b.kind,
                prefetchable: b.prefetchable,
                addr: 0,
            })
            .collect()
    } else {
        pci.allocate_bars(address, &info.bars).map_err(pci_err)?
    };
    let msi = resources(pci, info.msi_vectors()).map_err(pci_err)?;
    let msix = resources(pci, info.msix_vectors()).map_err(pci_err)?;
    let gsi = arch::acpi::pci_intx_gsi(address.device, info.intx_pin.saturating_sub(1));
    let intx = match info.intx_pin {
        0 => None,
        _ => Some(intx(p.vm, gsi).map_err(|source| AttachError::Intx {
            name: name.into(),
            gsi,
            source,
        })?),
    };
    let params = VfioPciParams {
        ops: ops.clone(),
        bars: bars.clone(),
        msi,
        msix,
        gate: p.gate,
        gpudirect_clique: p.gpudirect_clique,
        assigned: !port,
    };
    let model = VfioPciDevice::with_intx(&info, params, intx).map_err(probe_err)?;
    let model = Arc::new(Mutex::new(model));
    let areas = |address| {
        let m = model.lock().unwrap_or_else(|e| e.into_inner());
        map_areas(name, ops.as_ref(), &m, address, p.mapper)
    };
    let (address, place, areas) = if port {
        // Its BARs are unassigned: nothing is mapped until the guest places them, so the
        // areas can be registered once the device has its address behind the port.
        let (port_at, at) = pci
            .add_behind_root_port((p.segment, p.slot), p.expander, p.link, model.clone())
            .map_err(pci_err)?;
        let n = match areas(at) {
            Ok(n) => n,
            Err(e) => {
                if port_at.bus == 0 {
                    let _ = pci.remove(port_at);
                }
                return Err(e);
            }
        };
        let place = format!(
            " behind root port {port_at} (link {} x{})",
            PcieLink::speed_text(p.link.speed),
            p.link.width
        );
        (at, place, n)
    } else {
        // Areas first: adding the device maps the BARs it decodes.
        let n = areas(address)?;
        pci.add(address, model.clone()).map_err(pci_err)?;
        (address, String::new(), n)
    };
    let pin = match info.intx_pin {
        0 => "none".to_string(),
        n => format!("INT{} on GSI {gsi}", (b'A' + n - 1) as char),
    };
    info!(
        "vfio: {name} ({:04x}:{:04x}) at {address}{place}: {}; {areas} direct BAR area(s); \
         MSI {:?}, MSI-X {:?}, INTx {pin}",
        info.vendor_id(),
        info.device_id(),
        describe(&bars),
        info.msi_vectors(),
        info.msix_vectors(),
    );
    Ok(Attached { address, model })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupts::GsiRouter;
    use crate::memory::SlotAllocator;
    use crate::vcpu::exit::Buses;
    use arch::layout::{MemoryLayout, PCI_ECAM_START};
    use hypervisor::fake::{Call, FakeHypervisor};
    use hypervisor::Hypervisor;
    use pci::vfio::{FakeVfioCall, FakeVfioDevice, OpenGate, RegionInfo, VfioIrqKind};
    use pci::PciDevice;

    struct World {
        hv: FakeHypervisor,
        vm: Arc<dyn hypervisor::Vm>,
        buses: Buses,
        pci: PciSegments,
        mapper: Arc<BarMapper>,
    }

    fn world() -> World {
        let hv = FakeHypervisor::new();
        let vm = hv.create_vm().unwrap();
        let buses = Buses::default();
        let layout = MemoryLayout::new(1 << 30, 40).unwrap();
        let mapper = Arc::new(BarMapper::new(vm.clone(), Arc::new(SlotAllocator::new(1))));
        let router = Arc::new(GsiRouter::new(vm.clone()));
        let pci =
            PciSegments::with_bar_mapper(vm.clone(), router, &buses, &layout, Some(mapper.clone()))
                .unwrap();
        World {
            hv,
            vm,
            buses,
            pci,
            mapper,
        }
    }

    impl World {
        fn params(&self) -> AttachParams<'_> {
            AttachParams {
                vm: self.vm.as_ref(),
                mapper: &self.mapper,
                gate: Arc::new(OpenGate),
                gpudirect_clique: None,
                root_port: None,
                link: PcieLink::default(),
                hot: false,
                expander: None,
                segment: 0,
                slot: None,
            }
        }
    }

    fn region(size: u64, mmappable: bool) -> RegionInfo {
        RegionInfo {
            size,
            readable: true,
            writable: true,
            mmappable,
            sparse_areas: None,
        }
    }

    /// ivshmem-plain as QEMU builds it: BAR0 256 bytes of registers, BAR2 64-bit prefetchable
    /// shared memory (here 64 GiB), no capabilities.
    fn ivshmem() -> Arc<FakeVfioDevice> {
        let mut cfg = vec![0u8; 256];
        cfg[..4].copy_from_slice(&[0xf4, 0x1a, 0x10, 0x11]);
        cfg[0x0a..0x0c].copy_from_slice(&[0x00, 0x05]);
        cfg[0x18] = 0x0c;
        Arc::new(
            FakeVfioDevice::new(cfg)
                .with_region(0, region(0x100, true))
                .with_region(2, region(64 << 30, true)),
        )
    }

    fn ecam_write(w: &World, dev: PciAddress, reg: u64, value: u32) {
        let at = PCI_ECAM_START + (u64::from(dev.device) << 15) + reg;
        assert!(w.buses.mmio.write(at, &value.to_le_bytes()));
    }

    fn ecam_read(w: &World, dev: PciAddress, reg: u64) -> u32 {
        let mut b = [0u8; 4];
        let at = PCI_ECAM_START + (u64::from(dev.device) << 15) + reg;
        assert!(w.buses.mmio.read(at, &mut b));
        u32::from_le_bytes(b)
    }

    /// A data-centre GPU's shape for the root port tests: class 0x0302 (3D controller),
    /// BAR0 16 MiB, BAR1 128 GiB 64-bit prefetchable.
    fn gpu() -> Arc<FakeVfioDevice> {
        let mut cfg = vec![0u8; 256];
        cfg[..4].copy_from_slice(&[0xde, 0x10, 0x30, 0x23]);
        cfg[0x0a..0x0c].copy_from_slice(&[0x02, 0x03]);
        cfg[0x14] = 0x0c;
        Arc::new(
            FakeVfioDevice::new(cfg)
                .with_region(0, region(16 << 20, true))
                .with_region(1, region(128 << 30, true)),
        )
    }

    fn ecam_at(bus: u8, dev: u8) -> u64 {
        PCI_ECAM_START + (u64::from(bus) << 20) + (u64::from(dev) << 15)
    }

    fn read_at(w: &World, at: u64) -> u32 {
        let mut b = [0u8; 4];
        assert!(w.buses.mmio.read(at, &mut b));
        u32::from_le_bytes(b)
    }

    #[test]
    fn a_device_on_a_further_segment_answers_on_its_ecam_with_bars_in_its_windows() {
        let mut w = world();
        let layout = MemoryLayout::new(1 << 30, 40).unwrap();
        let (_, segs) = layout.split_for_segments(&[(1, 1), (1, 1)]);
        w.pci.add_segments(&w.buses, &segs).unwrap();
        assert_eq!(w.pci.segments(), 2);
        let seg1 = segs[0];
        let mut params = w.params();
        params.segment = 1;
        let a = attach("ivshmem", ivshmem(), &w.pci, params).unwrap();
        assert_eq!(a.address.to_string(), "0001:00:01.0");
        // Its config space is at segment 1's ECAM, and segment 0's slot 1 is empty.
        let ecam1 = arch::pci_segments::segment_ecam(1);
        assert_eq!(read_at(&w, ecam1 + (1 << 15)), 0x1110_1af4);
        assert_eq!(
            read_at(&w, ecam1),
            read_at(&w, PCI_ECAM_START),
            "its host bridge"
        );
        assert_eq!(read_at(&w, ecam_at(0, 1)), 0xffff_ffff);
        // BAR0 in segment 1's 32-bit window, BAR2 (64 GiB) in its 64-bit one.
        let bar0 = u64::from(read_at(&w, ecam1 + (1 << 15) + 0x10) & !0xf);
        assert!(
            (seg1.mmio32.0..seg1.mmio32.0 + seg1.mmio32.1).contains(&bar0),
            "{bar0:#x}"
        );
        let bar2 = u64::from(read_at(&w, ecam1 + (1 << 15) + 0x18) & !0xf)
            | u64::from(read_at(&w, ecam1 + (1 << 15) + 0x1c)) << 32;
        assert!(
            (seg1.mmio64.0..seg1.mmio64.0 + seg1.mmio64.1).contains(&bar2),
            "{bar2:#x}"
        );

        // A GPU on segment 1 goes behind a root port there: port 0001:00:02.0, GPU 0001:01:00.0.
        let mut params = w.params();
        params.segment = 1;
        let g = attach("gpu0", gpu(), &w.pci, params).unwrap();
        assert_eq!(g.address.to_string(), "0001:01:00.0");
        assert_eq!(read_at(&w, ecam1 + (2 << 15)), 0x000c_1b36);
        assert_eq!(read_at(&w, ecam1 + (1 << 20)), 0x2330_10de);
        // A segment the VM does not have is an error naming it.
        let mut params = w.params();
        params.segment = 2;
        let Err(e) = attach("x", ivshmem(), &w.pci, params) else {
            panic!("attached on segment 2");
        };
        let e = e.to_string();
        assert!(e.contains("segment 2"), "{e}");
    }

    #[test]
    fn a_3d_controller_goes_behind_a_root_port_with_its_bars_left_to_the_guest() {
        let w = world();
        let mut params = w.params();
        params.link = PcieLink {
            max_speed: 5,
            max_width: 16,
            speed: 5,
            width: 16,
        };
        let a = attach("gpu0", gpu(), &w.pci, params).unwrap();
        assert_eq!(a.address, PciAddress::new(1, 0, 0));
        // The port at 00:01.0 (ECAM bus 0) is a bridge to bus 1 with the host's link.
        let port = ecam_at(0, 1);
        assert_eq!(read_at(&w, port), 0x000c_1b36);
        assert_eq!(read_at(&w, port + 0x18) >> 8 & 0xff, 1, "secondary bus");
        assert_eq!(read_at(&w, port + 0x40 + 0x0c) & 0x3ff, 5 | 16 << 4);
        // The GPU answers at 01:00.0 with its BARs unassigned and decoding off.
        let dev = ecam_at(1, 0);
        assert_eq!(read_at(&w, dev), 0x2330_10de);
        assert_eq!(read_at(&w, dev + 0x10) & !0xf, 0, "BAR0 unassigned");
        assert_eq!(read_at(&w, dev + 0x04) & 0x3, 0, "no decoding");
        assert!(w.mapper.slots_of(a.address, 1).is_empty());
        // The guest assigns BAR1 inside the port's window and enables decoding: BAR1 becomes
        // a memory slot at the guest's address.
        let bar1 = 0x200_0000_0000u64;
        assert!(w
            .buses
            .mmio
            .write(dev + 0x14, &(bar1 as u32 | 0xc).to_le_bytes()));
        assert!(w
            .buses
            .mmio
            .write(dev + 0x18, &((bar1 >> 32) as u32).to_le_bytes()));
        assert!(w
            .buses
            .mmio
            .write(dev + 0x10, &0xc000_0000u32.to_le_bytes()));
        assert!(w.buses.mmio.write(dev + 0x04, &[0x06, 0]));
        let slots = w.mapper.slots_of(a.address, 1);
        assert_eq!(slots.len(), 1);
        assert_eq!((slots[0].guest_phys_addr, slots[0].size), (bar1, 128 << 30));
    }

    #[test]
    fn a_device_in_a_numa_node_goes_behind_a_port_on_its_expander_bridge() {
        let w = world();
        let l = MemoryLayout::new(1 << 30, 40).unwrap();
        let (_, ex) = l.split_for_expanders(&[1]);
        w.pci.add_expanders(&ex);
        let mut params = w.params();
        params.root_port = Some(false);
        params.expander = w.pci.expander_bus(1);
        assert_eq!(params.expander, Some(0x80));
        let a = attach("ivshmem", ivshmem(), &w.pci, params).unwrap();
        assert_eq!(a.address, PciAddress::new(0x81, 0, 0));
        // The port answers on the expander's root bus, the device below it.
        assert_eq!(read_at(&w, ecam_at(0x80, 0)), 0x000c_1b36);
        assert_eq!(read_at(&w, ecam_at(0x81, 0)) & 0xffff, 0x1af4);
        // Not for a hot-added device.
        let mut params = w.params();
        params.hot = true;
        params.expander = Some(0x80);
        let e = attach("gpu1", gpu(), &w.pci, params)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("numa_node"), "{e}");
    }

    #[test]
    fn root_port_on_off_and_hot_add_are_as_asked() {
        // Off: a 3D controller stays on bus 0 with VMM-assigned BARs.
        let w = world();
        let mut params = w.params();
        params.root_port = Some(false);
        let a = attach("gpu0", gpu(), &w.pci, params).unwrap();
        assert_eq!(a.address.bus, 0);
        // On: any device, e.g. ivshmem (class 0x0500), goes behind a port.
        let w = world();
        let mut params = w.params();
        params.root_port = Some(true);
        let a = attach("ivshmem", ivshmem(), &w.pci, params).unwrap();
        assert_eq!(a.address, PciAddress::new(1, 0, 0));
        // Hot-added: no port by default, and asking for one is refused clearly.
        let w = world();
        let mut params = w.params();
        params.hot = true;
        assert_eq!(
            attach("gpu0", gpu(), &w.pci, params).unwrap().address.bus,
            0
        );
        let mut params = w.params();
        params.hot = true;
        params.root_port = Some(true);
        let e = attach("gpu1", gpu(), &w.pci, params)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("root_port=on") && e.contains("gpu1"), "{e}");
    }

    #[test]
    fn a_large_bar_becomes_a_slot_the_sub_page_bar_is_trapped_and_both_follow_moves() {
        let w = world();
        let fake = ivshmem();
        let a = attach("ivshmem", fake.clone(), &w.pci, w.params()).unwrap();
        let bars = a.model.lock().unwrap().bars();
        let bar2 = bars.iter().find(|b| b.index == 2).unwrap();
        assert_eq!(bar2.size, 64 << 30);
        assert_eq!(
            bar2.addr % (64 << 30),
            0,
            "naturally aligned in the 64-bit window"
        );
        let bar0 = bars.iter().find(|b| b.index == 0).unwrap().addr;
        // Decoding starts on, as firmware leaves it: BAR2 is one slot of 64 GiB, BAR0 none.
        let slots = w.mapper.slots_of(a.address, 2);
        assert_eq!(slots.len(), 1);
        assert_eq!(
            (slots[0].guest_phys_addr, slots[0].size),
            (bar2.addr, 64 << 30)
        );
        assert!(w.mapper.slots_of(a.address, 0).is_empty());
        // BAR0 accesses exit to the VMM and are forwarded through VFIO.
        assert!(w.buses.mmio.write(bar0 + 0x10, &[1, 2, 3, 4]));
        let mut back = [0u8; 4];
        assert!(w.buses.mmio.read(bar0 + 0x10, &mut back));
        assert_eq!(back, [1, 2, 3, 4]);
        assert!(fake.take_calls().iter().any(|c| matches!(
            c,
            FakeVfioCall::RegionWrite {
                index: 0,
                offset: 0x10,
                ..
            }
        )));
        // The guest moves BAR2 (decoding off, new address, decoding on): the slot follows.
        ecam_write(&w, a.address, 4, 0);
        assert!(w.mapper.slots_of(a.address, 2).is_empty());
        let new = bar2.addr + (64 << 30);
        ecam_write(&w, a.address, 0x18, new as u32 | 0xc);
        ecam_write(&w, a.address, 0x1c, (new >> 32) as u32);
        assert_eq!(ecam_read(&w, a.address, 0x1c), (new >> 32) as u32);
        ecam_write(&w, a.address, 4, 0x2);
        let moved = w.mapper.slots_of(a.address, 2);
        assert_eq!(moved[0].guest_phys_addr, new);
        let removed =
            w.hv.calls()
                .iter()
                .filter(|c| matches!(c, Call::RemoveMemoryRegion(_)))
                .count();
        assert_eq!(removed, 1);
    }

    /// A data-centre GPU as its config space looks (H100-like): 3D controller, BAR0 16 MiB,
    /// BAR1 128 GiB and BAR3 32 MiB 64-bit prefetchable, MSI-X at 0xC8 (8 vectors, table and
    /// PBA in BAR0 at 0xB90000 / 0xBA0000).
    fn h100() -> Arc<FakeVfioDevice> {
        let mut cfg = vec![0u8; 256];
        cfg[..4].copy_from_slice(&[0xde, 0x10, 0x30, 0x23]);
        cfg[6] = 0x10; // capabilities list
        cfg[0x0a..0x0c].copy_from_slice(&[0x02, 0x03]);
        cfg[0x14] = 0x0c;
        cfg[0x1c] = 0x0c;
        cfg[0x34] = 0xc8;
        cfg[0xc8..0xd4].copy_from_slice(&[
            0x11, 0, 7, 0, // MSI-X, last capability, 8 vectors
            0x00, 0x00, 0xb9, 0x00, // table: BAR0 + 0xB90000
            0x00, 0x00, 0xba, 0x00, // PBA: BAR0 + 0xBA0000
        ]);
        Arc::new(
            FakeVfioDevice::new(cfg)
                .with_region(0, region(16 << 20, true))
                .with_region(1, region(128 << 30, true))
                .with_region(3, region(32 << 20, true))
                .with_irqs(VfioIrqKind::Msix, 8),
        )
    }

    #[test]
    fn an_h100_shaped_gpu_behind_its_root_port_gets_its_bars_clique_and_a_true_pba() {
        let w = world();
        let mut params = w.params();
        params.gpudirect_clique = Some(2);
        let fake = h100();
        let a = attach("gpu0", fake.clone(), &w.pci, params).unwrap();
        assert_eq!(
            a.address,
            PciAddress::new(1, 0, 0),
            "3D controller: behind a port"
        );
        let dev = ecam_at(1, 0);
        // All three BARs unassigned; the clique capability went to 0xD4 (MSI-X holds 0xC8).
        for bar in [0x10u64, 0x14, 0x1c] {
            assert_eq!(read_at(&w, dev + bar) & !0xf, 0, "BAR at {bar:#x}");
        }
        let clique = read_at(&w, dev + 0xd4);
        assert_eq!(clique & 0xff, 0x09, "vendor capability");
        assert_eq!(clique >> 16 & 0xff, 8, "8 bytes");
        let id = read_at(&w, dev + 0xd8);
        assert_eq!(
            id & 0xffff,
            u32::from(u16::from_le_bytes(*b"2P")),
            "\"P2P\""
        );
        assert_eq!((id >> 16 & 0xff) >> 3, 2, "clique ID 2");
        // The guest places BAR0 (32-bit window), BAR1 and BAR3 (64-bit) and enables decoding.
        let bar0 = 0xc000_0000u64;
        let bar1 = 0x200_0000_0000u64;
        let bar3 = 0x220_0000_0000u64;
        let w32 = |at: u64, v: u32| assert!(w.buses.mmio.write(at, &v.to_le_bytes()));
        w32(dev + 0x10, bar0 as u32);
        w32(dev + 0x14, bar1 as u32 | 0xc);
        w32(dev + 0x18, (bar1 >> 32) as u32);
        w32(dev + 0x1c, bar3 as u32 | 0xc);
        w32(dev + 0x20, (bar3 >> 32) as u32);
        w32(dev + 0x04, 0x6);
        assert_eq!(w.mapper.slots_of(a.address, 1)[0].size, 128 << 30);
        assert_eq!(w.mapper.slots_of(a.address, 3)[0].guest_phys_addr, bar3);
        // MSI-X on, vector 1 programmed and masked; the GPU signals it: the PBA shows it
        // pending (the physical PBA would not), and unmasking delivers it.
        let table = bar0 + 0xb9_0000;
        let pba = bar0 + 0xba_0000;
        w32(table + 16, 0xfee0_0000);
        w32(table + 16 + 8, 0x42);
        w32(table + 16 + 12, 1);
        w32(dev + 0xc8, 0x8007_0011);
        let read_pba = || {
            let mut b = [0u8; 8];
            assert!(w.buses.mmio.read(pba, &mut b));
            u64::from_le_bytes(b)
        };
        assert_eq!(read_pba(), 0);
        assert!(fake.fire(VfioIrqKind::Msix, 1));
        assert_eq!(read_pba(), 1 << 1, "vector 1 pending");
        w32(table + 16 + 12, 0);
        assert_eq!(read_pba(), 0, "delivered on unmask");
    }

    #[test]
    fn msix_gets_kvm_vectors_and_its_table_page_stays_trapped() {
        let w = world();
        let mut cfg = vec![0u8; 256];
        cfg[..4].copy_from_slice(&[0x34, 0x12, 0xe8, 0x11]);
        cfg[6] = 0x10;
        cfg[0x34] = 0x40;
        cfg[0x40..0x4c].copy_from_slice(&[0x11, 0, 1, 0, 0, 0x20, 0, 0, 0, 0x28, 0, 0]);
        let fake = Arc::new(
            FakeVfioDevice::new(cfg)
                .with_region(0, region(0x10000, true))
                .with_irqs(VfioIrqKind::Msix, 2),
        );
        let a = attach("nic", fake.clone(), &w.pci, w.params()).unwrap();
        ecam_write(&w, a.address, 4, 0x6);
        let slots: Vec<(u64, u64)> = w
            .mapper
            .slots_of(a.address, 0)
            .iter()
            .map(|s| (s.guest_phys_addr, s.size))
            .collect();
        let base = a.model.lock().unwrap().bars()[0].addr;
        assert_eq!(slots, vec![(base, 0x2000), (base + 0x3000, 0xd000)]);
        // Enable MSI-X: VFIO gets the KVM group's eventfds; an entry write programs a route.
        w.buses
            .mmio
            .write(base + 0x2000, &0xfee0_0000u32.to_le_bytes());
        w.buses.mmio.write(base + 0x2008, &0x41u32.to_le_bytes());
        w.buses.mmio.write(base + 0x200c, &0u32.to_le_bytes());
        ecam_write(&w, a.address, 0x40, 0x8000_0000 | 0x11);
        assert!(fake
            .take_calls()
            .contains(&FakeVfioCall::EnableIrqs(VfioIrqKind::Msix, 2)));
        assert!(w.hv.calls().iter().any(|c| matches!(
            c,
            Call::RegisterIrqfd {
                resample: false,
                ..
            }
        )));
        assert!(
            fake.fire(VfioIrqKind::Msix, 0),
            "the device signals the KVM irqfd"
        );
    }
}

#[cfg(test)]
mod intx_tests {
    use super::*;
    use hypervisor::fake::{Call, FakeHypervisor};
    use hypervisor::Hypervisor;
    use pci::vfio::{FakeVfioDevice, OpenGate, VfioIrqKind};

    #[test]
    fn intx_goes_to_the_prt_gsi_with_a_resample_irqfd() {
        let hv = FakeHypervisor::new();
        let vm = hv.create_vm().unwrap();
        let buses = crate::vcpu::exit::Buses::default();
        let layout = arch::layout::MemoryLayout::new(1 << 30, 40).unwrap();
        let mapper = Arc::new(BarMapper::new(
            vm.clone(),
            Arc::new(crate::memory::SlotAllocator::new(1)),
        ));
        let router = Arc::new(crate::interrupts::GsiRouter::new(vm.clone()));
        let pci = PciSegments::with_bar_mapper(vm.clone(), router, &buses, &layout, None).unwrap();
        let mut cfg = vec![0u8; 256];
        cfg[..4].copy_from_slice(&[0x34, 0x12, 0xe8, 0x11]);
        cfg[0x3d] = 1;
        let fake = Arc::new(FakeVfioDevice::new(cfg).with_irqs(VfioIrqKind::Intx, 1));
        let params = AttachParams {
            vm: vm.as_ref(),
            mapper: &mapper,
            gate: Arc::new(OpenGate),
            gpudirect_clique: None,
            root_port: None,
            link: PcieLink::default(),
            hot: false,
            expander: None,
            segment: 0,
            slot: None,
        };
        let a = attach("legacy", fake, &pci, params).unwrap();
        let gsi = arch::acpi::pci_intx_gsi(a.address.device, 0);
        assert!(hv.calls().contains(&Call::RegisterIrqfd {
            gsi,
            resample: true
        }));
    }
}
