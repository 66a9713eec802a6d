//! The crate wired up the way a VMM does it: allocator, bus, relocator on
//! real `devices::Bus`es, config access devices on those same buses, and a
//! guest-like sequence of enumeration, sizing, decoding, moves and MSI-X.

use std::sync::{Arc, Mutex};

use devices::Bus;

use crate::allocator::{BarRequest, PciAllocator, PciAllocatorConfig};
use crate::bar::BarKind;
use crate::bus::PciBus;
use crate::config_io::{PciConfigIo, PCI_CONFIG_IO_PORT, PCI_CONFIG_IO_PORT_LEN};
use crate::ecam::{PciConfigMmio, PCI_ECAM_SIZE};
use crate::interrupt::MsiMessage;
use crate::relocate::BusBarRelocator;
use crate::test_util::TestDevice;

const ECAM_BASE: u64 = 0xe000_0000;
const RAM: (u64, u64) = (0, 0xc000_0000);

struct Vm {
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    device: Arc<Mutex<TestDevice>>,
    bars: Vec<u64>,
}

fn vm() -> Vm {
    let (pio, mmio) = (Arc::new(Bus::new()), Arc::new(Bus::new()));
    let relocator = BusBarRelocator::new(pio.clone(), mmio.clone()).with_reserved_mmio(vec![RAM]);
    let bus = Arc::new(PciBus::new(Arc::new(relocator)));
    let config_io = Arc::new(Mutex::new(PciConfigIo::new(bus.clone())));
    pio.insert(config_io, PCI_CONFIG_IO_PORT, PCI_CONFIG_IO_PORT_LEN)
        .unwrap();
    let ecam = Arc::new(Mutex::new(PciConfigMmio::new(bus.clone())));
    mmio.insert(ecam, ECAM_BASE, PCI_ECAM_SIZE).unwrap();

    let mut allocator = PciAllocator::new(&PciAllocatorConfig {
        io: (0x1000, 0xf000),
        mmio32: (0xc000_0000, 0x2000_0000),
        mmio64: (1 << 36, 1 << 36),
        host_phys_bits: Some(40),
    })
    .unwrap();
    let slot = bus.next_free_slot().unwrap();
    let requests = [
        (0, BarKind::Io, 0x20),
        (1, BarKind::Mem32, 0x1000),
        (2, BarKind::Mem64, 0x4000),
    ]
    .map(|(index, kind, size)| BarRequest {
        index,
        size,
        kind,
        prefetchable: kind == BarKind::Mem64,
    });
    let configs = allocator
        .allocate_device(bus.address(slot), &requests)
        .unwrap();
    let device = Arc::new(Mutex::new(TestDevice::with_bars(&configs)));
    bus.add_device_at(slot, device.clone()).unwrap();
    Vm {
        pio,
        mmio,
        device,
        bars: configs.iter().map(|c| c.addr).collect(),
    }
}

impl Vm {
    fn cf8_read(&self, dev: u32, reg: u32) -> u32 {
        let address = 0x8000_0000 | dev << 11 | reg;
        assert!(self.pio.write(0xcf8, &address.to_le_bytes()));
        let mut data = [0u8; 4];
        assert!(self.pio.read(0xcfc, &mut data));
        u32::from_le_bytes(data)
    }

    fn ecam_write(&self, dev: u64, reg: u64, data: &[u8]) {
        assert!(self.mmio.write(ECAM_BASE + (dev << 15 | reg), data));
    }

    fn ecam_read32(&self, dev: u64, reg: u64) -> u32 {
        let mut data = [0u8; 4];
        assert!(self.mmio.read(ECAM_BASE + (dev << 15 | reg), &mut data));
        u32::from_le_bytes(data)
    }
}

#[test]
fn guest_enumerates_sizes_enables_and_moves_bars() {
    let vm = vm();
    // Enumeration through 0xcf8: host bridge, our device, an empty slot.
    assert_eq!(vm.cf8_read(0, 0), 0x0d57_8086);
    assert_eq!(vm.cf8_read(1, 0), 0x1041_1af4);
    assert_eq!(vm.cf8_read(2, 0), 0xffff_ffff);

    // Sizing BAR 1 through ECAM with decoding off.
    vm.ecam_write(1, 0x14, &0xffff_ffffu32.to_le_bytes());
    assert_eq!(vm.ecam_read32(1, 0x14), 0xffff_f000);
    vm.ecam_write(1, 0x14, &(vm.bars[1] as u32).to_le_bytes());

    // Enabling I/O and memory decoding puts the BARs on the buses, the I/O
    // one on the very bus that carried the config write.
    vm.ecam_write(1, 0x04, &[0x03, 0x00]);
    let mut data = [0u8; 4];
    assert!(vm.pio.read(vm.bars[0], &mut data), "I/O BAR mapped");
    assert!(vm.mmio.write(vm.bars[2] + 0x10, &[1, 2, 3, 4]));
    assert!(vm.mmio.read(vm.bars[2] + 0x10, &mut data));
    assert_eq!(data, [1, 2, 3, 4]);

    // Moving the 64-bit BAR (low then high) takes its range along.
    let new = (1u64 << 36) + 0x10_0000;
    vm.ecam_write(1, 0x18, &(new as u32).to_le_bytes());
    vm.ecam_write(1, 0x1c, &((new >> 32) as u32).to_le_bytes());
    assert!(
        !vm.mmio.read(vm.bars[2] + 0x10, &mut data),
        "old range gone"
    );
    assert!(vm.mmio.read(new + 0x10, &mut data));
    assert_eq!(data, [1, 2, 3, 4]);

    // A move onto RAM is refused: nothing answers there or at the old address.
    vm.ecam_write(1, 0x14, &0x1000u32.to_le_bytes());
    assert!(!vm.mmio.read(0x1000, &mut data));
    assert!(!vm.mmio.read(vm.bars[1], &mut data));

    // Turning memory decoding off removes the memory BARs only.
    vm.ecam_write(1, 0x04, &[0x01, 0x00]);
    assert!(!vm.mmio.read(new + 0x10, &mut data));
    assert!(vm.pio.read(vm.bars[0], &mut data));
}

#[test]
fn guest_programs_msix_through_the_mapped_bar() {
    let vm = vm();
    vm.ecam_write(1, 0x04, &[0x02, 0x00]);
    let table = vm.bars[1];
    let entry = [0xfee0_0000u32, 0, 0x4023, 0];
    for (i, dword) in entry.iter().enumerate() {
        assert!(vm
            .mmio
            .write(table + 16 + 4 * i as u64, &dword.to_le_bytes()));
    }
    let msix_control = vm.device.lock().unwrap().msix.offset() as u64 + 2;
    vm.ecam_write(1, msix_control, &0x8000u16.to_le_bytes());

    let mut dev = vm.device.lock().unwrap();
    let msg = MsiMessage {
        address: 0xfee0_0000,
        data: 0x4023,
    };
    assert_eq!(dev.msix_group.route(1), Some((msg, false)));
    assert!(dev.msix_group.is_enabled());
    dev.msix.trigger(1).unwrap();
    dev.msix.trigger(0).unwrap();
    assert_eq!(dev.msix_group.triggered(), vec![1]);
    assert!(dev.msix.table().is_pending(0));
    drop(dev);
    let mut pba = [0u8; 8];
    assert!(vm.mmio.read(table + 0x800, &mut pba));
    assert_eq!(u64::from_le_bytes(pba), 1);
}
