//! PCI configuration space from a hostile guest, wired like the VMM's PCI segment
//! (`vmm::pci_setup`): a `pci::PciBus` with the host bridge, a function with every BAR kind,
//! a ROM, MSI and MSI-X (`pci::test_util::TestDevice`, the pci crate's own test function),
//! and the VMM's virtio-pci transport (`vmm::virtio_pci::VirtioPciDevice`, over the fake
//! hypervisor, with a stub virtio device),
//! reached through `PciConfigIo` (0xcf8/0xcfc) on the port bus and `PciConfigMmio` (ECAM) on
//! the MMIO bus, whose BARs the `BusBarRelocator` moves between the buses as the guest
//! programs them. Beside it, `vmm::virtio_pci::common::CommonConfig` on its own.
//!
//! Properties: no panic and no deadlock; identity registers stay read-only; no BAR ever
//! decodes over guest RAM, the interrupt controllers or the ECAM window; the virtio common
//! config keeps power-of-two queue sizes within their maxima and status 0 really resets.
//!
//! Input: a sequence of operations, each an opcode byte and its operands (little endian):
//! ```text
//! 0 ECAM write   u32 offset (bit 31 set: bits 0..27, any bus; clear: bits 0..19, bus 0),
//!                u8 size (mod 9), u64 value
//! 1 ECAM read    u32 offset, u8 size
//! 2 0xcf8 write  u32 CONFIG_ADDRESS
//! 3 0xcfc write  u8 port offset (mod 8, from 0xcf8), u8 size, u64 value
//! 4 0xcfc read   u8 port offset, u8 size
//! 5 BAR write    u8 slot (1: test function, 2: virtio-pci), u8 BAR index (mod 7),
//!                u16 offset, u8 size, u64 value   (at the BAR's current bus address)
//! 6 BAR read     u8 slot, u8 BAR index, u16 offset, u8 size
//! 7 register     u16 register (mod 1100), u8 byte offset, u8 size, u64 value: a direct
//!                PciDevice::write_config_register on the test function (dword-sized)
//! 8 common write u8 offset (mod 0x40), u8 size, u64 value
//! 9 common read  u8 offset, u8 size
//! 10 interrupts  u8 MSI vector, u16 MSI-X vector (the test function triggers both)
//! 11 activator   run the virtio-pci activation jobs queued so far
//! ```
#![no_main]

use std::sync::{Arc, Mutex};

use libfuzzer_sys::fuzz_target;

use arch::layout::{IOAPIC_START, LAPIC_START, PCI_ECAM_START};
use devices::virtio::{ActivateContext, ActivateError, VirtioDevice, VIRTIO_F_VERSION_1};
use devices::Bus;
use hypervisor::fake::FakeHypervisor;
use hypervisor::Hypervisor;
use pci::test_util::TestDevice;
use pci::{
    BarConfig, BarKind, BusBarRelocator, PciBus, PciConfigIo, PciConfigMmio, PciDevice,
    PCI_CONFIG_IO_PORT, PCI_CONFIG_IO_PORT_LEN, PCI_ECAM_SIZE,
};
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm::interrupts::{GsiRouter, KvmMsiGroup};
use vmm::virtio_pci::activator::Activator;
use vmm::virtio_pci::caps::BAR_SIZE;
use vmm::virtio_pci::common::{CommonConfig, StatusChange, STATUS_FEATURES_OK};
use vmm::virtio_pci::{VirtioPciDevice, VirtioPciParams};
use vmm_fuzz::{trace, Cursor};

/// Guest RAM as the segment reserves it (below the 32-bit MMIO window).
const RAM: (u64, u64) = (0, 0x8000_0000);
const TEST_SLOT: u8 = 1;
const VIRTIO_SLOT: u8 = 2;
const TEST_IDS: u32 = 0x1041_1af4;
const HOST_BRIDGE_IDS: u32 = 0x0d57_8086;
const COMMON_QUEUES: [u16; 3] = [256, 64, 1];
const COMMON_FEATURES: u64 = VIRTIO_F_VERSION_1 | 0x3000_00ff;

/// A virtio device that only checks what the transport activates it with.
struct StubVirtio {
    queues: Vec<u16>,
    config: [u8; 64],
}

impl VirtioDevice for StubVirtio {
    fn device_type(&self) -> u32 {
        2
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.queues
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | 0x7
    }
    fn ack_features(&mut self, _value: u64) {}
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(src) = self.config.get(offset as usize..) {
            let n = src.len().min(data.len());
            data[..n].copy_from_slice(&src[..n]);
        }
    }
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        for q in &ctx.queues {
            assert!(
                usize::from(q.index) < self.queues.len(),
                "unknown queue activated"
            );
        }
        Ok(())
    }
    fn reset(&mut self) -> bool {
        true
    }
}

struct Rig {
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    bus: Arc<PciBus>,
    test: Arc<Mutex<TestDevice>>,
    activator: Arc<Activator>,
    common: CommonConfig,
    // Keeps the fake VM alive for the transport's MSI group.
    _hv: FakeHypervisor,
}

impl Drop for Rig {
    /// The config access devices hold the PCI bus, whose relocator holds the buses they sit
    /// on: a cycle the VMM never needs to break (its buses live as long as the process),
    /// broken here so that every run frees what it built.
    fn drop(&mut self) {
        self.pio.remove(PCI_CONFIG_IO_PORT);
        self.mmio.remove(PCI_ECAM_START);
    }
}

fn rig() -> Rig {
    let (pio, mmio) = (Arc::new(Bus::new()), Arc::new(Bus::new()));
    let reserved = vec![
        RAM,
        (IOAPIC_START, 0x1000),
        (LAPIC_START, 0x1000),
        (PCI_ECAM_START, PCI_ECAM_SIZE),
    ];
    let relocator = BusBarRelocator::new(pio.clone(), mmio.clone()).with_reserved_mmio(reserved);
    let bus = Arc::new(PciBus::new(Arc::new(relocator)));
    pio.insert(
        Arc::new(Mutex::new(PciConfigIo::new(bus.clone()))),
        PCI_CONFIG_IO_PORT,
        PCI_CONFIG_IO_PORT_LEN,
    )
    .unwrap();
    mmio.insert(
        Arc::new(Mutex::new(PciConfigMmio::new(bus.clone()))),
        PCI_ECAM_START,
        PCI_ECAM_SIZE,
    )
    .unwrap();
    let test = Arc::new(Mutex::new(TestDevice::new()));
    bus.add_device_at(TEST_SLOT, test.clone()).unwrap();

    let hv = FakeHypervisor::new();
    let vm = hv.create_vm().unwrap();
    let queues = vec![16, 8];
    let router = Arc::new(GsiRouter::new(vm.clone()));
    let msi = Arc::new(KvmMsiGroup::new(router, vm.clone(), queues.len() as u16 + 1).unwrap());
    let activator = Arc::new(Activator::new().unwrap());
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1_0000)]).unwrap();
    let transport = VirtioPciDevice::new(VirtioPciParams {
        device: Box::new(StubVirtio {
            queues,
            config: std::array::from_fn(|i| i as u8),
        }),
        bar: BarConfig {
            index: 0,
            size: BAR_SIZE,
            kind: BarKind::Mem64,
            prefetchable: false,
            addr: 0x10_0000_0000,
        },
        msi,
        mem,
        vm,
        activator: activator.clone(),
        worker_init: None,
    })
    .unwrap();
    bus.add_device_at(VIRTIO_SLOT, Arc::new(Mutex::new(transport)))
        .unwrap();
    Rig {
        pio,
        mmio,
        bus,
        test,
        activator,
        common: CommonConfig::new(COMMON_FEATURES, &COMMON_QUEUES),
        _hv: hv,
    }
}

/// Mostly bus 0 (bit 31 clear); the whole window otherwise.
fn ecam_offset(c: &mut Cursor) -> u64 {
    let raw = u64::from(c.u32());
    if raw & 0x8000_0000 != 0 {
        raw & (PCI_ECAM_SIZE - 1)
    } else {
        raw & 0xf_ffff
    }
}

fn sized(c: &mut Cursor) -> Vec<u8> {
    let size = usize::from(c.u8() % 9);
    vec![0; size]
}

fn value(c: &mut Cursor, size: usize) -> Vec<u8> {
    c.u64().to_le_bytes()[..size].to_vec()
}

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let mut rig = rig();
    let mut ops = 0;
    while !c.is_empty() && ops < 1000 {
        ops += 1;
        step(&mut rig, &mut c);
        check_common(&rig.common);
    }
    check_rig(&rig);
    if vmm_fuzz::debug() {
        let mut t = rig.test.lock().unwrap();
        let (msi, msix) = (t.msi.state().enabled, t.msix.table().is_enabled());
        trace!(
            "{ops} ops; test function command/status {:#010x}, MSI {msi}, MSI-X {msix}, BARs {:x?}",
            t.read_config_register(1),
            t.bars()
        );
        drop(t);
        let v = rig.bus.device(VIRTIO_SLOT).unwrap();
        let mut v = v.lock().unwrap();
        let mut status = [0u8];
        v.read_bar(0, 0x14, &mut status);
        trace!(
            "virtio-pci command/status {:#010x}, device status {:#x}; common config {:?}",
            v.read_config_register(1),
            status[0],
            rig.common
        );
    }
});

fn step(rig: &mut Rig, c: &mut Cursor) {
    match c.u8() % 12 {
        0 => {
            let off = ecam_offset(c);
            let size = sized(c).len();
            let v = value(c, size);
            rig.mmio.write(PCI_ECAM_START + off, &v);
        }
        1 => {
            let off = ecam_offset(c);
            let mut buf = sized(c);
            rig.mmio.read(PCI_ECAM_START + off, &mut buf);
        }
        2 => {
            let a = c.u32();
            rig.pio.write(PCI_CONFIG_IO_PORT, &a.to_le_bytes());
        }
        3 => {
            let port = PCI_CONFIG_IO_PORT + u64::from(c.u8() % 8);
            let size = sized(c).len();
            let v = value(c, size);
            rig.pio.write(port, &v);
        }
        4 => {
            let port = PCI_CONFIG_IO_PORT + u64::from(c.u8() % 8);
            let mut buf = sized(c);
            rig.pio.read(port, &mut buf);
        }
        op @ (5 | 6) => {
            let slot = if c.bool() { TEST_SLOT } else { VIRTIO_SLOT };
            let index = usize::from(c.u8() % 7);
            let offset = u64::from(c.u16());
            let mut buf = sized(c);
            let size = buf.len();
            let v = value(c, size);
            let Some(dev) = rig.bus.device(slot) else {
                return;
            };
            let bars = dev.lock().unwrap().bars();
            let Some(bar) = bars.iter().find(|b| b.index == index) else {
                return;
            };
            let bus = if bar.kind == BarKind::Io {
                &rig.pio
            } else {
                &rig.mmio
            };
            let addr = bar.addr.wrapping_add(offset % bar.size.max(1));
            if op == 5 {
                bus.write(addr, &v);
            } else {
                bus.read(addr, &mut buf);
            }
        }
        7 => {
            let reg = usize::from(c.u16() % 1100);
            let offset = u64::from(c.u8() % 4);
            let size = (usize::from(c.u8()) % (4 - offset as usize)) + 1;
            let v = value(c, size);
            let mut dev = rig.test.lock().unwrap();
            let _ = dev.write_config_register(reg, offset, &v);
            let _ = dev.read_config_register(reg);
        }
        8 => {
            let off = u64::from(c.u8() % 0x40);
            let size = sized(c).len();
            let v = value(c, size);
            let change = rig.common.write(off, &v);
            if off == 0x14 && size == 1 && v[0] == 0 {
                assert_eq!(change, StatusChange::Reset);
            }
            match change {
                StatusChange::Reset => {
                    rig.common.reset();
                    assert_eq!(rig.common.status, 0);
                }
                StatusChange::FeaturesOk(f) => {
                    assert_eq!(f & !COMMON_FEATURES, 0, "unoffered features acked");
                    assert_ne!(f & VIRTIO_F_VERSION_1, 0, "a legacy driver got FEATURES_OK");
                }
                StatusChange::DriverOk => {
                    assert_ne!(rig.common.status & STATUS_FEATURES_OK, 0);
                }
                StatusChange::None => {}
            }
        }
        9 => {
            let off = u64::from(c.u8() % 0x40);
            let mut buf = sized(c);
            rig.common.read(off, &mut buf);
        }
        10 => {
            let (v, x) = (c.u8(), c.u16());
            let mut dev = rig.test.lock().unwrap();
            let dev = &mut *dev;
            let _ = dev.msi.trigger(&mut dev.config, v);
            let _ = dev.msix.trigger(x);
        }
        _ => rig.activator.run_pending(),
    }
}

fn check_common(common: &CommonConfig) {
    assert_eq!(common.queues.len(), COMMON_QUEUES.len());
    for (q, max) in common.queues.iter().zip(COMMON_QUEUES) {
        assert_eq!(q.max_size, max);
        assert!(
            q.size.is_power_of_two() && q.size <= max,
            "queue size {} (max {max})",
            q.size
        );
    }
    let mut n = [0u8; 2];
    common.read(0x12, &mut n);
    assert_eq!(usize::from(u16::from_le_bytes(n)), COMMON_QUEUES.len());
}

fn check_rig(rig: &Rig) {
    let mut test = rig.test.lock().unwrap();
    assert_eq!(test.read_config_register(0), TEST_IDS);
    drop(test);
    let mut ids = [0u8; 4];
    assert!(rig.mmio.read(PCI_ECAM_START, &mut ids), "ECAM window lost");
    assert_eq!(u32::from_le_bytes(ids), HOST_BRIDGE_IDS);
    // Nothing may decode over guest RAM or the interrupt controllers.
    let mut b = [0u8; 4];
    for addr in [RAM.0, 0x1000, 0xc000, RAM.1 - 4, IOAPIC_START, LAPIC_START] {
        assert!(!rig.mmio.read(addr, &mut b), "a BAR decodes over {addr:#x}");
    }
    // And the config ports stay where they are.
    rig.pio
        .write(PCI_CONFIG_IO_PORT, &0x8000_0000u32.to_le_bytes());
    assert!(rig.pio.read(PCI_CONFIG_IO_PORT + 4, &mut ids), "0xcfc lost");
    assert_eq!(u32::from_le_bytes(ids), HOST_BRIDGE_IDS);
}
