//! The VFIO device model's config space emulation (`pci::vfio::VfioPciDevice`) over the fake
//! VFIO backend (`pci::vfio::FakeVfioDevice`): the device's config space, region sizes and
//! interrupt counts come from the input (a hostile or broken device), BARs are placed by the
//! VMM's `PciAllocator` as in `vmm::vfio`, and then the guest's config and BAR accesses (and
//! the device changing its own config space) come from the input too.
//!
//! Properties: probing, building and every access never panic; the IDs the guest reads are
//! the device's; the emulated header never reaches the device (only command and status do),
//! the command register the device sees only enables decoding for the kinds of BARs the
//! guest was given and never Bus Master while guest RAM is not DMA-mapped; directly mapped
//! BAR areas are whole pages inside their region and never cover the MSI-X table or PBA;
//! VFIO never has INTx on together with MSI or MSI-X (it allows one interrupt mode at a time).
//!
//! Input layout (little endian):
//! ```text
//! 0    u8   flags: bit 0 PCIe (4 KiB config space), bit 1 the DMA gate refuses,
//!           bit 2 add the GPUDirect clique capability, bit 3 BAR 0 has sparse mmap areas,
//!           bit 4 VFIO offers INTx (used when config byte 0x3d names a pin)
//! 1    u8   MSI vectors VFIO offers, u8 MSI-X vectors VFIO offers
//! 3    7 x (u32 size, u8 shift (mod 40), u8 bit 0 mmappable): regions 0..=5 and the ROM
//!           (size << shift; 0: no region)
//! 45   u8   sparse area count (mod 5), each u32 offset, u32 length (BAR 0)
//! ..   256  config space bytes 0..0x100
//! ..   u8   patches to the extended config space (mod 16), each u16 offset, u8 length, bytes
//! ..   operations, each an opcode byte and its operands:
//!      0 config write  u16 register (mod 1100), u8 offset (mod 5), u8 size (mod 5), u32 value
//!      1 config read   u16 register (mod 1100)
//!      2 BAR write     u8 BAR (mod 7), u32 offset, u8 size (mod 9), u64 value
//!      3 BAR read      u8 BAR (mod 7), u32 offset, u8 size (mod 9)
//!      4 device side   u16 offset (mod 4096), u8 length, bytes: the device changes its config
//!      5 interrupt     u8 kind (mod 3: MSI, MSI-X, INTx), u8 vector: the device fires it
//!      6 check the directly mappable areas
//! ```
#![no_main]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;

use pci::vfio::{
    DeviceGate, FakeVfioCall, FakeVfioDevice, IntxResources, MsiResources, RegionInfo, VfioIrqKind,
    VfioPciDevice, VfioPciInfo, VfioPciParams, PAGE_SIZE,
};
use pci::{BarKind, PciAddress, PciAllocator, PciAllocatorConfig, PciDevice, RecordingMsiGroup};
use vmm_fuzz::{trace, Cursor};
use vmm_sys_util::eventfd::EventFd;

const COMMAND_IO: u16 = 1;
const COMMAND_MEMORY: u16 = 2;
const COMMAND_BUS_MASTER: u16 = 4;

/// Refuses DMA when told to (the DMA mapping failed).
struct Gate {
    refuse_dma: bool,
    asked: AtomicBool,
}

impl DeviceGate for Gate {
    fn wait_ready(&self) -> Result<(), String> {
        Ok(())
    }
    fn wait_dma_ready(&self) -> Result<(), String> {
        self.asked.store(true, Ordering::Relaxed);
        if self.refuse_dma {
            Err("guest RAM is not DMA-mapped".into())
        } else {
            Ok(())
        }
    }
}

fn eventfds(n: u16) -> Vec<EventFd> {
    (0..n)
        .filter_map(|_| EventFd::new(libc::EFD_NONBLOCK).ok())
        .collect()
}

fn build_fake(c: &mut Cursor) -> (FakeVfioDevice, u8) {
    let flags = c.u8();
    let (msi_irqs, msix_irqs) = (c.u8(), c.u8());
    let mut regions = Vec::new();
    for _ in 0..7 {
        let size = u64::from(c.u32()) << (c.u8() % 40);
        regions.push((size, c.bool()));
    }
    let mut sparse = Vec::new();
    for _ in 0..c.u8() % 5 {
        sparse.push((u64::from(c.u32()), u64::from(c.u32())));
    }
    let mut config = vec![0u8; if flags & 1 != 0 { 4096 } else { 256 }];
    let head = c.bytes(256);
    config[..head.len()].copy_from_slice(head);
    for _ in 0..c.u8() % 16 {
        let off = usize::from(c.u16()) % 4096;
        let bytes = c.short_bytes();
        if let Some(dst) = config.get_mut(off..off + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }
    let mut fake = FakeVfioDevice::new(config)
        .with_irqs(VfioIrqKind::Intx, u32::from(flags >> 4 & 1))
        .with_irqs(VfioIrqKind::Msi, u32::from(msi_irqs))
        .with_irqs(VfioIrqKind::Msix, u32::from(msix_irqs));
    for (index, (size, mmappable)) in regions.into_iter().enumerate() {
        if size == 0 {
            continue;
        }
        let info = RegionInfo {
            size,
            readable: true,
            writable: true,
            mmappable,
            sparse_areas: (index == 0 && flags & 8 != 0).then(|| sparse.clone()),
        };
        fake = fake.with_region(index as u32, info);
    }
    (fake, flags)
}

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let (fake, flags) = build_fake(&mut c);
    let fake = Arc::new(fake);
    let info = match VfioPciInfo::probe(fake.as_ref()) {
        Ok(info) => info,
        Err(e) => {
            trace!("probe: {e}");
            return;
        }
    };
    trace!(
        "probed: caps {:?}, ext caps {:?}, BARs {:?}, MSI {:?}, MSI-X {:?}",
        info.caps,
        info.ext_caps,
        info.bars,
        info.msi,
        info.msix
    );
    // Place the BARs as the VMM does (arch's layout for a 1 GiB guest).
    let layout = arch::MemoryLayout::new(1 << 30, 40).unwrap();
    let mut alloc = PciAllocator::new(&PciAllocatorConfig {
        io: (0x1000, 0xf000),
        mmio32: layout.mmio32,
        mmio64: layout.mmio64,
        host_phys_bits: Some(layout.phys_bits),
    })
    .unwrap();
    let bars = match alloc.allocate_device(PciAddress::new(0, 4, 0), &info.bars) {
        Ok(bars) => bars,
        Err(e) => {
            trace!("BAR allocation: {e}");
            return;
        }
    };
    let gate = Arc::new(Gate {
        refuse_dma: flags & 2 != 0,
        asked: AtomicBool::new(false),
    });
    let resources = |vectors: Option<u16>| {
        vectors.map(|v| MsiResources {
            group: Arc::new(RecordingMsiGroup::new()),
            // The VMM gives one eventfd per vector; a few are enough here.
            eventfds: eventfds(v.min(64)),
        })
    };
    let intx = IntxResources {
        trigger: EventFd::new(libc::EFD_NONBLOCK).unwrap(),
        resample: EventFd::new(libc::EFD_NONBLOCK).unwrap(),
    };
    let dev = VfioPciDevice::with_intx(
        &info,
        VfioPciParams {
            ops: fake.clone(),
            bars: bars.clone(),
            msi: resources(info.msi_vectors()),
            msix: resources(info.msix_vectors()),
            gate: gate.clone(),
            gpudirect_clique: (flags & 4 != 0).then_some(3),
            // Both ways a device starts: BARs the VMM placed, or (behind a root port) left
            // unassigned for the guest.
            assigned: flags & 0x40 == 0,
        },
        Some(intx),
    );
    let mut dev = match dev {
        Ok(dev) => dev,
        Err(e) => {
            trace!("device model: {e}");
            return;
        }
    };
    fake.take_calls();
    let has_io = bars.iter().any(|b| b.kind == BarKind::Io);
    let has_mem = bars.iter().any(|b| b.kind != BarKind::Io);
    let mut modes = Modes::default();

    let mut ops = 0;
    while !c.is_empty() && ops < 500 {
        ops += 1;
        match c.u8() % 7 {
            0 => {
                let reg = usize::from(c.u16() % 1100);
                let offset = u64::from(c.u8() % 5);
                let size = usize::from(c.u8() % 5);
                let v = c.u32().to_le_bytes();
                let _ = dev.write_config_register(reg, offset, &v[..size]);
            }
            1 => {
                let _ = dev.read_config_register(usize::from(c.u16() % 1100));
            }
            2 => {
                let bar = usize::from(c.u8() % 7);
                let offset = u64::from(c.u32());
                let size = usize::from(c.u8() % 9);
                let v = c.u64().to_le_bytes();
                dev.write_bar(bar, offset, &v[..size]);
            }
            3 => {
                let bar = usize::from(c.u8() % 7);
                let offset = u64::from(c.u32());
                let mut buf = vec![0u8; usize::from(c.u8() % 9)];
                dev.read_bar(bar, offset, &mut buf);
            }
            4 => {
                let off = usize::from(c.u16() % 4096);
                let bytes = c.short_bytes();
                fake.set_config(off, bytes);
            }
            5 => {
                let kind = match c.u8() % 3 {
                    0 => VfioIrqKind::Msi,
                    1 => VfioIrqKind::Msix,
                    _ => VfioIrqKind::Intx,
                };
                let _ = fake.fire(kind, usize::from(c.u8()));
            }
            _ => check_mappable(&mut dev, &info, &fake),
        }
        check_calls(&fake, has_io, has_mem, gate.refuse_dma, &mut modes);
    }
    trace!(
        "{ops} ops; interrupts enabled {:?}; mappable {:x?}",
        dev.interrupts_enabled(),
        dev.mappable_areas()
    );
    let ids = dev.read_config_register(0);
    assert_eq!(
        ids,
        u32::from(info.vendor_id()) | u32::from(info.device_id()) << 16,
        "IDs changed"
    );
});

/// The interrupt modes on in VFIO, as the calls so far left them.
#[derive(Default)]
struct Modes {
    intx: bool,
    msi: bool,
    msix: bool,
}

impl Modes {
    fn set(&mut self, kind: VfioIrqKind, on: bool) {
        trace!("VFIO {kind:?} {}", if on { "on" } else { "off" });
        match kind {
            VfioIrqKind::Intx => self.intx = on,
            VfioIrqKind::Msi => self.msi = on,
            VfioIrqKind::Msix => self.msix = on,
        }
        assert!(
            !(self.intx && (self.msi || self.msix)),
            "INTx on in VFIO together with MSI ({}) or MSI-X ({})",
            self.msi,
            self.msix
        );
    }
}

/// What reached the device since the last look.
fn check_calls(
    fake: &FakeVfioDevice,
    has_io: bool,
    has_mem: bool,
    refuse_dma: bool,
    modes: &mut Modes,
) {
    for call in fake.take_calls() {
        let (offset, data) = match call {
            FakeVfioCall::ConfigWrite { offset, data } => (offset, data),
            FakeVfioCall::EnableIrqs(kind, _) => {
                modes.set(kind, true);
                continue;
            }
            FakeVfioCall::DisableIrqs(kind) => {
                modes.set(kind, false);
                continue;
            }
            _ => continue,
        };
        let end = offset + data.len() as u64;
        if offset < 0x40 {
            assert!(
                offset >= 4 && end <= 8,
                "emulated header bytes {offset:#x}..{end:#x} written to the device"
            );
        }
        if offset == 4 && data.len() >= 2 {
            let command = u16::from_le_bytes([data[0], data[1]]);
            assert!(has_io || command & COMMAND_IO == 0, "I/O decoding enabled");
            assert!(
                has_mem || command & COMMAND_MEMORY == 0,
                "memory decoding enabled"
            );
            assert!(
                !refuse_dma || command & COMMAND_BUS_MASTER == 0,
                "bus master enabled without DMA mappings"
            );
        }
    }
}

fn check_mappable(dev: &mut VfioPciDevice, info: &VfioPciInfo, fake: &FakeVfioDevice) {
    use pci::vfio::VfioDeviceOps;
    // The MSI-X table and PBA pages, when the guest sees an MSI-X capability.
    let mut trapped = Vec::new();
    if let Some((off, p)) = info.msix {
        if dev.read_config_register(off / 4) & 0xff == 0x11 {
            let table_len = u64::from(p.vectors) * 16;
            let pba_len = u64::from(p.vectors).div_ceil(64) * 8;
            trapped.push((p.table_bar, u64::from(p.table_offset), table_len));
            trapped.push((p.pba_bar, u64::from(p.pba_offset), pba_len));
        }
    }
    for area in dev.mappable_areas() {
        assert_eq!(area.offset % PAGE_SIZE, 0, "{area:?}");
        assert_eq!(area.size % PAGE_SIZE, 0, "{area:?}");
        assert!(area.size > 0, "{area:?}");
        let region = fake.region_info(area.bar as u32).expect("a region");
        assert!(region.mmappable, "{area:?}");
        let end = area.offset.checked_add(area.size).expect("no overflow");
        assert!(end <= region.size, "{area:?} beyond region {}", region.size);
        for &(bar, off, len) in &trapped {
            assert!(
                bar != area.bar || off + len <= area.offset || end <= off,
                "{area:?} maps MSI-X structure at BAR {bar} +{off:#x} ({len} bytes)"
            );
        }
    }
}
