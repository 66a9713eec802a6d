//! The host bridge at 00:00.0: a config header with no BARs, telling the
//! guest there is a PCI root here.

use log::debug;

use crate::bar::BarInfo;
use crate::configuration::{ConfigWriteResult, PciConfiguration, PciHeader};
use crate::device::PciDevice;

/// Intel's vendor ID.
pub const HOST_BRIDGE_VENDOR_ID: u16 = 0x8086;
/// The device ID Cloud Hypervisor's host bridge uses.
pub const HOST_BRIDGE_DEVICE_ID: u16 = 0x0d57;
/// Class bridge, subclass host bridge.
pub const HOST_BRIDGE_CLASS: u32 = 0x06_00_00;

/// The root complex's host bridge function.
#[derive(Clone, Debug)]
pub struct PciHostBridge {
    config: PciConfiguration,
}

impl PciHostBridge {
    pub fn new() -> Self {
        Self {
            config: PciConfiguration::new(&PciHeader {
                vendor_id: HOST_BRIDGE_VENDOR_ID,
                device_id: HOST_BRIDGE_DEVICE_ID,
                class_code: HOST_BRIDGE_CLASS,
                ..Default::default()
            }),
        }
    }
}

impl Default for PciHostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl PciDevice for PciHostBridge {
    fn read_config_register(&mut self, reg: usize) -> u32 {
        self.config.read_config_register(reg)
    }

    fn write_config_register(&mut self, reg: usize, offset: u64, data: &[u8]) -> ConfigWriteResult {
        self.config.write_config_register(reg, offset, data)
    }

    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        debug!("host bridge: read of BAR {bar} at {offset:#x}, which does not exist");
        data.fill(0xff);
    }

    fn write_bar(&mut self, bar: usize, offset: u64, _data: &[u8]) {
        debug!("host bridge: write to BAR {bar} at {offset:#x}, which does not exist");
    }

    fn bars(&self) -> Vec<BarInfo> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_as_intel_host_bridge_without_bars() {
        let mut bridge = PciHostBridge::new();
        assert_eq!(bridge.read_config_register(0), 0x0d57_8086);
        assert_eq!(bridge.read_config_register(2) >> 8, 0x06_00_00);
        assert_eq!(
            bridge.read_config_register(3) >> 16 & 0xff,
            0,
            "type-0 header"
        );
        for reg in 4..10 {
            let result = bridge.write_config_register(reg, 0, &[0xff; 4]);
            assert!(result.bar_moves.is_empty());
            assert_eq!(bridge.read_config_register(reg), 0, "no BAR {reg}");
        }
        assert!(bridge.bars().is_empty());
        let mut data = [0u8; 4];
        bridge.read_bar(0, 0, &mut data);
        assert_eq!(data, [0xff; 4]);
    }
}
