//! A [`BusDevice`] that forwards accesses to one BAR of a PCI function, so
//! the VMM can insert BARs onto its port I/O and MMIO [`devices::Bus`]es.

use std::sync::{Arc, Mutex};

use devices::BusDevice;

use crate::device::PciDevice;

/// One BAR of a function, as a bus device: an access at `offset` into the
/// bus range becomes `read_bar/write_bar(bar, offset, ..)`.
pub struct PciBarRegion {
    device: Arc<Mutex<dyn PciDevice>>,
    bar: usize,
}

impl PciBarRegion {
    pub fn new(device: Arc<Mutex<dyn PciDevice>>, bar: usize) -> Self {
        Self { device, bar }
    }

    /// The BAR index this region forwards to.
    pub fn bar(&self) -> usize {
        self.bar
    }
}

impl BusDevice for PciBarRegion {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let mut device = self.device.lock().unwrap_or_else(|p| p.into_inner());
        device.read_bar(self.bar, offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut device = self.device.lock().unwrap_or_else(|p| p.into_inner());
        device.write_bar(self.bar, offset, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TestDevice;
    use devices::Bus;

    #[test]
    fn bus_accesses_reach_the_devices_bar_at_relative_offsets() {
        let device = Arc::new(Mutex::new(TestDevice::new()));
        let bus = Bus::new();
        let region = PciBarRegion::new(device.clone(), 2);
        assert_eq!(region.bar(), 2);
        bus.insert(Arc::new(Mutex::new(region)), 0xc000_0000, 0x1000)
            .unwrap();
        assert!(bus.write(0xc000_0010, &[1, 2, 3, 4]));
        let mut data = [0u8; 4];
        assert!(bus.read(0xc000_0010, &mut data));
        assert_eq!(data, [1, 2, 3, 4]);
        let dev = device.lock().unwrap();
        assert_eq!(dev.last_bar_write, Some((2, 0x10, vec![1, 2, 3, 4])));
    }
}
