//! Fuzz-style loops: random guest writes of every size at every config
//! offset, through ECAM and 0xcf8/0xcfc, and random MSI-X table traffic,
//! must never panic and never change read-only identity fields.

use std::sync::{Arc, Mutex};

use devices::{Bus, BusDevice};

use crate::bus::PciBus;
use crate::config_io::PciConfigIo;
use crate::ecam::{PciConfigMmio, PCI_ECAM_SIZE};
use crate::relocate::BusBarRelocator;
use crate::test_util::{Rng, TestDevice};
use crate::PciDevice;

const SIZES: [usize; 8] = [0, 1, 2, 3, 4, 5, 8, 16];

struct Rig {
    ecam: PciConfigMmio,
    config_io: PciConfigIo,
    device: Arc<Mutex<TestDevice>>,
    mmio: Arc<Bus>,
}

fn rig() -> Rig {
    let (pio, mmio) = (Arc::new(Bus::new()), Arc::new(Bus::new()));
    let relocator =
        BusBarRelocator::new(pio, mmio.clone()).with_reserved_mmio(vec![(0, 0x8000_0000)]);
    let bus = Arc::new(PciBus::new(Arc::new(relocator)));
    let device = Arc::new(Mutex::new(TestDevice::new()));
    bus.add_device_at(3, device.clone()).unwrap();
    Rig {
        ecam: PciConfigMmio::new(bus.clone()),
        config_io: PciConfigIo::new(bus),
        device,
        mmio,
    }
}

fn random_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

fn assert_identity_intact(rig: &mut Rig) {
    let mut dev = rig.device.lock().unwrap();
    assert_eq!(dev.read_config_register(0), 0x1041_1af4);
    assert_eq!(dev.read_config_register(2), 0x0200_0001);
    assert_eq!(dev.read_config_register(11), 0x0001_1af4);
}

#[test]
fn random_ecam_writes_at_every_offset_and_size_never_panic() {
    let mut rig = rig();
    let mut rng = Rng::new(0x5eed);
    let device_base = 3u64 << 15;
    for pass in 0..2 {
        for offset in 0..0x1000u64 {
            for len in SIZES {
                let data = random_bytes(&mut rng, len);
                rig.ecam.write(device_base + offset, &data);
                let mut back = vec![0u8; len];
                rig.ecam.read(device_base + offset, &mut back);
            }
        }
        // Whatever the loop left programmed, BAR traffic must not panic.
        let mut data = [0u8; 8];
        for addr in [
            0xc000_0000u64,
            0x1_0000_0000,
            0xffff_f000,
            0x8000_0000 + pass,
        ] {
            rig.mmio.read(addr, &mut data);
            rig.mmio.write(addr, &data);
        }
        assert_identity_intact(&mut rig);
    }
}

#[test]
fn random_ecam_accesses_anywhere_never_panic() {
    let mut rig = rig();
    let mut rng = Rng::new(0xecab);
    for _ in 0..20_000 {
        let offset = match rng.below(3) {
            0 => rng.below(PCI_ECAM_SIZE),
            1 => rng.next_u64(),
            _ => (3 << 15) | rng.below(0x1000),
        };
        let len = SIZES[rng.below(SIZES.len() as u64) as usize];
        let data = random_bytes(&mut rng, len);
        rig.ecam.write(offset, &data);
        let mut back = vec![0u8; len];
        rig.ecam.read(offset, &mut back);
    }
    assert_identity_intact(&mut rig);
}

#[test]
fn random_config_io_accesses_never_panic() {
    let mut rig = rig();
    let mut rng = Rng::new(0xcf8);
    for _ in 0..20_000 {
        // Mostly well-formed selects of device 3, sometimes anything.
        let address = if rng.below(4) == 0 {
            rng.next_u64() as u32
        } else {
            0x8000_0000 | 3 << 11 | (rng.below(64) as u32) << 2
        };
        rig.config_io.write(0, &address.to_le_bytes());
        let port = rng.below(10);
        let len = SIZES[rng.below(SIZES.len() as u64) as usize];
        let data = random_bytes(&mut rng, len);
        rig.config_io.write(port, &data);
        let mut back = vec![0u8; len];
        rig.config_io.read(port, &mut back);
    }
    assert_identity_intact(&mut rig);
}

#[test]
fn random_msix_table_traffic_and_triggers_never_panic() {
    let mut rig = rig();
    let mut rng = Rng::new(0x115);
    let mut dev = rig.device.lock().unwrap();
    let control_reg = dev.msix.offset() / 4;
    for _ in 0..20_000 {
        match rng.below(4) {
            0 => {
                let control = random_bytes(&mut rng, 2);
                let _ = dev.write_config_register(control_reg, 2, &control);
            }
            1 => {
                let _ = dev.msix.trigger(rng.below(6) as u16);
            }
            _ => {
                let offset = rng.below(0x1100);
                let len = SIZES[rng.below(SIZES.len() as u64) as usize];
                let data = random_bytes(&mut rng, len);
                dev.write_bar(1, offset, &data);
                let mut back = vec![0u8; len];
                dev.read_bar(1, offset, &mut back);
            }
        }
    }
    // Every recorded trigger was for a real, then-unmasked vector.
    assert!(dev.msix_group.triggered().iter().all(|v| *v < 4));
    drop(dev);
    assert_identity_intact(&mut rig);
}

#[test]
fn random_msi_traffic_never_panics() {
    let rig = rig();
    let mut rng = Rng::new(0x0005);
    let mut dev = rig.device.lock().unwrap();
    let first = dev.msi.offset() / 4;
    for _ in 0..20_000 {
        let reg = first + rng.below(6) as usize;
        let len = SIZES[rng.below(SIZES.len() as u64) as usize];
        let data = random_bytes(&mut rng, len);
        let _ = dev.write_config_register(reg, rng.below(5), &data);
        let vector = rng.below(40) as u8;
        let TestDevice { msi, config, .. } = &mut *dev;
        msi.trigger(config, vector).unwrap();
    }
    assert!(dev.msi_group.triggered().iter().all(|v| *v < 4));
}

#[test]
fn random_config_writes_to_a_root_port_and_its_secondary_bus_never_panic() {
    let (pio, mmio) = (Arc::new(Bus::new()), Arc::new(Bus::new()));
    let relocator =
        BusBarRelocator::new(pio, mmio.clone()).with_reserved_mmio(vec![(0, 0x8000_0000)]);
    let bus = Arc::new(PciBus::new(Arc::new(relocator)));
    let device = Arc::new(Mutex::new(TestDevice::new()));
    let (port, dev) = bus
        .add_root_port(crate::PcieLink::default(), device.clone())
        .unwrap();
    let mut ecam = PciConfigMmio::new(bus.clone());
    let mut rng = Rng::new(0xb1d9e);
    let port_base = u64::from(port.device) << 15;
    for _ in 0..4 {
        for offset in 0..0x1000u64 {
            for len in SIZES {
                let data = random_bytes(&mut rng, len);
                ecam.write(port_base + offset, &data);
                let mut back = vec![0u8; len];
                ecam.read(port_base + offset, &mut back);
            }
        }
        // Whatever the guest did to the bus numbers, every bus answers or reads all-ones,
        // and the port's identity stays.
        for b in 0..=255u64 {
            let mut id = [0u8; 4];
            ecam.read(b << 20, &mut id);
        }
        let mut id = [0u8; 4];
        ecam.read(port_base, &mut id);
        assert_eq!(u32::from_le_bytes(id), 0x000c_1b36);
    }
    // The device is still reachable at the secondary bus the port now names.
    let mut reg = [0u8; 4];
    ecam.read(port_base + 0x18, &mut reg);
    let secondary = u64::from(reg[1]);
    let mut id = [0u8; 4];
    ecam.read(secondary << 20, &mut id);
    if secondary != 0 {
        assert_eq!(u32::from_le_bytes(id), 0x1041_1af4, "{dev}");
    }
}
