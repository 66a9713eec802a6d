//! Configuration mechanism #1: CONFIG_ADDRESS at 0xcf8 and CONFIG_DATA at
//! 0xcfc..0xcff, as one 8-port [`BusDevice`].

use std::sync::Arc;

use devices::BusDevice;
use log::debug;

use crate::address::PciAddress;
use crate::bus::PciBus;

/// Port of CONFIG_ADDRESS; the device covers `0xcf8..0xd00`.
pub const PCI_CONFIG_IO_PORT: u64 = 0xcf8;
/// Ports the device covers.
pub const PCI_CONFIG_IO_PORT_LEN: u64 = 8;

/// CONFIG_ADDRESS: config cycles are generated only while this is set.
pub const CONFIG_ADDRESS_ENABLE: u32 = 1 << 31;
/// Implemented CONFIG_ADDRESS bits: enable, bus, device, function, register.
const CONFIG_ADDRESS_BITS: u32 = 0x80ff_fffc;
const DATA_OFFSET: u64 = 4;

/// The CONFIG_ADDRESS latch and the CONFIG_DATA window onto a [`PciBus`].
///
/// Like the chipsets it models, CONFIG_ADDRESS only takes dword accesses
/// (other sizes read all-ones and are ignored); CONFIG_DATA takes any
/// access inside its dword (byte, word at any offset, dword), reaching the
/// same bytes of the addressed register. While the enable bit is clear, or
/// for functions that do not exist, CONFIG_DATA reads all-ones and drops
/// writes.
pub struct PciConfigIo {
    bus: Arc<PciBus>,
    config_address: u32,
}

impl PciConfigIo {
    pub fn new(bus: Arc<PciBus>) -> Self {
        Self {
            bus,
            config_address: 0,
        }
    }

    /// The latched CONFIG_ADDRESS.
    pub fn config_address(&self) -> u32 {
        self.config_address
    }

    /// The function and register CONFIG_DATA reaches, if enabled.
    fn target(&self) -> Option<(PciAddress, usize)> {
        let a = self.config_address;
        if a & CONFIG_ADDRESS_ENABLE == 0 {
            return None;
        }
        let addr = PciAddress::new((a >> 16) as u8, (a >> 11) as u8, (a >> 8) as u8);
        Some((addr, ((a >> 2) & 0x3f) as usize))
    }
}

impl BusDevice for PciConfigIo {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if offset == 0 && data.len() == 4 {
            data.copy_from_slice(&self.config_address.to_le_bytes());
            return;
        }
        match (offset.checked_sub(DATA_OFFSET), self.target()) {
            (Some(byte), Some((addr, reg))) => self.bus.read_config_bytes(addr, reg, byte, data),
            (Some(_), None) => debug!("pci: CONFIG_DATA read while CONFIG_ADDRESS is disabled"),
            (None, _) => debug!(
                "pci: {}-byte read of CONFIG_ADDRESS at +{offset}",
                data.len()
            ),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 && data.len() == 4 {
            let value = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            self.config_address = value & CONFIG_ADDRESS_BITS;
            return;
        }
        match (offset.checked_sub(DATA_OFFSET), self.target()) {
            (Some(byte), Some((addr, reg))) => {
                // The bus has already applied any BAR moves.
                let _ = self.bus.write_config(addr, reg, byte, data);
            }
            (Some(_), None) => debug!("pci: CONFIG_DATA write while CONFIG_ADDRESS is disabled"),
            (None, _) => debug!(
                "pci: {}-byte write to CONFIG_ADDRESS at +{offset}",
                data.len()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relocate::RecordingRelocator;
    use crate::test_util::TestDevice;
    use std::sync::Mutex;

    fn config_io() -> (PciConfigIo, Arc<RecordingRelocator>) {
        let relocator = Arc::new(RecordingRelocator::new());
        let bus = Arc::new(PciBus::new(relocator.clone()));
        bus.add_device_at(3, Arc::new(Mutex::new(TestDevice::new())))
            .unwrap();
        (PciConfigIo::new(bus), relocator)
    }

    fn select(io: &mut PciConfigIo, bus: u32, dev: u32, func: u32, offset: u32) {
        let value = CONFIG_ADDRESS_ENABLE | bus << 16 | dev << 11 | func << 8 | offset;
        io.write(0, &value.to_le_bytes());
    }

    fn read(io: &mut PciConfigIo, port_offset: u64, len: usize) -> u64 {
        let mut data = vec![0u8; len];
        io.read(port_offset, &mut data);
        data.iter().rev().fold(0, |acc, b| acc << 8 | u64::from(*b))
    }

    #[test]
    fn config_address_latches_implemented_bits_only() {
        let (mut io, _) = config_io();
        io.write(0, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(io.config_address(), 0x80ff_fffc);
        assert_eq!(read(&mut io, 0, 4), 0x80ff_fffc);
        io.write(1, &[0]);
        io.write(0, &[0, 0]);
        assert_eq!(io.config_address(), 0x80ff_fffc, "only dword writes latch");
        assert_eq!(read(&mut io, 0, 2), 0xffff);
    }

    #[test]
    fn config_data_reads_bytes_words_and_dwords() {
        let (mut io, _) = config_io();
        select(&mut io, 0, 3, 0, 0);
        assert_eq!(read(&mut io, 4, 4), 0x1041_1af4);
        assert_eq!(read(&mut io, 4, 2), 0x1af4);
        assert_eq!(read(&mut io, 6, 2), 0x1041);
        assert_eq!(
            read(&mut io, 5, 2),
            0x411a,
            "unaligned word inside the dword"
        );
        assert_eq!(read(&mut io, 7, 1), 0x10);
        select(&mut io, 0, 0, 0, 0);
        assert_eq!(read(&mut io, 4, 4), 0x0d57_8086, "host bridge");
    }

    #[test]
    fn config_data_writes_reach_the_selected_register() {
        let (mut io, relocator) = config_io();
        select(&mut io, 0, 3, 0, 0x3c);
        io.write(4, &[9]);
        assert_eq!(read(&mut io, 4, 1), 9, "interrupt line");
        select(&mut io, 0, 3, 0, 0x04);
        io.write(4, &[0x02, 0x00]);
        assert_eq!(relocator.take_moves().len(), 2, "memory decoding on");
        io.write(6, &[0xff, 0xff]);
        assert_eq!(read(&mut io, 4, 2), 0x0002);
    }

    #[test]
    fn nonexistent_functions_read_all_ones() {
        let (mut io, _) = config_io();
        for (bus, dev, func) in [(0, 4, 0), (0, 3, 1), (1, 3, 0), (255, 31, 7)] {
            select(&mut io, bus, dev, func, 0);
            assert_eq!(read(&mut io, 4, 4), 0xffff_ffff);
            assert_eq!(read(&mut io, 6, 2), 0xffff);
            io.write(4, &[0; 4]);
        }
    }

    #[test]
    fn disabled_config_address_reads_all_ones_and_drops_writes() {
        let (mut io, _) = config_io();
        io.write(0, &(3u32 << 11 | 0x3c).to_le_bytes());
        assert_eq!(read(&mut io, 4, 4), 0xffff_ffff);
        io.write(4, &[5]);
        select(&mut io, 0, 3, 0, 0x3c);
        assert_eq!(read(&mut io, 4, 1), 0);
    }

    #[test]
    fn accesses_outside_the_data_dword_are_refused() {
        let (mut io, _) = config_io();
        select(&mut io, 0, 3, 0, 0x3c);
        assert_eq!(read(&mut io, 6, 4), 0xffff_ffff);
        io.write(7, &[1, 2]);
        io.write(8, &[1]);
        assert_eq!(read(&mut io, 4, 1), 0);
        assert_eq!(read(&mut io, 3, 2), 0xffff, "straddles address and data");
        assert_eq!(read(&mut io, 4, 8), u64::MAX);
    }
}
