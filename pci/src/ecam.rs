//! PCI Express enhanced configuration access (ECAM, "MMCONFIG"): 256 MiB of
//! MMIO, one 4 KiB config space per function at
//! `bus << 20 | device << 15 | function << 12 | register`.

use std::sync::Arc;

use devices::BusDevice;
use log::debug;

use crate::address::PciAddress;
use crate::bus::PciBus;

/// Bytes of ECAM for buses 0..=255.
pub const PCI_ECAM_SIZE: u64 = 256 << 20;

/// The ECAM window onto a [`PciBus`], as an MMIO [`BusDevice`].
///
/// An access reaches the bytes it covers of one register when it fits in
/// one dword (any 1..=4 bytes that do not straddle); an aligned 8-byte
/// access is split into its two dwords, as chipsets do. Anything else, and
/// offsets past the window, read all-ones and drop writes; so do functions
/// that do not exist.
pub struct PciConfigMmio {
    bus: Arc<PciBus>,
    /// Bytes of the window (1 MiB per bus).
    size: u64,
}

impl PciConfigMmio {
    /// The window for buses 0..=255.
    pub fn new(bus: Arc<PciBus>) -> Self {
        Self::with_size(bus, PCI_ECAM_SIZE)
    }

    /// A window of `size` bytes (`size >> 20` buses; a segment with fewer buses).
    pub fn with_size(bus: Arc<PciBus>, size: u64) -> Self {
        Self {
            bus,
            size: size.min(PCI_ECAM_SIZE),
        }
    }
}

/// Function, register and byte offset of ECAM offset `offset`.
fn decode(offset: u64) -> (PciAddress, usize, u64) {
    let addr = PciAddress::new(
        (offset >> 20) as u8,
        (offset >> 15) as u8,
        (offset >> 12) as u8,
    );
    (addr, ((offset & 0xfff) >> 2) as usize, offset & 3)
}

/// Whether an access of `len` bytes at `offset` is a split 8-byte one.
fn is_qword(offset: u64, len: usize) -> bool {
    len == 8 && offset.is_multiple_of(8)
}

fn in_window(offset: u64, len: usize, size: u64) -> bool {
    offset
        .checked_add(len as u64)
        .is_some_and(|end| end <= size)
}

impl BusDevice for PciConfigMmio {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if !in_window(offset, data.len(), self.size) {
            debug!(
                "pci: ECAM read of {} bytes at {offset:#x} beyond the window",
                data.len()
            );
            return;
        }
        if is_qword(offset, data.len()) {
            let (low, high) = data.split_at_mut(4);
            self.read(offset, low);
            self.read(offset + 4, high);
            return;
        }
        let (addr, reg, byte) = decode(offset);
        let addr = PciAddress {
            segment: self.bus.segment(),
            ..addr
        };
        self.bus.read_config_bytes(addr, reg, byte, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if !in_window(offset, data.len(), self.size) {
            debug!(
                "pci: ECAM write of {} bytes at {offset:#x} beyond the window",
                data.len()
            );
            return;
        }
        if is_qword(offset, data.len()) {
            self.write(offset, &data[..4]);
            self.write(offset + 4, &data[4..]);
            return;
        }
        let (addr, reg, byte) = decode(offset);
        let addr = PciAddress {
            segment: self.bus.segment(),
            ..addr
        };
        // The bus has already applied any BAR moves.
        let _ = self.bus.write_config(addr, reg, byte, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relocate::RecordingRelocator;
    use crate::test_util::TestDevice;
    use std::sync::Mutex;

    fn ecam() -> (
        PciConfigMmio,
        Arc<Mutex<TestDevice>>,
        Arc<RecordingRelocator>,
    ) {
        let relocator = Arc::new(RecordingRelocator::new());
        let bus = Arc::new(PciBus::new(relocator.clone()));
        let device = Arc::new(Mutex::new(TestDevice::new()));
        bus.add_device_at(3, device.clone()).unwrap();
        (PciConfigMmio::new(bus), device, relocator)
    }

    fn at(bus: u64, dev: u64, func: u64, reg: u64) -> u64 {
        bus << 20 | dev << 15 | func << 12 | reg
    }

    fn read(ecam: &mut PciConfigMmio, offset: u64, len: usize) -> u64 {
        let mut data = vec![0u8; len];
        ecam.read(offset, &mut data);
        data.iter().rev().fold(0, |acc, b| acc << 8 | u64::from(*b))
    }

    #[test]
    fn routes_by_bus_device_function_register() {
        let (mut ecam, _, _) = ecam();
        assert_eq!(read(&mut ecam, at(0, 3, 0, 0), 4), 0x1041_1af4);
        assert_eq!(read(&mut ecam, at(0, 0, 0, 0), 4), 0x0d57_8086);
        assert_eq!(
            read(&mut ecam, at(0, 3, 0, 0x0a), 2),
            0x0200,
            "class, subclass"
        );
        assert_eq!(read(&mut ecam, at(0, 3, 0, 0x3d), 1), 1, "interrupt pin");
        assert_eq!(read(&mut ecam, at(0, 3, 0, 0), 8), 0x0010_0000_1041_1af4);
    }

    #[test]
    fn nonexistent_functions_read_all_ones() {
        let (mut ecam, _, _) = ecam();
        for offset in [
            at(0, 4, 0, 0),
            at(0, 3, 2, 0),
            at(1, 3, 0, 0),
            at(255, 31, 7, 0xffc),
        ] {
            assert_eq!(read(&mut ecam, offset, 4), 0xffff_ffff);
            assert_eq!(read(&mut ecam, offset + 2, 2), 0xffff);
            assert_eq!(read(&mut ecam, offset + 1, 1), 0xff);
            ecam.write(offset, &[0; 4]);
        }
    }

    #[test]
    fn writes_of_each_size_reach_the_register() {
        let (mut ecam, device, relocator) = ecam();
        ecam.write(at(0, 3, 0, 0x3c), &[7]);
        assert_eq!(read(&mut ecam, at(0, 3, 0, 0x3c), 1), 7);
        ecam.write(at(0, 3, 0, 0x04), &0x0003u16.to_le_bytes());
        assert_eq!(
            relocator.take_moves().len(),
            3,
            "I/O and memory BARs decoded"
        );
        ecam.write(at(0, 3, 0, 0x10), &0xffff_ffffu32.to_le_bytes());
        assert_eq!(
            read(&mut ecam, at(0, 3, 0, 0x10), 4),
            0xffff_ffe1,
            "I/O BAR size"
        );
        let qword = 0x0000_0004_0000_0000u64.to_le_bytes();
        ecam.write(at(0, 3, 0, 0x18), &qword);
        assert_eq!(
            device.lock().unwrap().config.bar_addr(2),
            Some(0x4_0000_0000)
        );
    }

    #[test]
    fn extended_config_space_is_reachable() {
        let (mut ecam, device, _) = ecam();
        device.lock().unwrap().config.set_u32(0x100, 0x0001_0001);
        assert_eq!(read(&mut ecam, at(0, 3, 0, 0x100), 4), 0x0001_0001);
        assert_eq!(read(&mut ecam, at(0, 3, 0, 0xffc), 4), 0);
    }

    #[test]
    fn straddling_odd_and_out_of_window_accesses_are_refused() {
        let (mut ecam, _, _) = ecam();
        let base = at(0, 3, 0, 0x3c);
        assert_eq!(read(&mut ecam, base + 3, 2), 0xffff);
        assert_eq!(read(&mut ecam, base + 2, 8), u64::MAX, "8 bytes unaligned");
        ecam.write(base + 2, &[1, 2, 3, 4]);
        ecam.write(base, &[1; 16]);
        assert_eq!(read(&mut ecam, base, 1), 0);
        assert_eq!(read(&mut ecam, PCI_ECAM_SIZE, 4), 0xffff_ffff);
        assert_eq!(read(&mut ecam, u64::MAX, 1), 0xff);
        ecam.write(u64::MAX - 1, &[0; 4]);
        let mut empty = [];
        ecam.read(0, &mut empty);
    }

    /// A further segment's window: 8 buses; its device answers with its own segment's
    /// address, and past the window everything reads all-ones.
    #[test]
    fn a_smaller_window_on_another_segment_routes_by_that_segment() {
        let bus = Arc::new(PciBus::on_segment(
            3,
            7,
            Arc::new(RecordingRelocator::new()),
        ));
        let device = Arc::new(Mutex::new(TestDevice::new()));
        let placed = bus.add_device(device).unwrap();
        assert_eq!(placed.to_string(), "0003:00:01.0");
        let mut ecam = PciConfigMmio::with_size(bus, 8 << 20);
        assert_eq!(read(&mut ecam, at(0, 1, 0, 0), 4), 0x1041_1af4);
        assert_eq!(
            read(&mut ecam, at(8, 1, 0, 0), 4),
            0xffff_ffff,
            "bus 8: past the window"
        );
    }
}
