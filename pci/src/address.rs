//! The address of a PCI function: segment, bus, device (slot) and function.

use std::fmt;

/// Highest device (slot) number on a bus.
pub const PCI_MAX_DEVICE: u8 = 31;
/// Highest function number in a device.
pub const PCI_MAX_FUNCTION: u8 = 7;

/// Segment, bus, device and function of a PCI function; displayed the way
/// Linux prints it (`0000:00:03.0`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    pub segment: u16,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl PciAddress {
    /// Segment 0; `device` and `function` are truncated to their 5 and 3
    /// bits, as the hardware address decoders do.
    pub const fn new(bus: u8, device: u8, function: u8) -> Self {
        Self {
            segment: 0,
            bus,
            device: device & PCI_MAX_DEVICE,
            function: function & PCI_MAX_FUNCTION,
        }
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.segment, self.bus, self.device, self.function
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_like_linux() {
        assert_eq!(PciAddress::new(0, 3, 0).to_string(), "0000:00:03.0");
        let addr = PciAddress {
            segment: 0x12,
            bus: 0xab,
            device: 0x1f,
            function: 7,
        };
        assert_eq!(addr.to_string(), "0012:ab:1f.7");
    }

    #[test]
    fn new_truncates_device_and_function_bits() {
        let addr = PciAddress::new(1, 0x3f, 0x0f);
        assert_eq!((addr.bus, addr.device, addr.function), (1, 0x1f, 7));
    }
}
